//! Real `mkimage` processes interrupted mid-run (Ctrl-C, SIGTERM, SIGHUP,
//! `kill -9`) leave their output directory exactly as it was; and every
//! output is synced before it is renamed into place, its directory after
//! (traced with strace).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every name in `dir` (hidden ones included) with its size and contents'
/// length-and-hash, so that a changed or added file shows.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(e.path()).unwrap();
            let sum = if md.is_file() {
                fs::read(e.path())
                    .unwrap()
                    .iter()
                    .fold(0xcbf29ce484222325u64, |h, &b| {
                        (h ^ b as u64).wrapping_mul(0x100000001b3)
                    })
            } else {
                0
            };
            (name, (md.len(), sum))
        })
        .collect()
}

/// 64 MiB that do not compress well, so that `mkimage -z --threads 1`
/// runs for a while.
fn write_input(path: &Path) {
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut bytes = vec![0u8; 64 << 20];
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(path, bytes).unwrap();
}

/// The output directory and a previous output in it, the input elsewhere.
struct Setup {
    _tmp: tempfile::TempDir,
    input: PathBuf,
    out: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.raw");
    write_input(&input);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("k.img"), b"the previous image").unwrap();
    fs::write(out.join(".hidden"), b"a hidden file of someone else's").unwrap();
    Setup {
        _tmp: tmp,
        input,
        out,
    }
}

/// `mkimage` with the signals a shell's foreground job has: when these
/// tests run in a background job, SIGINT arrives ignored, and mkimage
/// (rightly) keeps ignoring it.
fn mkimage_command() -> Command {
    let mut c = Command::new("env");
    c.arg("--default-signal=INT,TERM,HUP")
        .arg(env!("CARGO_BIN_EXE_mkimage"));
    c
}

fn mkimage(s: &Setup, named: bool) -> Child {
    let mut c = mkimage_command();
    c.arg("-i")
        .arg(&s.input)
        .arg("-o")
        .arg(s.out.join("k.img"))
        .arg("-O")
        .arg(s.out.join("k.csum"))
        .args(["-z", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if named {
        c.env("BOOTIMAGE_NAMED_TEMPORARY", "1");
    }
    c.spawn().unwrap()
}

/// Waits until `child` has a file open in `dir` (so it is writing its
/// output), proving the signal comes mid-run.
fn wait_until_writing(child: &mut Child, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let dir = fs::canonicalize(dir).unwrap();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "mkimage ended before it was interrupted"
        );
        let fds = format!("/proc/{}/fd", child.id());
        let writing = fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .any(|e| fs::read_link(e.unwrap().path()).is_ok_and(|target| target.starts_with(&dir)));
        if writing {
            // Well into the compression, not just opening.
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                child.try_wait().unwrap().is_none(),
                "mkimage finished too soon"
            );
            return;
        }
        assert!(Instant::now() < deadline, "mkimage never opened its output");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: i32) {
    // `-s SIG -- PID`: procps kill misreads other spellings of some
    // arguments (`kill -INT -PGID` can become `kill(-1)`).
    let status = Command::new("kill")
        .args(["-s", &sig.to_string(), "--", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

#[test]
fn a_signal_mid_run_leaves_the_output_directory_exactly_as_it_was() {
    let s = setup();
    let before = snapshot(&s.out);
    for named in [false, true] {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let mut child = mkimage(&s, named);
            wait_until_writing(&mut child, &s.out);
            signal(&child, sig);
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.signal(),
                Some(sig),
                "named {named}: ended by the signal, as if unhandled: {:?}",
                out.status
            );
            assert_eq!(snapshot(&s.out), before, "named {named}, signal {sig}");
        }
    }
}

#[test]
fn kill_9_leaves_nothing_where_o_tmpfile_works_and_the_next_run_cleans_up_otherwise() {
    let s = setup();
    let before = snapshot(&s.out);
    // An unnamed file: nothing to leave behind.
    let mut child = mkimage(&s, false);
    wait_until_writing(&mut child, &s.out);
    signal(&child, SIGKILL);
    child.wait().unwrap();
    assert_eq!(snapshot(&s.out), before);

    // A named temporary file is left by kill -9 ...
    let mut child = mkimage(&s, true);
    wait_until_writing(&mut child, &s.out);
    let pid = child.id();
    signal(&child, SIGKILL);
    child.wait().unwrap();
    let left: Vec<String> = snapshot(&s.out)
        .into_keys()
        .filter(|n| !before.contains_key(n))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(&format!(".k.img.{pid}-")) && left[0].ends_with(".tmp"),
        "{left:?}"
    );
    // ... and the next run in that directory removes it and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_mkimage"))
        .arg("-i")
        .arg(&s.input)
        .arg("-o")
        .arg(s.out.join("k.img"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "note: removed {}, left by an interrupted run (process {pid} is gone)\n",
            s.out.join(&left[0]).display()
        )
    );
    let mut names: Vec<String> = snapshot(&s.out).into_keys().collect();
    names.sort();
    assert_eq!(names, [".hidden", "k.img"]);
}

/// strace, when installed (`cargo xtask ci` installs it).
fn strace() -> Option<&'static str> {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some("strace")
}

/// The traced calls of one run, as (call, first argument) in order.
fn traced(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Vec<(String, String)> {
    let log = dir.join("strace.log");
    let mut c = Command::new(strace().expect("strace is installed"));
    c.args([
        "-f",
        "-qq",
        "-e",
        "trace=fsync,fdatasync,rename,renameat,renameat2,linkat,openat",
        "-o",
    ])
    .arg(&log)
    .arg(env!("CARGO_BIN_EXE_mkimage"))
    .args(args)
    .current_dir(dir)
    .stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&log).unwrap();
    fs::remove_file(&log).unwrap();
    text.lines()
        .filter_map(|l| {
            // "PID call(args) = result"
            let l = l.split_once(' ').map_or(l, |(_, rest)| rest).trim_start();
            let (call, rest) = l.split_once('(')?;
            Some((call.to_owned(), rest.to_owned()))
        })
        .collect()
}

/// The file descriptor a call returned (`... = 3`).
fn returned_fd(rest: &str) -> Option<String> {
    rest.rsplit_once(" = ")
        .map(|(_, r)| r.trim().to_owned())
        .filter(|r| r.parse::<u32>().is_ok())
}

fn first_arg(rest: &str) -> &str {
    rest.split([',', ')']).next().unwrap_or("")
}

/// For one output: the file is synced before it is linked and renamed, and
/// the directory is synced after the rename.
fn check_order(calls: &[(String, String)], output: &str) {
    let rename = calls
        .iter()
        .position(|(c, r)| c.starts_with("rename") && r.contains(&format!("\"{output}\"")))
        .unwrap_or_else(|| panic!("no rename to {output}: {calls:#?}"));
    // The temporary name it renamed from: the file synced before must be
    // the one linked or created under that name.
    let before = &calls[..rename];
    let fsyncs_before: Vec<&str> = before
        .iter()
        .filter(|(c, _)| c == "fsync" || c == "fdatasync")
        .map(|(_, r)| first_arg(r))
        .collect();
    let tmp_fd = before
        .iter()
        .rev()
        .find(|(c, r)| {
            c == "openat" && (r.contains("O_TMPFILE") || r.contains(&format!("/.{output}.")))
        })
        .and_then(|(_, r)| returned_fd(r))
        .unwrap_or_else(|| panic!("no temporary file for {output}: {calls:#?}"));
    assert!(
        fsyncs_before.contains(&tmp_fd.as_str()),
        "{output}: fd {tmp_fd} not synced before the rename: {calls:#?}"
    );
    let sync_of_tmp = before
        .iter()
        .rposition(|(c, r)| c == "fsync" && first_arg(r) == tmp_fd)
        .unwrap();
    if let Some(link) = before.iter().rposition(|(c, _)| c == "linkat") {
        assert!(
            sync_of_tmp < link,
            "{output}: synced after linking: {calls:#?}"
        );
    }
    // After the rename: the directory is opened and synced.
    let after = &calls[rename + 1..];
    let dir_fd = after
        .iter()
        .find(|(c, _)| c == "openat")
        .filter(|(_, r)| r.starts_with("AT_FDCWD, \".\", O_RDONLY"))
        .and_then(|(_, r)| returned_fd(r))
        .unwrap_or_else(|| panic!("{output}: no directory opened after the rename: {calls:#?}"));
    assert!(
        after
            .iter()
            .any(|(c, r)| c == "fsync" && first_arg(r) == dir_fd),
        "{output}: directory not synced after the rename: {calls:#?}"
    );
}

#[test]
fn outputs_are_synced_before_the_rename_and_the_directory_after() {
    if strace().is_none() {
        panic!("strace is missing: `cargo xtask ci` installs it (apt-get install strace)");
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("in.raw"), vec![7u8; 1 << 20]).unwrap();
    for env in [&[][..], &[("BOOTIMAGE_NAMED_TEMPORARY", "1")]] {
        for z in [&[][..], &["-z"]] {
            let mut args = vec!["-i", "in.raw", "-o", "k.img", "-O", "k.csum"];
            args.extend_from_slice(z);
            let calls = traced(&args, env, dir.path());
            check_order(&calls, "k.img");
            check_order(&calls, "k.csum");
            let linked = calls.iter().any(|(c, _)| c == "linkat");
            assert_eq!(
                linked,
                env.is_empty(),
                "O_TMPFILE files are linked: {calls:#?}"
            );
        }
    }
}

/// A run started ignoring SIGHUP (as `nohup` starts it) keeps ignoring it
/// and finishes its image.
#[test]
fn sighup_stays_ignored_under_nohup() {
    let s = setup();
    let mut c = Command::new("nohup");
    c.arg(env!("CARGO_BIN_EXE_mkimage"))
        .arg("-i")
        .arg(&s.input)
        .arg("-o")
        .arg(s.out.join("k.img"))
        .args(["-z", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_until_writing(&mut child, &s.out);
    signal(&child, SIGHUP);
    assert!(child.wait().unwrap().success());
    let h = bootimage::Image::open(&s.out.join("k.img")).unwrap();
    assert_eq!(h.header().image_size, 64 << 20);
}

/// `lookimage --extract` interrupted mid-run (Ctrl-C, SIGTERM, SIGHUP)
/// leaves its output directory exactly as it was, a previous output
/// included.
#[test]
fn a_signal_mid_extract_leaves_the_output_directory_exactly_as_it_was() {
    let s = setup();
    // 512 MiB of holes: quick to make, long enough to hash that the signal
    // comes mid-run.
    let raw = s.input.with_file_name("holes.raw");
    fs::File::create(&raw).unwrap().set_len(512 << 20).unwrap();
    let img = s.input.with_file_name("holes.img");
    let st = Command::new(env!("CARGO_BIN_EXE_mkimage"))
        .arg("-i")
        .arg(&raw)
        .arg("-o")
        .arg(&img)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    fs::write(s.out.join("k.raw"), b"the previous raw image").unwrap();
    let before = snapshot(&s.out);
    for named in [false, true] {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let mut c = Command::new("env");
            c.arg("--default-signal=INT,TERM,HUP")
                .arg(env!("CARGO_BIN_EXE_lookimage"))
                .arg("--extract")
                .arg(s.out.join("k.raw"))
                .arg(&img)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if named {
                c.env("BOOTIMAGE_NAMED_TEMPORARY", "1");
            }
            let mut child = c.spawn().unwrap();
            // As soon as it has its output open: mid-run.
            let dir = fs::canonicalize(&s.out).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(child.try_wait().unwrap().is_none(), "ended too soon");
                let fds = format!("/proc/{}/fd", child.id());
                let writing = fs::read_dir(&fds)
                    .into_iter()
                    .flatten()
                    .any(|e| fs::read_link(e.unwrap().path()).is_ok_and(|t| t.starts_with(&dir)));
                if writing {
                    break;
                }
                assert!(Instant::now() < deadline, "never opened its output");
                std::thread::sleep(Duration::from_millis(2));
            }
            signal(&child, sig);
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.signal(),
                Some(sig),
                "named {named}: {:?}",
                out.status
            );
            assert_eq!(snapshot(&s.out), before, "named {named}, signal {sig}");
        }
    }
}
