//! `cargo xtask bench netboot`: the release `bootserver` and `sledsim` over
//! veth pairs and a bridge in private network namespaces: wall time, MB/s
//! per sled and in aggregate, and the server's CPU seconds per GiB served,
//! for each way the server can send; and "send only": what sending the
//! same number of frames costs with nothing else to do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use netboot::lab::Lab;
use netboot::link::packet::PacketLink;
use netboot::link::Link;
use netboot::wire::{Mac, Repr};
use netboot::Outbox;
use xshell::{cmd, Shell};

use crate::serve::{sledsim, start_bootserver};
use crate::{rusage, Result};

struct Row {
    wall: Duration,
    per_sled: (f64, f64),
    aggregate: f64,
    server_cpu_per_gib: f64,
    startup_cpu: Duration,
    sends_with: String,
}

/// Makes (once) a plain boot image of the 1 GiB bench image.
fn bench_boot_image(ws: &crate::Workspace, sh: &Shell) -> Result<PathBuf> {
    let out = ws.target.join("bench/netboot.img");
    if out.exists() {
        return Ok(out);
    }
    let raw = crate::bench::bench_image(ws, sh, None)?;
    let mkimage = ws.target.join("release/mkimage");
    cmd!(sh, "{mkimage} -i {raw} -o {out}").quiet().run()?;
    Ok(out)
}

/// A lab with a server host and up to four sled hosts, the server's CPU
/// (0) kept for the server: the switch's receive work is steered (RPS) to
/// the other CPUs, as a hardware switch does not run on the server. With
/// `switch` "poll", the server's port is polled by a thread on those CPUs
/// instead, so the server no longer signals them for each frame.
fn lab(sleds: usize, switch: &str) -> Result<(Lab, Vec<String>)> {
    let hosts = sleds.clamp(1, 4);
    let names: Vec<String> = (0..hosts).map(|i| format!("s{i}")).collect();
    let mut all = vec!["srv"];
    all.extend(names.iter().map(String::as_str));
    let lab = Lab::create(&format!("xb{}", std::process::id() % 10_000), &all)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        let others = ((1u64 << cores.min(63)) - 1) & !1;
        lab.steer_switch(others)?;
        match switch {
            "rps" => {}
            "poll" => lab.poll_port("srv", others, Duration::from_micros(10))?,
            other => return Err(format!("unknown switch model {other:?}: rps or poll").into()),
        }
    }
    Ok((lab, names))
}

fn run_once(bin: &Path, image: &Path, sleds: usize, tx: &str, switch: &str) -> Result<Row> {
    let (lab, names) = lab(sleds, switch)?;
    let per_host = sleds.div_ceil(names.len());
    let size = bootimage::Image::open(image)?.header().image_size;

    // The server, ready once it says so.
    let start = Instant::now();
    let (mut server, first, lines) = start_bootserver(
        &lab,
        bin,
        &["taskset", "-c", "0"],
        &[
            "--tx".as_ref(),
            tx.as_ref(),
            "eth0".as_ref(),
            image.as_ref(),
            "any".as_ref(),
        ],
    )?;
    let sends_with = first
        .rsplit_once("sending with ")
        .map_or("?", |(_, w)| w.trim_end_matches(')'))
        .to_owned();
    // Its CPU so far went into loading and verifying the image.
    let startup_cpu = cpu_of(server.id())?;
    // Keep draining its log so that it never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.count());

    let t0 = Instant::now();
    let mut clients = Vec::new();
    let mut left = sleds;
    for (h, name) in names.iter().enumerate() {
        let n = per_host.min(left);
        left -= n;
        clients.push(
            sledsim(&lab, bin, h, name, n, image)
                .args(["--json", "--timeout", "900"])
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let mut rates = Vec::new();
    for c in clients {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("sledsim failed: {}", String::from_utf8_lossy(&out.stdout)).into());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let secs = v["seconds"].as_f64().unwrap_or(f64::NAN);
            rates.push(size as f64 / 1e6 / secs);
        }
    }
    let wall = t0.elapsed();
    server.kill()?;
    let usage = rusage::wait(server, start)?;
    let _ = drain.join();
    drop(lab);
    let served_gib = (size as f64 * sleds as f64) / (1u64 << 30) as f64;
    let serving_cpu = usage.cpu.saturating_sub(startup_cpu);
    let (lo, hi) = min_max(&rates);
    Ok(Row {
        wall,
        per_sled: (lo, hi),
        aggregate: size as f64 * sleds as f64 / 1e6 / wall.as_secs_f64(),
        server_cpu_per_gib: serving_cpu.as_secs_f64() / served_gib,
        startup_cpu,
        sends_with,
    })
}

/// Send only: CPU seconds per GiB to send 1 GiB of DATA frames (128 to a
/// call, built once) on the server host's link with `tx`, from one thread
/// on CPU 0 that does nothing else. Frames cross the bridge to a sled host.
fn send_only(tx: &str, switch: &str) -> Result<f64> {
    let (lab, _) = lab(1, switch)?;
    let xdp = tx != "native";
    let cpu = netboot::lab::in_namespace(&lab.ns("srv"), || -> std::io::Result<Duration> {
        netboot::lab::pin(0, 1)?;
        let mut link = PacketLink::open("eth0", false).map_err(std::io::Error::other)?;
        if xdp {
            link.use_xdp_tx()?;
        }
        let data = vec![0x5au8; 1024];
        let mut out = Outbox::new();
        for i in 0..128u64 {
            let repr = Repr::Data {
                offset: i * 1024,
                bytes: &data,
            };
            out.push(Mac([0x02, 0x5e, 0, 0, 0, 1]), link.mac(), &repr);
        }
        let before = rusage::thread_cpu()?;
        for _ in 0..(1 << 30) / (128 * 1024) {
            link.send(&out)?;
        }
        Ok(rusage::thread_cpu()? - before)
    })??;
    drop(lab);
    Ok(cpu.as_secs_f64())
}

/// User plus system CPU time of a running process, from /proc.
fn cpu_of(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // The kernel reports USER_HZ ticks, 100 per second on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// " (min..max)" of several runs, or nothing for one.
fn spread(v: &[f64]) -> String {
    if v.len() < 2 {
        return String::new();
    }
    let (lo, hi) = min_max(v);
    format!(" ({lo:.2}..{hi:.2})")
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn netboot(
    image: Option<PathBuf>,
    sleds: Vec<usize>,
    txs: Vec<String>,
    switches: Vec<String>,
    runs: usize,
) -> Result<()> {
    let ws = crate::workspace()?;
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    cmd!(
        sh,
        "cargo build --release --quiet -p bootimage -p netboot --bins"
    )
    .run()?;
    let image = match image {
        Some(i) => i,
        None => bench_boot_image(&ws, &sh)?,
    };
    let bin = ws.target.join("release");
    let size = bootimage::Image::open(&image)?.header().image_size;
    let runs = runs.max(1);
    let mut lines = Vec::new();
    for switch in &switches {
        for tx in &txs {
            let sends: Vec<f64> = (0..runs)
                .map(|_| send_only(tx, switch))
                .collect::<Result<_>>()?;
            eprintln!("bench: {switch}, send only with --tx {tx}: {sends:.2?} core-s/GiB");
            lines.push(format!(
                "| {switch} | {tx} | send only | | | | {:.2} core-s{} | |",
                median(sends.clone()),
                spread(&sends)
            ));
            for &n in &sleds {
                let mut rows = Vec::new();
                for r in 0..runs {
                    eprintln!(
                        "bench: {switch}, --tx {tx}, {n} sled(s), {:.1} MB each, run {}",
                        size as f64 / 1e6,
                        r + 1
                    );
                    rows.push(run_once(&bin, &image, n, tx, switch)?);
                }
                let cpus: Vec<f64> = rows.iter().map(|r| r.server_cpu_per_gib).collect();
                let cpu = median(cpus.clone());
                // The run with the median CPU stands for the others.
                let row = rows
                    .iter()
                    .find(|r| r.server_cpu_per_gib == cpu)
                    .expect("the median is one of the runs");
                lines.push(format!(
                    "| {switch} | {tx} ({}) | {n} | {:.2} s | {:.0}..{:.0} | {:.0} | {cpu:.2} core-s{} | {:.2} core-s |",
                    row.sends_with,
                    row.wall.as_secs_f64(),
                    row.per_sled.0,
                    row.per_sled.1,
                    row.aggregate,
                    spread(&cpus),
                    row.startup_cpu.as_secs_f64()
                ));
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "image: {} ({:.1} MB, plain); {cores} cores; release build; veth pairs on a bridge, each sled host its own namespace; server on CPU 0, bridge receive work steered (RPS) to the others; switch rps: the server's frames too, poll: the server's port polled every 10 us by a real-time thread on the others; {runs} run(s) each, medians",
        image.display(),
        size as f64 / 1e6
    );
    println!();
    println!("| switch | --tx | sleds | wall | MB/s per sled (min..max) | MB/s aggregate | server CPU per GiB served | server start-up (verify) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for l in lines {
        println!("{l}");
    }
    println!();
    println!("send only: one thread on CPU 0 sending 1 GiB of DATA frames, 128 per call, built once, with nothing else to do (the kernel's share of serving)");
    Ok(())
}
