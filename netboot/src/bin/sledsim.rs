//! `sledsim`: emulates sleds booting over the network, exactly as the
//! deployed client behaves, for tests, benchmarks and labs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use netboot::run::{run_sleds, SledFaults};
use netboot::sled::{HashMemo, Outcome, Sled};
use netboot::wire::Mac;

/// Emulate COUNT sleds (distinct MACs) booting from a boot server on LINK:
/// HELLO every 4 s, the client's OFFER rules (including the expected
/// SHA-256), 128-slot batches, 1 s sparse re-requests, FINISHED once. Each
/// sled checks the SHA-256 of what it received. Exits 0 when every sled
/// booted. Needs CAP_NET_RAW (root) on Linux, net_rawaccess (root) on
/// illumos; puts LINK in promiscuous mode (on illumos: DLPI_RAW and
/// DL_PROMISC_PHYS, so that each sled sends with its own MAC).
#[derive(Parser)]
#[command(
    name = "sledsim",
    version,
    group(clap::ArgGroup::new("expected").required(true).args(["image", "sha256"])),
    after_help = "Examples:
  sledsim --link eth1 --image target/bootimage/demo.img
      one sled boots from whatever server is on eth1's segment
  sledsim --link eth1 --sha256 HEX --count 8 --loss 0.02 --json
      eight sleds, 2 % of frames lost each way, one JSON object per sled"
)]
struct Args {
    /// Network interface to boot over
    #[arg(long, value_name = "LINK")]
    link: String,
    /// The boot image the sleds expect (its header's SHA-256 is the
    /// checksum "built into their boot archive")
    #[arg(long, value_name = "IMAGE")]
    image: Option<PathBuf>,
    /// The expected SHA-256, as 64 hex digits, instead of --image
    #[arg(long, value_name = "HEX", value_parser = sha256_hex)]
    sha256: Option<[u8; 32]>,
    /// How many sleds
    #[arg(long, default_value_t = 1)]
    count: u16,
    /// MAC of the first sled; the others count up from it
    #[arg(long, value_name = "MAC", default_value = "02:5e:00:00:00:01")]
    mac: Mac,
    /// Probability that a frame is lost, each way (0 to 1)
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    loss: f64,
    /// Probability that a frame sent is duplicated (0 to 1)
    #[arg(long = "dup", default_value_t = 0.0, value_parser = probability)]
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
    #[arg(long = "console-ms", value_name = "MS", default_value_t = 0.0,
          value_parser = console_ms)]
    console_ms: f64,
}

/// Milliseconds a console line costs, 0 to 10 s (a command-line error
/// otherwise).
fn console_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(ms) if (0.0..=10_000.0).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "{s:?} is not a number of milliseconds from 0 to 10000"
        )),
    }
}

/// A probability below 1 (a command-line error otherwise).
fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability from 0 to 1")),
    }
}

/// 64 hex digits (a command-line error otherwise).
fn sha256_hex(hex: &str) -> Result<[u8; 32], String> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hex:?} is not 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn expected(args: &Args) -> Result<[u8; 32], String> {
    match (&args.image, args.sha256) {
        (Some(path), _) => {
            let img = bootimage::Image::open(path).map_err(|e| e.to_string())?;
            Ok(img.header().sha256)
        }
        (None, Some(sum)) => Ok(sum),
        // clap requires one of the two.
        (None, None) => Err("give --image IMAGE or --sha256 HEX".into()),
    }
}

fn run(args: Args) -> Result<bool, String> {
    if let Some(dir) = &args.out {
        bootimage::atomic::check_output_dir(dir).map_err(|e| format!("--out {e}"))?;
    }
    let sum = expected(&args)?;
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
    // Sleds fed the same broadcast frames hash each batch once between them.
    let memo = HashMemo::shared();
    let mut sleds: Vec<Sled> = (0..args.count as u64)
        .map(|i| {
            let b = (base + i).to_be_bytes();
            let s = Sled::new(Mac([b[2], b[3], b[4], b[5], b[6], b[7]]), sum)
                .with_console(console)
                .with_hash_memo(memo.clone());
            if args.out.is_some() {
                s.keep_image()
            } else {
                s
            }
        })
        .collect();
    let mut link = netboot::link::open(&args.link, true).map_err(|e| match e {
        // Name this very program in the command that grants the capability.
        netboot::link::LinkError::NotPermitted(name) => format!(
            "{name}: not permitted: raw Ethernet needs CAP_NET_RAW; run as root, or grant it \
             once with `sudo setcap cap_net_raw+ep {}`",
            std::env::current_exe().map_or_else(|_| "sledsim".into(), |p| p.display().to_string())
        ),
        e => e.to_string(),
    })?;
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
    let args = Args::parse();
    // Ctrl-C, SIGTERM, SIGHUP while --out images are written: leave no
    // temporary file.
    if let Err(e) = bootimage::atomic::clean_up_on_signals() {
        eprintln!("sledsim: {e}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sledsim: {e}");
            ExitCode::FAILURE
        }
    }
}
