//! What the operating system says about links, asked the way each
//! supported system answers: which links exist (`/sys/class/net` on
//! Linux, `dladm show-link -p -o link` on illumos) and whether this process
//! may send raw Ethernet (`CAP_NET_RAW` on Linux, the `net_rawaccess`
//! privilege on illumos). `cargo xtask serve` checks both before it builds
//! and starts the server, so that a user is told what is wrong in words
//! that fit the system in front of them.

use std::io;

/// What a process needs to open a link raw, and how to get it, on this
/// system (the end of [`super::LinkError::NotPermitted`]'s message).
#[cfg(not(target_os = "illumos"))]
pub const RAW_ACCESS_HINT: &str = "raw Ethernet needs CAP_NET_RAW; run as root, or grant it once with `sudo setcap cap_net_raw+ep PROGRAM`";
#[cfg(target_os = "illumos")]
pub const RAW_ACCESS_HINT: &str = "DLPI raw access needs the net_rawaccess privilege; run as root (`pfexec` or `sudo`), or grant it to the user (`usermod -K defaultpriv=basic,net_rawaccess USER`)";

/// The names of this system's network links, sorted.
pub fn link_names() -> io::Result<Vec<String>> {
    let mut names = system_link_names()?;
    names.sort();
    Ok(names)
}

#[cfg(not(target_os = "illumos"))]
fn system_link_names() -> io::Result<Vec<String>> {
    let dir = "/sys/class/net";
    let entries =
        std::fs::read_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("{dir}: {e}")))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

#[cfg(target_os = "illumos")]
fn system_link_names() -> io::Result<Vec<String>> {
    let out = std::process::Command::new("/usr/sbin/dladm")
        .args(["show-link", "-p", "-o", "link"])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("dladm show-link: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "dladm show-link -p -o link: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_dladm_links(&String::from_utf8_lossy(&out.stdout)))
}

/// Link names from `dladm show-link -p -o link` (one per line).
pub fn parse_dladm_links(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether this process may send raw Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawAccess {
    Granted,
    Denied,
    /// The system did not say; opening the link will.
    Unknown,
}

/// Asks the system whether this process may open links raw.
#[cfg(not(target_os = "illumos"))]
pub fn raw_access() -> RawAccess {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => match parse_cap_eff_net_raw(&status) {
            Some(true) => RawAccess::Granted,
            Some(false) => RawAccess::Denied,
            None => RawAccess::Unknown,
        },
        Err(_) => RawAccess::Unknown,
    }
}

/// Asks the system whether this process may open links raw.
#[cfg(target_os = "illumos")]
pub fn raw_access() -> RawAccess {
    let out = std::process::Command::new("/usr/bin/ppriv")
        .arg("-v")
        .arg(std::process::id().to_string())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            match parse_ppriv_net_rawaccess(&String::from_utf8_lossy(&out.stdout)) {
                Some(true) => RawAccess::Granted,
                Some(false) => RawAccess::Denied,
                None => RawAccess::Unknown,
            }
        }
        _ => RawAccess::Unknown,
    }
}

/// Linux: whether `CAP_NET_RAW` (bit 13) is in the `CapEff:` line of
/// `/proc/PID/status`; `None` if there is no such line.
pub fn parse_cap_eff_net_raw(status: &str) -> Option<bool> {
    const CAP_NET_RAW: u32 = 13;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    Some(caps & (1 << CAP_NET_RAW) != 0)
}

/// illumos: whether `net_rawaccess` is in the effective set (the `E:`
/// line) that `ppriv -v PID` prints; `None` if there is no such line.
pub fn parse_ppriv_net_rawaccess(out: &str) -> Option<bool> {
    let set = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("E:"))?;
    Some(
        set.split(',')
            .map(str::trim)
            .any(|p| p == "net_rawaccess" || p == "all"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_net_raw_from_proc_status() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff_net_raw(root), Some(true));
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(parse_cap_eff_net_raw(user), Some(false));
        assert_eq!(
            parse_cap_eff_net_raw("CapEff:\t0000000000002000\n"),
            Some(true)
        );
        assert_eq!(parse_cap_eff_net_raw("Name:\tx\n"), None);
    }

    #[test]
    fn net_rawaccess_from_ppriv() {
        let root = "1234:\t-bash\nflags = <none>\n\tE: contract_event,file_read,net_rawaccess,sys_admin\n\tI: basic\n\tP: all\n\tL: all\n";
        assert_eq!(parse_ppriv_net_rawaccess(root), Some(true));
        let user = "1234:\t-bash\nflags = <none>\n\tE: file_link_any,file_read,file_write,net_access,proc_exec\n\tI: basic\n";
        assert_eq!(parse_ppriv_net_rawaccess(user), Some(false));
        assert_eq!(parse_ppriv_net_rawaccess("\tE: all\n"), Some(true));
        assert_eq!(parse_ppriv_net_rawaccess("ppriv: no such process\n"), None);
    }

    #[test]
    fn links_from_dladm() {
        assert_eq!(
            parse_dladm_links("igb0\nigb1\n\nvnic0\n"),
            vec!["igb0", "igb1", "vnic0"]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_linux_host_has_loopback() {
        assert!(link_names().unwrap().iter().any(|n| n == "lo"));
    }
}
