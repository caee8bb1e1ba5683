//! `bootserver`: serves boot images to every sled on an Ethernet segment.
//! Drop-in for the previous command line, plus a configuration mode.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use netboot::config::{parse_rate_setting, Config};
use netboot::event::ServingImage;
use netboot::image::Catalog;
use netboot::pace::Rate;
use netboot::run::{serve, Observer, ServeEnd, ServeOptions};
use netboot::server::{Event, Limits, Server};
use netboot::wire::Mac;

/// Serve Oxide phase-2 boot images over Ethernet (ethertype 0x1DE0) to every
/// sled on the segment at once, plain or compressed images alike.
///
/// Drop-in form: bootserver [-s] [-t SECONDS] LINK IMAGE MAC|any
/// serves IMAGE to the sled with that MAC, or to every sled ("any").
/// Configuration form: bootserver --config FILE [--link LINK] picks each
/// sled's image by MAC (see config/bootserver.toml).
///
/// Opens LINK first (it must exist, and raw Ethernet needs CAP_NET_RAW on
/// Linux, net_rawaccess on illumos: root has both), then verifies every
/// image (a sled booting over the network can verify only an image of
/// whole 128 KiB batches: others are refused), then says what it serves: a
/// first line "serving on LINK (...)", and a line per image (name, size,
/// SHA-256, which MACs get it). Then logs one line per HELLO, OFFER,
/// FINISHED, retransmission burst, RESET and ignored frame on standard
/// output (--json: one JSON object per line); on a terminal, a progress line
/// per sled on standard error.
#[derive(Parser)]
#[command(
    name = "bootserver",
    version,
    override_usage = "bootserver [OPTIONS] <LINK> <IMAGE> <MAC|any>\n       \
                      bootserver [OPTIONS] --config <FILE> [--link <LINK>]",
    after_help = "Examples:
  bootserver eth0 target/bootimage/demo.img any
      serve demo.img to every sled on eth0
  bootserver -s -t 60 eth0 helios.img 02:08:20:aa:bb:cc
      serve one sled, exit 0 when it has booted, 1 if not within 60 s
  bootserver --config config/bootserver.toml --link eth0 --json
      images per sled from a configuration; one JSON object per event"
)]
struct Args {
    /// Exit 0 once one sled has sent FINISHED
    #[arg(short = 's', long = "single")]
    single: bool,
    /// Exit non-zero after SECONDS if no sled has finished by then
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Configuration file (instead of LINK IMAGE MAC)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "mac"])]
    config: Option<PathBuf>,
    /// Link to serve on (overrides the configuration's `link`)
    #[arg(long = "link", value_name = "LINK")]
    link_flag: Option<String>,
    /// One JSON object per event on standard output
    #[arg(long)]
    json: bool,
    /// How to send frames: auto (AF_XDP where the system allows, else
    /// AF_PACKET), xdp, or native (AF_PACKET on Linux, DLPI on illumos)
    #[arg(long, value_name = "METHOD", default_value = "auto")]
    tx: netboot::link::Tx,
    /// The server link's rate: never send faster, all sleds together
    /// (1gbit, 10gbit, 100mbit; off: no limit) [default: the configuration's
    /// `rate`, else the interface's speed where it reports one]
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    rate: Option<RateSetting>,
    /// One sled's rate: never send one sled faster (its port's speed; off:
    /// no limit) [default: the configuration's `sled-rate`, else 1gbit]
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    sled_rate: Option<RateSetting>,
    /// Broadcast cohorts: sleds that say HELLO together get each frame in
    /// one broadcast. ONLY on a segment where this is the only boot server
    /// (a sled booting from another server would take our frames and fail
    /// its integrity check) [default: the configuration's `broadcast`]
    #[arg(long)]
    broadcast: bool,
    /// Network interface (drop-in form)
    #[arg(value_name = "LINK", required_unless_present = "config")]
    link: Option<String>,
    /// Boot image to serve (drop-in form)
    #[arg(value_name = "IMAGE", required_unless_present = "config")]
    image: Option<PathBuf>,
    /// The sled's MAC, or "any" for every sled (drop-in form)
    #[arg(value_name = "MAC|any", required_unless_present = "config")]
    mac: Option<String>,
}

/// A rate flag: a rate, or `off`.
#[derive(Clone, Copy, Debug)]
struct RateSetting(Option<Rate>);

fn parse_rate(text: &str) -> Result<RateSetting, String> {
    parse_rate_setting(text)
        .map(RateSetting)
        .map_err(|e| e.to_string())
}

/// The link's speed as the system reports it (Linux:
/// /sys/class/net/LINK/speed, in Mb/s), if it does.
fn link_speed(link: &str) -> Option<Rate> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{link}/speed")).ok()?;
    let mbit: u64 = text.trim().parse().ok()?;
    Rate::from_bits(mbit.checked_mul(1_000_000)?)
}

/// Lines a second for each noisy kind of event.
const NOISY: u64 = 50;

struct Log {
    json: bool,
    bars: Option<(MultiProgress, HashMap<Mac, ProgressBar>)>,
    /// Noisy events logged in the current second, by kind, to survive a
    /// flood: (second, kind, count).
    noisy: HashMap<&'static str, (u64, u64)>,
    finished_any: bool,
}

impl Log {
    fn line(&mut self, text: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(text);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }
}

impl Log {
    /// One event, as a log line or a JSON object.
    fn show(&mut self, e: &Event, now: Duration) {
        let text = if self.json {
            serde_json::to_string(&e.at(now)).unwrap_or_default()
        } else {
            format!("[{:>9.3}s] {e}", now.as_secs_f64())
        };
        self.line(&text);
    }
}

impl Observer for Log {
    fn event(&mut self, e: &Event, _server: &Server, now: Duration) {
        if let Event::Finished { .. } = e {
            self.finished_any = true;
        }
        // A flood of HELLOs or bad frames must not flood the log: at most
        // NOISY lines a second of each such kind, then one line saying how
        // many were left out. FINISHED, RESET and the like always show.
        let kind = e.kind();
        if matches!(
            kind,
            "hello" | "offer" | "refused" | "ignored" | "resumed" | "expired" | "waiting"
        ) {
            let second = now.as_secs();
            let (at, count) = self.noisy.entry(kind).or_insert((second, 0));
            if *at != second {
                if *count > NOISY {
                    let left = *count - NOISY;
                    let e = Event::Suppressed {
                        kind: kind.into(),
                        count: left,
                    };
                    self.show(&e, now);
                }
                self.noisy.insert(kind, (second, 1));
            } else {
                *count += 1;
                if *count > NOISY {
                    return;
                }
            }
        }
        if let Some((_, bars)) = &mut self.bars {
            match e {
                Event::Finished { mac, .. }
                | Event::Expired { mac, .. }
                | Event::Reset { mac, .. } => {
                    if let Some(b) = bars.remove(mac) {
                        b.finish_and_clear();
                    }
                }
                _ => {}
            }
        }
        self.show(e, now);
    }

    fn tick(&mut self, server: &Server, now: Duration) {
        let Some((mp, bars)) = &mut self.bars else {
            return;
        };
        for (mac, s) in server.sessions() {
            let bar = bars.entry(*mac).or_insert_with(|| {
                let b = mp.add(ProgressBar::new(s.image.size()));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:25}] {percent:>3}% {bytes}/{total_bytes} {msg}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                match s.cohort {
                    Some(c) => b.set_prefix(format!("{mac} {} cohort {c}", s.image.name)),
                    None => b.set_prefix(format!("{mac} {}", s.image.name)),
                }
                b
            });
            bar.set_position(s.high);
            let secs = now.saturating_sub(s.started).as_secs_f64().max(1e-3);
            bar.set_message(format!("{:.1} MB/s", s.high as f64 / 1e6 / secs));
        }
    }
}

/// What to serve: the images to verify once the link is open.
enum Images {
    Config(PathBuf),
    File { image: PathBuf, mac: Option<Mac> },
}

/// The configuration's `link`, read before its images are verified (a
/// file that does not parse gives `None`; loading it reports why).
fn configured_link(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    table.get("link")?.as_str().map(str::to_owned)
}

/// The network interfaces this host has, for a "no such link" message.
fn links_here() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A link error, with the links there are or the command that grants the
/// capability to this very program.
fn link_error(e: netboot::link::LinkError) -> String {
    use netboot::link::LinkError;
    match e {
        LinkError::NoSuchLink(name) => {
            let here = links_here();
            if here.is_empty() {
                format!("no such link: {name}")
            } else {
                format!("no such link: {name} (links here: {})", here.join(", "))
            }
        }
        LinkError::NotPermitted(name) => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "bootserver".into());
            format!(
                "{name}: not permitted: raw Ethernet needs CAP_NET_RAW; run as root, or grant \
                 it once with `sudo setcap cap_net_raw+ep {exe}`"
            )
        }
        e => e.to_string(),
    }
}

/// What the server serves, for its first lines: each image, its size and
/// checksum, and which sleds get it.
fn serving_images(catalog: &Catalog) -> Vec<ServingImage> {
    catalog
        .entries()
        .iter()
        .map(|e| {
            let (size, sha256) = e.image.as_ref().map_or((0, String::new()), |i| {
                (i.header.image_size, i.header.sha256_hex())
            });
            ServingImage {
                name: e.name.clone(),
                path: e.image.as_ref().map(|i| i.path.display().to_string()),
                size,
                sha256,
                macs: e.macs.clone(),
                any: e.default,
            }
        })
        .collect()
}

fn run(args: Args) -> Result<ExitCode, String> {
    // What to serve, and on which link, from the command line alone.
    let (link_name, images) = match (&args.config, &args.link, &args.image, &args.mac) {
        (Some(path), positional, None, None) => {
            let link = args
                .link_flag
                .clone()
                .or(positional.clone())
                .or_else(|| configured_link(path));
            let link = match link {
                Some(l) => l,
                None => {
                    // Say what is wrong with the file, if anything, first.
                    Config::load(path).map_err(|e| e.to_string())?;
                    return Err(format!(
                        "{}: no link: give --link LINK or set `link`",
                        path.display()
                    ));
                }
            };
            (link, Images::Config(path.clone()))
        }
        (None, Some(link), Some(image), Some(mac)) => {
            let mac = if mac == "any" {
                None
            } else {
                Some(
                    mac.parse()
                        .map_err(|e: netboot::wire::MacError| e.to_string())?,
                )
            };
            (
                args.link_flag.clone().unwrap_or_else(|| link.clone()),
                Images::File {
                    image: image.clone(),
                    mac,
                },
            )
        }
        _ => {
            // clap enforces the two forms; this is a usage error all the same.
            use clap::CommandFactory;
            Args::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "give LINK IMAGE MAC|any, or --config FILE",
                )
                .exit()
        }
    };
    // The link (and the privilege to use it) first: verifying a large image
    // takes a while, and is wasted on a link that cannot be had.
    let mut link = netboot::link::open_server(&link_name, args.tx).map_err(link_error)?;
    let (catalog, mut limits, rate_given) = match images {
        Images::Config(path) => {
            let cfg = Config::load(&path).map_err(|e| e.to_string())?;
            (cfg.catalog, cfg.limits, cfg.rate_given)
        }
        Images::File { image, mac } => {
            let mut c = Catalog::new();
            let name = image.file_name().map_or_else(
                || image.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let i = c.add_file(&name, &image).map_err(|e| e.to_string())?;
            match mac {
                None => c.set_default(Some(i)),
                Some(mac) => c.assign(mac, i),
            }
            (c, Limits::default(), false)
        }
    };
    if args.broadcast {
        limits.broadcast = true;
    }
    if let Some(RateSetting(r)) = args.sled_rate {
        limits.sled_rate = r;
    }
    limits.rate = match args.rate {
        Some(RateSetting(r)) => r,
        None if rate_given => limits.rate,
        None => link_speed(&link_name),
    };
    limits.check().map_err(|e| e.to_string())?;
    let images = serving_images(&catalog);
    let mut server = Server::new(link.mac(), catalog, limits);
    let mut log = Log {
        json: args.json,
        bars: std::io::stderr().is_terminal().then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                HashMap::new(),
            )
        }),
        noisy: HashMap::new(),
        finished_any: false,
    };
    // The first line says the server is up (lab automation waits for it)
    // and what it serves; then a line per image.
    let up = Event::Serving {
        link: link_name.clone(),
        mac: link.mac(),
        sends_with: link.sends_with().to_string(),
        images,
    };
    let text = if args.json {
        serde_json::to_string(&up.at(Duration::ZERO)).unwrap_or_default()
    } else {
        up.to_string()
    };
    log.line(&text);
    let opts = ServeOptions {
        finished: args.single.then_some(1),
        timeout: args.timeout.map(Duration::from_secs),
        stop: None,
    };
    let end =
        serve(&mut *link, &mut server, &opts, &mut log).map_err(|e| format!("{link_name}: {e}"))?;
    if end != ServeEnd::TimedOut {
        return Ok(ExitCode::SUCCESS);
    }
    if !log.finished_any {
        return Err(format!(
            "timed out after {} s with no sled finished",
            args.timeout.unwrap_or(0)
        ));
    }
    // A sled finished before the time was up (without -s): keep serving.
    let opts = ServeOptions {
        timeout: None,
        ..opts
    };
    serve(&mut *link, &mut server, &opts, &mut log).map_err(|e| format!("{link_name}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bootserver: {e}");
            ExitCode::FAILURE
        }
    }
}
