//! A chat runner's optional `catpaw:runner/snapshot` export, with which an
//! idle chat gives its instance back: `save` turns the conversation into
//! bytes after a turn, `restore` rebuilds it in a fresh instance before
//! the next.
//!
//! Why it is looked up by hand rather than through a generated world: an
//! optional export must not change whether a runner loads, so the export
//! is found by name, its shape checked against the WIT once at load
//! ([`SnapshotExports::find`]), and its two functions fetched from each
//! instance by index.

use wasmtime::Store;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre, ResourceAny, Type};

use super::store::SessionState;

/// The export's name in a component built against `wit/runner.wit`.
pub(crate) const INTERFACE: &str = "catpaw:runner/snapshot@0.2.0";

/// Longest error text of a refused `save` kept for the log.
const MAX_REFUSAL_TEXT: usize = 512;

/// Bytes `save` may hand over beyond the cap (an error text, the
/// result's framing), so that a state just over it is reported as such.
const SAVE_SLACK: usize = 4096;

/// Where a runner's `save` and `restore` are.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotExports {
    save: ComponentExportIndex,
    restore: ComponentExportIndex,
}

/// What `save` gave back.
#[derive(Debug)]
pub(crate) enum Saved {
    /// The state, within the cap.
    State(Box<[u8]>),
    /// The runner said it cannot save now (its text, cut).
    Refused(String),
    /// The state was this many bytes, over the cap.
    TooLarge(usize),
}

impl SnapshotExports {
    /// The export of the component behind `pre`: `Ok(None)` when it has
    /// none, Err (saying what differs) when it has one of another shape.
    pub(crate) fn find(pre: &InstancePre<SessionState>) -> Result<Option<Self>, String> {
        let component = pre.component();
        let Some((_, iface)) = component.get_export(None, INTERFACE) else {
            return Ok(None);
        };
        let func = |name: &str| match component.get_export(Some(&iface), name) {
            Some((ComponentItem::ComponentFunc(f), index)) => Ok((f, index)),
            _ => Err(format!("{INTERFACE} exports no function `{name}`")),
        };
        let (save_ty, save) = func("save")?;
        let (restore_ty, restore) = func("restore")?;
        check("save", &save_ty, is_save)?;
        check("restore", &restore_ty, is_restore)?;
        Ok(Some(SnapshotExports { save, restore }))
    }

    /// Calls `save` on `conversation`; a state over `cap` bytes is counted
    /// and dropped. Err: the call trapped (or broke a budget).
    pub(crate) async fn save(
        &self,
        store: &mut Store<SessionState>,
        instance: &Instance,
        conversation: ResourceAny,
        cap: usize,
    ) -> wasmtime::Result<Saved> {
        let save = instance.get_typed_func::<(ResourceAny,), (Result<Vec<u8>, String>,)>(
            &mut *store,
            &self.save,
        )?;
        // What the host copies out of the guest is bounded before the copy:
        // a state past the cap by more than the slack fails the call (as a
        // trap) without being copied, and the instance stays usable.
        // (`store::end_run` sets the store's usual bound again, also when
        // this call is dropped on a timeout.)
        let usual = store.hostcall_fuel();
        store.set_hostcall_fuel(usual.min(cap.saturating_add(SAVE_SLACK)));
        let saved = save.call_async(&mut *store, (conversation,)).await;
        store.set_hostcall_fuel(usual);
        let (saved,) = saved?;
        Ok(match saved {
            Ok(state) if state.len() > cap => Saved::TooLarge(state.len()),
            Ok(state) => Saved::State(state.into_boxed_slice()),
            Err(why) => Saved::Refused(crate::util::truncate_utf8(&why, MAX_REFUSAL_TEXT).into()),
        })
    }

    /// Calls `restore` with `state`: Ok(Ok) is the rebuilt conversation,
    /// Ok(Err) the runner's reason for refusing it.
    pub(crate) async fn restore(
        &self,
        store: &mut Store<SessionState>,
        instance: &Instance,
        state: &[u8],
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        let restore = instance.get_typed_func::<(&[u8],), (Result<ResourceAny, String>,)>(
            &mut *store,
            &self.restore,
        )?;
        let (rebuilt,) = restore.call_async(&mut *store, (state,)).await?;
        Ok(rebuilt)
    }
}

/// Err naming `name` when `ty` is not the shape `ok` accepts.
fn check(name: &str, ty: &ComponentFunc, ok: fn(&[Type], &[Type]) -> bool) -> Result<(), String> {
    let params: Vec<Type> = ty.params().map(|(_, t)| t).collect();
    let results: Vec<Type> = ty.results().collect();
    if ok(&params, &results) {
        return Ok(());
    }
    Err(format!(
        "{INTERFACE}'s `{name}` does not have the signature wit/runner.wit gives it"
    ))
}

/// `result<T, string>`'s T, when `ty` is one.
fn ok_of_string_result(ty: &Type) -> Option<Type> {
    match ty {
        Type::Result(r) if r.err() == Some(Type::String) => r.ok(),
        _ => None,
    }
}

fn is_bytes(ty: &Type) -> bool {
    matches!(ty, Type::List(l) if l.ty() == Type::U8)
}

/// `save: func(conversation: borrow<conversation>) -> result<list<u8>, string>`
fn is_save(params: &[Type], results: &[Type]) -> bool {
    matches!(params, [Type::Borrow(_)])
        && matches!(results, [r] if ok_of_string_result(r).is_some_and(|t| is_bytes(&t)))
}

/// `restore: func(state: list<u8>) -> result<conversation, string>`
fn is_restore(params: &[Type], results: &[Type]) -> bool {
    matches!(params, [p] if is_bytes(p))
        && matches!(results, [r] if matches!(ok_of_string_result(r), Some(Type::Own(_))))
}
