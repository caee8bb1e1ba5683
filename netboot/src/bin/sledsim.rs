//! `sledsim`: emulates sleds booting over the network, exactly as the
//! deployed client behaves, for tests, benchmarks and labs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use netboot::run::{run_sleds, SledFaults};
use netboot::sled::{Outcome, Sled};
use netboot::wire::Mac;

/// Emulate COUNT sleds (distinct MACs) booting from a boot server on LINK:
/// HELLO every 4 s, the client's OFFER rules (including the expected
/// SHA-256), 128-slot batches, 1 s sparse re-requests, FINISHED once. Each
/// sled checks the SHA-256 of what it received. Exits 0 when every sled
/// booted. Needs CAP_NET_RAW (root); puts LINK in promiscuous mode.
#[derive(Parser)]
#[command(name = "sledsim", version)]
struct Args {
    /// Network interface to boot over
    #[arg(long, value_name = "LINK")]
    link: String,
    /// The boot image the sleds expect (its header's SHA-256 is the
    /// checksum "built into their boot archive")
    #[arg(long, value_name = "IMAGE", required_unless_present = "sha256")]
    image: Option<PathBuf>,
    /// The expected SHA-256, as 64 hex digits, instead of --image
    #[arg(long, value_name = "HEX", conflicts_with = "image")]
    sha256: Option<String>,
    /// How many sleds
    #[arg(long, default_value_t = 1)]
    count: u16,
    /// MAC of the first sled; the others count up from it
    #[arg(long, value_name = "MAC", default_value = "02:5e:00:00:00:01")]
    mac: Mac,
    /// Probability that a frame is lost, each way
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a frame sent is duplicated
    #[arg(long = "dup", default_value_t = 0.0)]
    duplicate: f64,
    /// Seed for the loss and duplication
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write each sled's image to DIR/MAC.raw
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// One JSON object per sled on standard output
    #[arg(long)]
    json: bool,
    /// Block each sled's loop this many milliseconds for every DATA frame
    /// it was not waiting for, as the deployed client's synchronous console
    /// line "dropped data packet for offset N" does (about 4 at 115200
    /// baud)
    #[arg(long = "console-ms", value_name = "MS", default_value_t = 0.0)]
    console_ms: f64,
}

fn expected(args: &Args) -> Result<[u8; 32], String> {
    if let Some(path) = &args.image {
        let img = bootimage::Image::open(path).map_err(|e| e.to_string())?;
        return Ok(img.header().sha256);
    }
    let hex = args.sha256.as_deref().unwrap_or_default();
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(format!("--sha256 {hex:?}: expected 64 hex digits"));
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("--sha256 {hex:?}: not hex"))?;
    }
    Ok(out)
}

fn run(args: Args) -> Result<bool, String> {
    let sum = expected(&args)?;
    if !(0.0..1.0).contains(&args.loss) || !(0.0..1.0).contains(&args.duplicate) {
        return Err("--loss and --dup are probabilities from 0 to 1".into());
    }
    if !(0.0..=10_000.0).contains(&args.console_ms) {
        return Err(format!(
            "--console-ms {}: expected 0 to 10000 milliseconds",
            args.console_ms
        ));
    }
    let console = Duration::from_secs_f64(args.console_ms / 1000.0);
    let base = u64::from_be_bytes([
        0,
        0,
        args.mac.0[0],
        args.mac.0[1],
        args.mac.0[2],
        args.mac.0[3],
        args.mac.0[4],
        args.mac.0[5],
    ]);
    let mut sleds: Vec<Sled> = (0..args.count as u64)
        .map(|i| {
            let b = (base + i).to_be_bytes();
            let s = Sled::new(Mac([b[2], b[3], b[4], b[5], b[6], b[7]]), sum).with_console(console);
            if args.out.is_some() {
                s.keep_image()
            } else {
                s
            }
        })
        .collect();
    let mut link = netboot::link::open(&args.link, true).map_err(|e| e.to_string())?;
    let faults = SledFaults {
        loss_rx: args.loss,
        loss_tx: args.loss,
        duplicate_tx: args.duplicate,
        seed: args.seed,
    };
    let bars = std::io::stderr().is_terminal().then(|| {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix} [{bar:25}] {percent:>3}% {bytes}/{total_bytes}")
                .expect("the template is valid")
                .progress_chars("=> ");
        let bars: Vec<ProgressBar> = sleds
            .iter()
            .map(|s| {
                let b = mp.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(s.mac().to_string());
                b
            })
            .collect();
        (mp, bars)
    });
    let done = run_sleds(
        &mut *link,
        &mut sleds,
        &faults,
        Duration::from_secs(args.timeout),
        &mut |sleds, _| {
            if let Some((_, bars)) = &bars {
                for (s, b) in sleds.iter().zip(bars) {
                    let (got, total) = s.progress();
                    b.set_length(total);
                    b.set_position(got);
                }
            }
        },
    )
    .map_err(|e| format!("{}: {e}", args.link))?;
    if let Some((_, bars)) = &bars {
        for b in bars {
            b.finish_and_clear();
        }
    }
    let mut all_ok = done;
    for s in &sleds {
        let mac = s.mac().to_string();
        let dropped = s.stats.data_dropped;
        let lines = format!("{dropped} dropped-DATA console lines");
        let (text, ok, mut json) = match s.outcome() {
            Some(Outcome::Booted {
                server,
                bytes,
                elapsed,
            }) => (
                format!(
                    "{mac}: booted {bytes} bytes from {server} in {:.2} s ({:.1} MB/s), SHA-256 ok, {lines}",
                    elapsed.as_secs_f64(),
                    *bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
                ),
                true,
                serde_json::json!({"result": "booted", "server": server.to_string(), "bytes": bytes, "seconds": elapsed.as_secs_f64()}),
            ),
            Some(Outcome::ChecksumMismatch { actual, bytes }) => (
                format!(
                    "{mac}: FAILED: boot image integrity failure: the {bytes}-byte ramdisk hashes to {}, {lines}",
                    bootimage::header::hex(actual)
                ),
                false,
                serde_json::json!({"result": "checksum-mismatch", "bytes": bytes, "sha256": bootimage::header::hex(actual)}),
            ),
            Some(Outcome::Reset { server }) => (
                format!("{mac}: FAILED: RESET by {server}, {lines}"),
                false,
                serde_json::json!({"result": "reset", "server": server.to_string()}),
            ),
            None => (
                format!(
                    "{mac}: FAILED: no boot within {} s ({} of {} bytes), {lines}",
                    args.timeout,
                    s.progress().0,
                    s.progress().1
                ),
                false,
                serde_json::json!({"result": "timeout", "received": s.progress().0}),
            ),
        };
        json["mac"] = mac.clone().into();
        json["dropped_data"] = dropped.into();
        // Of those, broadcast frames (a broadcast cohort's server sends none
        // a sled is not waiting for).
        json["dropped_broadcast"] = s.stats.data_dropped_broadcast.into();
        all_ok &= ok;
        if args.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
        if let (Some(dir), Some(bytes)) = (&args.out, s.image()) {
            let path = dir.join(format!("{}.raw", s.mac().to_string().replace(':', "")));
            bootimage::write_file(&path, bytes).map_err(|e| e.to_string())?;
        }
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sledsim: {e}");
            ExitCode::FAILURE
        }
    }
}
