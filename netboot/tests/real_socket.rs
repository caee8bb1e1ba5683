//! Real sockets between network namespaces: the server on one host, the
//! sled emulator on others, all on a private bridge. Needs root (CI runs as
//! root); everything created is removed afterwards. Linux: the labs are
//! network namespaces, and DLPI runs through the test shim.

#![cfg(target_os = "linux")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netboot::lab::{in_namespace, Lab};
use netboot::link::dlpi::DlpiLink;
use netboot::link::packet::PacketLink;
use netboot::link::Link;
use netboot::run::{run_sleds, SledFaults};
use netboot::server::Event;
use netboot::sled::{Outcome, Sled};
use netboot::wire::Mac;

mod support;

use support::{image, require_root, serve_image, sha};

fn prefix(tag: &str) -> String {
    support::prefix('n', tag)
}

/// A boot image of `raw` in `dir`: z.img compressed, else p.img.
fn image_file(dir: &Path, raw: &[u8], compress: bool) -> std::path::PathBuf {
    support::image_file(dir, if compress { "z.img" } else { "p.img" }, raw, compress)
}

enum Backend {
    Packet,
    /// AF_PACKET receiving, AF_XDP sending.
    Xdp,
    /// The same, the server's switch port polled (as `bench netboot
    /// --switch poll` runs it).
    XdpPolledPort,
    /// DLPI through the shim on both ends: the server in ordinary mode,
    /// the emulator raw and promiscuous (as on illumos), each link's first
    /// receives and sends interrupted (EINTR) on purpose.
    Dlpi,
}

/// Opens the server's DLPI link, checks that its MAC is the interface's
/// (`dlpi_get_physaddr`, not zeros), and has its first calls interrupted.
fn dlpi_server_link() -> DlpiLink {
    let mut link = DlpiLink::open("eth0").unwrap();
    let real = PacketLink::open("eth0", false).unwrap().mac();
    assert_eq!(link.mac(), real);
    assert_ne!(link.mac(), Mac([0; 6]));
    link.inject_eintr(5);
    link
}

/// Boots `sleds_per_host` sleds on each of `hosts` sled hosts from a
/// server on its own host, and checks what every sled received.
fn boot(
    tag: &str,
    backend: Backend,
    hosts: usize,
    sleds_per_host: usize,
    faults: SledFaults,
    raw: &[u8],
    compress: bool,
) {
    require_root();
    let lossless = faults.loss_tx == 0.0;
    let dir = tempfile::tempdir().unwrap();
    let path = image_file(dir.path(), raw, compress);
    let names: Vec<String> = (0..hosts).map(|i| format!("s{i}")).collect();
    let mut all: Vec<&str> = vec!["srv"];
    all.extend(names.iter().map(String::as_str));
    let lab = Lab::create(&prefix(tag), &all).unwrap();
    if matches!(backend, Backend::XdpPolledPort) {
        poll_server_port(&lab);
    }

    let sleds_on_dlpi = matches!(backend, Backend::Dlpi);
    let stop = AtomicBool::new(false);
    let events = std::thread::scope(|s| {
        let server = s.spawn(|| {
            in_namespace(&lab.ns("srv"), || {
                let mut link: Box<dyn Link> = match backend {
                    Backend::Packet => Box::new(PacketLink::open("eth0", false).unwrap()),
                    Backend::Xdp | Backend::XdpPolledPort => {
                        let mut link = PacketLink::open("eth0", false).unwrap();
                        link.use_xdp_tx().unwrap();
                        assert_eq!(link.sends_with(), "AF_XDP");
                        Box::new(link)
                    }
                    Backend::Dlpi => Box::new(dlpi_server_link()),
                };
                serve_image(&mut *link, &path, &stop)
            })
            .unwrap()
        });
        let sleds: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(h, name)| {
                let ns = lab.ns(name);
                let faults = SledFaults {
                    seed: faults.seed + h as u64,
                    ..faults.clone()
                };
                s.spawn(move || {
                    in_namespace(&ns, || {
                        let mut link: Box<dyn Link> = if sleds_on_dlpi {
                            let mut l = DlpiLink::open_emulator("eth0").unwrap();
                            l.inject_eintr(5);
                            Box::new(l)
                        } else {
                            Box::new(PacketLink::open("eth0", true).unwrap())
                        };
                        let mut sleds: Vec<Sled> = (0..sleds_per_host)
                            .map(|i| {
                                Sled::new(Mac([2, 0x5e, 0, 0, h as u8, i as u8]), sha(raw))
                                    .keep_image()
                            })
                            .collect();
                        let done = run_sleds(
                            &mut *link,
                            &mut sleds,
                            &faults,
                            Duration::from_secs(100),
                            &mut |_, _| {},
                        )
                        .unwrap();
                        assert!(done, "sleds did not finish in time");
                        sleds
                    })
                    .unwrap()
                })
            })
            .collect();
        let mut booted = 0;
        for h in sleds {
            for sled in h.join().unwrap() {
                match sled.outcome() {
                    Some(Outcome::Booted { bytes, .. }) => assert_eq!(*bytes, raw.len() as u64),
                    other => panic!("{}: {other:?}", sled.mac()),
                }
                assert_eq!(sha(sled.image().unwrap()), sha(raw), "{}", sled.mac());
                booted += 1;
            }
        }
        assert_eq!(booted, hosts * sleds_per_host);
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap()
    });
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::Finished { .. }))
        .count();
    // The client sends FINISHED once: with loss injected, some are lost.
    if lossless {
        assert_eq!(finished, hosts * sleds_per_host, "{events:#?}");
    } else {
        assert!(finished <= hosts * sleds_per_host, "{events:#?}");
    }
    drop(lab);
}

#[test]
fn af_packet_one_sled() {
    boot(
        "a",
        Backend::Packet,
        1,
        1,
        SledFaults::default(),
        &image((3 << 20) + (128 << 10), 1),
        false,
    );
}

#[test]
fn af_packet_eight_sleds_with_loss_and_duplication() {
    let faults = SledFaults {
        loss_rx: 0.02,
        loss_tx: 0.02,
        duplicate_tx: 0.01,
        seed: 7,
    };
    // Two hosts of four sleds: several MACs share one interface. Each lost
    // frame costs the client's 1 s re-request timer, so the image is small.
    boot(
        "b",
        Backend::Packet,
        2,
        4,
        faults,
        &image((1 << 20) + (256 << 10), 2),
        true,
    );
}

/// The same through AF_XDP: eight sleds' batches in flight at once, more
/// frames in all than the socket's 4096 UMEM frames (they are reused).
#[test]
fn af_xdp_eight_sleds_with_loss_and_duplication() {
    let faults = SledFaults {
        loss_rx: 0.02,
        loss_tx: 0.02,
        duplicate_tx: 0.01,
        seed: 11,
    };
    boot(
        "x",
        Backend::Xdp,
        2,
        4,
        faults,
        &image((1 << 20) + (256 << 10), 5),
        false,
    );
}

/// AF_XDP delivers every frame byte for byte, batch after batch (far more
/// frames than UMEM frames), and a send on a link that is down returns at
/// once, losing frames as a wire would; afterwards sending works again.
#[test]
fn af_xdp_sends_exact_frames_and_survives_its_link_going_down() {
    use netboot::wire::Repr;
    use netboot::Outbox;
    use std::sync::mpsc;
    require_root();
    let lab = Lab::create(&prefix("y"), &["srv", "s0"]).unwrap();
    let batch = |link: &PacketLink, n: u64| {
        let mut out = Outbox::new();
        for i in 0..128u64 {
            let offset = (n * 128 + i) * 1024;
            let bytes: Vec<u8> = (0..1024u64).map(|b| (offset / 1024 + b) as u8).collect();
            out.push(
                Mac([2, 0x5e, 0, 0, 9, 9]),
                link.mac(),
                &Repr::Data {
                    offset,
                    bytes: &bytes,
                },
            );
        }
        out
    };
    let (got_tx, got_rx) = mpsc::channel::<Vec<u8>>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let rx_ns = lab.ns("s0");
        let stop = &stop;
        s.spawn(move || {
            in_namespace(&rx_ns, || {
                let mut link = PacketLink::open("eth0", true).unwrap();
                let mut frames = netboot::link::RecvBatch::new(64);
                frames.accept_other_hosts = true;
                // Nothing is sent before the socket is open: frames sent
                // earlier would never arrive (on a busy machine the thread
                // starts late).
                let _ = ready_tx.send(());
                while !stop.load(Ordering::Relaxed) {
                    link.recv(&mut frames, Duration::from_millis(20)).unwrap();
                    for f in frames.frames() {
                        let _ = got_tx.send(f.to_vec());
                    }
                }
            })
            .unwrap()
        });
        // Stops the receiver however this ends, a failed assertion too.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(stop);
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiver opens its socket");
        in_namespace(&lab.ns("srv"), move || {
            let mut link = PacketLink::open("eth0", false).unwrap();
            link.use_xdp_tx().unwrap();
            // 160 batches of 128: 20,480 frames through 4096 UMEM frames,
            // each batch awaited, as a sled awaits its batch.
            for n in 0..160 {
                let out = batch(&link, n);
                link.send(&out).unwrap();
                for want in out.frames() {
                    let got = got_rx.recv_timeout(Duration::from_secs(5)).unwrap();
                    assert_eq!(got, want, "batch {n}");
                }
            }
            // The link goes down: sends return at once, frames are lost.
            netboot::lab::ip(&["link", "set", "eth0", "down"]).unwrap();
            let t = std::time::Instant::now();
            for n in 0..64 {
                link.send(&batch(&link, n)).unwrap();
            }
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            netboot::lab::ip(&["link", "set", "eth0", "up"]).unwrap();
            // Back up: a new batch arrives (after whatever the ring still
            // held from before).
            std::thread::sleep(Duration::from_millis(300));
            while got_rx.try_recv().is_ok() {}
            let out = batch(&link, 1000);
            let mut want: Vec<&[u8]> = out.frames().collect();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !want.is_empty() && std::time::Instant::now() < deadline {
                link.send(&out).unwrap();
                while let Ok(got) = got_rx.recv_timeout(Duration::from_millis(200)) {
                    want.retain(|w| *w != got.as_slice());
                }
            }
            assert!(want.is_empty(), "{} frames never arrived", want.len());
        })
        .unwrap();
    });
    drop(lab);
}

/// Two servers on one interface: the first sends through AF_XDP, the
/// second cannot (queue 0 is taken) and falls back to AF_PACKET, unless
/// told to use AF_XDP, when it says why it cannot.
#[test]
fn a_second_server_on_one_link_falls_back_to_af_packet() {
    use netboot::link::{open_server, Tx};
    require_root();
    let lab = Lab::create(&prefix("z"), &["srv"]).unwrap();
    in_namespace(&lab.ns("srv"), || {
        let first = open_server("eth0", Tx::Auto).unwrap();
        assert_eq!(first.sends_with(), "AF_XDP");
        let second = open_server("eth0", Tx::Auto).unwrap();
        assert_eq!(second.sends_with(), "AF_PACKET");
        let e = open_server("eth0", Tx::Xdp).err().unwrap().to_string();
        assert!(e.starts_with("eth0: AF_XDP: "), "{e}");
        let native = open_server("eth0", Tx::Native).unwrap();
        assert_eq!(native.sends_with(), "AF_PACKET");
        drop(first);
    })
    .unwrap();
    drop(lab);
}

/// Makes the server's switch port polled and checks the polling thread:
/// pinned to the last CPU, real-time.
fn poll_server_port(lab: &Lab) {
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    lab.poll_port("srv", 1 << cpu, Duration::from_micros(10))
        .unwrap();
    let name: String = format!("napi/{}-", lab.port("srv"))
        .chars()
        .take(15)
        .collect();
    let threads: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&name))
        })
        .collect();
    assert!(!threads.is_empty(), "no thread named {name}");
    for t in threads {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap();
        assert!(
            status.contains(&format!("Cpus_allowed_list:\t{cpu}\n")),
            "{status}"
        );
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Fields 40 and 41 of stat (here 37 and 38): rt_priority, policy.
        assert_eq!((fields[37], fields[38]), ("50", "1"), "SCHED_FIFO 50");
    }
}

/// Eight sleds boot through a switch whose server port is polled.
#[test]
fn af_xdp_through_a_polled_switch_port() {
    boot(
        "p",
        Backend::XdpPolledPort,
        2,
        4,
        SledFaults::default(),
        &image((1 << 20) + (128 << 10), 6),
        false,
    );
}

#[test]
fn dlpi_wiring_through_the_shim() {
    let faults = SledFaults {
        loss_rx: 0.01,
        loss_tx: 0.01,
        duplicate_tx: 0.0,
        seed: 3,
    };
    boot(
        "c",
        Backend::Dlpi,
        1,
        2,
        faults,
        &image((1 << 20) + (128 << 10), 3),
        false,
    );
}

/// Many sleds, each with its own MAC, on two hosts whose one link each is
/// opened raw and promiscuous through DLPI, from a server on DLPI.
#[test]
fn dlpi_server_and_emulator_boot_many_sleds() {
    boot(
        "m",
        Backend::Dlpi,
        2,
        4,
        SledFaults::default(),
        &image((1 << 20) + (128 << 10), 8),
        true,
    );
}

#[test]
fn opening_a_missing_link_says_so() {
    let e = PacketLink::open("no-such-nic0", false).err().unwrap();
    assert_eq!(e.to_string(), "no such link: no-such-nic0");
    let e = DlpiLink::open("no-such-nic0").err().unwrap();
    assert_eq!(e.to_string(), "no such link: no-such-nic0");
}

/// The real binaries, as a lab engineer runs them: `bootserver` in one
/// namespace, `sledsim` with three sleds in another.
#[test]
fn bootserver_and_sledsim_binaries() {
    use std::process::{Command, Stdio};
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let raw = image((1 << 20) + (128 << 10), 9);
    let img = image_file(dir.path(), &raw, true);
    let lab = Lab::create(&prefix("d"), &["srv", "s0"]).unwrap();
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("srv"),
            env!("CARGO_BIN_EXE_bootserver"),
        ])
        .args(["-s", "-t", "60", "--json", "--tx", "xdp", "eth0"])
        .arg(&img)
        .arg("any")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_dir = dir.path().join("got");
    std::fs::create_dir(&out_dir).unwrap();
    let sleds = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("s0"),
            env!("CARGO_BIN_EXE_sledsim"),
        ])
        .args([
            "--link",
            "eth0",
            "--count",
            "3",
            "--timeout",
            "60",
            "--image",
        ])
        .arg(&img)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sleds.stdout).into_owned();
    assert!(
        sleds.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&sleds.stderr)
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        assert!(
            line.contains(&format!("booted {} bytes", raw.len())),
            "{line}"
        );
        // No loss: not one stray DATA frame, so no console line.
        assert!(
            line.ends_with("SHA-256 ok, 0 dropped-DATA console lines"),
            "{line}"
        );
    }
    for f in std::fs::read_dir(&out_dir).unwrap() {
        assert_eq!(sha(&std::fs::read(f.unwrap().path()).unwrap()), sha(&raw));
    }
    // -s: the server exits 0 after the first FINISHED.
    let server = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&server.stdout).into_owned();
    assert!(
        server.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&server.stderr)
    );
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "serving", "the first line says the server is up");
    assert_eq!(events[0]["sends_with"], "AF_XDP");
    assert!(kinds.contains(&"hello"), "{kinds:?}");
    assert!(kinds.contains(&"offer"), "{kinds:?}");
    let fin = events
        .iter()
        .find(|e| e["event"] == "finished")
        .expect("a finished event");
    assert_eq!(fin["bytes"], raw.len() as u64);
    assert!(fin["mb_per_s"].as_f64().unwrap() > 0.0);
    drop(lab);
}

#[test]
fn bootserver_errors_are_clear() {
    use std::process::Command;
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let img = image_file(dir.path(), &image(1 << 20, 4), false);
    // `nobody` must be able to read the image, to get as far as the link.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |args: &[&str], nobody_in: Option<&str>| {
        let mut c = if let Some(ns) = nobody_in {
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                ns,
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
            ]);
            c.args(["--clear-groups", env!("CARGO_BIN_EXE_bootserver")]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_bootserver"))
        };
        let o = c.args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let img = img.to_str().unwrap();
    // A missing link is named with the links there are.
    let e = run(&["no-such-nic0", img, "any"], None);
    assert!(
        e.starts_with("bootserver: no such link: no-such-nic0 (links here: ")
            && e.contains("lo")
            && e.ends_with(")\n"),
        "{e}"
    );
    // The link is checked before any image is read.
    let e = run(&["no-such-nic0", "/nonexistent.img", "any"], None);
    assert!(
        e.starts_with("bootserver: no such link: no-such-nic0"),
        "{e}"
    );
    let e = run(&["lo", "/nonexistent.img", "any"], None);
    assert!(
        e.starts_with("bootserver: /nonexistent.img: stat: No such file"),
        "{e}"
    );
    let e = run(&["no-such-nic0", img, "not-a-mac"], None);
    assert!(e.contains("invalid MAC address \"not-a-mac\""), "{e}");
    let o = Command::new(env!("CARGO_BIN_EXE_bootserver"))
        .args(["--tx", "carrier-pigeon", "eth0", img, "any"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("unknown send method \"carrier-pigeon\": auto, xdp or native"),
        "{e}"
    );
    // Without CAP_NET_RAW, it says how to get it.
    let lab = Lab::create(&prefix("e"), &["srv"]).unwrap();
    let e = run(&["-t", "1", "eth0", img, "any"], Some(&lab.ns("srv")));
    assert!(
        e.contains("not permitted: raw Ethernet needs CAP_NET_RAW"),
        "{e}"
    );
    // ... naming this very program, and before reading any image.
    let e = run(
        &["-t", "1", "eth0", "/nonexistent.img", "any"],
        Some(&lab.ns("srv")),
    );
    assert!(
        e.ends_with(&format!(
            "`sudo setcap cap_net_raw+ep {}`\n",
            env!("CARGO_BIN_EXE_bootserver")
        )),
        "{e}"
    );
    drop(lab);
}

/// A hostile host floods the server with scattered READs and malformed
/// frames from one MAC as fast as it can, while a well-behaved sled boots.
#[test]
fn a_flood_from_one_mac_does_not_stop_a_good_sled() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let raw = image(32 << 20, 5);
    let path = image_file(dir.path(), &raw, false);
    let lab = Lab::create(&prefix("f"), &["srv", "s0", "bad"]).unwrap();
    let stop = AtomicBool::new(false);
    let flooding = AtomicBool::new(true);
    let boot = |lab: &Lab| {
        in_namespace(&lab.ns("s0"), || {
            let mut link = PacketLink::open("eth0", true).unwrap();
            let mut sleds = vec![Sled::new(Mac([2, 0x5e, 0, 0, 0, 1]), sha(&raw))];
            let t = std::time::Instant::now();
            assert!(run_sleds(
                &mut link,
                &mut sleds,
                &SledFaults::default(),
                Duration::from_secs(60),
                &mut |_, _| {}
            )
            .unwrap());
            assert!(matches!(sleds[0].outcome(), Some(Outcome::Booted { .. })));
            t.elapsed()
        })
        .unwrap()
    };
    let (quiet, flooded, sent) = std::thread::scope(|s| {
        let server = s.spawn(|| {
            in_namespace(&lab.ns("srv"), || {
                let mut link = PacketLink::open("eth0", false).unwrap();
                serve_image(&mut link, &path, &stop);
            })
            .unwrap()
        });
        std::thread::sleep(Duration::from_millis(200));
        let quiet = boot(&lab);
        // The flooder learns the server's MAC from an OFFER, then floods.
        let flooder = s.spawn(|| {
            in_namespace(&lab.ns("bad"), || {
                let mut link = PacketLink::open("eth0", true).unwrap();
                let me = Mac([6, 0xee, 0, 0, 0, 1]);
                let mut out = netboot::Outbox::new();
                out.push(
                    Mac::BROADCAST,
                    me,
                    &netboot::wire::Repr::Hello { text: b"hi" },
                );
                link.send(&out).unwrap();
                let mut batch = netboot::link::RecvBatch::new(8);
                batch.accept_other_hosts = true;
                let server_mac = loop {
                    link.recv(&mut batch, Duration::from_millis(100)).unwrap();
                    if let Some(f) = batch.frames().find(|f| f[..6] == me.0) {
                        break Mac(f[6..12].try_into().unwrap());
                    }
                };
                let mut rng = netboot::sim::Rng::new(9);
                let mut sent = 0u64;
                while flooding.load(Ordering::Relaxed) {
                    out.clear();
                    for i in 0..64 {
                        if i % 4 == 3 {
                            // A malformed frame: our magic, garbage after.
                            let mut f = Vec::from(server_mac.0);
                            f.extend_from_slice(&me.0);
                            f.extend_from_slice(&netboot::wire::ETHERTYPE.to_be_bytes());
                            f.extend_from_slice(&netboot::wire::MAGIC.to_be_bytes());
                            f.extend((0..40).map(|_| rng.next_u64() as u8));
                            out.push_raw(&f);
                            continue;
                        }
                        let mut offsets = [0u64; 128];
                        offsets[rng.below(128) as usize] = rng.next_u64() % (64 << 20);
                        out.push(
                            server_mac,
                            me,
                            &netboot::wire::Repr::Read(netboot::wire::Read { count: 1, offsets }),
                        );
                    }
                    link.send(&out).unwrap();
                    sent += out.len() as u64;
                }
                sent
            })
            .unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        let flooded = boot(&lab);
        flooding.store(false, Ordering::Relaxed);
        let sent = flooder.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        (quiet, flooded, sent)
    });
    eprintln!("32 MiB: {quiet:?} alone, {flooded:?} during a flood of {sent} frames");
    assert!(sent > 10_000, "the flood happened: {sent} frames");
    // Two cores run the server, the flooder and the sled here; the good
    // sled keeps a fair share.
    assert!(
        flooded < quiet * 6 + Duration::from_secs(1),
        "{quiet:?} alone, {flooded:?} flooded"
    );
    drop(lab);
}

/// A HELLO flood does not flood the server's log: at most 50 lines a
/// second of each noisy kind, then a line saying how many were left out.
#[test]
fn the_log_survives_a_hello_flood() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let img = image_file(dir.path(), &image(1 << 20, 6), false);
    let lab = Lab::create(&prefix("g"), &["srv", "s0"]).unwrap();
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("srv"),
            env!("CARGO_BIN_EXE_bootserver"),
        ])
        .args(["-t", "3", "eth0"])
        .arg(&img)
        .arg("any")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("serving on"));
    in_namespace(&lab.ns("s0"), || {
        let mut link = PacketLink::open("eth0", false).unwrap();
        let mut out = netboot::Outbox::new();
        for i in 0..2000u32 {
            let b = i.to_be_bytes();
            let mac = Mac([6, 0xee, b[0], b[1], b[2], b[3]]);
            out.push(
                Mac::BROADCAST,
                mac,
                &netboot::wire::Repr::Hello { text: b"hi" },
            );
        }
        link.send(&out).unwrap();
        // A later HELLO, in another second, makes the summary appear.
        std::thread::sleep(Duration::from_millis(1100));
        out.clear();
        out.push(
            Mac::BROADCAST,
            Mac([6, 0xee, 0, 0, 0xff, 0xff]),
            &netboot::wire::Repr::Hello { text: b"hi" },
        );
        link.send(&out).unwrap();
    })
    .unwrap();
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = server.wait();
    let hellos = log.iter().filter(|l| l.contains("] HELLO from")).count();
    assert!(hellos <= 51 + 50, "{hellos} HELLO lines");
    assert!(
        log.iter()
            .any(|l| l.contains("more hello events in the last second not shown")),
        "{log:?}"
    );
    drop(lab);
}

/// `bootserver IMAGE` with an image no sled could verify over the network
/// (not a whole number of 128 KiB batches) exits 1 at start, naming the
/// file, its size and the rule.
#[test]
fn bootserver_refuses_an_image_a_sled_cannot_verify() {
    use std::process::Command;
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let raw = image((2 << 20) + 777, 12);
    let img = image_file(dir.path(), &raw, false);
    let lab = Lab::create(&prefix("u"), &["srv"]).unwrap();
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("srv"),
            env!("CARGO_BIN_EXE_bootserver"),
        ])
        .args(["-t", "5", "--tx", "native", "eth0"])
        .arg(&img)
        .arg("any")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&img.display().to_string()), "{err}");
    assert!(
        err.contains("image size 2097929 is not a multiple of 128 KiB (131072 bytes)"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "nothing served");
}
