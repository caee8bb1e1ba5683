//! `cargo xtask bench rack`: a rack booting at once, against the network's
//! floor (the bottleneck link's time for the DATA frames the sleds need,
//! Ethernet's overhead included). One table from the simulator
//! (deterministic: the server and the emulated client on a modeled network)
//! and one from the real lab: the release `bootserver` and `sledsim` over
//! veth, through a `tc tbf`-shaped 1 Gbit/s segment.

use std::time::Duration;

use netboot::pace::Rate;
use netboot::sim::{Rack, RackReport, Topology};

use crate::Result;

/// What to run.
pub struct Options {
    pub size: u64,
    pub sleds: Vec<usize>,
    pub losses: Vec<f64>,
    pub console: Duration,
    pub lab: bool,
    pub runs: usize,
    /// Also boot each rack as one broadcast cohort (`bootserver
    /// --broadcast`): a cohort row beside the unicast rows.
    pub broadcast: bool,
}

/// The simulated networks: a shared 1 GbE segment, and a switch with the
/// server at 10 GbE and each sled on a 1 GbE port with 96 KiB of buffer.
fn topologies() -> Vec<Topology> {
    vec![
        Topology::Segment { rate: Rate::GBIT },
        Topology::Switch {
            server: Rate::gbit(10),
            sled: Rate::GBIT,
            buffer: 96 << 10,
        },
    ]
}

const HEADER: &str = "| network | sleds | loss each way | wall | floor | wall / floor | extra DATA | console lines per sled (mean, most) | buffer drops | RETRANSMIT events |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// Under a cohort row: its time against one sled's alone (unicast, no
/// loss), the measure (a unicast rack needs `sleds` times that).
fn cohort_note(network: &str, sleds: usize, r: &RackReport, alone: Duration) -> String {
    format!(
        "{network}, cohort of {sleds}: wall {:.3} s = {:.2} x one sled alone ({:.3} s); the slowest sled's boot from its OFFER {:.3} s = {:.2} x",
        r.wall.as_secs_f64(),
        r.wall.as_secs_f64() / alone.as_secs_f64().max(1e-9),
        alone.as_secs_f64(),
        r.slowest_boot.as_secs_f64(),
        r.slowest_boot.as_secs_f64() / alone.as_secs_f64().max(1e-9),
    )
}

fn row(network: &str, sleds: usize, loss: f64, r: &RackReport) -> String {
    format!(
        "| {network} | {sleds} | {:.1} % | {:.3} s | {:.3} s | {:.3} | {:.2} % | {:.0}, {} | {} | {} |",
        loss * 100.0,
        r.wall.as_secs_f64(),
        r.floor.as_secs_f64(),
        r.ratio(),
        r.extra_data_percent(),
        r.console_lines_mean,
        r.console_lines_max,
        r.buffer_drops,
        r.retransmit_events,
    )
}

pub fn rack(opts: Options) -> Result<()> {
    if opts.size == 0 || opts.size % netboot::image::BATCH_ALIGN != 0 {
        return Err(format!(
            "--size {}: a sled can verify only whole 128 KiB batches",
            opts.size
        )
        .into());
    }
    println!(
        "Simulated ({} MiB per sled, console {:.1} ms a line, the server told its link's rate):\n",
        opts.size >> 20,
        opts.console.as_secs_f64() * 1000.0
    );
    println!("{HEADER}");
    let mut notes = Vec::new();
    for topology in topologies() {
        for &sleds in &opts.sleds {
            for &loss in &opts.losses {
                let mut r = Rack::new(topology.clone(), sleds, opts.size);
                r.loss = loss;
                r.console = opts.console;
                let report = r.run()?;
                if report.booted != sleds {
                    eprintln!(
                        "xtask: {}: only {} of {sleds} sleds booted",
                        topology.describe(),
                        report.booted
                    );
                }
                println!("{}", row(&topology.describe(), sleds, loss, &report));
            }
        }
        if opts.broadcast {
            // One sled alone, unicast, no loss: the measure.
            let alone = Rack::new(topology.clone(), 1, opts.size).run()?.wall;
            for &sleds in &opts.sleds {
                for &loss in &opts.losses {
                    let mut r = Rack::new(topology.clone(), sleds, opts.size);
                    r.loss = loss;
                    r.console = opts.console;
                    r.limits.broadcast = true;
                    let report = r.run()?;
                    if report.booted != sleds {
                        eprintln!(
                            "xtask: {} cohort: only {} of {sleds} sleds booted",
                            topology.describe(),
                            report.booted
                        );
                    }
                    let network = format!("{}, cohort", topology.describe());
                    println!("{}", row(&network, sleds, loss, &report));
                    notes.push(cohort_note(&topology.describe(), sleds, &report, alone));
                }
            }
        }
    }
    for n in &notes {
        println!("\n{n}");
    }
    if opts.lab {
        #[cfg(target_os = "linux")]
        lab::table(&opts)?;
        #[cfg(not(target_os = "linux"))]
        return Err(format!(
            "the lab table ({} runs) needs Linux network namespaces (--no-lab skips it)",
            opts.runs
        )
        .into());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod lab {
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use netboot::lab::Lab;
    use netboot::pace::Rate;
    use netboot::sim::{RackReport, Topology};
    use xshell::{cmd, Shell};

    use super::{row, Options, HEADER};
    use crate::serve::{sledsim, start_bootserver};
    use crate::Result;

    /// A plain boot image of `size` bytes that does not compress, made once.
    fn image(ws: &crate::Workspace, size: u64) -> Result<PathBuf> {
        let dir = ws.target.join("bench");
        std::fs::create_dir_all(&dir)?;
        let out = dir.join(format!("rack-{}MiB.img", size >> 20));
        if out.exists() {
            return Ok(out);
        }
        let raw = dir.join(format!("rack-{}MiB.raw", size >> 20));
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&raw)?);
            let mut rng = netboot::sim::Rng::new(size);
            let mut left = size;
            while left > 0 {
                f.write_all(&rng.next_u64().to_le_bytes())?;
                left = left.saturating_sub(8);
            }
            f.flush()?;
        }
        bootimage::make_image(&raw, &out, &bootimage::ImageSpec::default(), &|_| {})?;
        std::fs::remove_file(&raw)?;
        Ok(out)
    }

    /// `tc -s qdisc show dev PORT` in the switch namespace: (packets sent,
    /// dropped).
    fn qdisc_counts(sh: &Shell, ns: &str, port: &str) -> Result<(u64, u64)> {
        let text = cmd!(sh, "ip netns exec {ns} tc -s qdisc show dev {port}")
            .quiet()
            .read()?;
        let num = |after: &str| -> u64 {
            text.split_once(after)
                .and_then(|(_, r)| {
                    r.split(|c: char| !c.is_ascii_digit())
                        .find(|s| !s.is_empty())
                })
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        let sent = text
            .split_once(" bytes ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((sent, num("dropped ")))
    }

    fn run_once(
        bin: &Path,
        image: &Path,
        size: u64,
        sleds: usize,
        loss: f64,
        opts: &Options,
        broadcast: bool,
    ) -> Result<RackReport> {
        let sh = Shell::new()?;
        // One sled host: every sled behind one shaped port, the segment.
        let lab = Lab::create(
            &format!("xr{}", std::process::id() % 10_000),
            &["srv", "s0"],
        )?;
        let sw = lab.ns("sw");
        let port = lab.port("s0");
        cmd!(
            sh,
            "ip netns exec {sw} tc qdisc replace dev {port} root tbf rate 1gbit burst 64kb limit 256kb"
        )
        .quiet()
        .run()?;
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--rate".as_ref(),
            "1gbit".as_ref(),
            "eth0".as_ref(),
            image.as_ref(),
            "any".as_ref(),
        ];
        if broadcast {
            args.insert(0, "--broadcast".as_ref());
        }
        let (mut server, _first, lines) = start_bootserver(&lab, bin, &[], &args)?;
        let events = std::thread::spawn(move || {
            lines
                .map_while(|l| l.ok())
                .filter(|l| l.contains("] RETRANSMIT "))
                .count() as u64
        });
        let t0 = Instant::now();
        let out = sledsim(&lab, bin, 0, "s0", sleds, image)
            .args(["--json", "--timeout", "900", "--seed", "7"])
            .args(["--loss", &loss.to_string()])
            .args([
                "--console-ms",
                &format!("{}", opts.console.as_secs_f64() * 1000.0),
            ])
            .stdout(Stdio::piped())
            .output()?;
        let wall = t0.elapsed();
        let (sent, dropped) = qdisc_counts(&sh, &sw, &port)?;
        server.kill()?;
        let _ = server.wait();
        let retransmit_events = events.join().unwrap_or(0);
        drop(lab);
        let mut booted = 0;
        let mut lines = Vec::new();
        let mut slowest_boot = Duration::ZERO;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["result"] == "booted" {
                booted += 1;
                let secs = v["seconds"].as_f64().unwrap_or(0.0);
                slowest_boot = slowest_boot.max(Duration::from_secs_f64(secs.max(0.0)));
            }
            lines.push(v["dropped_data"].as_u64().unwrap_or(0));
        }
        let needed = size.div_ceil(1024) * sleds as u64;
        // Through the shaped port: DATA, one OFFER a sled (the sleds'
        // own HELLOs leave by it, not through it).
        let data_sent = (sent + dropped).saturating_sub(sleds as u64);
        Ok(RackReport {
            wall,
            floor: Topology::Segment { rate: Rate::GBIT }.floor(&vec![size; sleds]),
            booted,
            data_sent,
            data_needed: needed,
            console_lines_mean: lines.iter().sum::<u64>() as f64 / lines.len().max(1) as f64,
            console_lines_max: lines.iter().copied().max().unwrap_or(0),
            buffer_drops: dropped,
            retransmit_events,
            slowest_boot,
        })
    }

    pub fn table(opts: &Options) -> Result<()> {
        // Network namespaces need root.
        let euid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
            })
            .unwrap_or_default();
        if euid != "0" {
            return Err("the lab table needs root (network namespaces); --no-lab skips it".into());
        }
        let ws = crate::workspace()?;
        let sh = Shell::new()?;
        sh.change_dir(&ws.root);
        cmd!(sh, "cargo build --release --quiet -p netboot --bins").run()?;
        let bin = ws.target.join("release");
        let image = image(&ws, opts.size)?;
        println!(
            "\nLab (release bootserver --rate 1gbit and sledsim --console-ms {:.1}, veth through a tc tbf 1gbit segment, limit 256 KiB; medians of {} runs; loss: sledsim --loss):\n",
            opts.console.as_secs_f64() * 1000.0,
            opts.runs
        );
        println!("{HEADER}");
        let modes: &[bool] = if opts.broadcast {
            &[false, true]
        } else {
            &[false]
        };
        let mut alone = None;
        let mut notes = Vec::new();
        for &broadcast in modes {
            for &sleds in &opts.sleds {
                for &loss in &opts.losses {
                    let mut runs = Vec::new();
                    for _ in 0..opts.runs.max(1) {
                        runs.push(run_once(
                            &bin, &image, opts.size, sleds, loss, opts, broadcast,
                        )?);
                    }
                    runs.sort_by_key(|r| r.wall);
                    let r = &runs[runs.len() / 2];
                    if r.booted != sleds {
                        eprintln!("xtask: lab: only {} of {sleds} sleds booted", r.booted);
                    }
                    let network = if broadcast {
                        "lab tbf 1gbit, cohort"
                    } else {
                        "lab tbf 1gbit"
                    };
                    println!("{}", row(network, sleds, loss, r));
                    if !broadcast && sleds == 1 && loss == 0.0 {
                        alone = Some(r.wall);
                    }
                    if broadcast {
                        if let Some(a) = alone {
                            notes.push(super::cohort_note("lab tbf 1gbit", sleds, r, a));
                        }
                    }
                }
            }
        }
        for n in &notes {
            println!("\n{n}");
        }
        Ok(())
    }
}
