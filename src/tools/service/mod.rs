//! Services, files and host identity: systemd unit status and journal,
//! allow-listed log files and file checks, local certificate expiry, NTP
//! sync state, host identity, firewall rule counts.

mod certfiles;
mod filecheck;
mod firewall;
mod hostident;
mod journal;
mod logtail;
mod ntp;
mod unit;

#[cfg(test)]
mod swap_tests;

use super::tool::{NO_ARGS, Tool};

pub(super) const TOOLS: &[Tool] = &[
    Tool::new(
        "unit_status",
        "one systemd unit's state, result, restarts, main pid, memory and environment (masked); without a unit, service counts by state",
        r#"{"type":"object","properties":{"unit":{"type":"string","maxLength":256,"description":"e.g. nginx.service"}},"additionalProperties":false}"#,
        unit::run,
    ),
    Tool::new(
        "journal_tail",
        "the last journal lines of a systemd unit (or of the whole journal), optionally by priority and text, secrets masked",
        r#"{"type":"object","properties":{"unit":{"type":"string","maxLength":256},"lines":{"type":"integer","minimum":1,"maximum":500,"default":50},"priority":{"type":"string","enum":["emerg","alert","crit","err","warning","notice","info","debug"]},"contains":{"type":"string","maxLength":200}},"additionalProperties":false}"#,
        journal::run,
    )
    .logs(),
    Tool::new(
        "log_tail",
        "the last lines of an operator allow-listed log file ([tools] log_files), optionally containing a text; without a path, the allowed files",
        r#"{"type":"object","properties":{"path":{"type":"string","maxLength":4096},"lines":{"type":"integer","minimum":1,"maximum":500,"default":50},"contains":{"type":"string","maxLength":200}},"additionalProperties":false}"#,
        logtail::run,
    )
    .logs(),
    Tool::new(
        "file_check",
        "existence, type, mode, owner, size, mtime and SHA-256 of operator allow-listed files ([tools] files)",
        r#"{"type":"object","properties":{"path":{"type":"string","maxLength":4096,"description":"default: every allow-listed file"}},"additionalProperties":false}"#,
        filecheck::run,
    ),
    Tool::new(
        "cert_files",
        "expiry of the certificates in operator allow-listed files ([tools] cert_files): subject, issuer, days left",
        r#"{"type":"object","properties":{"path":{"type":"string","maxLength":4096,"description":"default: every allow-listed file"}},"additionalProperties":false}"#,
        certfiles::run,
    ),
    Tool::new(
        "ntp",
        "clock synchronisation from the kernel (adjtimex): synced or not, offset, estimated and maximum error, and which time daemon runs",
        NO_ARGS,
        ntp::run,
    ),
    Tool::new(
        "host_identity",
        "hostname, machine and boot ids, OS, kernel, architecture, virtualisation and container hints, primary addresses",
        NO_ARGS,
        hostident::run,
    ),
    Tool::new(
        "firewall",
        "firewall rule counts per table and chain, drop/reject rules and chain policies (nftables, else iptables; needs root)",
        NO_ARGS,
        firewall::run,
    ),
];

/// A systemd unit name as systemctl accepts it, checked so it can never
/// be read as an option.
fn check_unit(unit: &str) -> Result<(), String> {
    let ok = !unit.is_empty()
        && !unit.starts_with('-')
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"unit\" {unit:?} is not a systemd unit name such as nginx.service"
        ))
    }
}
