//! `cargo xtask`: the project's automation, as a plain Rust program.
//!
//! - `cargo xtask image [MANIFEST...]`: build boot images from manifests
//!   (default: every `config/images/*.toml`) into `target/bootimage/`.
//! - `cargo xtask inspect IMAGE`: print and verify an image, like `lookimage`.
//! - `cargo xtask ci`: formatting, clippy with `-D warnings`, the illumos
//!   check, and every test.
//! - `cargo xtask check-illumos`: `cargo check` of the workspace for
//!   illumos, in `TARGET/illumos`.
//! - `cargo xtask bench image [RAW]`, `cargo xtask bench netboot`: timings
//!   of the release tools; `cargo xtask bench rack`: a rack booting through
//!   a network, simulated and in a shaped lab, against the network's floor.
//! - `cargo xtask serve --nic NIC`, `cargo xtask demo`: the boot server.
//!
//! `image`, `inspect`, `serve`, `check-illumos` and `bench image` work on
//! Linux and illumos; `demo`, `bench netboot` and `fuzz` need Linux
//! (network namespaces, AF_PACKET, libFuzzer) and say so elsewhere.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bench;
mod fuzz;
mod illumos;
#[cfg(target_os = "linux")]
mod netbench;
mod rack;
mod rusage;
mod serve;

use clap::{Parser, Subcommand};
use xshell::{cmd, Shell};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = "Examples:
  cargo xtask image
      build and verify every config/images/*.toml into target/bootimage/
  cargo xtask inspect --json target/bootimage/demo.tar.gz
      print and verify an image archive as one JSON object
  sudo cargo xtask serve --nic eth1 --image target/bootimage/demo.img
      serve one image to every sled on eth1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build boot images from manifests into TARGET/bootimage/, verify them
    /// and print each one's summary
    Image {
        /// Manifests to build [default: every config/images/*.toml]
        manifests: Vec<PathBuf>,
    },
    /// Print and verify an image, image archive or boot archive, like
    /// lookimage
    Inspect {
        #[command(flatten)]
        args: bootimage::cli::InspectArgs,
    },
    /// What CI runs: cargo fmt --check, clippy -D warnings, the illumos
    /// check, all tests (installing the tools the tests use, with apt-get,
    /// when missing)
    Ci,
    /// cargo check of every crate and target for x86_64-unknown-illumos,
    /// in TARGET/illumos (adds the target with rustup when missing, else
    /// uses Debian's rustc-web; fails, never skips, when neither can be had)
    CheckIllumos,
    /// Run the libFuzzer targets (header, verify, frame, server, manifest)
    /// for a bounded time each; installs cargo-fuzz if missing (Linux)
    Fuzz {
        /// One target [default: all]
        target: Option<String>,
        /// Seconds per target
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Build what is stale, then run the release bootserver on NIC (needs
    /// root or CAP_NET_RAW on Linux, root or net_rawaccess on illumos)
    Serve {
        /// Network interface to serve on
        #[arg(long)]
        nic: String,
        /// Serve this image to every sled [default: --config]
        #[arg(long, conflicts_with = "config")]
        image: Option<PathBuf>,
        /// Server configuration [default: config/bootserver.toml]
        #[arg(long)]
        config: Option<PathBuf>,
        /// More bootserver flags, after `--` (e.g. -- --json -s)
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Boot emulated sleds from the default image over a private bridge in
    /// network namespaces, then remove everything (root, Linux)
    Demo {
        /// Sled hosts (network namespaces)
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// Emulated sleds per host
        #[arg(long, default_value_t = 2)]
        sleds: usize,
        /// Probability that the sleds lose a frame, each way (watch the
        /// re-requests)
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Use the bootserver and sledsim in DIR instead of building
        /// release ones
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Benchmarks of release builds on realistic data (programs, not tests)
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Time mkimage (plain, -z at 1, 2 and all threads) and lookimage
    /// (verify plain and compressed) and print a table of medians
    Image {
        /// Raw image [default: TARGET/bench/bench.img, made by
        /// ../shared/bench/make-bench-image.sh if missing]
        raw: Option<PathBuf>,
        /// Runs per job [default: 5, 3 for -z]
        #[arg(long)]
        runs: Option<usize>,
    },
    /// Boot sleds over veth with the release bootserver and sledsim (root,
    /// Linux): wall time, MB/s per sled and aggregate, server CPU per GiB
    Netboot {
        /// Boot image to serve [default: a plain image of the 1 GiB bench
        /// image]
        #[arg(long)]
        image: Option<PathBuf>,
        /// Sled counts to run, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        sleds: Vec<usize>,
        /// bootserver send methods to compare (its --tx), comma-separated
        #[arg(long, value_delimiter = ',', default_value = "native,xdp")]
        tx: Vec<String>,
        /// How the lab switch takes the server's frames, comma-separated:
        /// rps (the sender signals the switch's CPU per frame) or poll (the
        /// server's port polls every 10 µs, like a NIC with interrupt
        /// moderation)
        #[arg(long, value_delimiter = ',', default_value = "rps,poll")]
        switch: Vec<String>,
        /// Runs of each configuration; the table shows medians
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// A rack booting at once: wall time against the network's floor
    /// (the bottleneck link's time for the bytes it must carry), extra
    /// DATA, console lines, buffer drops and RETRANSMIT events; a table
    /// from the simulator (a shared 1 GbE segment, and a switch with the
    /// server at 10 GbE and sleds on 1 GbE ports with 96 KiB buffers), then
    /// one from the lab (root, Linux: veth through a tc tbf 1gbit segment)
    Rack {
        /// Image size per sled (64MiB, 1GiB)
        #[arg(long, default_value = "64MiB", value_parser = parse_size)]
        size: u64,
        /// Sled counts, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        sleds: Vec<usize>,
        /// Probabilities of losing a frame each way, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "0,0.001")]
        loss: Vec<f64>,
        /// Milliseconds a sled's loop is blocked per dropped-DATA console
        /// line (about 4 at 115200 baud)
        #[arg(long = "console-ms", default_value_t = 0.2)]
        console_ms: f64,
        /// Only the simulator's table
        #[arg(long)]
        no_lab: bool,
        /// Runs of each lab configuration; the table shows medians
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Also boot each rack as one broadcast cohort (bootserver
        /// --broadcast): cohort rows beside the unicast rows, and each
        /// cohort's time against one sled's alone
        #[arg(long)]
        broadcast: bool,
    },
}

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    bootimage::parse_size(text).map_err(|e| e.to_string())
}

/// The workspace root and target directory, from `cargo metadata`.
struct Workspace {
    root: PathBuf,
    target: PathBuf,
}

fn workspace() -> Result<Workspace> {
    let md = cargo_metadata::MetadataCommand::new().no_deps().exec()?;
    Ok(Workspace {
        root: md.workspace_root.into_std_path_buf(),
        target: md.target_directory.into_std_path_buf(),
    })
}

fn image(manifests: Vec<PathBuf>) -> Result<()> {
    // Ctrl-C, SIGTERM, SIGHUP: remove the staging directory, then stop.
    bootimage::atomic::clean_up_on_signals()?;
    let ws = workspace()?;
    let manifests = if manifests.is_empty() {
        default_manifests(&ws.root.join("config/images"))?
    } else {
        manifests
    };
    let out = ws.target.join("bootimage");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for manifest in &manifests {
        let built = bootimage_build::build(manifest, &out)?;
        let bar = bootimage::progress::bar(built.header.data_size, "verify");
        bootimage::Image::open(&built.image)?.verify(&|n| bar.set_position(n))?;
        bar.finish_and_clear();
        println!(
            "{} -> {} (verified)",
            manifest.display(),
            built.image.display()
        );
        for line in bootimage::report::header_lines(&built.header).lines() {
            println!("    {line}");
        }
        if let Some(line) = bootimage::report::ratio_line(&built.header) {
            print!("    {line}");
        }
        for (what, path) in [
            ("checksum file", &built.checksum_file),
            ("boot archive", &built.boot_archive),
            ("image archive", &built.image_archive),
        ] {
            if let Some(p) = path {
                println!("    {what}: {}", p.display());
            }
        }
    }
    Ok(())
}

/// Every `*.toml` in `dir`, sorted.
pub(crate) fn default_manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "toml") {
            v.push(p);
        }
    }
    v.sort();
    if v.is_empty() {
        return Err(format!("{}: no manifests (*.toml) found", dir.display()).into());
    }
    Ok(v)
}

/// Whether `program` is on the PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The tools the tests run, and the Debian packages that have them. What
/// is missing is installed (as root, with apt-get), so that `cargo xtask ci`
/// works on a fresh machine.
fn ensure_test_tools(sh: &Shell) -> Result<()> {
    const TOOLS: [(&str, &str); 9] = [
        ("ip", "iproute2"),        // network namespaces for real-socket tests
        ("setpriv", "util-linux"), // dropping privileges in error tests
        ("script", "bsdutils"),    // a pseudo-terminal for progress tests
        ("cc", "gcc"),             // the DLPI test shim
        ("cpio", "cpio"),          // reading our boot archives
        ("tar", "tar"),            // reading our image archives
        ("gzip", "gzip"),
        ("python3", "python3"), // tarfile and json read our archives
        ("strace", "strace"),   // the order of fsync and rename
    ];
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|&(_, p)| p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    eprintln!("xtask: installing what the tests need: {list}");
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(sh, "apt-get install -y -qq {missing...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .map_err(|e| format!("installing {list}: {e} (as root: apt-get install {list})"))?;
    Ok(())
}

fn ci() -> Result<()> {
    let ws = workspace()?;
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    ensure_test_tools(&sh)?;
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run()?;
    illumos::check(&ws)?;
    cmd!(sh, "cargo test --workspace").run()?;
    Ok(())
}

/// The error of a command that needs Linux, run elsewhere.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn needs_linux(command: &str, why: &str) -> Box<dyn std::error::Error> {
    format!(
        "`cargo xtask {command}` needs Linux ({why}); this is {}",
        std::env::consts::OS
    )
    .into()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image { manifests } => image(manifests),
        Command::Inspect { args } => args.run().map_err(Into::into),
        Command::Ci => ci(),
        Command::CheckIllumos => workspace().and_then(|ws| illumos::check(&ws)),
        Command::Fuzz { target, seconds } => {
            if cfg!(target_os = "linux") {
                fuzz::fuzz(target, seconds)
            } else {
                Err(needs_linux("fuzz", "cargo-fuzz and libFuzzer"))
            }
        }
        Command::Serve {
            nic,
            image,
            config,
            extra,
        } => serve::serve(nic, image, config, extra),
        Command::Demo {
            hosts,
            sleds,
            loss,
            bin_dir,
        } => {
            #[cfg(target_os = "linux")]
            {
                // Ctrl-C: stop the sleds and server, remove the namespaces.
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = stop.clone();
                let _ = ctrlc::set_handler(move || {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed)
                });
                serve::demo(hosts, sleds, loss, bin_dir, stop)
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = (hosts, sleds, loss, bin_dir);
                Err(needs_linux("demo", "network namespaces and veth pairs"))
            }
        }
        Command::Bench {
            what: Bench::Image { raw, runs },
        } => bench::image(raw, runs),
        Command::Bench {
            what:
                Bench::Netboot {
                    image,
                    sleds,
                    tx,
                    switch,
                    runs,
                },
        } => {
            #[cfg(target_os = "linux")]
            {
                netbench::netboot(image, sleds, tx, switch, runs)
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = (image, sleds, tx, switch, runs);
                Err(needs_linux(
                    "bench netboot",
                    "network namespaces, veth pairs and AF_XDP",
                ))
            }
        }
        Command::Bench {
            what:
                Bench::Rack {
                    size,
                    sleds,
                    loss,
                    console_ms,
                    no_lab,
                    runs,
                    broadcast,
                },
        } => {
            if !(0.0..=10_000.0).contains(&console_ms)
                || loss.iter().any(|l| !(0.0..1.0).contains(l))
            {
                Err("--console-ms: 0 to 10000; --loss: each 0 to below 1".into())
            } else {
                rack::rack(rack::Options {
                    size,
                    sleds,
                    losses: loss,
                    console: std::time::Duration::from_secs_f64(console_ms / 1000.0),
                    lab: !no_lab,
                    runs,
                    broadcast,
                })
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
