//! A faulty network for real sockets: a userspace switch (AF_PACKET on
//! every port) between the server's namespace and the sleds', with seeded
//! loss, duplication, reordering and delay, and outages. Every test checks
//! the SHA-256 each sled received. Needs root, as CI has. Linux: the labs
//! are network namespaces.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netboot::lab::{in_namespace, FaultySwitch, Lab, SwitchFaults};
use netboot::link::packet::PacketLink;
use netboot::run::{run_sleds, SledFaults};
use netboot::server::Event;
use netboot::sled::{Outcome, Sled};
use netboot::wire::Mac;

mod support;

use support::{image, serve_image, sha};

fn prefix(tag: &str) -> String {
    support::prefix('f', tag)
}

fn image_file(dir: &Path, name: &str, raw: &[u8]) -> PathBuf {
    support::image_file(dir, name, raw, false)
}

fn sled_mac(h: usize, i: usize) -> Mac {
    Mac([2, 0x5e, 0xf0, 0, h as u8, i as u8])
}

/// Runs an in-process server on `srv` until `stop`, its link opened as
/// `bootserver` opens it (sending through AF_XDP); returns its events.
fn server_thread<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    lab: &'s Lab,
    image: &'s Path,
    stop: &'s AtomicBool,
) -> std::thread::ScopedJoinHandle<'s, Vec<Event>> {
    s.spawn(move || {
        in_namespace(&lab.ns("srv"), || {
            let mut link = netboot::link::open_server("eth0", netboot::link::Tx::Xdp).unwrap();
            serve_image(&mut *link, image, stop)
        })
        .unwrap()
    })
}

/// Boots `n` sleds on host `host` expecting `raw`; `on_progress` sees the
/// least progress among them (bytes) about every 200 ms.
fn boot_sleds(
    lab: &Lab,
    host: &str,
    h: usize,
    n: usize,
    raw: &[u8],
    on_progress: &(dyn Fn(u64) + Sync),
) {
    let sum = sha(raw);
    let sleds = in_namespace(&lab.ns(host), || {
        let mut link = PacketLink::open("eth0", true).unwrap();
        let mut sleds: Vec<Sled> = (0..n).map(|i| Sled::new(sled_mac(h, i), sum)).collect();
        let done = run_sleds(
            &mut link,
            &mut sleds,
            &SledFaults::default(),
            Duration::from_secs(480),
            &mut |sleds, _| on_progress(sleds.iter().map(|s| s.progress().0).min().unwrap_or(0)),
        )
        .unwrap();
        assert!(done, "the sleds did not finish in time");
        sleds
    })
    .unwrap();
    for s in sleds {
        // Booted means the SHA-256 of what arrived matched.
        match s.outcome() {
            Some(Outcome::Booted { bytes, .. }) => assert_eq!(*bytes, raw.len() as u64),
            other => panic!("{}: {other:?}", s.mac()),
        }
    }
}

#[test]
fn a_64_mib_boot_completes_with_5_percent_loss_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let raw = image(64 << 20, 1);
    let img = image_file(dir.path(), "big.img", &raw);
    let lab = Lab::create_unbridged(&prefix("a"), &["srv", "s0"]).unwrap();
    let faults = SwitchFaults {
        loss: 0.05,
        seed: 1,
        ..SwitchFaults::default()
    };
    let switch = FaultySwitch::start(&lab, "srv", &["s0"], faults).unwrap();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let events = std::thread::scope(|s| {
        let server = server_thread(s, &lab, &img, &stop);
        boot_sleds(&lab, "s0", 0, 1, &raw, &|_| {});
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap()
    });
    let dropped = switch.stats.dropped.load(Ordering::Relaxed);
    assert!(dropped > 1000, "the switch dropped {dropped} frames");
    // (The client sends FINISHED once; at this loss rate it may be lost.)
    assert!(events.iter().any(|e| matches!(e, Event::Retransmit { .. })));
    eprintln!(
        "64 MiB with 5% loss each way: {:?}, {dropped} frames dropped",
        start.elapsed()
    );
}

#[test]
fn eight_sleds_with_2_percent_loss_duplication_and_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let raw = image(4 << 20, 2);
    let img = image_file(dir.path(), "img", &raw);
    let lab = Lab::create_unbridged(&prefix("b"), &["srv", "s0", "s1"]).unwrap();
    let faults = SwitchFaults {
        loss: 0.02,
        duplicate: 0.01,
        reorder: 0.05,
        jitter: Duration::from_millis(2),
        latency: Duration::from_micros(50),
        seed: 2,
    };
    let switch = FaultySwitch::start(&lab, "srv", &["s0", "s1"], faults).unwrap();
    let stop = AtomicBool::new(false);
    let events = std::thread::scope(|s| {
        let server = server_thread(s, &lab, &img, &stop);
        let a = s.spawn(|| boot_sleds(&lab, "s0", 0, 4, &raw, &|_| {}));
        let b = s.spawn(|| boot_sleds(&lab, "s1", 1, 4, &raw, &|_| {}));
        a.join().unwrap();
        b.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap()
    });
    assert!(switch.stats.duplicated.load(Ordering::Relaxed) > 0);
    // Every sled booted (checked in boot_sleds); a sled sends FINISHED
    // once, so at 2 % loss the server may miss some.
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::Finished { .. }))
        .count();
    assert!((1..=8).contains(&finished), "{finished}");
}

#[test]
fn the_link_goes_down_for_3_seconds_mid_transfer_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let raw = image(16 << 20, 3);
    let img = image_file(dir.path(), "img", &raw);
    let lab = Lab::create_unbridged(&prefix("c"), &["srv", "s0"]).unwrap();
    let switch = FaultySwitch::start(&lab, "srv", &["s0"], slow()).unwrap();
    let stop = AtomicBool::new(false);
    let cut = AtomicBool::new(false);
    let outage = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        let server = server_thread(s, &lab, &img, &stop);
        boot_sleds(&lab, "s0", 0, 1, &raw, &|got| {
            // A third of the way through, pull the cable for 3 s: the
            // switch drops everything and the server's port goes down.
            if got > raw.len() as u64 / 3 && !cut.swap(true, Ordering::Relaxed) {
                assert!(got < raw.len() as u64, "cut mid-transfer");
                switch.set_down(true);
                lab.set_host_link("srv", false).unwrap();
                *outage.lock().unwrap() = Some(Instant::now());
            }
            let mut o = outage.lock().unwrap();
            if let Some(t) = *o {
                if t.elapsed() >= Duration::from_secs(3) {
                    lab.set_host_link("srv", true).unwrap();
                    switch.set_down(false);
                    *o = None;
                }
            }
        });
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    });
    assert!(cut.load(Ordering::Relaxed), "the outage happened");
    assert!(switch.stats.dropped.load(Ordering::Relaxed) > 0);
}

/// A switch that only delays (3 ms each way): boots take seconds.
fn slow() -> SwitchFaults {
    SwitchFaults {
        latency: Duration::from_millis(3),
        ..SwitchFaults::default()
    }
}

fn bootserver(lab: &Lab, args: &[&str]) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("srv"),
            env!("CARGO_BIN_EXE_bootserver"),
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for the server's first line ("serving on ...").
fn wait_ready(child: &mut Child) -> std::io::Lines<std::io::BufReader<std::process::ChildStdout>> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("serving on"), "{first}");
    lines
}

#[test]
fn the_server_killed_and_restarted_mid_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let raw = image(32 << 20, 4);
    let img = image_file(dir.path(), "img", &raw);
    let lab = Lab::create_unbridged(&prefix("d"), &["srv", "s0"]).unwrap();
    // Latency stretches the boot over seconds, so that it is surely
    // under way when the server dies.
    let _switch = FaultySwitch::start(&lab, "srv", &["s0"], slow()).unwrap();
    let img_s = img.to_str().unwrap().to_owned();
    let mut first = bootserver(&lab, &["eth0", &img_s, "any"]);
    let _ = wait_ready(&mut first);
    let progress = AtomicU64::new(0);
    let second = std::thread::scope(|s| {
        let sled = s.spawn(|| {
            boot_sleds(&lab, "s0", 0, 1, &raw, &|got| {
                progress.store(got, Ordering::Relaxed)
            })
        });
        // Kill it a quarter of the way through, and start another.
        while progress.load(Ordering::Relaxed) < raw.len() as u64 / 4 {
            std::thread::sleep(Duration::from_millis(10));
        }
        first.kill().unwrap();
        assert!(
            progress.load(Ordering::Relaxed) < raw.len() as u64,
            "killed mid-transfer"
        );
        first.wait().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let mut second = bootserver(&lab, &["--json", "-s", "-t", "120", "eth0", &img_s, "any"]);
        let lines = wait_ready_json(&mut second);
        sled.join().unwrap();
        (second, lines)
    });
    let (mut second, lines) = second;
    assert!(
        second.wait().unwrap().success(),
        "-s: exits 0 after FINISHED"
    );
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    let log = log.join("\n");
    assert!(log.contains("\"event\":\"resumed\""), "{log}");
    assert!(log.contains("\"event\":\"finished\""), "{log}");
}

/// A `--json` server's first line is a "serving" event: wait for it, then
/// hand back the rest of its log.
fn wait_ready_json(
    child: &mut Child,
) -> std::io::Lines<std::io::BufReader<std::process::ChildStdout>> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with(r#"{"event":"serving""#), "{first}");
    lines
}

#[test]
fn the_image_file_replaced_mid_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let old = image(16 << 20, 5);
    let new = image(8 << 20, 6);
    let img = image_file(dir.path(), "served.img", &old);
    let replacement = image_file(dir.path(), "next.img", &new);
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        "default = \"os\"\n[[image]]\nname = \"os\"\npath = \"served.img\"\n",
    )
    .unwrap();
    let lab = Lab::create_unbridged(&prefix("e"), &["srv", "s0", "s1"]).unwrap();
    let _switch = FaultySwitch::start(&lab, "srv", &["s0", "s1"], slow()).unwrap();
    let mut server = bootserver(&lab, &["--config", cfg.to_str().unwrap(), "--link", "eth0"]);
    let lines = wait_ready(&mut server);
    let progress = AtomicU64::new(0);
    std::thread::scope(|s| {
        // The first sled expects the image on offer when it starts.
        let first = s.spawn(|| {
            boot_sleds(&lab, "s0", 0, 1, &old, &|got| {
                progress.store(got, Ordering::Relaxed)
            })
        });
        while progress.load(Ordering::Relaxed) < old.len() as u64 / 4 {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Replace the file, as a build does: write beside it, rename over.
        std::fs::rename(&replacement, &img).unwrap();
        assert!(
            progress.load(Ordering::Relaxed) < old.len() as u64,
            "replaced mid-transfer"
        );
        // It still gets the image it was offered, byte for byte.
        first.join().unwrap();
        // A sled that starts now gets the new image (once reloaded).
        std::thread::sleep(Duration::from_millis(1500));
        boot_sleds(&lab, "s1", 1, 1, &new, &|_| {});
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    let log = log.join("\n");
    assert!(log.contains("RELOADED os"), "{log}");
}
