//! The whole OS image pipeline from one manifest: image, checksum file,
//! boot archive and image archive. The software that really reads them is
//! the judge: the boot archive is read the way phbl reads `cpio.z`
//! (miniz_oxide's core inflater into a bounded 128 MiB region, then the
//! `cpio_reader` crate), and by GNU cpio after a plain zlib inflate; the
//! image archive the way tufaceous reads it, and by GNU tar and Python.
//! Builds are byte-for-byte reproducible; bad manifests fail by key and
//! file and leave nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use bootimage::consumers::{BOOT_IMAGE_CSUM, KERNEL_PATH, PHBL_RAMDISK_LEN};
use bootimage_build::build;

mod support;
use support::listing;

const ROM: u64 = 32 << 20;

/// The kernel's bytes in the fake proto area: not all alike, so that
/// compression has work to do.
fn kernel() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| ((i * 31 / 7) ^ (i >> 9)) as u8)
        .collect()
}

/// A ROM of exactly 32 MiB (sparse) starting with `mark`.
fn rom(path: &Path, mark: &[u8]) {
    fs::write(path, mark).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(ROM)
        .unwrap();
}

/// A project tree like a real OS build's: a ramdisk root, a boot proto
/// area with a kernel, one ROM per board, the build's metadata files and
/// an engineering extra.
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
    w("proto/boot/platform/oxide/kernel/amd64/unix", &kernel());
    w("proto/boot/etc/system", b"set foo=1\n");
    w("proto/unix", &kernel());
    w("proto/extra-kernel", b"a second kernel");
    w("meta/image-args.txt", b"-F baseline\n");
    w("meta/pkg-list.txt", b"pkg://helios-dev/system/kernel\n");
    w("meta/notes.bin", b"engineering notes");
    rom(&dir.join("gimlet.rom"), b"gimlet");
    rom(&dir.join("cosmo.rom"), b"cosmo");
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
output = "cpio.z"
root = "proto/boot"
files = { "platform/oxide/kernel/amd64/unix.alt" = "proto/extra-kernel" }
compress = true

[image-archive]
output = "os.tar.gz"
roms = { gimlet = "gimlet.rom", cosmo = "cosmo.rom" }
unix = "proto/unix"
extra = { "pkg-list.txt" = "meta/pkg-list.txt", "image-args.txt" = "meta/image-args.txt", "notes.bin" = "meta/notes.bin" }
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

/// Inflates `cpio_z` as phbl's `expand_ramdisk` does (oxidecomputer/phbl
/// `src/main.rs`): miniz_oxide's core `decompress` with only
/// `TINFL_FLAG_PARSE_ZLIB_HEADER`, all input at once, into a zeroed region
/// of 128 MiB (`src/phbl.rs`, `ramdisk_addr`); phbl asserts `Done`. Then,
/// as `find_kernel` does, finds the kernel with `cpio_reader`, and
/// `boot_image_csum` as the kernel does. Returns (kernel, checksum).
fn phbl_reads(cpio_z: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER;
    use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut region = vec![0u8; PHBL_RAMDISK_LEN as usize];
    let mut r = DecompressorOxide::new();
    let (status, _, len) = decompress(&mut r, cpio_z, &mut region, 0, TINFL_FLAG_PARSE_ZLIB_HEADER);
    if status != TINFLStatus::Done {
        return Err(format!("inflate: {status:?} after {len} bytes"));
    }
    let archive = &region[..len];
    let find = |name: &str| {
        cpio_reader::iter_files(archive)
            .find(|e| e.name() == name)
            .map(|e| e.file().to_vec())
            .ok_or_else(|| format!("no {name} in the {len}-byte archive"))
    };
    Ok((find(KERNEL_PATH)?, find(BOOT_IMAGE_CSUM)?))
}

/// What tufaceous takes from an OS image archive.
#[derive(Debug, Default)]
struct Tufaceous {
    /// `oxide.json`'s `i.checksum`.
    checksum: String,
    /// The `image/*.txt` metadata, by file name.
    metadata: BTreeMap<String, Vec<u8>>,
    /// `zfs.img`, `cpio.z`, `unix.z`, `gimlet.rom`, `cosmo.rom` and `rom`,
    /// by name.
    artifacts: BTreeMap<String, Vec<u8>>,
}

/// Reads an image archive as tufaceous does (oxidecomputer/tufaceous
/// `lib/src/edit/os_images.rs`, `read_os_tarball_metadata_blocking`: tar
/// over gzip, regular members only, `image/*.txt` collected until the
/// first `image/` member with another extension; `os_images` then takes
/// the artifacts by name), with `oxide.json` checked as its metadata
/// reader does (`v` "1", `t` "os").
fn tufaceous_reads(path: &Path) -> Tufaceous {
    let f = fs::File::open(path).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut t = Tufaceous::default();
    let mut in_metadata = true;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path == Path::new("oxide.json") {
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(v["v"], "1");
            assert_eq!(v["t"], "os");
            t.checksum = v["i"]["checksum"].as_str().unwrap().to_owned();
            continue;
        }
        if path.parent() != Some(Path::new("image")) {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if in_metadata && path.extension().is_some_and(|e| e == "txt") {
            t.metadata.insert(name, data);
            continue;
        }
        in_metadata = false;
        if [
            "zfs.img",
            "cpio.z",
            "unix.z",
            "gimlet.rom",
            "cosmo.rom",
            "rom",
        ]
        .contains(&name.as_str())
        {
            t.artifacts.insert(name, data);
        }
    }
    t
}

fn inflate_zlib(z: &[u8]) -> Vec<u8> {
    miniz_oxide::inflate::decompress_to_vec_zlib(z).expect("one zlib stream")
}

#[test]
fn phbl_reads_the_boot_archive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let built = build(&d.join("os.toml"), &out).unwrap();
    let sum = built.header.sha256;
    let cpio_z = fs::read(out.join("cpio.z")).unwrap();
    // One zlib stream, not gzip (whose first bytes are 1f 8b).
    assert_eq!(&cpio_z[..2], &[0x78, 0xda]);
    let (kernel_found, csum) = phbl_reads(&cpio_z).unwrap();
    assert_eq!(kernel_found, kernel());
    assert_eq!(csum, sum);
    // A gzip stream is what phbl cannot read: this reader can fail.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &inflate_zlib(&cpio_z)).unwrap();
    assert!(phbl_reads(&gz.finish().unwrap()).is_err());

    // GNU cpio lists and extracts it after a plain zlib inflate (Python's
    // zlib module).
    let inflate = "python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))' < cpio.z";
    let list = run(Command::new("sh")
        .arg("-c")
        .arg(format!("{inflate} | cpio -it --quiet"))
        .current_dir(&out));
    let list = String::from_utf8(list).unwrap();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
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
        .arg(format!("cd .. && {inflate} | (cd x && cpio -idm --quiet)"))
        .current_dir(&x));
    assert_eq!(fs::read(x.join("boot_image_csum")).unwrap(), sum);
    assert_eq!(fs::read(x.join(KERNEL_PATH)).unwrap(), kernel());

    // lookimage tells the compression and checks the checksum.
    let mut text = Vec::new();
    bootimage::inspect(
        &out.join("cpio.z"),
        bootimage::InspectOptions::default(),
        Some(&out.join("os.img")),
        &mut text,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        format!(
            "compression = zlib\nboot_image_csum = {}\nmatches {}\n",
            bootimage::header::hex(&sum),
            out.join("os.img").display()
        )
    );
}

#[test]
fn the_update_system_reads_the_image_archive() {
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
            "cpio.z",
            "os.cpio",
            "os.img",
            "os.tar.gz"
        ]
    );
    let sum = built.header.sha256;
    assert_eq!(fs::read(out.join("boot_image_csum")).unwrap(), sum);

    // GNU tar lists the members in the OS build's order, files 0444 and the
    // directory 0755, owner root.
    let list = String::from_utf8(run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(out.join("os.tar.gz"))))
    .unwrap();
    let rows: Vec<(String, String, String)> = list
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].into(), f[1].into(), f[5].into())
        })
        .collect();
    let file = |n: &str| ("-r--r--r--".to_string(), "0/0".to_string(), n.to_string());
    assert_eq!(
        rows,
        [
            file("oxide.json"),
            ("drwxr-xr-x".into(), "0/0".into(), "image/".into()),
            file("image/image-args.txt"),
            file("image/pkg-list.txt"),
            file("image/zfs.img"),
            file("image/unix.z"),
            file("image/cpio.z"),
            file("image/gimlet.rom"),
            file("image/cosmo.rom"),
            file("image/rom"),
            file("image/notes.bin"),
        ]
    );

    // As tufaceous reads it: every .txt extra is seen, every artifact found.
    let t = tufaceous_reads(&out.join("os.tar.gz"));
    assert_eq!(t.checksum, bootimage::header::hex(&sum));
    assert_eq!(
        t.metadata,
        BTreeMap::from([
            ("image-args.txt".to_string(), b"-F baseline\n".to_vec()),
            (
                "pkg-list.txt".to_string(),
                b"pkg://helios-dev/system/kernel\n".to_vec()
            ),
        ])
    );
    assert_eq!(
        t.artifacts.keys().collect::<Vec<_>>(),
        [
            "cosmo.rom",
            "cpio.z",
            "gimlet.rom",
            "rom",
            "unix.z",
            "zfs.img"
        ]
    );
    assert_eq!(
        t.artifacts["zfs.img"],
        fs::read(out.join("os.img")).unwrap()
    );
    assert_eq!(inflate_zlib(&t.artifacts["unix.z"]), kernel());
    assert_eq!(t.artifacts["cpio.z"], fs::read(out.join("cpio.z")).unwrap());
    let (kernel_found, csum) = phbl_reads(&t.artifacts["cpio.z"]).unwrap();
    assert_eq!((kernel_found, csum), (kernel(), sum.to_vec()));
    for (name, mark) in [
        ("gimlet.rom", &b"gimlet"[..]),
        ("cosmo.rom", b"cosmo"),
        ("rom", b"gimlet"),
    ] {
        let rom = &t.artifacts[name];
        assert_eq!(rom.len() as u64, ROM, "{name}");
        assert!(rom.starts_with(mark), "{name}");
    }

    // Python's tarfile and json read the metadata and the owners.
    let py = r#"
import json, sys, tarfile
t = tarfile.open(sys.argv[1], "r:gz")
meta = json.load(t.extractfile("oxide.json"))
rom = t.getmember("image/cosmo.rom")
print(meta["v"], meta["t"], meta["i"]["name"], meta["i"]["checksum"], meta["i"]["version"], meta["i"]["build-host"])
print(rom.size, rom.uid, rom.gid, rom.uname, rom.gname, rom.mtime, oct(rom.mode))
"#;
    let outp = String::from_utf8(run(Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(out.join("os.tar.gz"))))
    .unwrap();
    let lines: Vec<&str> = outp.lines().collect();
    assert_eq!(
        lines[0],
        format!("1 os helios-test {} 1.2.3 ci", bootimage::header::hex(&sum))
    );
    assert_eq!(lines[1], format!("{ROM} 0 0 root root 0 0o444"));

    // Our own inspector verifies the archive member against its header and
    // oxide.json.
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
    assert!(
        text.contains("    image/cosmo.rom (33554432 bytes)\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "verified: image/cpio.z is one zlib stream holding image/zfs.img's checksum\n"
        ),
        "{text}"
    );
    assert!(!text.contains("note:"), "{text}");
}

#[test]
fn a_plain_boot_archive_still_gives_the_image_archive_a_zlib_cpio_z() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    fs::write(
        d.join("plain.toml"),
        "name = \"x\"\n[source]\ndirectory = \"root\"\nmin-size = \"1MiB\"\n\
         [boot-archive]\nroot = \"proto/boot\"\n\
         [image-archive]\nrom = \"gimlet.rom\"\n",
    )
    .unwrap();
    let out = d.join("out");
    fs::create_dir(&out).unwrap();
    let built = build(&d.join("plain.toml"), &out).unwrap();
    assert_eq!(
        listing(&out),
        ["plain.boot.cpio", "plain.cpio", "plain.img", "plain.tar.gz"]
    );
    let plain = fs::read(out.join("plain.boot.cpio")).unwrap();
    assert!(plain.starts_with(b"070707"));
    let t = tufaceous_reads(&out.join("plain.tar.gz"));
    assert_eq!(inflate_zlib(&t.artifacts["cpio.z"]), plain);
    let (kernel_found, csum) = phbl_reads(&t.artifacts["cpio.z"]).unwrap();
    assert_eq!(
        (kernel_found, csum),
        (kernel(), built.header.sha256.to_vec())
    );
    // `rom` is gimlet's: image/gimlet.rom and its copy image/rom, no cosmo.
    assert_eq!(
        t.artifacts.keys().collect::<Vec<_>>(),
        ["cpio.z", "gimlet.rom", "rom", "zfs.img"]
    );
    assert!(t.artifacts["rom"].starts_with(b"gimlet"));
}

#[test]
fn a_boot_archive_larger_than_phbls_region_is_refused() {
    let e = fails(
        &format!(
            "{BASE}[boot-archive]\ncompress = \"zlib\"\nfiles = {{ \"big\" = \"big.bin\" }}\n"
        ),
        |d| {
            fs::File::create(d.join("big.bin"))
                .unwrap()
                .set_len(PHBL_RAMDISK_LEN)
                .unwrap()
        },
    );
    // The cpio headers of big, boot_image_csum and the trailer.
    let size = PHBL_RAMDISK_LEN + 76 * 3 + 4 + 16 + 11 + 32;
    assert_eq!(
        e,
        format!("bad.toml: boot-archive: the archive is {size} bytes; the host boot loader (phbl) inflates it into a 134217728-byte (128 MiB) region")
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
        "cpio.z",
        "os.tar.gz",
        "os.cpio",
    ] {
        assert!(
            fs::read(outs[0].join(name)).unwrap() == fs::read(outs[1].join(name)).unwrap(),
            "{name} differs between builds"
        );
    }
    // The gzip header carries no timestamp or name.
    let bytes = fs::read(outs[0].join("os.tar.gz")).unwrap();
    assert_eq!(&bytes[3..8], &[0, 0, 0, 0, 0], "FLG and MTIME are zero");
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
        "bad.toml: image-archive.rom: small.rom: is 1000 bytes; the OS build's gimlet host boot ROM is exactly 33554432 (32 MiB)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nroms = {{ gimlet = \"gimlet.rom\", cosmo = \"small.rom\" }}\n"), |d| {
            fs::write(d.join("small.rom"), vec![0u8; 1000]).unwrap()
        }),
        "bad.toml: image-archive.roms.cosmo: small.rom: is 1000 bytes; the OS build's cosmo host boot ROM is exactly 33554432 (32 MiB)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nroms = {{ milan = \"gimlet.rom\" }}\n"), none),
        "bad.toml: image-archive.roms.milan: unknown board \"milan\": the OS build makes ROMs for gimlet and cosmo"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nrom = \"gimlet.rom\"\nroms = {{ gimlet = \"gimlet.rom\" }}\n"), none),
        "bad.toml: image-archive.roms.gimlet: gimlet's ROM is given twice: by `rom` (its shorthand) and by `roms.gimlet`"
    );
    assert_eq!(
        fails(
            &format!("{BASE}[image-archive]\nunix = \"proto/nounix\"\n"),
            none
        ),
        "bad.toml: image-archive.unix: proto/nounix: No such file or directory (os error 2)"
    );
    assert_eq!(
        fails(&format!("{BASE}[boot-archive]\ncompress = \"gzip\"\n"), none),
        "bad.toml: boot-archive.compress: \"gzip\": no reader of boot archives takes gzip (phbl, the host boot loader, inflates one zlib stream): use true or \"zlib\""
    );
    assert_eq!(
        fails(&format!("{BASE}[boot-archive]\ncompress = \"xz\"\n"), none),
        "bad.toml: boot-archive.compress: \"xz\" is not true, false or \"zlib\""
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
            &format!("{BASE}[boot-archive]\nroot = \"proto/boot\"\nfiles = {{ \"etc/system\" = \"proto/unix\" }}\n"),
            none
        ),
        "bad.toml: boot-archive: duplicate member name \"etc/system\" in the archive"
    );
    assert_eq!(
        fails(
            &format!("{BASE}[boot-archive]\nfiles = {{ \"boot_image_csum\" = \"proto/unix\" }}\n"),
            none
        ),
        "bad.toml: boot-archive: duplicate member name \"boot_image_csum\" in the archive"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nextra = {{ \"rom\" = \"gimlet.rom\" }}\n"), none),
        "bad.toml: image-archive.extra.\"rom\": image/rom is the archive's own: give ROMs as `roms` (or `rom` for gimlet's)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nextra = {{ \"unix.z\" = \"proto/unix\" }}\n"), none),
        "bad.toml: image-archive.extra.\"unix.z\": image/unix.z is the archive's own: give the kernel as `unix` (packed as one zlib stream)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nextra = {{ \"cpio.z\" = \"proto/unix\" }}\n"), none),
        "bad.toml: image-archive.extra.\"cpio.z\": image/cpio.z is the archive's own: made from [boot-archive] (its zlib form)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\nextra = {{ \"a/b.txt\" = \"proto/unix\" }}\n"), none),
        "bad.toml: image-archive.extra.\"a/b.txt\": image/a/b.txt: extras are plain names under image/ (no directories)"
    );
    assert_eq!(
        fails(&format!("{BASE}[image-archive]\ninfo = {{ checksum = \"0\" }}\n"), none),
        "bad.toml: image-archive.info.checksum: \"checksum\" is set by the build (duplicate oxide.json entry)"
    );
    // Paths that leave the manifest's directory.
    assert_eq!(
        fails(
            &format!("{BASE}[image-archive]\nrom = \"../gimlet.rom\"\n"),
            none
        ),
        "bad.toml: image-archive.rom: ../gimlet.rom: leaves the manifest's directory"
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
        fails(&format!("{BASE}[boot-archive]\nfiles = {{ \"../x\" = \"proto/unix\" }}\n"), none),
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
