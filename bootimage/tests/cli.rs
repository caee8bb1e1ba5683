//! The drop-in binaries against the previous tools' golden vectors and every
//! error a user can cause from the command line.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn run(bin: &str, args: &[&str], dir: &Path) -> Output {
    let exe = match bin {
        "mkimage" => env!("CARGO_BIN_EXE_mkimage"),
        "lookimage" => env!("CARGO_BIN_EXE_lookimage"),
        _ => unreachable!(),
    };
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The names in `dir`, sorted: proves no temporary or partial file is left.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn raw() -> String {
    vectors().join("small.raw").to_string_lossy().into_owned()
}

#[test]
fn plain_image_is_byte_identical_to_the_previous_tool() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        "mkimage",
        &[
            "-i",
            &raw(),
            "-o",
            "out.img",
            "-O",
            "out.csum",
            "-N",
            "vector-plain",
            "-s",
            "4",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "ok, image written!\nok, boot_image_csum file written!\n"
    );
    // Not a terminal: no progress output; only the note that this small
    // image cannot be booted over the network (stdout stays the previous
    // tool's).
    assert_eq!(
        stderr(&o),
        format!(
            "mkimage: out.img: note: cannot be booted over the network: {}\n",
            bootimage::netboot_problem(fs::metadata(raw()).unwrap().len(), 4 << 20).unwrap()
        )
    );
    assert_eq!(
        fs::read(dir.path().join("out.img")).unwrap(),
        fs::read(vectors().join("small-plain.img")).unwrap()
    );
    assert_eq!(
        fs::read(dir.path().join("out.csum")).unwrap(),
        fs::read(vectors().join("small.csum")).unwrap()
    );
    assert_eq!(listing(dir.path()), ["out.csum", "out.img"]);
}

#[test]
fn long_flags_give_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        "mkimage",
        &[
            "--input",
            &raw(),
            "--output",
            "out.img",
            "--checksum-file",
            "out.csum",
            "--name",
            "vector-plain",
            "--target-size",
            "4MiB",
            "--dataset",
            "rpool/ROOT/ramdisk",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(dir.path().join("out.img")).unwrap(),
        fs::read(vectors().join("small-plain.img")).unwrap()
    );
}

#[test]
fn lookimage_reproduces_the_previous_output_byte_for_byte() {
    for name in ["small-plain", "small-z"] {
        let img = vectors().join(format!("{name}.img"));
        let o = run("lookimage", &[img.to_str().unwrap()], &vectors());
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            fs::read_to_string(vectors().join(format!("{name}.lookimage.txt"))).unwrap(),
            "{name}"
        );
        assert_eq!(stderr(&o), "");
    }
}

#[test]
fn compressed_image_round_trips_through_lookimage() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        "mkimage",
        &[
            "-i",
            &raw(),
            "-o",
            "z.img",
            "-z",
            "-N",
            "recovery-vector",
            "-s",
            "16",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run("lookimage", &["z.img"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // Same lines as the previous tool's image, except the compressed size
    // and the ratio, which depend on the compressor.
    let ours: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    let theirs = fs::read_to_string(vectors().join("small-z.lookimage.txt")).unwrap();
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        if !a.starts_with("data size") && !a.starts_with("ratio") {
            assert_eq!(a, b);
        }
    }
    // Any inflater decodes the payload: check with an independent one.
    let img = fs::read(dir.path().join("z.img")).unwrap();
    let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(&img[4096..]).unwrap();
    assert_eq!(inflated, fs::read(vectors().join("small.raw")).unwrap());

    let o = run("lookimage", &["--json", "z.img"], dir.path());
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("\"verified\":true"), "{out}");
    assert!(out.contains("\"image_name\":\"recovery-vector\""), "{out}");
}

#[test]
fn lookimage_skip_checksum_does_not_read_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = fs::read(vectors().join("small-plain.img")).unwrap();
    img.truncate(5000);
    fs::write(dir.path().join("cut.img"), &img).unwrap();
    let o = run("lookimage", &["-s", "cut.img"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        fs::read_to_string(vectors().join("small-plain.lookimage.txt")).unwrap()
    );
    let o = run("lookimage", &["cut.img"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "lookimage: cut.img: payload is truncated: header says 1048699 bytes of data, the file holds 904\n"
    );
    let o = run("lookimage", &["--json", "cut.img"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("\"verified\":false"));
    assert!(stdout(&o).contains("\"error\":\"cut.img: payload is truncated"));
}

#[test]
fn lookimage_reports_a_checksum_mismatch_with_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = fs::read(vectors().join("small-plain.img")).unwrap();
    img[4096 + 1000] ^= 1;
    fs::write(dir.path().join("bad.img"), &img).unwrap();
    let o = run("lookimage", &["bad.img"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("lookimage: bad.img: checksum mismatch: header says fd071188b3d72d088285c0580ef8a7e38b59c6cf52ea8efefe0c1ef85f566887, image hashes to "),
        "{e}"
    );
    // The header lines still come first.
    assert!(stdout(&o).starts_with("image name = vector-plain\n"));
}

#[test]
fn lookimage_bad_magic_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("zeros.img"), vec![0u8; 8192]).unwrap();
    let o = run("lookimage", &["zeros.img"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "lookimage: zeros.img: bad magic 0x00000000 (expected 0x1deb0075)\n"
    );
    assert_eq!(stdout(&o), "");
    let o = run("lookimage", &["nope.img"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("lookimage: nope.img: open: No such file or directory"),
        "{}",
        stderr(&o)
    );
}

/// Runs a failing `mkimage` in a directory holding `input` and an existing
/// `out.img`, and checks the message, that `out.img` is untouched and that
/// nothing else was left behind.
fn mkimage_fails(input: &[u8], args: &[&str], message: &str) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("in.raw"), input).unwrap();
    fs::write(dir.path().join("out.img"), b"previous contents").unwrap();
    let mut all = vec!["-i", "in.raw", "-o", "out.img", "-O", "out.csum"];
    all.extend_from_slice(args);
    let o = run("mkimage", &all, dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("mkimage: {message}\n"));
    assert_eq!(
        fs::read(dir.path().join("out.img")).unwrap(),
        b"previous contents"
    );
    assert_eq!(listing(dir.path()), ["in.raw", "out.img"]);
}

#[test]
fn mkimage_errors_name_the_file_field_and_value_and_leave_nothing() {
    let ok = vec![7u8; 8192];
    mkimage_fails(&[], &[], "in.raw: input is empty");
    mkimage_fails(
        &[1; 4095],
        &[],
        "in.raw: image size 4095 is below the minimum of 4096 bytes",
    );
    mkimage_fails(
        &ok,
        &["--target-size", "4K"],
        "in.raw: image size 8192 is larger than target size 4096",
    );
    let long = "n".repeat(128);
    mkimage_fails(
        &ok,
        &["-N", &long],
        &format!("image name \"{long}\" is 128 bytes long; at most 127 fit"),
    );
    mkimage_fails(
        &ok,
        &["--dataset", &long],
        &format!("dataset name \"{long}\" is 128 bytes long; at most 127 fit"),
    );
}

#[test]
fn mkimage_refuses_inputs_over_4_gib_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let f = fs::File::create(dir.path().join("huge.raw")).unwrap();
    f.set_len((4 << 30) + 1).unwrap(); // sparse: costs no disk
    let o = run(
        "mkimage",
        &["-i", "huge.raw", "-o", "out.img", "--target-size", "8GiB"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "mkimage: huge.raw: image size 4294967297 is above the maximum of 4294967296 bytes (4 GiB)\n"
    );
    assert_eq!(listing(dir.path()), ["huge.raw"]);
}

#[test]
fn mkimage_io_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        "mkimage",
        &["-i", "missing.raw", "-o", "out.img"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("mkimage: missing.raw: open: No such file or directory"),
        "{}",
        stderr(&o)
    );
    fs::write(dir.path().join("in.raw"), vec![1u8; 8192]).unwrap();
    let o = run(
        "mkimage",
        &["-i", "in.raw", "-o", "no/such/dir/out.img"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "mkimage: no/such/dir/out.img: cannot write the output here: directory no/such/dir does not exist\n"
    );
    assert_eq!(listing(dir.path()), ["in.raw"]);
}

/// Outputs that cannot be written are refused before any input is read:
/// the input named here does not even exist.
#[test]
fn mkimage_checks_its_outputs_before_reading_the_input() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("file"), b"x").unwrap();
    for (args, message) in [
        (
            &["-i", "missing.raw", "-o", "sub"][..],
            "sub: cannot write the output here: is a directory; give a file name",
        ),
        (
            &["-i", "missing.raw", "-o", "sub/"][..],
            "sub/: cannot write the output here: is a directory; give a file name",
        ),
        (
            &["-i", "missing.raw", "-o", "nodir/x.img"],
            "nodir/x.img: cannot write the output here: directory nodir does not exist",
        ),
        (
            &["-i", "missing.raw", "-o", "file/x.img"],
            "file/x.img: cannot write the output here: file is not a directory",
        ),
        (
            &["-i", "missing.raw", "-o", "x.img", "-O", "sub"],
            "sub: cannot write the output here: is a directory; give a file name",
        ),
    ] {
        let o = run("mkimage", args, dir.path());
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o), format!("mkimage: {message}\n"), "{args:?}");
    }
    // A directory this user may not write to (root may write anywhere, so
    // the test drops to nobody when run as root).
    if run_as_nobody_available() {
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_mkimage"))
            .args(["-i", "missing.raw", "-o", "ro/x.img"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(&o),
            "mkimage: ro/x.img: cannot write the output here: directory ro is not writable by this user\n"
        );
    }
    assert_eq!(
        listing(dir.path()).len(),
        if run_as_nobody_available() { 3 } else { 2 }
    );
}

/// Whether the test runs as root with `setpriv`, to try a directory that
/// the user may not write.
fn run_as_nobody_available() -> bool {
    is_root()
        && Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn mkimage_rejects_bad_flag_values() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("in.raw"), vec![1u8; 8192]).unwrap();
    for args in [
        &["-i", "in.raw", "-o", "o.img", "-z", "--level", "10"][..],
        &["-i", "in.raw", "-o", "o.img", "--level", "5"],
        &["-i", "in.raw", "-o", "o.img", "-s", "lots"],
        &["-i", "in.raw", "-o", "o.img", "--target-size", "4 parsecs"],
        &[
            "-i",
            "in.raw",
            "-o",
            "o.img",
            "-s",
            "4",
            "--target-size",
            "4M",
        ],
    ] {
        let o = run("mkimage", args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("error:"), "{args:?}");
    }
    assert_eq!(listing(dir.path()), ["in.raw"]);
}

#[test]
fn mkimage_threads_flag_does_not_change_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for t in ["1", "3"] {
        let o = run(
            "mkimage",
            &[
                "-i",
                &raw(),
                "-o",
                &format!("t{t}.img"),
                "-z",
                "--level",
                "6",
                "--threads",
                t,
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        fs::read(dir.path().join("t1.img")).unwrap(),
        fs::read(dir.path().join("t3.img")).unwrap()
    );
    let o = run(
        "mkimage",
        &["-i", &raw(), "-o", "x.img", "-z", "--threads", "0"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
}

/// On a terminal (a pseudo-terminal made by util-linux `script`), mkimage
/// and lookimage draw progress: bytes, rate and ETA.
#[test]
fn progress_is_drawn_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("in.raw");
    fs::write(&raw, vectors_data(16 << 20)).unwrap();
    let img = dir.path().join("out.img");
    for command in [
        format!(
            "{} -i {} -o {} -z",
            env!("CARGO_BIN_EXE_mkimage"),
            raw.display(),
            img.display()
        ),
        format!("{} {}", env!("CARGO_BIN_EXE_lookimage"), img.display()),
    ] {
        let o = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .output()
            .expect("util-linux script runs");
        assert!(o.status.success(), "{}", stderr(&o));
        let screen = stdout(&o);
        assert!(screen.contains("/16.00 MiB"), "{screen:?}");
        assert!(screen.contains("ETA"), "{screen:?}");
        assert!(screen.contains("/s"), "{screen:?}");
    }
}

/// Copies of the golden raw input, to make larger inputs of real data.
fn vectors_data(len: usize) -> Vec<u8> {
    let small = fs::read(vectors().join("small.raw")).unwrap();
    small.iter().copied().cycle().take(len).collect()
}

#[test]
fn lookimage_reports_and_verifies_a_version_1_image() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let raw = vec![9u8; 10_000];
    let mut h = bootimage::Header::plain(10_000, 1 << 20, sha2::Sha256::digest(&raw).into());
    h.version = bootimage::Version::V1;
    let mut img = h.emit().to_vec();
    img.extend_from_slice(&raw);
    fs::write(dir.path().join("v1.img"), &img).unwrap();
    let o = run("lookimage", &["v1.img"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with("dataset name = rpool/ROOT/ramdisk\nheader version = 1 (no flags, data size or image name)\n"),
        "{}",
        stdout(&o)
    );
}

/// `--pad-to 128KiB`: zeros appended before hashing, so the image is a whole
/// number of network-boot batches; lookimage --json says whether an image
/// can be booted over the network, and why not.
#[test]
fn mkimage_pad_to_makes_an_image_a_sled_can_boot_over_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let data = vectors_data((1 << 20) + 777);
    fs::write(dir.path().join("in.raw"), &data).unwrap();
    for (args, out) in [
        (&[][..], "unpadded.img"),
        (&["--pad-to", "128KiB"][..], "padded.img"),
    ] {
        for z in [false, true] {
            let out = if z {
                format!("z-{out}")
            } else {
                out.to_string()
            };
            let mut a = vec!["-i", "in.raw", "-o", &out];
            a.extend_from_slice(args);
            if z {
                a.push("-z");
            }
            let o = run("mkimage", &a, dir.path());
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(stdout(&o), "ok, image written!\n");
            let padded = !args.is_empty();
            assert_eq!(
                stderr(&o).contains("cannot be booted over the network"),
                !padded,
                "{}",
                stderr(&o)
            );
            let o = run("lookimage", &["--json", &out], dir.path());
            assert!(o.status.success(), "{}", stderr(&o));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["verified"], true);
            assert_eq!(v["netboot"], padded, "{v}");
            let size = if padded {
                (1 << 20) + (128 << 10)
            } else {
                (1 << 20) + 777
            };
            assert_eq!(v["image_size"], size);
            if padded {
                assert!(v["netboot_problem"].is_null());
                let mut want = data.clone();
                want.resize(size as usize, 0);
                let sum: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&want).into();
                assert_eq!(v["sha256"], bootimage::header::hex(&sum));
            } else {
                let why = v["netboot_problem"].as_str().unwrap();
                assert!(
                    why.contains("not a multiple of 128 KiB (131072 bytes)"),
                    "{why}"
                );
            }
            // The text output stays the previous tool's seven lines.
            let o = run("lookimage", &[&out], dir.path());
            assert!(!stdout(&o).contains("netboot"), "{}", stdout(&o));
        }
    }
    // An aligned input needs no padding and gets no note.
    fs::write(dir.path().join("aligned.raw"), vectors_data(2 << 20)).unwrap();
    let o = run(
        "mkimage",
        &["-i", "aligned.raw", "-o", "aligned.img"],
        dir.path(),
    );
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
}
