//! The `Tool` type every group of tools builds its catalog from. It sits
//! below the groups and the registry (`mod.rs`) sits above them, so the
//! groups never import the module that imports them.

use serde_json::Value;

use super::args::Args;

/// One tool in the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolInfo {
    /// Name passed to [`super::call_with`].
    pub name: &'static str,
    /// One line saying what it returns.
    pub description: &'static str,
    /// JSON Schema of its arguments.
    pub params_schema: &'static str,
}

/// The schema of a tool that takes no arguments.
pub(super) const NO_ARGS: &str =
    r#"{"type":"object","properties":{},"additionalProperties":false}"#;

/// A catalog entry and how to run it.
pub(crate) struct Tool {
    pub(super) info: ToolInfo,
    pub(super) run: fn(&Args) -> Result<Value, String>,
    /// Whether oversized lists lose their first rows (oldest log lines)
    /// rather than their last (least important).
    pub(super) drop_from_front: bool,
}

impl Tool {
    pub(crate) const fn new(
        name: &'static str,
        description: &'static str,
        params_schema: &'static str,
        run: fn(&Args) -> Result<Value, String>,
    ) -> Tool {
        Tool {
            info: ToolInfo {
                name,
                description,
                params_schema,
            },
            run,
            drop_from_front: false,
        }
    }

    /// A log: when too long, its oldest lines go first.
    pub(crate) const fn logs(mut self) -> Tool {
        self.drop_from_front = true;
        self
    }
}
