//! The one wasmtime `Engine` of the process and the compiled-component
//! cache.
//!
//! Compiling a component takes tens of milliseconds and deserializing a
//! precompiled one well under one, so each runner file is compiled once per
//! content hash: in memory for the life of the process, and on disk (when a
//! cache directory is given) across restarts.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Fuel units between two yields of a running guest to the executor. At
/// roughly one unit per wasm instruction this is about a millisecond of
/// guest work: the upper bound on how late a cancel or deadline is noticed.
pub(crate) const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

/// Largest wasm call stack a guest may use.
const MAX_WASM_STACK: usize = 1 << 20;

/// Guard region after each linear memory (wasmtime's default).
const MEMORY_GUARD: u64 = 32 << 20;

/// Most address space the instance pool may reserve up front. Past this,
/// instances are allocated on demand, each reserving its own memory only
/// while it lives: an agent configured for a thousand sessions must still
/// start under `ulimit -v` (each pooled memory slot is reserved whether a
/// session uses it or not).
const POOL_BUDGET: u64 = 32 << 30;

/// Linear memories one component may hold (the pool keeps this many slots
/// per instance).
const MEMORIES_PER_COMPONENT: u32 = 2;

/// How the engine allocates instances.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Use the pooling allocator (pre-reserved slots: fast instantiation).
    pub pooling: bool,
    /// Instances that may be alive at once (sessions plus headroom).
    pub slots: u32,
    /// Largest linear memory any session may get (the pool's slot size).
    pub max_memory: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            pooling: true,
            slots: 8,
            max_memory: 64 << 20,
        }
    }
}

/// Bytes of address space one linear memory takes: the largest memory a
/// session may get (rounded up to 64 KiB wasm pages) and its guard.
///
/// wasmtime's default reserves 4 GiB per memory so that bounds checks can
/// be left to the guard pages; at 100 sessions that was 823 GiB of virtual
/// size, and an agent under `ulimit -v` could not start. Reserving only
/// `max_memory` costs explicit bounds checks in guest code (see
/// BENCHMARKS.md, "Sandbox": the compute kernel's figure), which
/// I/O-bound runners do not notice.
fn memory_reservation(max_memory: u64) -> u64 {
    max_memory.max(1 << 16).div_ceil(1 << 16) * (1 << 16)
}

/// Whether the instance pool for `slots` instances with memories of
/// `max_memory` fits [`POOL_BUDGET`].
pub(crate) fn pool_fits(slots: u32, max_memory: u64) -> bool {
    let per_memory = memory_reservation(max_memory) + MEMORY_GUARD;
    u64::from(slots.max(1)) * u64::from(MEMORIES_PER_COMPONENT) * per_memory <= POOL_BUDGET
}

/// Builds the process engine: fuel metering, async support, linear
/// memories reserved at `max_memory`, and (by default, when it fits
/// [`POOL_BUDGET`]) a pooling allocator sized from the session limit.
pub(crate) fn build(opts: &EngineOptions) -> anyhow::Result<Engine> {
    let mut cfg = Config::new();
    cfg.consume_fuel(true);
    cfg.max_wasm_stack(MAX_WASM_STACK);
    cfg.wasm_component_model(true);
    cfg.memory_reservation(memory_reservation(opts.max_memory));
    cfg.memory_guard_size(MEMORY_GUARD);
    cfg.memory_reservation_for_growth(0);
    let pooling = opts.pooling && pool_fits(opts.slots, opts.max_memory);
    if opts.pooling && !pooling {
        tracing::info!(
            slots = opts.slots,
            max_memory = opts.max_memory,
            "instances are allocated on demand: a pool for this many sessions would reserve more than {} GiB of address space",
            POOL_BUDGET >> 30
        );
    }
    if pooling {
        let slots = opts.slots.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 16)
            .max_core_instances_per_component(16)
            .total_memories(slots * MEMORIES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .total_tables(slots * 8)
            .max_tables_per_component(8)
            .table_elements(super::budgets::Budgets::MAX_TABLE_ELEMENTS)
            .total_stacks(slots)
            .max_memory_size(usize::try_from(opts.max_memory).unwrap_or(usize::MAX));
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&cfg)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")
}

/// Compiled components by content hash.
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    mem: Mutex<HashMap<String, Component>>,
    /// How to build a throwaway engine that compiles into `dir` (see
    /// [`ComponentCache::with_compiler`]).
    compiler: Option<EngineOptions>,
}

impl ComponentCache {
    /// A cache that also keeps precompiled artifacts in `dir`.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache {
            dir,
            mem: Mutex::new(HashMap::new()),
            compiler: None,
        }
    }

    /// Compiles into the cache directory with a throwaway engine built
    /// from `opts` (the agent's engine's own options), dropped once the
    /// code is written; the code is then loaded from the file into the
    /// agent's engine. Why: wasmtime's compiler keeps its working buffers
    /// for reuse as long as its engine lives, in the allocator arenas of
    /// the threads that compiled; an agent whose cache was cold kept some
    /// 14 MiB resident for good (BENCHMARKS.md, "Footprint").
    pub(crate) fn with_compiler(mut self, opts: EngineOptions) -> Self {
        self.compiler = Some(opts);
        self
    }

    /// Compiles `bytes` (named `what` in errors), or returns the cached
    /// compilation of the same bytes.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        what: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        self.load_from(engine, what, bytes).map(|(c, _)| c)
    }

    /// [`load`](Self::load), saying where the compiled code came from.
    pub(crate) fn load_from(
        &self,
        engine: &Engine,
        what: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, Origin)> {
        check_is_component(what, bytes)?;
        let key = cache_key(engine, bytes);
        if let Some(c) = self.lock().get(&key) {
            return Ok((c.clone(), Origin::Memory));
        }
        let (component, origin) = match &self.dir {
            Some(dir) => self.load_via_disk(engine, what, bytes, dir, &key)?,
            None => (compile(engine, what, bytes)?, Origin::Compiled),
        };
        self.lock().insert(key, component.clone());
        Ok((component, origin))
    }

    /// Whether the cache directory holds the compiled code of `bytes`
    /// (writing it may have failed: that is a warning, not an error).
    pub(crate) fn on_disk(&self, engine: &Engine, bytes: &[u8]) -> bool {
        self.dir.as_ref().is_some_and(|dir| {
            private_dir(dir)
                && dir
                    .join(format!("{}.cwasm", cache_key(engine, bytes)))
                    .is_file()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        match self.mem.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn load_via_disk(
        &self,
        engine: &Engine,
        what: &str,
        bytes: &[u8],
        dir: &Path,
        key: &str,
    ) -> anyhow::Result<(Component, Origin)> {
        let path = dir.join(format!("{key}.cwasm"));
        if private_dir(dir) && path.is_file() {
            // SAFETY: the artifact was written by this program into a
            // directory only our user can write (checked above), under a
            // name that includes the engine's compatibility hash; wasmtime
            // still validates its header and refuses a mismatched engine.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, Origin::Disk)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e,
                    "precompiled runner in cache is unusable; recompiling"),
            }
        }
        if let Some(origin) = self.compile_apart(engine, what, bytes, dir, &path)? {
            return Ok((origin, Origin::Compiled));
        }
        let component = compile(engine, what, bytes)?;
        if let Err(e) = store_artifact(dir, &path, &component) {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"),
                "could not write the compiled runner to the cache; it will be compiled again next start");
            return Ok((component, Origin::Compiled));
        }
        // The code just compiled sits in anonymous memory, all of it
        // resident for the life of the process; the same code mapped from
        // the file just written is paged in only where it runs, as on every
        // later start (BENCHMARKS.md, "Footprint").
        // SAFETY: as above: our own artifact, in our private directory.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(mapped) => Ok((mapped, Origin::Compiled)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "the runner just compiled into the cache does not load back; keeping it in memory");
                Ok((component, Origin::Compiled))
            }
        }
    }

    /// [`ComponentCache::with_compiler`]'s path: `Ok(None)` when there is
    /// no compiler engine, it is not compatible with `engine`, or what it
    /// wrote does not load back (the caller then compiles as before).
    fn compile_apart(
        &self,
        engine: &Engine,
        what: &str,
        bytes: &[u8],
        dir: &Path,
        path: &Path,
    ) -> anyhow::Result<Option<Component>> {
        let Some(opts) = &self.compiler else {
            return Ok(None);
        };
        // No instance ever runs in it: no pool to reserve.
        let compiler = match build(&EngineOptions {
            pooling: false,
            ..opts.clone()
        }) {
            Ok(c) if same_hash(&c, engine) => c,
            Ok(_) => {
                tracing::debug!(
                    "the compiler engine's code would not load into the agent's; compiling in place"
                );
                return Ok(None);
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "no compiler engine; compiling in place");
                return Ok(None);
            }
        };
        let code = compile_with(what, bytes, || compiler.precompile_component(bytes))?;
        drop(compiler);
        if let Err(e) = store_bytes(dir, path, &code) {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"),
                "could not write the compiled runner to the cache; it will be compiled again next start");
            // SAFETY: the bytes were made by `precompile_component` just
            // now, by an engine with the same compatibility hash.
            return match unsafe { Component::deserialize(engine, &code) } {
                Ok(c) => Ok(Some(c)),
                Err(_) => Ok(None),
            };
        }
        drop(code);
        // SAFETY: our own artifact, in our private directory (checked by
        // `store_bytes`), named by the engine's compatibility hash;
        // wasmtime still validates its header.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "the runner just compiled into the cache does not load back; compiling in place");
                Ok(None)
            }
        }
    }
}

/// Whether code compiled by `a` loads into `b`.
fn same_hash(a: &Engine, b: &Engine) -> bool {
    let hash = |e: &Engine| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    };
    hash(a) == hash(b)
}

/// Where [`ComponentCache::load_from`] found a component's compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Compiled now (and written to the cache directory, when there is one).
    Compiled,
    /// Read back from the cache directory.
    Disk,
    /// Compiled or read earlier by this process.
    Memory,
}

/// Compiles a component, with a log line before and after: a Python
/// runner (some 18 MB with its interpreter) takes tens of seconds, and a
/// start or reload that says nothing for that long looks hung.
fn compile(engine: &Engine, what: &str, bytes: &[u8]) -> anyhow::Result<Component> {
    compile_with(what, bytes, || Component::new(engine, bytes))
}

/// [`compile`]'s log lines and error around `run`, the compilation.
fn compile_with<T>(
    what: &str,
    bytes: &[u8],
    run: impl FnOnce() -> wasmtime::Result<T>,
) -> anyhow::Result<T> {
    let size = size_text(bytes.len());
    tracing::info!(
        runner = what,
        bytes = bytes.len(),
        "compiling {what} ({size})"
    );
    let started = std::time::Instant::now();
    let component = run()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{what}: not a valid WebAssembly component"))?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        runner = what,
        seconds = secs,
        "compiled {what} in {secs:.1} s"
    );
    Ok(component)
}

/// A file size for a log line: "18.4 MB", "412 kB", "96 bytes".
fn size_text(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{} kB", n / 1_000),
        n => format!("{n} bytes"),
    }
}

/// Refuses files that are not components with a message that says what
/// they are instead.
pub(crate) fn check_is_component(what: &str, bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("{what}: not a WebAssembly file (no \\0asm header)");
    }
    // Bytes 4..8 are version + layer: 0x0d 0x00 0x01 0x00 for components,
    // 0x01 0x00 0x00 0x00 for core modules.
    if bytes[6..8] == [0, 0] {
        bail!(
            "{what}: is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
        );
    }
    Ok(())
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = Sha256::digest(bytes);
    let mut key = String::with_capacity(81);
    for b in digest.iter() {
        key.push_str(&format!("{b:02x}"));
    }
    key.push('-');
    key.push_str(&format!("{:016x}", h.finish()));
    key
}

/// True when `dir` exists, is ours and nobody else can write it.
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        // SAFETY: geteuid has no preconditions.
        Ok(m) => m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o022 == 0,
        Err(_) => false,
    }
}

fn store_artifact(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    store_bytes(dir, path, &bytes)
}

/// Writes compiled code to `path` in `dir` (made private when missing;
/// refused when others may write it), through a temporary file renamed
/// into place.
fn store_bytes(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    if !private_dir(dir) {
        bail!(
            "{} is writable by other users; not caching native code there",
            dir.display()
        );
    }
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
