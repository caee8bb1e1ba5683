//! FFI: test hosts in network namespaces, for real-socket tests, the demo
//! and benchmarks. A [`Lab`] is a private bridge (in a namespace of its
//! own) with one veth-connected namespace per host; everything it creates
//! is removed when it is dropped.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Runs `ip ARGS`, failing with its message.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Moves the calling thread into network namespace `ns` (as made by
/// `ip netns add`). Sockets it opens afterwards live there.
pub fn enter_namespace(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: `f` is an open namespace file; setns changes only this
    // thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns`, and waits for it.
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(ns)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A bridge and hosts, each host a namespace with an `eth0` on the bridge.
pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
}

impl Lab {
    /// Creates namespaces `PREFIX-sw` (the bridge) and `PREFIX-HOST` for
    /// each host. `prefix` must be short (interface names are limited to
    /// 15 bytes). Needs root.
    pub fn create(prefix: &str, hosts: &[&str]) -> io::Result<Lab> {
        let mut lab = Lab {
            prefix: prefix.to_owned(),
            hosts: Vec::new(),
        };
        let sw = lab.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        // A plain Ethernet switch: no iptables hooks on bridged frames
        // (best effort: the knobs exist only with br_netfilter).
        let _ = Command::new("ip")
            .args(["netns", "exec", &sw, "sysctl", "-qw"])
            .args([
                "net.bridge.bridge-nf-call-iptables=0",
                "net.bridge.bridge-nf-call-ip6tables=0",
                "net.bridge.bridge-nf-call-arptables=0",
            ])
            .output();
        for host in hosts {
            lab.add_host(host)?;
        }
        Ok(lab)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Adds a host: a namespace whose `eth0` is a veth to the bridge.
    pub fn add_host(&mut self, host: &str) -> io::Result<()> {
        let ns = self.ns(host);
        let sw = self.switch();
        let port = format!("{}{host}", self.prefix);
        if port.len() > 15 {
            return Err(io::Error::other(format!(
                "interface name {port} is too long"
            )));
        }
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Steers the bridge's receive processing (Receive Packet Steering on
    /// every switch port) to the CPUs in `mask`, as a hardware switch would
    /// take it off the hosts' CPUs: benchmarks then charge each host for
    /// its own work, not for the switch's.
    pub fn steer_switch(&self, mask: u64) -> io::Result<()> {
        let mut script = String::new();
        for ns in &self.hosts {
            let host = ns.strip_prefix(&format!("{}-", self.prefix)).unwrap_or(ns);
            script.push_str(&format!(
                "echo {mask:x} > /sys/class/net/{}{host}/queues/rx-0/rps_cpus\n",
                self.prefix
            ));
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &self.switch(), "sh", "-ec", &script])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "setting rps_cpus: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Takes `host`'s link down or up (a pulled cable).
    pub fn set_host_link(&self, host: &str, up: bool) -> io::Result<()> {
        let port = format!("{}{host}", self.prefix);
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the interfaces in it.
        for ns in self.hosts.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
