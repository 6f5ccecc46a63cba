//! Looking a runner file over step by step, for `catpaw-agent
//! check-runner`: is it a component, what it imports and exports, can the
//! host satisfy its imports, does it load (exports, `describe`), and how
//! long compiling and loading from the compile cache take.
//!
//! The steps stop at the first that fails: each later one needs the
//! earlier. Running the roles it serves is the caller's (it uses the same
//! runner traits sessions use).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::engine::{self, ComponentCache, Origin};
use super::{LoadedRunner, Sandbox};

/// One step of a probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// What was checked, e.g. `imports`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found; for a failure, what is wrong and what to change.
    pub detail: String,
}

/// What a probe found.
#[derive(Debug)]
pub struct Probe {
    /// The steps taken, in order; the last failed if any did.
    pub steps: Vec<Step>,
    /// The compiled code was read from the compile cache: an earlier run
    /// compiled the same bytes with the same engine.
    pub from_cache: bool,
    /// Compiling the component (and writing it to the compile cache);
    /// `None` when it came from the cache.
    pub compile_time: Option<Duration>,
    /// Loading the compiled component from the compile cache, as an agent
    /// restart does.
    pub cached_load_time: Option<Duration>,
    /// The loaded runner, when every step passed.
    pub runner: Option<LoadedRunner>,
}

impl Probe {
    fn step(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        self.steps.push(Step { name, ok, detail });
        ok
    }
}

impl Sandbox {
    /// Probes the runner `bytes` (named `name`), compiling it into the
    /// compile cache `cache_dir` (the sandbox's own, so loading the runner
    /// afterwards reads the artifact), or reading it from there when an
    /// earlier run compiled the same bytes.
    pub fn probe(self: &Arc<Self>, name: &str, bytes: &[u8], cache_dir: &std::path::Path) -> Probe {
        let mut p = Probe {
            steps: Vec::new(),
            from_cache: false,
            compile_time: None,
            cached_load_time: None,
            runner: None,
        };
        let header = engine::check_is_component(name, bytes).map_err(|e| format!("{e:#}"));
        if !p.step(
            "component",
            header.map(|()| format!("{} bytes, a WebAssembly component", bytes.len())),
        ) {
            return p;
        }
        // A fresh cache over the same directory, so the figures are the
        // disk's and the compiler's, never this process's memory.
        let started = Instant::now();
        let cache = ComponentCache::new(Some(cache_dir.to_path_buf()));
        let loaded = cache.load_from(&self.engine, name, bytes);
        let (component, origin) = match loaded {
            Ok(c) => c,
            Err(e) => {
                p.step(
                    "compile",
                    Err(format!(
                        "{e:#}: rebuild it with a component toolchain (cargo build --target \
                         wasm32-wasip2, componentize-py) against wit/runner.wit"
                    )),
                );
                return p;
            }
        };
        let took = started.elapsed();
        let detail = if origin == Origin::Compiled {
            p.compile_time = Some(took);
            // Timed only when the artifact was written: otherwise this
            // would compile a second time.
            if cache.on_disk(&self.engine, bytes) {
                let started = Instant::now();
                let again = ComponentCache::new(Some(cache_dir.to_path_buf())).load_from(
                    &self.engine,
                    name,
                    bytes,
                );
                if let Ok((_, Origin::Disk)) = again {
                    p.cached_load_time = Some(started.elapsed());
                }
                format!(
                    "compiled in {:.1} s, kept in {}",
                    took.as_secs_f64(),
                    cache_dir.display()
                )
            } else {
                format!(
                    "compiled in {:.1} s; not kept in {} (see the warning above), so the \
                     next check compiles again",
                    took.as_secs_f64(),
                    cache_dir.display()
                )
            }
        } else {
            p.from_cache = true;
            p.cached_load_time = Some(took);
            format!(
                "from cache {} in {:.1} ms (compiled by an earlier run)",
                cache_dir.display(),
                took.as_secs_f64() * 1e3
            )
        };
        p.step("compile", Ok(detail));
        let (imports, exports) = interface(&self.engine, &component);
        p.step("exports", Ok(own_exports(&exports)));
        let unknown: Vec<&String> = imports.iter().filter(|i| !known_import(i)).collect();
        let link = self
            .linker
            .instantiate_pre(&component)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        let linked = match (link, unknown.is_empty()) {
            (Ok(()), _) => Ok(format!("all {} imports are provided", imports.len())),
            (Err(e), true) => Err(format!(
                "the host cannot satisfy an import: {e} (a runner may import only \
                 catpaw:runner/host and llm 0.2.0, catpaw:runner/host 0.1.0, and wasi:* 0.2; \
                 rebuild without the others)"
            )),
            (Err(e), false) => Err(format!(
                "imports the host does not provide: {} ({e}); a runner may import only \
                 catpaw:runner/host and llm 0.2.0, catpaw:runner/host 0.1.0, and wasi:* 0.2: \
                 remove these from the build",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        if !p.step("imports", linked) {
            return p;
        }
        match self.load(name, bytes) {
            Ok(r) => {
                p.step(
                    "worlds",
                    Ok(format!(
                        "{} world {} (inspect/diagnose: {}, chat: {})",
                        r.version(),
                        r.world(),
                        r.serves_diagnose(),
                        r.serves_chat()
                    )),
                );
                let described = match r.description() {
                    Some(d) => Ok(format!(
                        "{} {}: plugins [{}], capabilities [{}]",
                        d.name,
                        d.version,
                        d.plugins
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        d.capabilities.join(", ")
                    )),
                    None => Ok(format!(
                        "none: built against {}, which has no describe (it loads, lists no \
                         plugins; rebuild against 0.2.0 to list them)",
                        r.version()
                    )),
                };
                p.step("describe", described);
                p.runner = Some(r);
            }
            Err(e) => {
                p.step("load", Err(format!("{e:#}")));
            }
        }
        p
    }
}

/// The component's import and export names.
fn interface(engine: &wasmtime::Engine, c: &Component) -> (Vec<String>, Vec<String>) {
    let ty = c.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    (imports, exports)
}

/// The exports a runner serves, `catpaw:runner/*`. Toolchains may add
/// their own: componentize-py leaves `exports`, the interface it calls
/// once at build time to load the Python code, in every component. Those
/// are named only when there is nothing else to name.
fn own_exports(all: &[String]) -> String {
    let own: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("catpaw:runner/"))
        .collect();
    if own.is_empty() {
        return format!("none of catpaw:runner (it exports: {})", all.join(", "));
    }
    own.join(", ")
}

/// Whether the host links an import of this name at all (versions are
/// checked by the linker).
fn known_import(name: &str) -> bool {
    name.starts_with("wasi:")
        || name.starts_with("catpaw:runner/host@")
        || name.starts_with("catpaw:runner/llm@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runners_own_exports_are_listed() {
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            own_exports(&all(&[
                "exports",
                "catpaw:runner/describe@0.2.0",
                "catpaw:runner/diagnose@0.2.0"
            ])),
            "catpaw:runner/describe@0.2.0, catpaw:runner/diagnose@0.2.0"
        );
        assert_eq!(
            own_exports(&all(&["wasi:cli/run@0.2.0"])),
            "none of catpaw:runner (it exports: wasi:cli/run@0.2.0)"
        );
    }
}
