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

/// Builds the process engine: fuel metering, async support, and (by
/// default) a pooling allocator sized from the session limit.
pub(crate) fn build(opts: &EngineOptions) -> anyhow::Result<Engine> {
    let mut cfg = Config::new();
    cfg.consume_fuel(true);
    cfg.max_wasm_stack(MAX_WASM_STACK);
    cfg.wasm_component_model(true);
    if opts.pooling {
        let slots = opts.slots.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 16)
            .max_core_instances_per_component(16)
            .total_memories(slots * 2)
            .max_memories_per_component(2)
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
}

impl ComponentCache {
    /// A cache that also keeps precompiled artifacts in `dir`.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache {
            dir,
            mem: Mutex::new(HashMap::new()),
        }
    }

    /// Compiles `bytes` (named `what` in errors), or returns the cached
    /// compilation of the same bytes.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        what: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        check_is_component(what, bytes)?;
        let key = cache_key(engine, bytes);
        if let Some(c) = self.lock().get(&key) {
            return Ok(c.clone());
        }
        let component = match &self.dir {
            Some(dir) => self.load_via_disk(engine, what, bytes, dir, &key)?,
            None => compile(engine, what, bytes)?,
        };
        self.lock().insert(key, component.clone());
        Ok(component)
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
    ) -> anyhow::Result<Component> {
        let path = dir.join(format!("{key}.cwasm"));
        if private_dir(dir) && path.is_file() {
            // SAFETY: the artifact was written by this program into a
            // directory only our user can write (checked above), under a
            // name that includes the engine's compatibility hash; wasmtime
            // still validates its header and refuses a mismatched engine.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(path = %path.display(), error = %e,
                    "precompiled runner in cache is unusable; recompiling"),
            }
        }
        let component = compile(engine, what, bytes)?;
        if let Err(e) = store_artifact(dir, &path, &component) {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"),
                "could not write the compiled runner to the cache; it will be compiled again next start");
        }
        Ok(component)
    }
}

fn compile(engine: &Engine, what: &str, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{what}: not a valid WebAssembly component"))
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
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_components_are_refused_with_a_reason() {
        let e = check_is_component("x.wasm", b"hello world").unwrap_err();
        assert!(e.to_string().contains("not a WebAssembly file"), "{e}");
        let core = b"\0asm\x01\x00\x00\x00";
        let e = check_is_component("m.wasm", core).unwrap_err();
        assert!(e.to_string().contains("core WebAssembly module"), "{e}");
        let comp = b"\0asm\x0d\x00\x01\x00";
        assert!(check_is_component("c.wasm", comp).is_ok());
    }
}
