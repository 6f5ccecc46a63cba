//! The sandbox: runs session runners as wasmtime components.
//!
//! This is the only part of the crate that knows wasmtime. Setup loads
//! runner files into a [`LoadedRunner`], which hands out
//! [`DiagnoseRunner`](crate::runner::DiagnoseRunner) and
//! [`ChatRunner`](crate::runner::ChatRunner) implementations; the session
//! layer sees only those traits.
//!
//! - `bindings.rs`: the host bindings generated from the WIT, both versions
//! - `engine.rs`: the process engine and the compiled-component cache
//! - `store.rs`: per-session store state, WASI with nothing granted, limiter,
//!   and how a run or chat turn ends
//! - `stdio.rs`: guest stdout/stderr, captured per run or turn for the log
//! - `budgets.rs`: what a session may use, by name, default and bound
//! - `limits.rs`: how a budget is enforced, a call guarded, a failure blamed
//! - `host/`: the `catpaw:runner/host` and `llm` imports, one capability
//!   per file
//! - `run.rs`: the wasm diagnose runner, and what runs share (metering,
//!   how a run ends and is blamed)
//! - `chat.rs`: the wasm chat runner, whose idle chats may give their
//!   instance back
//! - `snapshot.rs`: the optional `snapshot` export a chat runner saves and
//!   restores its conversation with
//! - `versions.rs`: the contract versions (0.2.0, 0.1.0) behind one type
//! - `describe.rs`: reading a runner's `describe` once at load
//! - `capabilities.rs`: what a runner declared it uses, parsed at load,
//!   and the grant every import asks before acting
//! - `policy.rs`: the operator's `[sandbox.policy.<name>]`, which narrows
//!   a runner's grant and budgets
//! - `probe.rs`: looking a runner file over step by step (`check-runner`)
//! - `tape.rs`: the seam between the imports and the session's recording
//!   (record, or replay from it), WIT values as JSON, the WASI clocks and
//!   random through it

mod bindings;
mod budgets;
mod capabilities;
mod chat;
mod describe;
mod engine;
mod host;
mod limits;
mod policy;
mod probe;
mod run;
mod snapshot;
mod stdio;
mod store;
mod tape;
mod versions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use budgets::{BudgetKey, Budgets, Slot};
pub use capabilities::{Capabilities, Grant, McpSet, ToolSet};
pub(crate) use capabilities::{catalog_names, check_tool};
pub use chat::WasmChatRunner;
pub use engine::EngineOptions;
pub use host::HostServices;
// For the fuzz targets (`crate::fuzz_entry`): what a guest hands the host.
#[cfg(test)]
pub(crate) use host::stream::emit_stages;
pub(crate) use host::{GuestTool, guest_request, parse_metadata};
pub(crate) use policy::value as budget_value;
pub use policy::{Policies, RunnerPolicy, Subject};
pub use probe::{Probe, Step};
pub use run::WasmDiagnoseRunner;
pub use tape::budgets_of;
pub use versions::WitVersion;
// The documented limits, for the crate's `documented_defaults` test.
#[cfg(test)]
pub(crate) use {
    engine::FUEL_YIELD_INTERVAL,
    host::MAX_LOG_LINE,
    stdio::{TRAP_TAIL_BYTES, TRAP_TAIL_LINES},
};

use crate::runner::{Description, Provenance, RunnerTrust, Signer};
use bindings::diagnose_world::DiagnoseRunner as DiagnoseWorld;
use bindings::v0_1::diagnose_world::DiagnoseRunner as DiagnoseWorld01;
use host::HostContext;
use snapshot::SnapshotExports;
use store::{Instances, SessionState};
use versions::{ChatPre, DiagnosePre};

/// Settings of a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Engine allocation settings.
    pub engine: EngineOptions,
    /// Where precompiled runners are cached (`None`: memory only).
    pub cache_dir: Option<PathBuf>,
    /// Services the host imports use (audit, shell user).
    pub services: HostServices,
}

/// The process-wide sandbox: one engine, one linker, the compile cache.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<SessionState>,
    cache: engine::ComponentCache,
    services: Arc<HostServices>,
    /// The stores (each holding one runner instance) alive.
    instances: Instances,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Creates the engine and links WASI (nothing granted) and the
    /// `catpaw:runner/host` and `llm` imports (0.2.0, and `host` 0.1.0).
    pub fn new(opts: SandboxOptions) -> anyhow::Result<Arc<Sandbox>> {
        let engine = engine::build(&opts.engine)?;
        let compiler = opts.engine.clone();
        let mut linker = Linker::<SessionState>::new(&engine);
        // Guests built with std import a dozen wasi:* interfaces; they are
        // all linked, and the context behind them grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // Random goes through the session's tape, which wasmtime-wasi's
        // own random cannot see: its three interfaces are linked again,
        // over the ones above.
        {
            use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};
            linker.allow_shadowing(true);
            random::add_to_linker::<SessionState, HasSelf<tape::TapeRandom>>(&mut linker, |s| {
                &mut s.random
            })
            .and_then(|()| {
                insecure::add_to_linker::<SessionState, HasSelf<tape::TapeRandom>>(
                    &mut linker,
                    |s| &mut s.random,
                )
            })
            .and_then(|()| {
                insecure_seed::add_to_linker::<SessionState, HasSelf<tape::TapeRandom>>(
                    &mut linker,
                    |s| &mut s.random,
                )
            })
            .map_err(anyhow::Error::from)
            .context("linking wasi:random through the tape")?;
            linker.allow_shadowing(false);
        }
        // The imports are implemented on the per-session host state, which
        // the store holds beside WASI's.
        DiagnoseWorld::add_to_linker::<SessionState, HasSelf<HostContext>>(&mut linker, |s| {
            &mut s.host
        })
        .map_err(anyhow::Error::from)
        .context("linking catpaw:runner/host and llm")?;
        // Runners built against 0.1.0 import host@0.1.0, a different
        // instance name to the linker; it forwards to the same code.
        DiagnoseWorld01::add_to_linker::<SessionState, HasSelf<HostContext>>(&mut linker, |s| {
            &mut s.host
        })
        .map_err(anyhow::Error::from)
        .context("linking catpaw:runner/host@0.1.0")?;
        Ok(Arc::new(Sandbox {
            engine,
            linker,
            cache: engine::ComponentCache::new(opts.cache_dir).with_compiler(compiler),
            services: Arc::new(opts.services),
            instances: Instances::default(),
        }))
    }

    /// Runner instances alive now, each in a store of its own: one per
    /// running session and per open chat that keeps its instance between
    /// turns. A chat whose runner saved its conversation (the `snapshot`
    /// export) holds none while it waits for its next message.
    pub fn live_instances(&self) -> usize {
        self.instances.count()
    }

    /// Loads a runner from a file of at most `max_size` bytes
    /// (`[sandbox] max_runner_size`), trusting no signing key (see
    /// [`load_file_trusting`](Self::load_file_trusting)): an unsigned file
    /// loads, a signed one is refused.
    pub fn load_file(self: &Arc<Self>, path: &Path, max_size: u64) -> anyhow::Result<LoadedRunner> {
        self.load_file_trusting(path, max_size, &RunnerTrust::default())
    }

    /// Loads a runner from a file of at most `max_size` bytes
    /// (`[sandbox] max_runner_size`). A link is followed; what it leads
    /// to is judged on the opened descriptor: anything but a regular file
    /// (a FIFO, a device) is refused without a read, and so is a file
    /// above `max_size`, also one that grows past it while read.
    ///
    /// The file is read once, and those bytes are both the ones its
    /// signature (`FILE.minisig`) is checked against `trust` and the ones
    /// compiled: a file replaced after the check is never what runs. A
    /// refused signature (see [`crate::runner::signature`]) refuses the
    /// runner before it is compiled.
    pub fn load_file_trusting(
        self: &Arc<Self>,
        path: &Path,
        max_size: u64,
        trust: &RunnerTrust,
    ) -> anyhow::Result<LoadedRunner> {
        let bytes = crate::fsafe::read_file(path, max_size).map_err(|e| match e {
            crate::fsafe::FileError::TooLarge { .. } => anyhow::anyhow!(
                "runner {e} (the cap is `[sandbox] max_runner_size`; raise it to load a \
                 larger runner)"
            ),
            e => anyhow::anyhow!("runner {e}"),
        })?;
        let provenance = crate::runner::signature::verify_file(trust, path, &bytes)?;
        let mut runner = self.load(&path.display().to_string(), &bytes)?;
        runner.provenance = provenance;
        Ok(runner)
    }

    /// Loads a runner from bytes; `name` appears in errors and logs. Its
    /// provenance is [`Provenance::BuiltIn`]: bytes handed over in memory
    /// are the binary's own runners (or a probe's, which checks the
    /// signature itself).
    ///
    /// Fails with a clear message when the bytes are not a component, when
    /// the component imports something the host does not provide, or when
    /// it exports neither `catpaw:runner/diagnose` nor `catpaw:runner/chat`.
    pub fn load(self: &Arc<Self>, name: &str, bytes: &[u8]) -> anyhow::Result<LoadedRunner> {
        let component = self.cache.load(&self.engine, name, bytes)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "runner {name}: it imports something catpaw-agent does not provide \
                     (runners may import only catpaw:runner/host and llm 0.2.0, \
                     catpaw:runner/host 0.1.0, and wasi:* 0.2)"
                )
            })?;
        let diagnose = DiagnosePre::new(&pre);
        let chat = ChatPre::new(&pre);
        let version = match (&diagnose, &chat) {
            (Some(DiagnosePre::V2(_)), _) | (_, Some(ChatPre::V2(..))) => WitVersion::V0_2,
            _ => WitVersion::V0_1,
        };
        if diagnose.is_none() && chat.is_none() {
            bail!(
                "runner {name}: exports neither catpaw:runner/diagnose nor catpaw:runner/chat \
                 (build it against wit/runner.wit, world diagnose-runner, chat-runner or runner)"
            );
        }
        // Only a 0.2.0 chat has the optional export beside it; one of
        // another shape than the WIT's refuses the runner here, not in
        // the middle of a chat.
        let snapshot = match &chat {
            Some(ChatPre::V2(..)) => SnapshotExports::find(&pre).map_err(|e| {
                anyhow::anyhow!(
                    "runner {name}: {e} (see docs/runners.md, Giving an idle chat's instance \
                     back)"
                )
            })?,
            _ => None,
        };
        let description = match describe::read(self, diagnose.as_ref(), chat.as_ref()) {
            Ok(d) => d,
            Err(e) => bail!(
                "runner {name}: its describe export failed: {e} (describe must return at once \
                 without calling the host)"
            ),
        };
        let description = description.map(|d| {
            let (d, dropped) = d.bounded();
            for what in dropped {
                tracing::warn!(runner = %name, %what, "describe: entry dropped");
            }
            d
        });
        // The declaration is a manifest the host enforces: read once, here.
        let declared = match &description {
            Some(d) => Capabilities::parse(&d.capabilities, &catalog_names()).map_err(|e| {
                anyhow::anyhow!(
                    "runner {name}: its describe declares {e} (see docs/runners.md, \
                     Declaring capabilities)"
                )
            })?,
            None => None,
        };
        Ok(LoadedRunner {
            name: name.to_string(),
            sha256: crate::util::sha256_hex(bytes),
            sandbox: self.clone(),
            version,
            description,
            grant: Grant::new(declared),
            provenance: Provenance::BuiltIn,
            diagnose,
            chat,
            snapshot,
        })
    }
}

/// A compiled, pre-linked runner component.
#[derive(Clone)]
pub struct LoadedRunner {
    name: String,
    /// Hex SHA-256 of the bytes that were compiled.
    sha256: String,
    sandbox: Arc<Sandbox>,
    version: WitVersion,
    description: Option<Description>,
    /// What it declared, and what its sessions may reach.
    grant: Grant,
    /// Who vouches for the bytes: the binary, nobody, or a signer.
    provenance: Provenance,
    diagnose: Option<DiagnosePre>,
    chat: Option<ChatPre>,
    /// Its chats' `snapshot` export, if it has one.
    snapshot: Option<SnapshotExports>,
}

impl std::fmt::Debug for LoadedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedRunner")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("provenance", &self.provenance)
            .field("diagnose", &self.diagnose.is_some())
            .field("chat", &self.chat.is_some())
            .field("snapshot", &self.snapshot.is_some())
            .finish()
    }
}

impl LoadedRunner {
    /// The name it was loaded under (usually its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hex SHA-256 of the component bytes it was compiled from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Who signed it, for a file whose signature by a trusted key was
    /// checked when it was loaded; `None` for a built-in or unsigned one.
    pub fn signer(&self) -> Option<&Signer> {
        self.provenance.signer()
    }

    /// Where the trust in its bytes comes from: built-in, unsigned, or
    /// its signer.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The WIT version it was built against.
    pub fn version(&self) -> WitVersion {
        self.version
    }

    /// What its `describe` export said (bounded); `None` for a component
    /// built against 0.1.0, which has none.
    pub fn description(&self) -> Option<&Description> {
        self.description.as_ref()
    }

    /// What it declared it uses (`None`: nothing) and what its sessions
    /// are granted (the declaration ∩ the operator's policy).
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The same runner with its grant narrowed to what `policy` allows.
    pub fn narrowed(&self, policy: &Capabilities) -> LoadedRunner {
        LoadedRunner {
            grant: self.grant.narrowed(policy),
            ..self.clone()
        }
    }

    /// Ok when it declared its capabilities. When it did not, Err if
    /// `require` (`[sandbox] require_declared_capabilities`), else one
    /// warning naming it: it then keeps everything the operator allows.
    pub fn check_declared(&self, require: bool) -> anyhow::Result<()> {
        if self.grant.declared.is_some() {
            return Ok(());
        }
        let why = match self.version {
            WitVersion::V0_1 => "it is built against catpaw:runner 0.1.0, which has no describe",
            WitVersion::V0_2 => "its describe lists no capabilities",
        };
        if require {
            bail!(
                "runner {} declares no capabilities ({why}); refused because [sandbox] \
                 require_declared_capabilities = true (list what it uses in describe: \
                 `tools` or `tools:NAME,...`, `shell`, `llm`; see docs/runners.md, \
                 Declaring capabilities)",
                self.name
            );
        }
        tracing::warn!(runner = %self.name,
            "runner declares no capabilities ({why}): it may use every tool, the shell and \
             the model the operator allows; declare them in describe, or set [sandbox] \
             require_declared_capabilities = true to refuse such runners");
        Ok(())
    }

    /// The inspect plugins it offers, by name (none for 0.1.0).
    pub fn plugin_names(&self) -> Vec<String> {
        self.description
            .iter()
            .flat_map(|d| d.plugins.iter().map(|p| p.name.clone()))
            .collect()
    }

    /// The WIT world its exports match: `runner`, `diagnose-runner` or
    /// `chat-runner`.
    pub fn world(&self) -> &'static str {
        match (self.diagnose.is_some(), self.chat.is_some()) {
            (true, true) => "runner",
            (true, false) => "diagnose-runner",
            _ => "chat-runner",
        }
    }

    /// Whether it serves `inspect` and `diagnose`.
    pub fn serves_diagnose(&self) -> bool {
        self.diagnose.is_some()
    }

    /// Whether it serves `chat`.
    pub fn serves_chat(&self) -> bool {
        self.chat.is_some()
    }

    /// Whether its chats save their conversation between turns (it
    /// exports `snapshot`), giving their instance back while idle.
    pub fn saves_chats(&self) -> bool {
        self.snapshot.is_some()
    }

    /// A diagnose runner whose sessions get `budgets`, if the component
    /// exports one.
    pub fn diagnose_runner(&self, budgets: Budgets) -> Option<WasmDiagnoseRunner> {
        let pre = self.diagnose.clone()?;
        Some(WasmDiagnoseRunner::new(
            self.sandbox.clone(),
            pre,
            budgets,
            self.grant.clone(),
        ))
    }

    /// A chat runner whose sessions get `budgets`, if the component exports
    /// one.
    pub fn chat_runner(&self, budgets: Budgets) -> Option<WasmChatRunner> {
        let pre = self.chat.clone()?;
        Some(WasmChatRunner::new(
            self.sandbox.clone(),
            pre,
            self.snapshot.clone(),
            budgets,
            self.grant.clone(),
        ))
    }
}
