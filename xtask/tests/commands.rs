//! The xtask commands, run as a developer runs them.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn image_builds_the_embedded_default_and_inspect_verifies_it() {
    let o = xtask(&["image"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let first = out.lines().next().unwrap();
    assert!(first.contains("config/images/demo.toml -> "), "{out}");
    assert!(first.ends_with("/bootimage/demo.img (verified)"), "{out}");
    assert!(out.contains("    image name = demo\n"), "{out}");
    assert!(out.contains("    image size = 1048576\n"), "{out}");
    let image = first
        .split(" -> ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" (verified)");

    let o = xtask(&["inspect", image]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines = text(&o.stdout);
    assert!(
        lines.starts_with("image name = demo\nflags = 0x1 (COMPRESSED)\n"),
        "{lines}"
    );
    let sum = lines
        .lines()
        .find_map(|l| l.strip_prefix("image sum = "))
        .unwrap();
    assert!(out.contains(&format!("    image sum = {sum}\n")));

    // The raw image back out, verified: 1 MiB, as the header says.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("demo.raw");
    let o = xtask(&["inspect", "--extract", raw.to_str().unwrap(), image]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("(SHA-256 {sum} verified)")));
    assert_eq!(fs::metadata(&raw).unwrap().len(), 1 << 20);

    // A damaged copy fails verification with a message naming the file.
    let bad = dir.path().join("bad.img");
    let mut bytes = fs::read(image).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&bad, bytes).unwrap();
    let o = xtask(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with(&format!("xtask: {}: ", bad.display())),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn image_reports_a_bad_manifest_by_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("bad.toml");
    fs::write(
        &m,
        "name = \"x\"\ncompress = true\nlevel = 11\n[source]\nfile = \"a\"\n",
    )
    .unwrap();
    let o = xtask(&["image", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        format!(
            "xtask: {}: level: 11 is out of range (1 to 9)\n",
            m.display()
        )
    );
}

#[test]
fn fuzz_names_its_targets() {
    let o = xtask(&["fuzz", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "xtask: no fuzz target \"nope\" (targets: header, verify, frame, server, manifest)\n"
    );
}

#[test]
fn inspect_reads_the_default_pipelines_archives() {
    let o = xtask(&["image"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let path_of = |what: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .unwrap_or_else(|| panic!("no {what} in {out}"))
            .to_owned()
    };
    let archive = path_of("image archive: ");
    let boot = path_of("boot archive: ");
    let image = out
        .lines()
        .next()
        .unwrap()
        .split(" -> ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" (verified)")
        .to_owned();
    let o = xtask(&["inspect", &archive]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("verified: image/zfs.img matches its header and oxide.json"));
    let o = xtask(&["inspect", "--image", &image, &boot]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).ends_with(&format!("matches {image}\n")),
        "{}",
        text(&o.stdout)
    );
}

/// Without rustup's illumos target and without Debian's toolchain (and no
/// apt-get to install it), the illumos check says it was skipped and fails
/// instead of passing in silence.
#[test]
fn an_illumos_check_that_cannot_run_fails() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    // A rustup that cannot help; nothing else on the PATH (no apt-get).
    let rustup = bin.join("rustup");
    fs::write(&rustup, "#!/bin/sh\necho 'rustup: offline' >&2\nexit 1\n").unwrap();
    fs::set_permissions(&rustup, fs::Permissions::from_mode(0o755)).unwrap();
    let empty = dir.path().join("no-debian-rust");
    fs::create_dir(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("check-illumos")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .env("PATH", &bin)
        // cargo_metadata finds cargo here, not on the PATH.
        .env("CARGO", std::env::var("CARGO").unwrap())
        .env("XTASK_DEBIAN_RUST_ROOT", &empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("xtask: the illumos check was SKIPPED, which fails it: no standard library for x86_64-unknown-illumos"),
        "{e}"
    );
    assert!(e.contains("rustup"), "{e}");
    assert!(e.contains("no-debian-rust"), "{e}");
}

/// The names in `dir` (hidden ones included) with their contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap_or_default())
        })
        .collect();
    v.sort();
    v
}

/// Ctrl-C (and SIGTERM, SIGHUP) during `cargo xtask image`, while the
/// staging directory holds a half-made image: the output directory is left
/// exactly as it was, previous outputs included.
#[test]
fn a_signal_during_image_leaves_the_output_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB that compress slowly.
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut bytes = vec![0u8; 64 << 20];
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(dir.path().join("big.raw"), bytes).unwrap();
    let manifest = dir.path().join("big.toml");
    fs::write(
        &manifest,
        "name = \"big\"\ntarget-size = \"128MiB\"\ncompress = true\n\
         checksum-file = \"big.csum\"\n[source]\nfile = \"big.raw\"\n",
    )
    .unwrap();
    // xtask writes to TARGET/bootimage; TARGET comes from CARGO_TARGET_DIR.
    let target = dir.path().join("target");
    let out = target.join("bootimage");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("big.img"), b"the previous image").unwrap();
    fs::write(out.join(".keep"), b"someone else's hidden file").unwrap();
    let before = snapshot(&out);
    for sig in ["INT", "TERM", "HUP"] {
        // As a shell's foreground job: SIGINT not ignored, even when the
        // tests run in a background job.
        let mut child = Command::new("env")
            .arg("--default-signal=INT,TERM,HUP")
            .arg(env!("CARGO_BIN_EXE_xtask"))
            .args(["image", manifest.to_str().unwrap()])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .env("CARGO_TARGET_DIR", &target)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            assert!(child.try_wait().unwrap().is_none(), "xtask ended too soon");
            let staging = fs::read_dir(&out).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".staging")
            });
            if staging {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no staging directory");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let st = Command::new("kill")
            .args(["-s", sig, "--", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert!(status.signal().is_some(), "{sig}: {status:?}");
        assert!(
            snapshot(&out) == before,
            "{sig}: {:?}",
            snapshot(&out).iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
    }
}

#[test]
fn help_gives_examples() {
    let o = xtask(&["--help"]);
    let help = text(&o.stdout);
    assert!(help.contains("Examples:\n  cargo xtask image\n"), "{help}");
}

/// The `cargo xtask` alias must not pass `--quiet`: on a fresh clone the
/// first run compiles for minutes, and Cargo's progress is all that shows.
#[test]
fn the_alias_lets_cargo_show_that_it_is_building() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
    let alias = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("xtask = "))
        .expect("an xtask alias");
    assert!(alias.contains("run --package xtask"), "{alias}");
    assert!(
        !alias
            .split_whitespace()
            .any(|w| w.trim_matches('"') == "--quiet" || w.trim_matches('"') == "-q"),
        "{alias}"
    );
}
