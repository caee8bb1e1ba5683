//! `cargo xtask bench image [RAW]`: times the release `mkimage` and
//! `lookimage` on a realistic image and prints a table of medians.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::Digest;
use xshell::{cmd, Shell};

use crate::{rusage, Result, Workspace};

struct Job {
    name: String,
    bin: &'static str,
    args: Vec<OsString>,
    threads: String,
    /// Bytes of image the job processes (for MB/s).
    bytes: u64,
    output: Option<PathBuf>,
    runs: usize,
}

struct Row {
    name: String,
    threads: String,
    median: Duration,
    mb_s: f64,
    output: Option<(u64, u64)>,
    /// `None` where the system does not report it (illumos).
    peak: Option<u64>,
    cpu: Duration,
}

/// The bench image: `raw` if given, else `TARGET/bench/bench.img`, made by
/// `../shared/bench/make-bench-image.sh` when missing.
pub fn bench_image(ws: &Workspace, sh: &Shell, raw: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(raw) = raw {
        return Ok(raw);
    }
    let dir = ws.target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let img = dir.join("bench.img");
    if !img.exists() {
        let script = ws.root.join("../shared/bench/make-bench-image.sh");
        if !script.exists() {
            return Err(format!(
                "{}: not found; give a raw image: cargo xtask bench image RAW",
                script.display()
            )
            .into());
        }
        eprintln!("bench: making {} (1 GiB)", img.display());
        cmd!(sh, "bash {script} {img}").run()?;
    }
    Ok(img)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The machine's single-core SHA-256 rate, in MB/s, hashing in memory.
fn sha256_rate() -> f64 {
    let buf = vec![0x5au8; 256 << 20];
    let times = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(sha2::Sha256::digest(&buf));
            t.elapsed()
        })
        .collect();
    buf.len() as f64 / 1e6 / median(times).as_secs_f64()
}

pub fn image(raw: Option<PathBuf>, runs: Option<usize>) -> Result<()> {
    let ws = crate::workspace()?;
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    cmd!(sh, "cargo build --release --quiet -p bootimage --bins").run()?;
    let raw = bench_image(&ws, &sh, raw)?;
    let raw_len = std::fs::metadata(&raw)
        .map_err(|e| format!("{}: {e}", raw.display()))?
        .len();
    let bin = ws.target.join("release");
    let out = ws.target.join("bench");
    std::fs::create_dir_all(&out)?;
    let (plain, z) = (out.join("plain.img"), out.join("z.img"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let os = |v: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<OsString> {
        v.iter().map(|s| s.as_ref().to_owned()).collect()
    };
    let fast = runs.unwrap_or(5);
    let slow = runs.unwrap_or(3);
    let mut jobs = vec![Job {
        name: "mkimage (plain)".into(),
        bin: "mkimage",
        args: os(&[&"-i", &raw, &"-o", &plain]),
        threads: "-".into(),
        bytes: raw_len,
        output: Some(plain.clone()),
        runs: fast,
    }];
    let mut counts = vec![(cores, format!("all ({cores})"))];
    for t in [1, 2] {
        if t != cores {
            counts.push((t, t.to_string()));
        }
    }
    for (t, label) in counts {
        jobs.push(Job {
            name: "mkimage -z (level 9)".into(),
            bin: "mkimage",
            args: os(&[&"-i", &raw, &"-o", &z, &"-z", &"--threads", &t.to_string()]),
            threads: label,
            bytes: raw_len,
            output: Some(z.clone()),
            runs: slow,
        });
    }
    jobs.push(Job {
        name: "lookimage (plain, verify)".into(),
        bin: "lookimage",
        args: os(&[&plain]),
        threads: "2".into(),
        bytes: raw_len,
        output: None,
        runs: fast,
    });
    jobs.push(Job {
        name: "lookimage (compressed, verify)".into(),
        bin: "lookimage",
        args: os(&[&z]),
        threads: "2".into(),
        bytes: raw_len,
        output: None,
        runs: fast,
    });
    for (name, img) in [("plain", &plain), ("compressed", &z)] {
        jobs.push(Job {
            name: format!("lookimage --extract ({name})"),
            bin: "lookimage",
            args: os(&[&"--extract", &out.join("extract.raw"), img]),
            threads: "2".into(),
            bytes: raw_len,
            output: Some(out.join("extract.raw")),
            runs: fast,
        });
    }
    // A 4 GiB input of holes: round trip within bounded memory (the peak
    // memory column), and the output keeps the holes.
    let sparse = out.join("sparse4g.raw");
    std::fs::File::create(&sparse)?.set_len(4 << 30)?;
    let sparse_img = out.join("sparse4g.img");
    jobs.push(Job {
        name: "mkimage (4 GiB of holes, plain)".into(),
        bin: "mkimage",
        args: os(&[&"-i", &sparse, &"-o", &sparse_img]),
        threads: "-".into(),
        bytes: 4 << 30,
        output: Some(sparse_img.clone()),
        runs: slow,
    });
    jobs.push(Job {
        name: "lookimage --extract (4 GiB of holes)".into(),
        bin: "lookimage",
        args: os(&[&"--extract", &out.join("sparse4g.out"), &sparse_img]),
        threads: "2".into(),
        bytes: 4 << 30,
        output: Some(out.join("sparse4g.out")),
        runs: slow,
    });

    let mut rows = Vec::new();
    for job in &jobs {
        let mut walls = Vec::new();
        let (mut peak, mut cpus) = (None, Vec::new());
        for i in 0..job.runs {
            if let Some(o) = &job.output {
                // Not timed: replacing a 1 GiB file frees its blocks.
                let _ = std::fs::remove_file(o);
            }
            eprintln!(
                "bench: {} [{}] run {}/{}",
                job.name,
                job.threads,
                i + 1,
                job.runs
            );
            let u = rusage::run(
                Command::new(bin.join(job.bin))
                    .args(&job.args)
                    .stdout(std::process::Stdio::null()),
            )?;
            if !u.status.success() {
                return Err(format!("{} {:?} failed: {}", job.bin, job.args, u.status).into());
            }
            walls.push(u.wall);
            cpus.push(u.cpu);
            peak = peak.max(u.max_rss);
        }
        let m = median(walls);
        let output = job.output.as_ref().map(|o| {
            let meta = std::fs::metadata(o).expect("the job wrote its output");
            (meta.len(), meta.blocks() * 512)
        });
        rows.push(Row {
            name: job.name.clone(),
            threads: job.threads.clone(),
            median: m,
            mb_s: job.bytes as f64 / 1e6 / m.as_secs_f64(),
            output,
            peak,
            cpu: median(cpus),
        });
    }

    println!(
        "image: {} ({:.1} MB, {:.1} MB allocated); {} cores; release build; median of {} runs ({} for -z)",
        raw.display(),
        raw_len as f64 / 1e6,
        allocated(&raw) as f64 / 1e6,
        cores,
        fast,
        slow
    );
    println!();
    println!(
        "| job | threads | median wall | MB/s | output size | output on disk | peak memory | CPU |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (size, disk) = match r.output {
            Some((s, d)) => (
                format!("{:.1} MB", s as f64 / 1e6),
                format!("{:.1} MB", d as f64 / 1e6),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.2} s | {:.0} | {} | {} | {} | {:.2} s |",
            r.name,
            r.threads,
            r.median.as_secs_f64(),
            r.mb_s,
            size,
            disk,
            r.peak.map_or("n/a".into(), |p| format!(
                "{:.1} MiB",
                p as f64 / (1 << 20) as f64
            )),
            r.cpu.as_secs_f64()
        );
    }
    for f in [
        "sparse4g.raw",
        "sparse4g.img",
        "sparse4g.out",
        "extract.raw",
    ] {
        let _ = std::fs::remove_file(out.join(f));
    }
    println!();
    let rate = sha256_rate();
    println!(
        "single-core SHA-256 in memory (sha2): {rate:.0} MB/s, i.e. {:.2} s for this image",
        raw_len as f64 / 1e6 / rate
    );
    Ok(())
}

fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.blocks() * 512)
}
