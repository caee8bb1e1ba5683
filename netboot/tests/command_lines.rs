//! `bootserver` and `sledsim` command lines: usage errors exit 2, `--help`
//! shows what is required and gives examples, and the server's first lines
//! say what it serves.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use support::{image, image_file, require_root};

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BOOTSERVER: &str = env!("CARGO_BIN_EXE_bootserver");
const SLEDSIM: &str = env!("CARGO_BIN_EXE_sledsim");

#[test]
fn usage_errors_exit_2() {
    for (exe, args) in [
        (BOOTSERVER, &[][..]),
        (BOOTSERVER, &["eth0"]),
        (BOOTSERVER, &["eth0", "x.img"]),
        (BOOTSERVER, &["--config", "c.toml", "eth0", "x.img", "any"]),
        (
            BOOTSERVER,
            &["--tx", "carrier-pigeon", "eth0", "x.img", "any"],
        ),
        (SLEDSIM, &["--link", "eth0"]),
        (SLEDSIM, &["--link", "eth0", "--sha256", "12"]),
        (
            SLEDSIM,
            &["--link", "eth0", "--image", "x.img", "--sha256", "12"],
        ),
        (
            SLEDSIM,
            &["--link", "eth0", "--image", "x.img", "--loss", "1.5"],
        ),
    ] {
        let o = run(exe, args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{exe} {args:?}: {}",
            text(&o.stderr)
        );
        assert!(text(&o.stderr).contains("error:"), "{exe} {args:?}");
        assert_eq!(text(&o.stdout), "", "{exe} {args:?}");
    }
    // --out must be a writable directory, checked before anything else.
    let o = run(
        SLEDSIM,
        &[
            "--link",
            "no-such-nic0",
            "--sha256",
            &"0".repeat(64),
            "--out",
            "/nonexistent",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "sledsim: --out /nonexistent: cannot write the output here: the output directory does not exist\n"
    );
    // A non-ASCII "hex" checksum is refused, not a panic.
    let o = run(
        SLEDSIM,
        &[
            "--link",
            "eth0",
            "--sha256",
            &format!("é{}", "0".repeat(62)),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_shows_what_is_required_and_examples() {
    let o = run(BOOTSERVER, &["--help"]);
    let help = text(&o.stdout);
    assert!(
        help.contains("Usage: bootserver [OPTIONS] <LINK> <IMAGE> <MAC|any>\n"),
        "{help}"
    );
    assert!(
        help.contains("bootserver [OPTIONS] --config <FILE> [--link <LINK>]"),
        "{help}"
    );
    assert!(help.contains("Examples:\n  bootserver eth0 "), "{help}");
    let o = run(SLEDSIM, &["--help"]);
    let help = text(&o.stdout);
    assert!(
        help.contains("Usage: sledsim [OPTIONS] --link <LINK> <--image <IMAGE>|--sha256 <HEX>>"),
        "{help}"
    );
    assert!(help.contains("Examples:\n  sledsim --link "), "{help}");
}

/// The server opens the link, then verifies, then says what it serves: a
/// first line for scripts to wait on, then one line per image.
#[test]
fn the_first_lines_say_what_is_served() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let raw = image(1 << 20, 9);
    let img = image_file(dir.path(), "demo.img", &raw, true);
    let other = image_file(dir.path(), "other.img", &image(1 << 20, 3), false);
    let sum = bootimage::Image::open(&img).unwrap().header().sha256_hex();
    let osum = bootimage::Image::open(&other)
        .unwrap()
        .header()
        .sha256_hex();
    let first_lines = |args: &[&str], n: usize| -> Vec<String> {
        let mut child = Command::new(BOOTSERVER)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let got = (0..n).map(|_| lines.next().unwrap().unwrap()).collect();
        child.kill().unwrap();
        child.wait().unwrap();
        got
    };
    let img_s = img.to_str().unwrap();
    let lines = first_lines(&["lo", img_s, "any"], 2);
    assert!(
        lines[0].starts_with("serving on lo (") && lines[0].ends_with("), 1 image:"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        format!(
            "    demo.img: 1048576 bytes, sha256 {}, for any",
            &sum[..12]
        )
    );
    let lines = first_lines(&["lo", img_s, "02:00:00:00:00:07"], 2);
    assert!(lines[1].ends_with(", for 02:00:00:00:00:07"), "{lines:?}");

    // A configuration: every image, with who gets it.
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        "link = \"lo\"\ndefault = \"demo\"\n\
         [[image]]\nname = \"demo\"\npath = \"demo.img\"\n\
         [[image]]\nname = \"other\"\npath = \"other.img\"\n\
         [[sled]]\nmac = \"02:00:00:00:00:01\"\nimage = \"other\"\n\
         [[sled]]\nmac = \"02:00:00:00:00:02\"\nimage = \"demo\"\n",
    )
    .unwrap();
    let lines = first_lines(&["--config", cfg.to_str().unwrap()], 3);
    assert!(lines[0].ends_with("), 2 images:"), "{lines:?}");
    assert_eq!(
        lines[1],
        format!(
            "    demo: 1048576 bytes, sha256 {}, for 02:00:00:00:00:02, any other",
            &sum[..12]
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "    other: 1048576 bytes, sha256 {}, for 02:00:00:00:00:01",
            &osum[..12]
        )
    );
    // The same as JSON: one "serving" object holding the images.
    let lines = first_lines(&["--json", "--config", cfg.to_str().unwrap()], 1);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["event"], "serving");
    assert_eq!(v["images"][0]["name"], "demo");
    assert_eq!(v["images"][0]["sha256"], sum);
    assert_eq!(v["images"][0]["size"], 1 << 20);
    assert_eq!(v["images"][0]["any"], true);
    assert_eq!(v["images"][1]["macs"][0], "02:00:00:00:00:01");
    assert_eq!(v["images"][1]["any"], false);
}

/// Without CAP_NET_RAW, both binaries say how to grant it to themselves,
/// by their real path.
#[test]
fn the_setcap_hint_names_the_real_program() {
    require_root();
    let sum = "0".repeat(64);
    for (exe, args) in [
        (BOOTSERVER, vec!["lo", "/nonexistent.img", "any"]),
        (SLEDSIM, vec!["--link", "lo", "--sha256", &sum]),
    ] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", exe])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{exe}");
        let e = text(&o.stderr);
        assert!(
            e.ends_with(&format!(
                "lo: not permitted: raw Ethernet needs CAP_NET_RAW; run as root, or grant it \
                 once with `sudo setcap cap_net_raw+ep {exe}`\n"
            )),
            "{e}"
        );
    }
}
