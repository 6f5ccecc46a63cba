//! The engine's sizes, the compile cache on disk and the throwaway
//! compiler engine.

use super::*;

#[test]
fn sizes_read_at_a_glance() {
    assert_eq!(size_text(18_381_423), "18.4 MB");
    assert_eq!(size_text(412_345), "412 kB");
    assert_eq!(size_text(96), "96 bytes");
}

#[test]
fn a_runner_compiled_into_the_cache_runs_from_the_file_not_a_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = build(&EngineOptions {
        pooling: false,
        ..EngineOptions::default()
    })
    .expect("engine");
    let cache = ComponentCache::new(Some(dir.path().to_path_buf()));
    let (component, origin) = cache
        .load_from(&engine, "the diagnose runner", crate::embedded::DIAGNOSE)
        .expect("compiles");
    assert_eq!(origin, Origin::Compiled);
    let artifact = mapped_artifact(dir.path());
    assert!(artifact.is_file());
    drop(component);
}

/// The `.cwasm` file in `dir`, checked to be mapped by this process.
fn mapped_artifact(dir: &Path) -> PathBuf {
    let artifact = std::fs::read_dir(dir)
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("the artifact was written");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    assert!(
        maps.contains(&artifact.display().to_string()),
        "the first start maps its code from {} as later starts do",
        artifact.display()
    );
    artifact
}

#[test]
fn a_throwaway_compiler_engine_writes_code_the_pooled_engine_maps() {
    let opts = EngineOptions {
        slots: 2,
        ..EngineOptions::default()
    };
    let engine = build(&opts).expect("pooled engine");
    let plain = build(&EngineOptions {
        pooling: false,
        ..opts.clone()
    })
    .expect("engine without a pool");
    assert!(
        same_hash(&engine, &plain),
        "code compiled without the pool must load into the pooled engine"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ComponentCache::new(Some(dir.path().to_path_buf())).with_compiler(opts);
    let (component, origin) = cache
        .load_from(&engine, "the diagnose runner", crate::embedded::DIAGNOSE)
        .expect("compiles");
    assert_eq!(origin, Origin::Compiled);
    mapped_artifact(dir.path());
    // The agent's engine runs it: the component's exports are typed.
    let ty = component.component_type();
    assert!(
        ty.exports(&engine).count() > 0,
        "the runner exports its interface"
    );
    // A second cache over the same directory reads it back.
    let again = ComponentCache::new(Some(dir.path().to_path_buf()));
    let (_, origin) = again
        .load_from(&engine, "the diagnose runner", crate::embedded::DIAGNOSE)
        .expect("loads");
    assert_eq!(origin, Origin::Disk);
}

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
