//! security_modules: SELinux and AppArmor state, and the active LSMs.

use serde_json::{Value, json};

use crate::tools::args::Args;

/// `SELINUX=` of /etc/selinux/config (the mode at next boot).
pub(crate) fn selinux_configured(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("SELINUX="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// /sys/kernel/security/apparmor/profiles: `name (mode)` per line →
/// (enforce, complain, other).
pub(crate) fn apparmor_counts(text: &str) -> (u64, u64, u64) {
    let mut c = (0, 0, 0);
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        if l.ends_with("(enforce)") {
            c.0 += 1;
        } else if l.ends_with("(complain)") {
            c.1 += 1;
        } else {
            c.2 += 1;
        }
    }
    c
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let enforce = read("/sys/fs/selinux/enforce");
    let selinux_mode = match enforce.as_deref() {
        Some("1") => "enforcing",
        Some("0") => "permissive",
        _ => "disabled",
    };
    let configured = read("/etc/selinux/config").and_then(|t| selinux_configured(&t));
    let aa_enabled = read("/sys/module/apparmor/parameters/enabled").map(|v| v == "Y");
    let profiles = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles");
    let apparmor = match (&aa_enabled, profiles) {
        (None, _) => json!({ "present": false }),
        (Some(on), Ok(p)) => {
            let (e, c, o) = apparmor_counts(&p);
            json!({ "present": true, "enabled": on, "profiles_enforce": e, "profiles_complain": c, "profiles_other": o })
        }
        (Some(on), Err(e)) => json!({
            "present": true, "enabled": on,
            "profiles_unreadable": format!("/sys/kernel/security/apparmor/profiles: {} (needs root and securityfs)", crate::tools::cmd::io_reason(&e)),
        }),
    };
    Ok(json!({
        "selinux": { "mode": selinux_mode, "configured": configured },
        "apparmor": apparmor,
        "lsm": read("/sys/kernel/security/lsm").map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selinux_config_and_apparmor_profiles() {
        let cfg = "# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n";
        assert_eq!(selinux_configured(cfg).as_deref(), Some("enforcing"));
        assert_eq!(selinux_configured("x=1"), None);
        let profiles = include_str!("../fixtures/apparmor_profiles");
        assert_eq!(apparmor_counts(profiles), (3, 1, 1));
    }

    #[test]
    fn live_security_modules() {
        let v = run(&Args::empty()).expect("secmod");
        assert!(
            ["enforcing", "permissive", "disabled"]
                .contains(&v["selinux"]["mode"].as_str().unwrap_or("")),
            "{v}"
        );
        assert!(v["apparmor"]["present"].is_boolean(), "{v}");
    }
}
