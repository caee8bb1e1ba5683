//! Building from manifests: the embedded default, determinism, and errors
//! that leave nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use bootimage_build::build;

mod support;
use support::listing;

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/images")
}

/// A newc reader for the tests: (name, mode, mtime, data) per entry.
fn read_newc(bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
    let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let h = &bytes[at..at + 110];
        assert_eq!(&h[..6], b"070701");
        let f = |i: usize| hex(&h[6 + 8 * i..14 + 8 * i]);
        let (mode, mtime, size, namesize) = (f(1), f(5), f(6) as usize, f(11) as usize);
        let name = String::from_utf8(bytes[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
        at = (at + 110 + namesize).next_multiple_of(4);
        let data = bytes[at..at + size].to_vec();
        at = (at + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            return out;
        }
        out.push((name, mode, mtime, data));
    }
}

#[test]
fn the_embedded_default_builds_into_an_image_the_sled_accepts() {
    let out = tempfile::tempdir().unwrap();
    let built = build(&config().join("demo.toml"), out.path()).unwrap();
    assert_eq!(built.image, out.path().join("demo.img"));
    assert_eq!(
        listing(out.path()),
        [
            "demo.boot.cpio.z",
            "demo.cpio",
            "demo.csum",
            "demo.img",
            "demo.tar.gz"
        ]
    );
    assert_eq!(
        fs::read(out.path().join("demo.csum")).unwrap(),
        built.header.sha256
    );
    let h = &built.header;
    // The network client boots it: at least 1 MiB, whole 128 KiB batches.
    assert_eq!(h.netboot_problem(), None);
    assert_eq!(h.image_size % bootimage::NETBOOT_ALIGN, 0);
    assert!(h.flags.compressed());
    assert_eq!(h.image_name.as_str(), "demo");
    assert_eq!(h.target_size, 64 << 20);
    bootimage::Image::open(&built.image)
        .unwrap()
        .verify(&|_| {})
        .unwrap();

    // The boot archive is one zlib stream of an odc archive carrying the
    // image's checksum, as the host boot loader reads it.
    let boot = fs::read(out.path().join("demo.boot.cpio.z")).unwrap();
    let boot = miniz_oxide::inflate::decompress_to_vec_zlib(&boot).unwrap();
    let csum = cpio_reader::iter_files(&boot)
        .find(|e| e.name() == "boot_image_csum")
        .map(|e| e.file().to_vec());
    assert_eq!(csum.as_deref(), Some(&built.header.sha256[..]));

    let cpio = fs::read(out.path().join("demo.cpio")).unwrap();
    assert_eq!(cpio.len(), 1 << 20);
    let entries = read_newc(&cpio);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "bin",
            "bin/hello",
            "etc",
            "etc/issue",
            "etc/motd",
            "etc/os-release",
            "usr",
            "usr/share",
            "usr/share/doc",
            "usr/share/doc/demo",
            "usr/share/doc/demo/README"
        ]
    );
    let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
    assert_eq!(get("bin/hello").1, 0o100755);
    assert_eq!(get("etc/motd").1, 0o100644);
    assert_eq!(get("etc").1, 0o040755);
    assert_eq!(get("etc/issue").1, 0o120777);
    assert_eq!(get("etc/issue").3, b"motd");
    assert_eq!(
        get("etc/motd").3,
        fs::read(config().join("demo/etc/motd")).unwrap()
    );

    // Every input is reported, for cargo:rerun-if-changed.
    assert_eq!(built.inputs[0], config().join("demo.toml"));
    assert!(built.inputs.contains(&config().join("demo")));
    assert!(built
        .inputs
        .contains(&config().join("demo/usr/share/doc/demo/README")));
    assert!(built
        .inputs
        .contains(&config().join("demo-boot/platform/demo/README")));
    assert!(built.inputs.contains(&config().join("demo-extra.txt")));
}

#[test]
fn builds_are_byte_identical_across_directories_and_modes() {
    // The same tree in two places, with different permissions and mtimes.
    let make_tree = |root: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(root.join("src/sub")).unwrap();
        fs::write(root.join("src/b.txt"), b"bee").unwrap();
        fs::write(root.join("src/a.txt"), b"ay").unwrap();
        fs::write(root.join("src/sub/c"), vec![3u8; 5000]).unwrap();
        fs::set_permissions(root.join("src/a.txt"), fs::Permissions::from_mode(mode)).unwrap();
        fs::write(
            root.join("img.toml"),
            "name = \"x\"\ncompress = true\n[source]\ndirectory = \"src\"\nmin-size = \"1MiB\"\n",
        )
        .unwrap();
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_tree(a.path(), 0o600);
    std::thread::sleep(std::time::Duration::from_millis(20));
    make_tree(b.path(), 0o664);
    let ba = build(&a.path().join("img.toml"), a.path()).unwrap();
    let bb = build(&b.path().join("img.toml"), b.path()).unwrap();
    assert_eq!(fs::read(&ba.image).unwrap(), fs::read(&bb.image).unwrap());
    assert_eq!(ba.header.sha256, bb.header.sha256);
}

#[test]
fn a_raw_file_source_is_used_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/small.raw");
    fs::copy(&raw, dir.path().join("small.raw")).unwrap();
    fs::write(
        dir.path().join("v.toml"),
        "name = \"vector-plain\"\ntarget-size = \"4MiB\"\npad-to = 0\n[source]\nfile = \"small.raw\"\n",
    )
    .unwrap();
    let built = build(&dir.path().join("v.toml"), dir.path()).unwrap();
    // With pad-to = 0, the same bytes as the previous mkimage made.
    assert_eq!(
        fs::read(&built.image).unwrap(),
        fs::read(raw.with_file_name("small-plain.img")).unwrap()
    );
    // By default, zeros up to a multiple of 128 KiB, hashed with the rest:
    // the image the network client can boot.
    let raw_len = fs::metadata(&raw).unwrap().len();
    for (pad_to, size) in [("", 9 * 131072), ("pad-to = \"1MiB\"\n", 2 << 20)] {
        fs::write(
            dir.path().join("v.toml"),
            format!("name = \"vector-plain\"\ntarget-size = \"4MiB\"\n{pad_to}[source]\nfile = \"small.raw\"\n"),
        )
        .unwrap();
        let built = build(&dir.path().join("v.toml"), dir.path()).unwrap();
        assert_eq!(built.header.image_size, size, "{pad_to:?}");
        assert_eq!(built.header.netboot_problem(), None, "{pad_to:?}");
        let mut padded = fs::read(&raw).unwrap();
        padded.resize(size as usize, 0);
        let image = fs::read(&built.image).unwrap();
        assert_eq!(
            &image[4096..4096 + raw_len as usize],
            &padded[..raw_len as usize]
        );
        assert!(image[4096 + raw_len as usize..].iter().all(|&b| b == 0));
        assert_eq!(image.len() as u64, 4096 + size);
        use sha2::Digest;
        assert_eq!(built.header.sha256[..], sha2::Sha256::digest(&padded)[..]);
    }
}

#[test]
fn bad_inputs_name_the_manifest_and_key_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let m = dir.path().join("m.toml");
    let fail = |text: &str| {
        fs::write(&m, text).unwrap();
        let e = build(&m, &out).unwrap_err().to_string();
        assert!(listing(&out).is_empty(), "{:?}", listing(&out));
        e.replace(&format!("{}/", dir.path().display()), "")
    };
    assert_eq!(
        fail("name = \"x\"\n[source]\nfile = \"nope.raw\"\n"),
        "m.toml: source.file: nope.raw: No such file or directory (os error 2)"
    );
    assert_eq!(
        fail("name = \"x\"\n[source]\ndirectory = \"nope\"\n"),
        "m.toml: source.directory: nope: read directory: No such file or directory (os error 2)"
    );
    fs::create_dir(dir.path().join("empty")).unwrap();
    assert_eq!(
        fail("name = \"x\"\ntarget-size = \"1MiB\"\n[source]\ndirectory = \"empty\"\nmin-size = \"2MiB\"\n"),
        "m.toml: target-size: 1048576 bytes cannot hold the 2097152-byte image from source.directory"
    );
    assert_eq!(
        fail("name = \"x\"\npad-to = 0\n[source]\ndirectory = \"empty\"\n"),
        "m.toml: source.min-size: the packed directory is 124 bytes; images need at least 4096 (the network client 1 MiB): raise min-size"
    );
    fs::write(dir.path().join("tiny.raw"), b"tiny").unwrap();
    assert_eq!(
        fail("name = \"x\"\npad-to = 1\n[source]\nfile = \"tiny.raw\"\n"),
        "m.toml: source.file: image size 4 is below the minimum of 4096 bytes"
    );
    assert_eq!(
        fail("name = \"x\"\npad-to = \"lots\"\n[source]\nfile = \"tiny.raw\"\n"),
        "m.toml: pad-to: invalid size \"lots\": no number (examples: 4GiB, 512MiB, 64M, 1048576)"
    );
    let e = fail("name = \"x\"\nsauce = 1\n");
    assert!(
        e.starts_with("m.toml: ") && e.contains("unknown field `sauce`"),
        "{e}"
    );
    assert_eq!(
        build(&dir.path().join("missing.toml"), &out)
            .unwrap_err()
            .to_string()
            .replace(&format!("{}/", dir.path().display()), ""),
        "missing.toml: read: No such file or directory (os error 2)"
    );
}

#[test]
fn staleness_follows_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("root")).unwrap();
    fs::write(dir.path().join("root/a"), b"a").unwrap();
    let m = dir.path().join("m.toml");
    fs::write(
        &m,
        "name = \"x\"\n[source]\ndirectory = \"root\"\nmin-size = \"1MiB\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    assert!(bootimage_build::is_stale(&m, &out).unwrap(), "no image yet");
    build(&m, &out).unwrap();
    assert!(!bootimage_build::is_stale(&m, &out).unwrap());
    // A newer input makes it stale again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(dir.path().join("root/b"), b"b").unwrap();
    assert!(bootimage_build::is_stale(&m, &out).unwrap());
}
