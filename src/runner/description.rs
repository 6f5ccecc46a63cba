//! What a runner says about itself (`describe`), bounded by the host.

/// What a runner says about itself through the WIT `describe` export, read
/// once when it is loaded; cut and checked by the host (see
/// [`Description::bounded`]), since nothing a guest sends is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Description {
    /// Short name, e.g. `catpaw-diagnose`.
    pub name: String,
    /// The runner's own version.
    pub version: String,
    /// The inspect plugins it offers.
    pub plugins: Vec<PluginInfo>,
    /// Host capabilities it says it uses (`tools`, `shell`, …).
    pub capabilities: Vec<String>,
}

/// One inspect plugin a runner offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The `params.plugin` value that selects it.
    pub name: String,
    /// One line saying what it looks at.
    pub description: String,
}

impl Description {
    /// Most plugins kept from one runner.
    pub const MAX_PLUGINS: usize = 64;
    /// Longest name, version or plugin name kept, in bytes.
    pub const MAX_NAME: usize = 64;
    /// Longest plugin description kept, in bytes.
    pub const MAX_LINE: usize = 200;
    /// Longest capability kept, in bytes: room for `tools:` and every
    /// tool name of the catalog, so a declaration is never cut into
    /// another one.
    pub const MAX_CAPABILITY: usize = 4096;

    /// The description with every field cut to its cap and freed of
    /// control characters, and plugins whose name is not a plain word
    /// (`[A-Za-z0-9_.-]+`) or repeats an earlier one dropped. Returns what
    /// was dropped beside it, for the load log.
    pub fn bounded(self) -> (Description, Vec<String>) {
        let clean = |s: &str, max: usize| -> String {
            let s: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            crate::util::truncate_utf8(s.trim(), max).to_string()
        };
        let mut dropped = Vec::new();
        let mut plugins: Vec<PluginInfo> = Vec::new();
        for p in self.plugins {
            let plain = !p.name.is_empty()
                && p.name.len() <= Self::MAX_NAME
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !plain {
                dropped.push(format!(
                    "plugin name {:?} is not a plain word",
                    clean(&p.name, Self::MAX_NAME)
                ));
            } else if plugins.iter().any(|q| q.name == p.name) {
                dropped.push(format!("plugin {} is listed twice", p.name));
            } else if plugins.len() == Self::MAX_PLUGINS {
                dropped.push(format!(
                    "plugin {}: more than {}",
                    p.name,
                    Self::MAX_PLUGINS
                ));
            } else {
                plugins.push(PluginInfo {
                    description: clean(&p.description, Self::MAX_LINE),
                    name: p.name,
                });
            }
        }
        let capabilities = self
            .capabilities
            .iter()
            .take(Self::MAX_PLUGINS)
            .map(|c| clean(c, Self::MAX_CAPABILITY))
            .filter(|c| !c.is_empty())
            .collect();
        (
            Description {
                name: clean(&self.name, Self::MAX_NAME),
                version: clean(&self.version, Self::MAX_NAME),
                plugins,
                capabilities,
            },
            dropped,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_bounded_and_bad_plugin_names_dropped() {
        let p = |name: &str, description: &str| PluginInfo {
            name: name.into(),
            description: description.into(),
        };
        let raw = Description {
            name: "x\u{1b}[31m".repeat(40),
            version: "1.0".into(),
            plugins: vec![
                p("cpu", "CPU\nand load"),
                p("cpu", "again"),
                p("has space", "no"),
                p("", "empty"),
                p("disk", &"d".repeat(500)),
            ],
            capabilities: vec!["tools".into(), " ".into()],
        };
        let (d, dropped) = raw.bounded();
        assert!(d.name.len() <= Description::MAX_NAME && !d.name.contains('\u{1b}'));
        let names: Vec<&str> = d.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cpu", "disk"]);
        assert_eq!(d.plugins[0].description, "CPU and load");
        assert_eq!(d.plugins[1].description.len(), Description::MAX_LINE);
        assert_eq!(d.capabilities, ["tools"]);
        assert_eq!(dropped.len(), 3, "{dropped:?}");
    }
}
