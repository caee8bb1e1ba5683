//! FFI: test hosts in network namespaces, for real-socket tests, the demo
//! and benchmarks. A [`Lab`] is a private bridge (in a namespace of its
//! own) with one veth-connected namespace per host; everything it creates
//! is removed when it is dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::link::packet::PacketLink;
use crate::link::{Link, RecvBatch};
use crate::sim::Rng;
use crate::wire::{EthFrame, Mac};
use crate::Outbox;

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

/// A switch namespace and hosts, each host a namespace whose `eth0` is a
/// veth to a port in the switch namespace: on a bridge there, or (for a
/// [`FaultySwitch`]) on nothing.
pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
    bridged: bool,
}

impl Lab {
    /// Creates namespaces `PREFIX-sw` (the bridge) and `PREFIX-HOST` for
    /// each host. `prefix` must be short (interface names are limited to
    /// 15 bytes). Needs root.
    pub fn create(prefix: &str, hosts: &[&str]) -> io::Result<Lab> {
        Lab::make(prefix, hosts, true)
    }

    /// Like [`Lab::create`], but the ports are left unconnected for a
    /// [`FaultySwitch`] to join.
    pub fn create_unbridged(prefix: &str, hosts: &[&str]) -> io::Result<Lab> {
        Lab::make(prefix, hosts, false)
    }

    fn make(prefix: &str, hosts: &[&str], bridged: bool) -> io::Result<Lab> {
        let mut lab = Lab {
            prefix: prefix.to_owned(),
            hosts: Vec::new(),
            bridged,
        };
        let sw = lab.switch();
        ip(&["netns", "add", &sw])?;
        if !bridged {
            for host in hosts {
                lab.add_host(host)?;
            }
            return Ok(lab);
        }
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

    /// The switch-side port of `host`.
    pub fn port(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
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
        if self.bridged {
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        } else {
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
        }
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

    /// Makes the switch port of `host` take frames the way a NIC with
    /// interrupt moderation does: a thread (pinned to the CPUs in `mask`)
    /// polls the port every `interval` while traffic flows, instead of the
    /// sender signalling the switch's CPU for each frame (with RPS, on a VM,
    /// one inter-processor interrupt per frame, charged to the sender).
    /// `host` sends with TSO off, which lets veth hand frames to the port's
    /// polling thread.
    pub fn poll_port(&self, host: &str, mask: u64, interval: Duration) -> io::Result<()> {
        in_namespace(&self.ns(host), || set_offload("eth0", ETHTOOL_STSO, false))??;
        let port = self.port(host);
        in_namespace(&self.switch(), || set_offload(&port, ETHTOOL_SGRO, true))??;
        let dir = format!("/sys/class/net/{port}");
        let script = format!(
            "echo 1 > {dir}/threaded\necho 100 > {dir}/napi_defer_hard_irqs\necho {} > {dir}/gro_flush_timeout\n",
            interval.as_nanos()
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.switch(), "sh", "-ec", &script])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "making port {port} poll: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // The polling thread is named napi/PORT-ID, cut to 15 bytes.
        let name: String = format!("napi/{port}-").chars().take(15).collect();
        let mut found = false;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with(&name) {
                pin(pid, mask)?;
                // A switch never waits for a host's time slice: the
                // thread preempts ordinary processes on its CPUs, as the
                // receive work of RPS (a softirq) does.
                let param = libc::sched_param { sched_priority: 50 };
                // SAFETY: `param` is a valid sched_param for the call.
                if unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                found = true;
            }
        }
        if !found {
            return Err(io::Error::other(format!(
                "no polling thread for port {port}"
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

const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGRO: u32 = 0x2c;

/// Turns one offload of interface `dev` (in this thread's namespace) on or
/// off with the legacy ethtool ioctl.
fn set_offload(dev: &str, cmd: u32, on: bool) -> io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd,
        data: on as u32,
    };
    // SAFETY: plain system call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid; name and data are set below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(dev.as_bytes().iter().take(15)) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = &mut value as *mut EthtoolValue as *mut libc::c_char;
    // SAFETY: SIOCETHTOOL reads the command from `value`, which outlives
    // the call, for the interface named in `ifr`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("{dev}: ethtool {cmd:#x}: {e}"),
        ));
    }
    Ok(())
}

/// Restricts thread `pid` (0: the calling thread) to the CPUs in `mask`.
pub fn pin(pid: libc::pid_t, mask: u64) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in (0..64).filter(|c| mask >> c & 1 == 1) {
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the given size.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// Faults the [`FaultySwitch`] applies to each frame it forwards.
#[derive(Clone, Debug, Default)]
pub struct SwitchFaults {
    /// Probability that a frame is dropped (each way).
    pub loss: f64,
    /// Probability that a frame is forwarded twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `jitter`, so that
    /// frames behind it overtake it.
    pub reorder: f64,
    pub jitter: Duration,
    /// Latency added to every frame.
    pub latency: Duration,
    pub seed: u64,
}

/// What the switch did.
#[derive(Debug, Default)]
pub struct SwitchStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

type Queued = Reverse<(Instant, u64, usize, Vec<u8>)>;

/// A userspace Ethernet switch between the server's host and the sleds'
/// hosts of an unbridged [`Lab`], forwarding with seeded loss,
/// duplication, reordering and delay (the kernel here has no netem). It
/// can also take the whole segment down and bring it back.
pub struct FaultySwitch {
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    pub stats: Arc<SwitchStats>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FaultySwitch {
    /// Starts forwarding between `server`'s port and the `sleds`' ports.
    pub fn start(
        lab: &Lab,
        server: &str,
        sleds: &[&str],
        faults: SwitchFaults,
    ) -> io::Result<FaultySwitch> {
        let ns = lab.switch();
        let mut ports = vec![lab.port(server)];
        ports.extend(sleds.iter().map(|h| lab.port(h)));
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SwitchStats::default());
        let queue = Arc::new((Mutex::new(BinaryHeap::<Queued>::new()), Condvar::new()));
        let table = Arc::new(Mutex::new(HashMap::<Mac, usize>::new()));
        let seq = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        // Open every socket first, so that forwarding starts at once.
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, port) in ports.iter().enumerate() {
            let (ns, port, stop, down, stats, queue, table, seq, faults, tx) = (
                ns.clone(),
                port.clone(),
                stop.clone(),
                down.clone(),
                stats.clone(),
                queue.clone(),
                table.clone(),
                seq.clone(),
                faults.clone(),
                tx.clone(),
            );
            let n = ports.len();
            threads.push(std::thread::spawn(move || {
                let opened = enter_namespace(&ns)
                    .and_then(|()| PacketLink::open(&port, true).map_err(io::Error::other));
                let mut link = match opened {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let mut rng = Rng::new(faults.seed.wrapping_add(i as u64 * 7919));
                let mut batch = RecvBatch::new(64);
                batch.accept_other_hosts = true;
                while !stop.load(Ordering::Relaxed) {
                    if link.recv(&mut batch, Duration::from_millis(10)).is_err() {
                        // The port is down (a pulled cable): wait for it.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    for frame in batch.frames() {
                        let Ok(eth) = EthFrame::parse(frame) else {
                            continue;
                        };
                        let outs: Vec<usize> = if i == 0 {
                            match table.lock().expect("table").get(&eth.dst) {
                                Some(&p) if !eth.dst.is_broadcast() => vec![p],
                                _ => (1..n).collect(),
                            }
                        } else {
                            table.lock().expect("table").insert(eth.src, i);
                            vec![0]
                        };
                        for out in outs {
                            if down.load(Ordering::Relaxed) || rng.chance(faults.loss) {
                                stats.dropped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let copies = if rng.chance(faults.duplicate) {
                                stats.duplicated.fetch_add(1, Ordering::Relaxed);
                                2
                            } else {
                                1
                            };
                            for _ in 0..copies {
                                let mut delay = faults.latency;
                                if rng.chance(faults.reorder) {
                                    let j = faults.jitter.as_nanos() as u64;
                                    delay += Duration::from_nanos(rng.below(j.max(1)));
                                }
                                let s = seq.fetch_add(1, Ordering::Relaxed);
                                let (q, cv) = &*queue;
                                q.lock().expect("queue").push(Reverse((
                                    Instant::now() + delay,
                                    s,
                                    out,
                                    frame.to_vec(),
                                )));
                                cv.notify_one();
                            }
                        }
                    }
                }
            }));
        }
        drop(tx);
        for _ in 0..ports.len() {
            rx.recv().map_err(io::Error::other)??;
        }
        // The sender: frames leave when their time comes.
        {
            let (ns, stop, stats, queue, ports) = (
                ns.clone(),
                stop.clone(),
                stats.clone(),
                queue.clone(),
                ports.clone(),
            );
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let links: io::Result<Vec<PacketLink>> = enter_namespace(&ns).and_then(|()| {
                    ports
                        .iter()
                        .map(|p| PacketLink::open(p, false).map_err(io::Error::other))
                        .collect()
                });
                let mut links = match links {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut outs: Vec<Outbox> = links.iter().map(|_| Outbox::new()).collect();
                let (q, cv) = &*queue;
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut heap = q.lock().expect("queue");
                        let now = Instant::now();
                        while let Some(Reverse((due, ..))) = heap.peek() {
                            if *due > now {
                                break;
                            }
                            let Some(Reverse((_, _, port, frame))) = heap.pop() else {
                                break;
                            };
                            outs[port].push_raw(&frame);
                        }
                        if outs.iter().all(Outbox::is_empty) {
                            let wait = heap
                                .peek()
                                .map(|Reverse((due, ..))| due.saturating_duration_since(now))
                                .unwrap_or(Duration::from_millis(10))
                                .min(Duration::from_millis(10));
                            let _ = cv.wait_timeout(heap, wait).expect("queue");
                            continue;
                        }
                    }
                    for (link, out) in links.iter_mut().zip(outs.iter_mut()) {
                        if !out.is_empty() {
                            // A port that is down drops what it is given.
                            let _ = link.send(out);
                            stats
                                .forwarded
                                .fetch_add(out.len() as u64, Ordering::Relaxed);
                            out.clear();
                        }
                    }
                }
            }));
            ready_rx.recv().map_err(io::Error::other)??;
        }
        Ok(FaultySwitch {
            stop,
            down,
            stats,
            threads,
        })
    }

    /// Takes the whole segment down (every frame dropped) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }
}

impl Drop for FaultySwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
