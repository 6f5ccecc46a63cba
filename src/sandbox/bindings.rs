//! Host-side bindings generated from `wit/runner.wit` (0.2.0) and from
//! `wit/v0.1.0/runner.wit`, which runners built before the `llm` import
//! still use.
//!
//! A runner may export `diagnose`, `chat` or both, so the two single-export
//! worlds get their own bindings; within one version they share the one
//! generated `host` (and `llm`) interface, so there is a single
//! implementation of the imports per version. wasmtime matches 0.x package
//! versions exactly (0.1.0 and 0.2.0 are different instances to its
//! linker), so the 0.1.0 imports are linked beside the 0.2.0 ones and
//! forward to them (`host/v0_1.rs`).

/// Bindings of the `diagnose-runner` world (also owns the `host` and `llm`
/// interfaces).
pub(crate) mod diagnose_world {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "diagnose-runner",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// Bindings of the `chat-runner` world.
pub(crate) mod chat_world {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "chat-runner",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "catpaw:runner/host": super::diagnose_world::catpaw::runner::host,
            "catpaw:runner/llm": super::diagnose_world::catpaw::runner::llm,
        },
    });
}

/// The 0.1.0 contract.
pub(crate) mod v0_1 {
    /// Bindings of the 0.1.0 `diagnose-runner` world.
    pub mod diagnose_world {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0",
            world: "diagnose-runner",
            imports: { default: async | trappable },
            exports: { default: async },
        });
    }

    /// Bindings of the 0.1.0 `chat-runner` world.
    pub(crate) mod chat_world {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0",
            world: "chat-runner",
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "catpaw:runner/host": super::diagnose_world::catpaw::runner::host,
            },
        });
    }

    pub use diagnose_world::catpaw::runner::host;
}

pub use diagnose_world::catpaw::runner::{host, llm};
