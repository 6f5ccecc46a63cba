//! Host-side bindings generated from `wit/runner.wit` (0.2.0), and from the
//! kept `wit/v0.1.0/runner.wit` for components built against 0.1.0.
//!
//! A runner may export `diagnose`, `chat` or both, so the two single-export
//! worlds get their own bindings; they share the one generated `host`
//! interface so there is a single implementation of the imports. The 0.1.0
//! imports are served by that same implementation (`compat.rs`).

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

/// Bindings of `catpaw:runner@0.1.0`, whose components keep loading.
pub mod v1 {
    /// Its `diagnose-runner` world (owns its `host` interface).
    pub mod diagnose_world {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0/runner.wit",
            world: "diagnose-runner",
            imports: { default: async | trappable },
            exports: { default: async },
        });
    }

    /// Its `chat-runner` world.
    pub mod chat_world {
        wasmtime::component::bindgen!({
            path: "wit/v0.1.0/runner.wit",
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

pub use diagnose_world::catpaw::runner::host;
