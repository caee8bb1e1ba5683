//! `cargo xtask serve --nic NIC` (Linux and illumos) and `cargo xtask
//! demo` (Linux: network namespaces).

use std::path::{Path, PathBuf};
use std::process::Command;
#[cfg(target_os = "linux")]
use std::process::{Child, ExitStatus, Stdio};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(target_os = "linux")]
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
use netboot::lab::Lab;
use netboot::link::sys::{self, RawAccess};
use xshell::{cmd, Shell};

use crate::{Result, Workspace};

/// Builds every default manifest whose image is stale into
/// `TARGET/bootimage`; returns the directory.
fn build_stale_images(ws: &Workspace) -> Result<PathBuf> {
    let out = ws.target.join("bootimage");
    std::fs::create_dir_all(&out)?;
    for manifest in crate::default_manifests(&ws.root.join("config/images"))? {
        if bootimage_build::is_stale(&manifest, &out)? {
            let built = bootimage_build::build(&manifest, &out)?;
            eprintln!("xtask: built {}", built.image.display());
        }
    }
    Ok(out)
}

/// Checks, before anything is built, that `nic` exists and that this
/// process may open it raw, asking the system in its own terms (see
/// `netboot::link::sys`). When the system cannot say, the server's own
/// error will.
pub(crate) fn check_nic(nic: &str) -> Result<()> {
    let names = sys::link_names().map_err(|e| format!("listing this host's links: {e}"))?;
    if !names.iter().any(|n| n == nic) {
        return Err(format!("no such NIC: {nic} (this host has: {})", names.join(", ")).into());
    }
    if sys::raw_access() == RawAccess::Denied {
        return Err(format!("serving on {nic} needs {}", raw_access_advice(nic)).into());
    }
    Ok(())
}

/// Checks, before anything is built, that `--image` is a boot image (its
/// header reads; the server verifies the rest) and that `--config` exists.
fn check_serve_inputs(image: Option<&Path>, config: Option<&Path>) -> Result<()> {
    if let Some(image) = image {
        let img = bootimage::Image::open(image).map_err(|e| format!("--image {e}"))?;
        if let Some(problem) = img.header().netboot_problem() {
            return Err(format!("--image {}: {problem}", image.display()).into());
        }
    }
    if let Some(config) = config {
        std::fs::metadata(config).map_err(|e| format!("--config {}: {e}", config.display()))?;
    }
    Ok(())
}

/// What serving needs that this process lacks, and how to get it, on this
/// system.
fn raw_access_advice(nic: &str) -> String {
    if cfg!(target_os = "illumos") {
        format!(
            "the net_rawaccess privilege (DLPI raw access): run `pfexec cargo xtask serve --nic {nic}` \
             as a user whose profile grants it, or as root, or grant it to a user once \
             (`usermod -K defaultpriv=basic,net_rawaccess USER`, then log in again)"
        )
    } else {
        format!(
            "CAP_NET_RAW: run `sudo cargo xtask serve --nic {nic}`, or grant \
             the built server the capability once (`sudo setcap cap_net_raw+ep target/release/bootserver`) \
             and run it directly"
        )
    }
}

pub fn serve(
    nic: String,
    image: Option<PathBuf>,
    config: Option<PathBuf>,
    extra: Vec<String>,
) -> Result<()> {
    check_nic(&nic)?;
    check_serve_inputs(image.as_deref(), config.as_deref())?;
    let ws = crate::workspace()?;
    build_stale_images(&ws)?;
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    cmd!(
        sh,
        "cargo build --release --quiet -p netboot --bin bootserver"
    )
    .run()?;
    let bootserver = ws.target.join("release/bootserver");
    let mut c = Command::new(&bootserver);
    match (image, config) {
        (Some(image), _) => c.arg(&nic).arg(image).arg("any"),
        (None, config) => c
            .arg("--config")
            .arg(config.unwrap_or_else(|| ws.root.join("config/bootserver.toml")))
            .arg("--link")
            .arg(&nic),
    };
    c.args(extra);
    eprintln!("xtask: {c:?}");
    let status = c.status()?;
    if !status.success() {
        return Err(format!("bootserver exited with {status}").into());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
/// The log of a running bootserver, line by line.
pub(crate) type ServerLog = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

#[cfg(target_os = "linux")]
/// Starts `bin/bootserver ARGS` in `lab`'s `srv` namespace (behind `wrap`,
/// such as `taskset -c 0`) and waits for its first line, which says it is
/// up. Returns the child, that line, and the rest of its log.
pub(crate) fn start_bootserver(
    lab: &Lab,
    bin: &Path,
    wrap: &[&str],
    args: &[&std::ffi::OsStr],
) -> Result<(Child, String, ServerLog)> {
    use std::io::BufRead;
    let mut server = Command::new("ip")
        .args(["netns", "exec", &lab.ns("srv")])
        .args(wrap)
        .arg(bin.join("bootserver"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(server.stdout.take().expect("piped")).lines();
    match lines.next() {
        Some(Ok(first)) if first.starts_with("serving on") => Ok((server, first, lines)),
        other => {
            let _ = server.kill();
            let _ = server.wait();
            Err(format!("bootserver did not start: {other:?}").into())
        }
    }
}

#[cfg(target_os = "linux")]
/// `bin/sledsim` in `lab`'s namespace `host` (the `h`th sled host):
/// `count` sleds, MACs counting up from 02:5e:00:00:h:01, expecting `image`.
/// Callers add their own flags.
pub(crate) fn sledsim(
    lab: &Lab,
    bin: &Path,
    h: usize,
    host: &str,
    count: usize,
    image: &Path,
) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.ns(host)])
        .arg(bin.join("sledsim"))
        .args(["--link", "eth0", "--count", &count.to_string()])
        .args(["--mac", &format!("02:5e:00:00:{h:02x}:01")])
        .arg("--image")
        .arg(image);
    c
}

#[cfg(target_os = "linux")]
/// Kills what is still running and waits for it.
fn reap(children: &mut Vec<(String, Child)>) {
    for (_, c) in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    children.clear();
}

#[cfg(target_os = "linux")]
/// Waits for every child (or Ctrl-C); returns their names and statuses.
fn wait_all(
    children: &mut Vec<(String, Child)>,
    stop: &AtomicBool,
    timeout: Duration,
) -> Result<Vec<(String, ExitStatus)>> {
    let start = std::time::Instant::now();
    let mut done = Vec::new();
    while !children.is_empty() {
        if stop.load(Ordering::Relaxed) {
            reap(children);
            return Err("interrupted".into());
        }
        if start.elapsed() > timeout {
            reap(children);
            return Err(format!("timed out after {} s", timeout.as_secs()).into());
        }
        let mut i = 0;
        while i < children.len() {
            if let Some(status) = children[i].1.try_wait()? {
                let (name, _) = children.remove(i);
                done.push((name, status));
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(done)
}

#[cfg(target_os = "linux")]
/// The demo: a private bridge in network namespaces, the server and
/// `hosts` hosts of `per_host` emulated sleds, all booting the default
/// image. Everything created is removed, even on failure or Ctrl-C.
pub fn demo(
    hosts: usize,
    per_host: usize,
    loss: f64,
    bin_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    if sys::raw_access() == RawAccess::Denied {
        return Err("the demo makes network namespaces and raw sockets: run it as root (sudo cargo xtask demo)".into());
    }
    let ws = crate::workspace()?;
    let out = build_stale_images(&ws)?;
    let image = out.join("demo.img");
    let bin = match bin_dir {
        Some(d) => d,
        None => {
            let sh = Shell::new()?;
            sh.change_dir(&ws.root);
            cmd!(sh, "cargo build --release --quiet -p netboot --bins").run()?;
            ws.target.join("release")
        }
    };
    let names: Vec<String> = (0..hosts).map(|i| format!("s{i}")).collect();
    let mut all = vec!["srv"];
    all.extend(names.iter().map(String::as_str));
    let prefix = format!("xd{}", std::process::id() % 100_000);
    let lab = Lab::create(&prefix, &all)?;
    println!(
        "demo: bridge in namespace {prefix}-sw; server in {prefix}-srv; {hosts} sled host(s) with {per_host} sled(s) each"
    );
    let mut children: Vec<(String, Child)> = Vec::new();
    let result = (|| -> Result<()> {
        let (server, first, lines) = start_bootserver(
            &lab,
            &bin,
            &[],
            &[
                "-t".as_ref(),
                "120".as_ref(),
                "eth0".as_ref(),
                image.as_ref(),
                "any".as_ref(),
            ],
        )?;
        children.push(("bootserver".into(), server));
        println!("server: {first}");
        let log = std::thread::spawn(move || {
            for l in lines.map_while(|l| l.ok()) {
                println!("server: {l}");
            }
        });
        let mut sleds = Vec::new();
        for (h, name) in names.iter().enumerate() {
            sleds.push((
                format!("sledsim on {name}"),
                sledsim(&lab, &bin, h, name, per_host, &image)
                    .args([
                        "--timeout",
                        "60",
                        "--loss",
                        &loss.to_string(),
                        "--seed",
                        &h.to_string(),
                    ])
                    .spawn()?,
            ));
        }
        let results = wait_all(&mut sleds, &stop, Duration::from_secs(90));
        reap(&mut sleds);
        reap(&mut children);
        let _ = log.join();
        let results = results?;
        let failed: Vec<&String> = results
            .iter()
            .filter(|(_, s)| !s.success())
            .map(|(n, _)| n)
            .collect();
        if !failed.is_empty() {
            return Err(format!("not every sled booted: {failed:?}").into());
        }
        println!(
            "demo: all {} sleds booted and verified the image",
            hosts * per_host
        );
        Ok(())
    })();
    reap(&mut children);
    drop(lab);
    println!("demo: removed the namespaces and links it made");
    result
}
