//! `cargo xtask bench netboot`: the release `bootserver` and `sledsim` over
//! veth pairs and a bridge in private network namespaces: wall time, MB/s
//! per sled and in aggregate, and the server's CPU seconds per GiB served.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netboot::lab::Lab;
use xshell::{cmd, Shell};

use crate::serve::{sledsim, start_bootserver};
use crate::{rusage, Result};

struct Row {
    sleds: usize,
    wall: Duration,
    per_sled: (f64, f64),
    aggregate: f64,
    server_cpu_per_gib: f64,
    startup_cpu: Duration,
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

fn run_once(bin: &std::path::Path, image: &std::path::Path, sleds: usize) -> Result<Row> {
    let hosts = sleds.clamp(1, 4);
    let per_host = sleds.div_ceil(hosts);
    let names: Vec<String> = (0..hosts).map(|i| format!("s{i}")).collect();
    let mut all = vec!["srv"];
    all.extend(names.iter().map(String::as_str));
    let lab = Lab::create(&format!("xb{}", std::process::id() % 10_000), &all)?;
    let size = bootimage::Image::open(image)?.header().image_size;
    // The server on CPU 0, the switch's work on the other CPUs (a hardware
    // switch does not run on the server): the server's CPU time is then
    // its own.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        let others = ((1u64 << cores.min(63)) - 1) & !1;
        lab.steer_switch(others)?;
    }

    // The server, ready once it says so.
    let start = Instant::now();
    let (mut server, _, lines) = start_bootserver(
        &lab,
        bin,
        &["taskset", "-c", "0"],
        &["eth0".as_ref(), image.as_ref(), "any".as_ref()],
    )?;
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
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    Ok(Row {
        sleds,
        wall,
        per_sled: (lo, hi),
        aggregate: size as f64 * sleds as f64 / 1e6 / wall.as_secs_f64(),
        server_cpu_per_gib: serving_cpu.as_secs_f64() / served_gib,
        startup_cpu,
    })
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

pub fn netboot(image: Option<PathBuf>, sleds: Vec<usize>) -> Result<()> {
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
    let mut rows = Vec::new();
    for n in sleds {
        eprintln!("bench: {n} sled(s), {:.1} MB each", size as f64 / 1e6);
        rows.push(run_once(&bin, &image, n)?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "image: {} ({:.1} MB, plain); {cores} cores; release build; veth pairs on a bridge, each sled host its own namespace; server on CPU 0, bridge receive work steered (RPS) to the others",
        image.display(),
        size as f64 / 1e6
    );
    println!();
    println!("| sleds | wall | MB/s per sled (min..max) | MB/s aggregate | server CPU per GiB served | server start-up (verify) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {:.0}..{:.0} | {:.0} | {:.2} core-s | {:.2} core-s |",
            r.sleds,
            r.wall.as_secs_f64(),
            r.per_sled.0,
            r.per_sled.1,
            r.aggregate,
            r.server_cpu_per_gib,
            r.startup_cpu.as_secs_f64()
        );
    }
    Ok(())
}
