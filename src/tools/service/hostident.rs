//! host_identity: who this host is (names, ids, OS, hardware, whether it
//! is a VM or a container) and its primary addresses.

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::parse_os_pretty_name;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A container runtime named by /proc/1/cgroup or marker files.
pub(crate) fn container_hint(
    cgroup: &str,
    dockerenv: bool,
    containerenv: bool,
) -> Option<&'static str> {
    if dockerenv || cgroup.contains("/docker/") || cgroup.contains("docker-") {
        Some("docker")
    } else if containerenv || cgroup.contains("libpod") {
        Some("podman")
    } else if cgroup.contains("kubepods") {
        Some("kubernetes")
    } else if cgroup.contains("/lxc/") {
        Some("lxc")
    } else {
        None
    }
}

/// Whether /proc/cpuinfo shows the `hypervisor` CPU flag.
pub(crate) fn has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "hypervisor"))
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    // SAFETY: an all-zero utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live out-parameter.
    let arch = if unsafe { libc::uname(&mut u) } == 0 {
        // SAFETY: uname NUL-terminates its fields.
        unsafe { std::ffi::CStr::from_ptr(u.machine.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    let os = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_os_pretty_name(&t))
        .unwrap_or_default();
    let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    let container = container_hint(
        &cgroup,
        std::path::Path::new("/.dockerenv").exists(),
        std::path::Path::new("/run/.containerenv").exists(),
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let timezone = read("/etc/timezone").or_else(|| {
        std::fs::read_link("/etc/localtime").ok().and_then(|p| {
            p.to_string_lossy()
                .split_once("zoneinfo/")
                .map(|(_, z)| z.to_string())
        })
    });
    let mut addrs: Vec<String> = Vec::new();
    if let Ok(socks) = std::net::UdpSocket::bind("0.0.0.0:0") {
        // connect() on UDP only picks the route's source address; nothing is sent.
        if socks.connect("192.0.2.1:9").is_ok()
            && let Ok(a) = socks.local_addr()
        {
            addrs.push(a.ip().to_string());
        }
    }
    Ok(json!({
        "hostname": read("/proc/sys/kernel/hostname"),
        "domainname": read("/proc/sys/kernel/domainname").filter(|d| d != "(none)"),
        "machine_id": read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id")),
        "boot_id": read("/proc/sys/kernel/random/boot_id"),
        "os": os,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "architecture": arch,
        "timezone": timezone,
        "vendor": read("/sys/class/dmi/id/sys_vendor"),
        "product": read("/sys/class/dmi/id/product_name"),
        "virtualized": has_hypervisor_flag(&cpuinfo),
        "container": container,
        "primary_address": addrs.first(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_and_vm_hints() {
        assert_eq!(
            container_hint("0::/docker/abc\n", false, false),
            Some("docker")
        );
        assert_eq!(
            container_hint("0::/kubepods/besteffort/pod1\n", false, false),
            Some("kubernetes")
        );
        assert_eq!(container_hint("0::/\n", false, true), Some("podman"));
        assert_eq!(container_hint("0::/init.scope\n", false, false), None);
        assert!(has_hypervisor_flag(
            "processor : 0\nflags : fpu vme hypervisor lahf_lm\n"
        ));
        assert!(!has_hypervisor_flag("flags : fpu vme\n"));
    }

    #[test]
    fn live_identity() {
        let v = run(&Args::empty()).expect("host_identity");
        assert!(v["hostname"].is_string() && v["kernel"].is_string(), "{v}");
        assert!(!v["architecture"].as_str().unwrap_or("").is_empty(), "{v}");
    }
}
