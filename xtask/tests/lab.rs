//! `cargo xtask demo` and `cargo xtask serve`, run as a developer runs
//! them (as root, which CI is). Linux: the labs are network namespaces.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The netboot binaries, built in a target directory of their own (the
/// outer `cargo test` holds the workspace's locked).
fn netboot_bins() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("nested");
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--offline", "-p", "netboot", "--bins"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(st.success());
    target.join("debug")
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(workspace());
    c
}

#[test]
fn demo_boots_every_sled_and_cleans_up() {
    let bins = netboot_bins();
    let out = xtask()
        .args(["demo", "--hosts", "2", "--sleds", "2", "--bin-dir"])
        .arg(&bins)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches(", SHA-256 ok").count(), 4, "{text}");
    assert_eq!(text.matches("FINISHED").count(), 4, "{text}");
    assert!(text.contains("demo: all 4 sleds booted"), "{text}");
    let prefix = text
        .split("bridge in namespace ")
        .nth(1)
        .and_then(|s| s.split("-sw").next())
        .unwrap()
        .to_owned();
    assert!(
        namespaces_with(&prefix).is_empty(),
        "{:?}",
        namespaces_with(&prefix)
    );
}

#[test]
fn demo_cleans_up_on_ctrl_c() {
    let bins = netboot_bins();
    // With 95 % loss the sleds take far longer than the test waits.
    let mut child = xtask()
        .args([
            "demo",
            "--hosts",
            "1",
            "--sleds",
            "1",
            "--loss",
            "0.95",
            "--bin-dir",
        ])
        .arg(&bins)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let prefix = format!("xd{}", pid % 100_000);
    // Wait until its namespaces exist, then interrupt it.
    let start = Instant::now();
    while namespaces_with(&prefix).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the demo never set up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        namespaces_with(&prefix).is_empty(),
        "{:?}",
        namespaces_with(&prefix)
    );
}

#[test]
fn serve_explains_a_missing_nic_and_missing_privileges() {
    let out = xtask()
        .args(["serve", "--nic", "no-such-nic0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.starts_with("xtask: no such NIC: no-such-nic0 (this host has: "),
        "{e}"
    );
    // The list is the system's own (/sys/class/net here).
    assert!(e.contains("lo"), "{e}");
    // As nobody (no CAP_NET_RAW) on a NIC that exists: it says what to do.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve", "--nic", "lo"])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("needs CAP_NET_RAW"), "{e}");
}

/// `serve --image PATH` checks PATH before building anything: the error is
/// xtask's own, not the server's after a build.
#[test]
fn serve_checks_the_image_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = dir.path().join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 8192]).unwrap();
    for (image, message) in [
        (
            Path::new("/nonexistent.img"),
            "xtask: --image /nonexistent.img: open: No such file or directory (os error 2)\n"
                .to_owned(),
        ),
        (
            zeros.as_path(),
            format!(
                "xtask: --image {}: bad magic 0x00000000 (expected 0x1deb0075)\n",
                zeros.display()
            ),
        ),
    ] {
        let out = xtask()
            .args(["serve", "--nic", "lo", "--image"])
            .arg(image)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr), message);
    }
}
