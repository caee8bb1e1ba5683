//! What the tools say they made, and what a file is: `mkimage --json`,
//! `lookimage --json` on files it cannot read, and files of other kinds
//! named for what they are.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn run(exe: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

const MKIMAGE: &str = env!("CARGO_BIN_EXE_mkimage");
const LOOKIMAGE: &str = env!("CARGO_BIN_EXE_lookimage");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn mkimage_json_says_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(dir.path().join("in.raw"), &raw).unwrap();
    let o = run(
        MKIMAGE,
        &[
            "-i", "in.raw", "-o", "k.img", "-O", "k.csum", "-z", "-N", "helios", "--json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let h = bootimage::Image::open(&dir.path().join("k.img"))
        .unwrap()
        .header()
        .clone();
    assert_eq!(v["path"], "k.img");
    assert_eq!(v["checksum_file"], "k.csum");
    assert_eq!(v["image_name"], "helios");
    assert_eq!(v["dataset"], "rpool/ROOT/ramdisk");
    assert_eq!(v["compressed"], true);
    assert_eq!(v["flags"], 1);
    assert_eq!(v["image_size"], raw.len() as u64);
    assert_eq!(v["data_size"], h.data_size);
    assert_eq!(v["target_size"], 4u64 << 30);
    assert_eq!(v["sha256"], h.sha256_hex());
    let ratio = v["ratio"].as_f64().unwrap();
    assert!((ratio - raw.len() as f64 / h.data_size as f64).abs() < 1e-9);
    assert_eq!(v.get("verified"), None);
    // Without --json, the previous tool's lines.
    let o = run(MKIMAGE, &["-i", "in.raw", "-o", "k.img"], dir.path());
    assert_eq!(text(&o.stdout), "ok, image written!\n");
}

#[test]
fn lookimage_json_prints_one_object_whatever_fails() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("short.img"), b"too short").unwrap();
    fs::write(dir.path().join("zeros.img"), vec![0u8; 8192]).unwrap();
    for (file, error) in [
        (
            "missing.img",
            "missing.img: open: No such file or directory (os error 2)",
        ),
        (
            "short.img",
            "short.img: header is truncated: 9 bytes, need 4096",
        ),
        (
            "zeros.img",
            "zeros.img: bad magic 0x00000000 (expected 0x1deb0075)",
        ),
    ] {
        let o = run(LOOKIMAGE, &["--json", file], dir.path());
        assert_eq!(o.status.code(), Some(1), "{file}");
        let out = text(&o.stdout);
        assert_eq!(out.lines().count(), 1, "{file}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["error"], error, "{file}");
        assert_eq!(text(&o.stderr), format!("lookimage: {error}\n"));
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// A tar archive of one file, made by GNU tar.
fn tar(dir: &Path) -> Vec<u8> {
    fs::write(dir.join("member"), b"hello").unwrap();
    let o = Command::new("tar")
        .args(["-cf", "-", "member"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}

#[test]
fn files_of_other_kinds_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("text.gz"), gzip(&[b'x'; 8192])).unwrap();
    fs::write(d.join("plain.tar"), tar(d)).unwrap();
    let cpio = {
        let o = Command::new("sh")
            .args(["-c", "echo member | cpio -o -H newc --quiet"])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(o.status.success());
        o.stdout
    };
    fs::write(d.join("bare.cpio.gz"), gzip(&cpio)).unwrap();
    for (file, what) in [
        (
            "text.gz",
            "gzip, holding neither tar nor cpio: not an image, image archive or boot archive",
        ),
        (
            "plain.tar",
            "tar archive, not gzipped: an image archive is a gzipped tar (NAME.tar.gz)",
        ),
        (
            "bare.cpio.gz",
            "gzipped cpio archive without boot_image_csum: not a boot archive",
        ),
    ] {
        let o = run(LOOKIMAGE, &[file], d);
        assert_eq!(o.status.code(), Some(1), "{file}");
        assert_eq!(text(&o.stderr), format!("lookimage: {file}: {what}\n"));
        let o = run(LOOKIMAGE, &["--json", file], d);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["error"], format!("{file}: {what}"), "{file}");
    }
}

#[test]
fn help_shows_required_arguments_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let help = text(&run(MKIMAGE, &["--help"], dir.path()).stdout);
    assert!(
        help.contains("Usage: mkimage [OPTIONS] --input <RAW> --output <IMAGE>"),
        "{help}"
    );
    assert!(help.contains("Examples:\n  mkimage -i "), "{help}");
    let help = text(&run(LOOKIMAGE, &["--help"], dir.path()).stdout);
    assert!(help.contains("Usage: lookimage [OPTIONS] <FILE>"), "{help}");
    assert!(help.contains("Examples:\n  lookimage "), "{help}");
}
