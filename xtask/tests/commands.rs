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
