//! Host-side bindings generated from `wit/runner.wit`.
//!
//! A runner may export `diagnose`, `chat` or both, so the two single-export
//! worlds get their own bindings; they share the one generated `host`
//! interface so there is a single implementation of the imports.

/// Bindings of the `diagnose-runner` world (also owns the `host` interface).
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
        },
    });
}

pub use diagnose_world::catpaw::runner::host;
