//! Per-session store state: the WASI context with nothing granted, the
//! resource limiter, captured guest stdio, and the host-side context the
//! imports use.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::budgets::{self, Budgets};
use super::host::HostContext;
use super::limits::BudgetExceeded;
use crate::runner::Budget;

/// Everything one session's `Store` owns.
pub(crate) struct SessionState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory/table/instance caps.
    pub(crate) limiter: Limiter,
    /// What the host imports need: session info, sink, services.
    pub(crate) host: HostContext,
    /// Guest stdout and stderr, kept (capped) for the log.
    pub(crate) stdio: CapturedStdio,
}

impl WasiView for SessionState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Builds a store for one session, with limits applied and fuel set to
/// `limits.fuel`.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    limits: &Budgets,
    host: HostContext,
) -> wasmtime::Result<Store<SessionState>> {
    let stdio = CapturedStdio::new(budgets::as_len(limits.guest_stdio));
    // Nothing is granted: no preopens, no env, no args, closed stdin, no
    // network (TCP/UDP allowed by default in the builder only reach
    // addresses the socket check admits, and the default check admits none;
    // we also turn the socket families off outright).
    let mut builder = WasiCtx::builder();
    builder
        .stdout(stdio.stream("stdout"))
        .stderr(stdio.stream("stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let state = SessionState {
        wasi: builder.build(),
        table: ResourceTable::new(),
        limiter: Limiter::new(limits),
        host,
        stdio,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_fuel(limits.fuel)?;
    store.fuel_async_yield_interval(Some(super::engine::FUEL_YIELD_INTERVAL))?;
    Ok(store)
}

/// Store limiter: caps linear memory, table elements and instance counts.
/// A denied memory growth traps with [`BudgetExceeded`] so the session ends
/// with `resource_exhausted` naming the memory budget, rather than with an
/// allocator abort that would look like a plain trap.
pub(crate) struct Limiter {
    max_memory: usize,
    max_table_elements: usize,
    max_instances: usize,
    /// Largest total linear memory seen, for the report.
    pub(crate) peak_memory: usize,
}

impl Limiter {
    fn new(limits: &Budgets) -> Self {
        Limiter {
            max_memory: budgets::as_len(limits.max_memory),
            max_table_elements: Budgets::MAX_TABLE_ELEMENTS,
            max_instances: Budgets::MAX_INSTANCES,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(BudgetExceeded {
                budget: Budget::Memory,
                detail: format!(
                    "linear memory would grow from {current} to {desired} bytes, over the cap of {} bytes",
                    self.max_memory
                ),
            }
            .into());
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Err(BudgetExceeded {
                budget: Budget::Memory,
                detail: format!(
                    "table would grow from {current} to {desired} elements, over the cap of {}",
                    self.max_table_elements
                ),
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}

/// Guest stdout/stderr: kept up to a cap for the log, the rest counted and
/// dropped. Writes never fail, so a chatty guest is not killed by a full
/// pipe (Rust's `println!` panics on a write error).
#[derive(Clone)]
pub(crate) struct CapturedStdio {
    inner: Arc<Mutex<StdioBuf>>,
}

struct StdioBuf {
    cap: usize,
    kept: Vec<(&'static str, Vec<u8>)>,
    kept_bytes: usize,
    dropped_bytes: u64,
}

impl CapturedStdio {
    fn new(cap: usize) -> Self {
        CapturedStdio {
            inner: Arc::new(Mutex::new(StdioBuf {
                cap,
                kept: Vec::new(),
                kept_bytes: 0,
                dropped_bytes: 0,
            })),
        }
    }

    fn stream(&self, name: &'static str) -> StdioStream {
        StdioStream {
            name,
            buf: self.clone(),
        }
    }

    fn push(&self, name: &'static str, bytes: &[u8]) {
        let mut b = match self.inner.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let room = b.cap.saturating_sub(b.kept_bytes);
        let take = bytes.len().min(room);
        b.dropped_bytes += (bytes.len() - take) as u64;
        if take > 0 {
            b.kept_bytes += take;
            match b.kept.last_mut() {
                Some((n, v)) if *n == name => v.extend_from_slice(&bytes[..take]),
                _ => b.kept.push((name, bytes[..take].to_vec())),
            }
        }
    }

    /// Takes what was captured: `(stream name, text)` runs in write order,
    /// and how many bytes were dropped past the cap.
    pub(crate) fn take(&self) -> (Vec<(&'static str, String)>, u64) {
        let mut b = match self.inner.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let kept = std::mem::take(&mut b.kept)
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let dropped = std::mem::take(&mut b.dropped_bytes);
        b.kept_bytes = 0;
        (kept, dropped)
    }
}

struct StdioStream {
    name: &'static str,
    buf: CapturedStdio,
}

impl IsTerminal for StdioStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(StdioStream {
            name: self.name,
            buf: self.buf.clone(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(StdioStream {
            name: self.name,
            buf: self.buf.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Pollable for StdioStream {
    async fn ready(&mut self) {}
}

impl OutputStream for StdioStream {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.buf.push(self.name, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StdioStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.buf.push(self.name, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
