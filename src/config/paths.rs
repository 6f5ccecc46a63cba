//! The state directory's layout.

use std::path::Path;

/// Reads the agent id from `<state_dir>/agent_id`, or creates one.
pub fn load_or_create_agent_id(state_dir: &Path) -> anyhow::Result<uuid::Uuid> {
    use anyhow::Context;
    let path = state_dir.join("agent_id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
            return Ok(id);
        }
        tracing::warn!(path = %path.display(), "agent id file does not hold a UUID; replacing it");
    }
    let id = uuid::Uuid::new_v4();
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("writing agent id to {}", path.display()))?;
    Ok(id)
}
