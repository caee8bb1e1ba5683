//! `lookimage` on the OS build's archives, made here by the real tools
//! (GNU tar, Debian cpio) so that we read what others write too.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn lookimage(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lookimage"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn sh(script: &str, dir: &Path) {
    let o = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const SUM: &str = "fd071188b3d72d088285c0580ef8a7e38b59c6cf52ea8efefe0c1ef85f566887";

/// An image archive of the golden compressed image, with `json` as its
/// oxide.json, made by GNU tar with `members` in that order.
fn image_archive(dir: &Path, json: &str, members: &str) {
    fs::create_dir_all(dir.join("src/image")).unwrap();
    fs::write(dir.join("src/oxide.json"), json).unwrap();
    fs::copy(vectors().join("small-z.img"), dir.join("src/image/zfs.img")).unwrap();
    fs::write(dir.join("src/image/unix.z"), b"kernel").unwrap();
    fs::write(dir.join("src/image/image-args.txt"), b"-F x\n").unwrap();
    fs::write(dir.join("src/image/late.txt"), b"unseen\n").unwrap();
    // cpio.z as the OS build makes it: an odc archive (GNU cpio) holding the
    // image's checksum, as one zlib stream (Python's zlib).
    fs::create_dir_all(dir.join("boot")).unwrap();
    fs::copy(
        vectors().join("small.csum"),
        dir.join("boot/boot_image_csum"),
    )
    .unwrap();
    sh(
        "cd boot && echo boot_image_csum | cpio -o -H odc --quiet > ../boot.cpio && cd .. && \
         python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(), 9))' < boot.cpio > src/image/cpio.z && \
         gzip -nc boot.cpio > src/image/cpio.gz",
        dir,
    );
    sh(
        &format!("tar -C src --no-recursion -czf os.tar.gz {members}"),
        dir,
    );
}

fn good_json() -> String {
    format!(r#"{{"v":"1","t":"os","i":{{"name":"recovery-vector","checksum":"{SUM}"}}}}"#)
}

#[test]
fn an_image_archive_is_listed_and_verified_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(
        d,
        &good_json(),
        "oxide.json image image/image-args.txt image/zfs.img image/unix.z image/cpio.z image/late.txt",
    );
    let o = lookimage(&["os.tar.gz"], d);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.starts_with("oxide.json = "), "{out}");
    assert!(out.contains(&format!("checksum = {SUM}\n")), "{out}");
    assert!(out.contains("    image/zfs.img (408266 bytes)\n"), "{out}");
    assert!(out.contains("    image name = recovery-vector\n"), "{out}");
    assert!(out.contains("verified: image/zfs.img matches its header and oxide.json\n"));
    assert!(
        out.contains(&format!(
            "image/cpio.z: compression = zlib, boot_image_csum = {SUM}\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "verified: image/cpio.z is one zlib stream holding image/zfs.img's checksum\n"
        ),
        "{out}"
    );
    // tufaceous never sees a .txt after zfs.img: said, not fatal.
    assert!(
        out.contains("note: image/late.txt comes after a member that is not .txt: the update system's packager (tufaceous) reads .txt metadata only before it\n"),
        "{out}"
    );
    assert!(!out.contains("note: image/image-args.txt"), "{out}");
    let o = lookimage(&["--json", "os.tar.gz"], d);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "image-archive");
    assert_eq!(v["verified"], true);
    assert_eq!(v["boot_archive"]["compression"], "zlib");
    assert_eq!(v["boot_archive"]["boot_image_csum"], SUM);
    assert_eq!(v["unread_metadata"], serde_json::json!(["image/late.txt"]));
    assert_eq!(v["metadata"]["i"]["checksum"], SUM);
    assert_eq!(v["image"]["image_size"], 1048699);
}

#[test]
fn image_archive_errors_name_the_member() {
    // A cpio.z in gzip, or for another image: phbl would not boot it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(d, &good_json(), "oxide.json image/zfs.img");
    fs::rename(d.join("src/image/cpio.gz"), d.join("src/image/cpio.z")).unwrap();
    sh(
        "tar -C src -czf os.tar.gz oxide.json image/zfs.img image/cpio.z",
        d,
    );
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookimage: os.tar.gz: image/cpio.z: is gzip, not one zlib stream: the host boot loader (phbl) cannot read it\n"
    );
    let other_sum = [7u8; 32];
    fs::write(d.join("boot/boot_image_csum"), other_sum).unwrap();
    sh(
        "cd boot && echo boot_image_csum | cpio -o -H odc --quiet | python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))' > ../src/image/cpio.z && cd .. && \
         tar -C src -czf os.tar.gz oxide.json image/zfs.img image/cpio.z",
        d,
    );
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("lookimage: os.tar.gz: image/cpio.z: boot_image_csum {} does not match image/zfs.img's checksum {SUM}\n", "07".repeat(32))
    );
    // -s skips that check too.
    assert!(lookimage(&["-s", "os.tar.gz"], d).status.success());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let other = "0".repeat(64);
    image_archive(
        d,
        &good_json().replace(SUM, &other),
        "oxide.json image/zfs.img",
    );
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("lookimage: os.tar.gz: image/zfs.img: checksum {SUM} does not match oxide.json's {other}\n")
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(d, &good_json(), "image/zfs.img oxide.json");
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookimage: os.tar.gz: image/zfs.img: the first member must be oxide.json\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(
        d,
        r#"{"v":"2","t":"os","i":{}}"#,
        "oxide.json image/zfs.img",
    );
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookimage: os.tar.gz: oxide.json: \"v\" is \"2\", expected \"1\"\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(d, &good_json(), "oxide.json image/unix.z");
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookimage: os.tar.gz: image/zfs.img: missing\n"
    );

    // A member twice (GNU tar stores the second as a hard link).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(d, &good_json(), "oxide.json image/zfs.img");
    sh(
        "tar -C src -czf os.tar.gz oxide.json image image/zfs.img",
        d,
    );
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookimage: os.tar.gz: image/zfs.img: appears twice in the archive\n"
    );

    // A damaged image inside the archive.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image_archive(d, &good_json(), "oxide.json");
    let mut img = fs::read(vectors().join("small-z.img")).unwrap();
    img[5000] ^= 0x40;
    fs::write(d.join("src/image/zfs.img"), img).unwrap();
    sh("tar -C src -czf os.tar.gz oxide.json image/zfs.img", d);
    let o = lookimage(&["os.tar.gz"], d);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.starts_with("lookimage: os.tar.gz:image/zfs.img: "), "{e}");
}

#[test]
fn a_boot_archive_holds_the_checksum_and_matches_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("src")).unwrap();
    fs::copy(vectors().join("small.csum"), d.join("src/boot_image_csum")).unwrap();
    fs::write(d.join("src/unix"), b"kernel").unwrap();
    sh(
        "cd src && printf 'unix\\nboot_image_csum\\n' | cpio -o -H odc --quiet > ../boot.cpio",
        d,
    );
    sh("gzip -kn boot.cpio", d);
    // cpio.z as the OS build makes it: one zlib stream (here Python's zlib).
    sh(
        "python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.compress(open(\"boot.cpio\", \"rb\").read(), 9))' > boot.cpio.z",
        d,
    );
    assert_eq!(fs::read(d.join("boot.cpio.z")).unwrap()[0], 0x78);
    let plain = vectors().join("small-plain.img");
    let plain = plain.to_str().unwrap();
    for (archive, compression) in [
        ("boot.cpio", "none"),
        ("boot.cpio.gz", "gzip"),
        ("boot.cpio.z", "zlib"),
    ] {
        let o = lookimage(&["--image", plain, archive], d);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("compression = {compression}\nboot_image_csum = {SUM}\nmatches {plain}\n")
        );
        let o = lookimage(&["--json", archive], d);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["kind"], "boot-archive", "{archive}");
        assert_eq!(v["compression"], compression, "{archive}");
    }
    // Another image does not match.
    fs::write(d.join("other.raw"), vec![1u8; 8192]).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mkimage"))
        .args(["-i", "other.raw", "-o", "other.img"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = lookimage(&["--image", "other.img", "boot.cpio"], d);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.starts_with(&format!(
            "lookimage: boot.cpio: boot_image_csum: {SUM} does not match other.img's checksum "
        )),
        "{e}"
    );
    // No checksum at all.
    sh(
        "cd src && echo unix | cpio -o -H odc --quiet > ../bare.cpio",
        d,
    );
    let o = lookimage(&["bare.cpio"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "compression = none\nboot_image_csum = (absent)\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookimage: bare.cpio: cpio archive without boot_image_csum: not a boot archive\n"
    );
    let o = lookimage(&["--json", "boot.cpio.gz"], d);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "boot-archive");
    assert_eq!(v["gzip"], true);
    assert_eq!(v["boot_image_csum"], SUM);
}
