//! The whole OS image pipeline from one manifest: image, checksum file,
//! boot archive and image archive. Real tools (Debian cpio, GNU tar,
//! Python's tarfile and json) read what we write; builds are byte-for-byte
//! reproducible; bad manifests fail by key and file and leave nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use bootimage_build::build;

mod support;
use support::listing;

const ROM: u64 = 32 << 20;

/// A project tree like a real OS build's: a ramdisk root, a boot proto
/// area with a kernel, a ROM and engineering extras.
fn project(dir: &Path) {
    let w = |p: &str, b: &[u8]| {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b).unwrap();
    };
    w("root/etc/motd", b"hello\n");
    w("root/usr/bin/tool", b"#!/bin/sh\necho tool\n");
    fs::set_permissions(
        dir.join("root/usr/bin/tool"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    w(
        "proto/boot/platform/oxide/kernel/amd64/unix",
        &vec![0x7f; 70_000],
    );
    w("proto/boot/etc/system", b"set foo=1\n");
    w("proto/unix.z", b"compressed kernel");
    w("proto/cpio.z", b"compressed cpio");
    w("proto/extra-kernel", b"a second kernel");
    let rom = fs::File::create(dir.join("rom.bin")).unwrap();
    rom.set_len(ROM).unwrap();
    w(
        "os.toml",
        br#"
name = "helios-test"
target-size = "64MiB"
compress = true
level = 6
checksum-file = "boot_image_csum"

[source]
directory = "root"
min-size = "1MiB"

[boot-archive]
output = "cpio.gz"
root = "proto/boot"
files = { "platform/oxide/kernel/amd64/unix.alt" = "proto/extra-kernel" }
compress = true

[image-archive]
output = "os.tar.gz"
rom = "rom.bin"
extra = { "unix.z" = "proto/unix.z", "cpio.z" = "proto/cpio.z" }
info = { version = "1.2.3", "build-host" = "ci" }
"#,
    );
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn real_tools_read_every_artefact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let built = build(&d.join("os.toml"), &out).unwrap();
    assert_eq!(
        listing(&out),
        [
            "boot_image_csum",
            "cpio.gz",
            "os.cpio",
            "os.img",
            "os.tar.gz"
        ]
    );
    let sum = built.header.sha256;
    assert_eq!(fs::read(out.join("boot_image_csum")).unwrap(), sum);

    // Debian cpio lists and extracts the boot archive.
    let list = run(Command::new("sh")
        .arg("-c")
        .arg("gzip -dc cpio.gz | cpio -it --quiet")
        .current_dir(&out));
    let list = String::from_utf8(list).unwrap();
    let names: Vec<&str> = list.lines().collect();
    assert_eq!(
        names,
        [
            "boot_image_csum",
            "etc",
            "etc/system",
            "platform",
            "platform/oxide",
            "platform/oxide/kernel",
            "platform/oxide/kernel/amd64",
            "platform/oxide/kernel/amd64/unix",
            "platform/oxide/kernel/amd64/unix.alt",
        ]
    );
    let x = out.join("x");
    fs::create_dir(&x).unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg("gzip -dc ../cpio.gz | cpio -idm --quiet")
        .current_dir(&x));
    assert_eq!(fs::read(x.join("boot_image_csum")).unwrap(), sum);
    assert_eq!(
        fs::read(x.join("platform/oxide/kernel/amd64/unix")).unwrap(),
        vec![0x7f; 70_000]
    );

    // GNU tar lists the image archive in the spec's order.
    let list = String::from_utf8(run(Command::new("tar")
        .arg("-tzf")
        .arg(out.join("os.tar.gz"))))
    .unwrap();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "oxide.json",
            "image/",
            "image/zfs.img",
            "image/rom",
            "image/cpio.z",
            "image/unix.z"
        ]
    );
    // Python's tarfile and json read the metadata and the members.
    let py = r#"
import hashlib, json, sys, tarfile
t = tarfile.open(sys.argv[1], "r:gz")
names = t.getnames()
meta = json.load(t.extractfile("oxide.json"))
img = t.extractfile("image/zfs.img").read()
rom = t.getmember("image/rom")
print(names[0])
print(meta["v"], meta["t"], meta["i"]["name"], meta["i"]["checksum"], meta["i"]["version"], meta["i"]["build-host"])
print(img[:4].hex(), rom.size, rom.uid, rom.gid, rom.mtime, oct(rom.mode))
"#;
    let outp = String::from_utf8(run(Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(out.join("os.tar.gz"))))
    .unwrap();
    let lines: Vec<&str> = outp.lines().collect();
    assert_eq!(lines[0], "oxide.json");
    assert_eq!(
        lines[1],
        format!("1 os helios-test {} 1.2.3 ci", bootimage::header::hex(&sum))
    );
    assert_eq!(lines[2], format!("7500eb1d {ROM} 0 0 0 0o644"));

    // Our own inspector verifies the archive member against its header and
    // oxide.json, and the boot archive against the image.
    let mut text = Vec::new();
    bootimage::inspect(
        &out.join("os.tar.gz"),
        bootimage::InspectOptions::default(),
        None,
        &mut text,
        &|_, _| {},
    )
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("verified: image/zfs.img matches its header and oxide.json"),
        "{text}"
    );
    assert!(text.contains("    image/rom (33554432 bytes)\n"), "{text}");
    let mut text = Vec::new();
    bootimage::inspect(
        &out.join("cpio.gz"),
        bootimage::InspectOptions::default(),
        Some(&out.join("os.img")),
        &mut text,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        format!(
            "boot_image_csum = {}\nmatches {}\n",
            bootimage::header::hex(&sum),
            out.join("os.img").display()
        )
    );
}

#[test]
fn builds_are_byte_identical_in_other_directories_at_other_times() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    project(a.path());
    // Later, elsewhere, with other permissions on a source file.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    project(b.path());
    fs::set_permissions(
        b.path().join("root/etc/motd"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let outs: Vec<_> = [a.path(), b.path()]
        .iter()
        .map(|d| {
            let out = d.join("out");
            fs::create_dir(&out).unwrap();
            build(&d.join("os.toml"), &out).unwrap();
            out
        })
        .collect();
    for name in [
        "os.img",
        "boot_image_csum",
        "cpio.gz",
        "os.tar.gz",
        "os.cpio",
    ] {
        assert!(
            fs::read(outs[0].join(name)).unwrap() == fs::read(outs[1].join(name)).unwrap(),
            "{name} differs between builds"
        );
    }
    // The gzip headers carry no timestamp or name.
    for name in ["cpio.gz", "os.tar.gz"] {
        let bytes = fs::read(outs[0].join(name)).unwrap();
        assert_eq!(
            &bytes[3..8],
            &[0, 0, 0, 0, 0],
            "{name}: FLG and MTIME are zero"
        );
    }
}

/// Builds `manifest` (written into a fresh project) and returns the error,
/// with the directory removed, after checking that no output was left.
fn fails(manifest: &str, setup: impl Fn(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    setup(dir.path());
    let m = dir.path().join("bad.toml");
    fs::write(&m, manifest).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let e = build(&m, &out).unwrap_err().to_string();
    assert!(listing(&out).is_empty(), "{:?} left behind", listing(&out));
    e.replace(&format!("{}/", dir.path().display()), "")
}

const BASE: &str =
    "name = \"x\"\ncompress = true\n[source]\ndirectory = \"root\"\nmin-size = \"1MiB\"\n";

#[test]
fn bad_manifests_name_the_key_and_file_and_leave_nothing() {
    let none = |_: &Path| {};
    assert_eq!(
        fails(
            &format!("{BASE}[boot-archive]\nfiles = {{ \"unix\" = \"proto/nope\" }}\n"),
            none
        ),
        "bad.toml: boot-archive.files.\"unix\": proto/nope: No such file or directory (os error 2)"
    );
    assert_eq!(
        fails(
            &format!("{BASE}[boot-archive]\nroot = \"proto/missing\"\n"),
            none
        ),
        "bad.toml: boot-archive.root: proto/missing: No such file or directory (os error 2)"
    );
    assert_eq!(
        fails(
            &format!("{BASE}[image-archive]\nrom = \"nope.bin\"\n"),
            none
        ),
        "bad.toml: image-archive.rom: nope.bin: No such file or directory (os error 2)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nrom = \"small.rom\"\n"), |d| {
            fs::write(d.join("small.rom"), vec![0u8; 1000]).unwrap()
        }),
        "bad.toml: image-archive.rom: small.rom: is 1000 bytes; the host boot ROM must be exactly 33554432 (32 MiB)"
    );
    assert_eq!(
        fails(
            &format!("{BASE}[image-archive]\nextra = {{ \"x\" = \"proto/gone\" }}\n"),
            none
        ),
        "bad.toml: image-archive.extra.\"x\": proto/gone: No such file or directory (os error 2)"
    );
    // Duplicate member names.
    assert_eq!(
        fails(
            &format!("{BASE}[boot-archive]\nroot = \"proto/boot\"\nfiles = {{ \"etc/system\" = \"proto/unix.z\" }}\n"),
            none
        ),
        "bad.toml: boot-archive: duplicate member name \"etc/system\" in the archive"
    );
    assert_eq!(
        fails(
            &format!(
                "{BASE}[boot-archive]\nfiles = {{ \"boot_image_csum\" = \"proto/unix.z\" }}\n"
            ),
            none
        ),
        "bad.toml: boot-archive: duplicate member name \"boot_image_csum\" in the archive"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nextra = {{ \"rom\" = \"rom.bin\" }}\n"), none),
        "bad.toml: image-archive.extra.\"rom\": image/rom is not a plain extra member (zfs.img and rom are the archive's own; no directories)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\ninfo = {{ checksum = \"0\" }}\n"), none),
        "bad.toml: image-archive.info.checksum: \"checksum\" is set by the build (duplicate oxide.json entry)"
    );
    // Paths that leave the manifest's directory.
    assert_eq!(
        fails(
            &format!("{BASE}[image-archive]\nrom = \"../rom.bin\"\n"),
            none
        ),
        "bad.toml: image-archive.rom: ../rom.bin: leaves the manifest's directory"
    );
    assert_eq!(
        fails("name = \"x\"\n[source]\nfile = \"/etc/passwd\"\n", none),
        "bad.toml: source.file: /etc/passwd: absolute paths are not allowed: paths are relative to the manifest's directory"
    );
    assert_eq!(
        fails("name = \"x\"\n[source]\nfile = \"escape\"\n", |d| {
            std::os::unix::fs::symlink("/etc/passwd", d.join("escape")).unwrap()
        }),
        "bad.toml: source.file: escape: leads out of the manifest's directory (through a symbolic link)"
    );
    assert_eq!(
        fails(&format!("{BASE}[boot-archive]\nfiles = {{ \"../x\" = \"proto/unix.z\" }}\n"), none),
        "bad.toml: boot-archive.files.\"../x\": \"../x\" is not a relative member path (no leading /, no . or .. components)"
    );
    // Outputs that would overwrite each other or leave the output directory.
    assert_eq!(
        fails(&format!("checksum-file = \"bad.img\"\n{BASE}"), none),
        "bad.toml: checksum-file: output \"bad.img\" is also (the image)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\noutput = \"../os.tar.gz\"\n"), none),
        "bad.toml: image-archive.output: \"../os.tar.gz\" must be a plain file name (it is written to the output directory)"
    );
    let e = fails(&format!("{BASE}[image-archive]\ncolour = 1\n"), none);
    assert!(
        e.starts_with("bad.toml: ") && e.contains("unknown field `colour`"),
        "{e}"
    );
}

/// The output directory and every output name are checked before any
/// work: the manifest's missing input is never reached.
#[test]
fn outputs_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("x.toml");
    fs::write(&m, "name = \"x\"\n[source]\nfile = \"missing.raw\"\n").unwrap();
    let e = build(&m, &d.join("nope")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}/nope: cannot write the output here: the output directory does not exist",
            d.display()
        )
    );
    fs::write(d.join("file"), b"x").unwrap();
    let e = build(&m, &d.join("file")).unwrap_err().to_string();
    assert!(
        e.ends_with("/file: cannot write the output here: the output directory is not a directory"),
        "{e}"
    );
    let out = d.join("out");
    fs::create_dir_all(out.join("x.img")).unwrap();
    let e = build(&m, &out).unwrap_err().to_string();
    assert!(
        e.ends_with("/out/x.img: cannot write the output here: is a directory; give a file name"),
        "{e}"
    );
    assert_eq!(listing(&out), ["x.img"]);
    // With the way clear, the missing input is what fails.
    fs::remove_dir(out.join("x.img")).unwrap();
    let e = build(&m, &out).unwrap_err().to_string();
    assert!(e.contains("missing.raw"), "{e}");
    assert!(listing(&out).is_empty());
}
