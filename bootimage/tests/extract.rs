//! `lookimage --extract RAW FILE`: the raw image back out of a boot image
//! or an image archive, verified, sparse and atomic.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn run(bin: &str, args: &[&str], dir: &Path) -> Output {
    let exe = match bin {
        "mkimage" => env!("CARGO_BIN_EXE_mkimage"),
        _ => env!("CARGO_BIN_EXE_lookimage"),
    };
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The names in `dir`, sorted, hidden files included.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A raw image with runs of zeros (holes to be) between data.
fn raw_with_holes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if (i >> 16) % 3 == 1 {
                0
            } else {
                (i as u8).wrapping_mul(7) ^ (i >> 9) as u8
            }
        })
        .collect()
}

#[test]
fn mkimage_then_extract_gives_the_original_bytes_plain_and_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = raw_with_holes((3 << 20) + 12345);
    fs::write(d.join("in.raw"), &raw).unwrap();
    ok(&run("mkimage", &["-i", "in.raw", "-o", "p.img"], d));
    ok(&run("mkimage", &["-i", "in.raw", "-o", "z.img", "-z"], d));
    for img in ["p.img", "z.img"] {
        let out = ok(&run("lookimage", &["--extract", "out.raw", img], d));
        assert!(
            out.starts_with(&format!(
                "ok, {} bytes of raw image written to out.raw",
                raw.len()
            )),
            "{out}"
        );
        assert_eq!(fs::read(d.join("out.raw")).unwrap(), raw, "{img}");
        // Sparse: a third of the image is zeros, in 64 KiB runs.
        let m = fs::metadata(d.join("out.raw")).unwrap();
        assert!(
            m.blocks() * 512 < raw.len() as u64 * 3 / 4,
            "{img}: {} bytes allocated for {}",
            m.blocks() * 512,
            raw.len()
        );
        // To standard output: the same bytes, nothing else.
        let o = run("lookimage", &["--extract", "-", img], d);
        assert!(o.status.success());
        assert!(o.stdout == raw, "{img}: stdout differs");
        let v: serde_json::Value = serde_json::from_str(&ok(&run(
            "lookimage",
            &["--json", "--extract", "j.raw", img],
            d,
        )))
        .unwrap();
        assert_eq!(v["bytes"], raw.len());
        assert_eq!(v["verified"], true);
        fs::remove_file(d.join("j.raw")).unwrap();
    }
    // The golden vectors too.
    for img in ["small-plain.img", "small-z.img"] {
        let path = vectors().join(img);
        ok(&run(
            "lookimage",
            &["--extract", "v.raw", path.to_str().unwrap()],
            d,
        ));
        assert_eq!(
            fs::read(d.join("v.raw")).unwrap(),
            fs::read(vectors().join("small.raw")).unwrap()
        );
    }
}

#[test]
fn extract_reads_zfs_img_out_of_an_image_archive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("src/image")).unwrap();
    fs::write(d.join("src/oxide.json"), r#"{"v":"1","t":"os","i":{"name":"x","checksum":"fd071188b3d72d088285c0580ef8a7e38b59c6cf52ea8efefe0c1ef85f566887"}}"#).unwrap();
    fs::write(d.join("src/image/a.txt"), "metadata\n").unwrap();
    fs::copy(vectors().join("small-z.img"), d.join("src/image/zfs.img")).unwrap();
    let o = Command::new("tar")
        .args(["-C", "src", "--no-recursion", "-czf", "os.tar.gz"])
        .args(["oxide.json", "image", "image/a.txt", "image/zfs.img"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = ok(&run("lookimage", &["--extract", "zfs.raw", "os.tar.gz"], d));
    assert!(out.contains("written to zfs.raw"), "{out}");
    assert_eq!(
        fs::read(d.join("zfs.raw")).unwrap(),
        fs::read(vectors().join("small.raw")).unwrap()
    );
}

/// A corrupt or truncated image, or a file that holds no image, leaves no
/// RAW behind and never replaces an existing one.
#[test]
fn a_failed_extract_leaves_nothing_and_keeps_an_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = raw_with_holes(2 << 20);
    fs::write(d.join("in.raw"), &raw).unwrap();
    ok(&run("mkimage", &["-i", "in.raw", "-o", "p.img"], d));
    ok(&run("mkimage", &["-i", "in.raw", "-o", "z.img", "-z"], d));
    let mut bad = fs::read(d.join("p.img")).unwrap();
    bad[4096 + 100_000] ^= 1;
    fs::write(d.join("bad.img"), &bad).unwrap();
    let z = fs::read(d.join("z.img")).unwrap();
    fs::write(d.join("short.img"), &z[..z.len() - 1000]).unwrap();
    fs::write(d.join("cpio"), b"070707").unwrap();
    let cases = [
        ("bad.img", "checksum mismatch"),
        ("short.img", "truncated"),
        ("in.raw", "bad magic"),
    ];
    for (input, why) in cases {
        for existing in [false, true] {
            if existing {
                fs::write(d.join("out.raw"), b"keep me").unwrap();
            }
            let before = listing(d);
            let o = run("lookimage", &["--extract", "out.raw", input], d);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{input}: {err}");
            assert!(err.contains(why), "{input}: {err}");
            assert!(err.contains(input), "{input}: {err}");
            assert_eq!(listing(d), before, "{input}: nothing left behind");
            if existing {
                assert_eq!(fs::read(d.join("out.raw")).unwrap(), b"keep me");
                fs::remove_file(d.join("out.raw")).unwrap();
            }
        }
    }
}

/// An output that is a directory, or in a missing directory, is refused
/// before the input is read (here, an input that does not exist).
#[test]
fn extract_checks_its_output_before_reading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("sub")).unwrap();
    for (out, why) in [("sub", "is a directory"), ("missing/x.raw", "missing")] {
        let o = run("lookimage", &["--extract", out, "no-such.img"], d);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(out) && err.contains(why), "{out}: {err}");
        assert!(
            !err.contains("no-such.img"),
            "the input was not read: {err}"
        );
    }
}
