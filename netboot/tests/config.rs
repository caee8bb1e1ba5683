//! The boot server's configuration file: every key, and errors that name
//! the file and key.

use std::fs;
use std::path::Path;

use netboot::config::Config;
use netboot::image::Choice;
use netboot::wire::Mac;

fn write_image(dir: &Path, name: &str, fill: u8) {
    let raw = dir.join(format!("{name}.raw"));
    fs::write(&raw, vec![fill; 1 << 20]).unwrap();
    bootimage::make_image(
        &raw,
        &dir.join(format!("{name}.img")),
        &bootimage::ImageSpec::default(),
        &|_| {},
    )
    .unwrap();
}

fn served(c: &Config, mac: &str) -> Option<String> {
    match c.catalog.choose(mac.parse::<Mac>().unwrap()) {
        Choice::Serve(img) => Some(img.name.clone()),
        _ => None,
    }
}

#[test]
fn every_key() {
    let dir = tempfile::tempdir().unwrap();
    write_image(dir.path(), "a", 1);
    write_image(dir.path(), "b", 2);
    let path = dir.path().join("server.toml");
    fs::write(
        &path,
        r#"
        link = "eth7"
        default = "a"
        max-sessions = 5
        idle-timeout-secs = 9
        max-reads-per-sec = 100
        max-rereads-per-sec = 10
        resend-after-ms = 3
        resend-max-ms = 400
        resend-rounds = 4
        rate = "2.5gbit"
        sled-rate = "off"
        broadcast = true
        cohort-window-ms = 6000
        [[image]]
        name = "a"
        path = "a.img"
        [[sled]]
        mac = "02:00:00:00:00:01"
        image = "b.img"
        [[sled]]
        mac = "02:00:00:00:00:02"
        image = "a"
        "#,
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.link.as_deref(), Some("eth7"));
    assert_eq!(c.limits.max_sessions, 5);
    assert_eq!(c.limits.idle_timeout.as_secs(), 9);
    assert_eq!(c.limits.max_reads_per_sec, 100);
    assert_eq!(c.limits.max_rereads_per_sec, 10);
    assert_eq!(c.limits.resend_after.as_millis(), 3);
    assert_eq!(c.limits.resend_max.as_millis(), 400);
    assert_eq!(c.limits.resend_rounds, 4);
    assert_eq!(c.limits.rate.unwrap().bits_per_sec(), 2_500_000_000);
    assert!(c.rate_given);
    assert_eq!(c.limits.sled_rate, None);
    assert!(c.limits.broadcast);
    assert_eq!(c.limits.cohort_window.as_millis(), 6000);
    assert_eq!(served(&c, "02:00:00:00:00:01").as_deref(), Some("b.img"));
    assert_eq!(served(&c, "02:00:00:00:00:02").as_deref(), Some("a"));
    assert_eq!(served(&c, "02:00:00:00:00:03").as_deref(), Some("a"));
}

#[test]
fn without_a_default_unknown_macs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_image(dir.path(), "a", 1);
    let path = dir.path().join("s.toml");
    fs::write(&path, "[[image]]\nname = \"a\"\npath = \"a.img\"\n[[sled]]\nmac = \"02:00:00:00:00:01\"\nimage = \"a\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(served(&c, "02:00:00:00:00:01").as_deref(), Some("a"));
    assert!(matches!(
        c.catalog.choose("02:00:00:00:00:09".parse().unwrap()),
        Choice::Refused
    ));
}

#[test]
fn errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_image(dir.path(), "a", 1);
    let path = dir.path().join("s.toml");
    let fail = |text: &str| {
        fs::write(&path, text).unwrap();
        Config::load(&path)
            .err()
            .unwrap()
            .to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    };
    let e = fail("colour = 1\n");
    assert!(
        e.starts_with("s.toml: ") && e.contains("unknown field `colour`"),
        "{e}"
    );
    assert_eq!(
        fail("[[sled]]\nmac = \"02:00\"\nimage = \"a\"\n"),
        "s.toml: sled[0].mac: invalid MAC address \"02:00\" (expected six hex pairs, as 02:00:00:00:00:01)"
    );
    assert_eq!(
        fail("default = \"nope\"\n"),
        "s.toml: default: no [[image]] is named \"nope\" (give a name or a path)"
    );
    assert_eq!(
        fail("[[image]]\nname = \"a\"\npath = \"a.img\"\n[[image]]\nname = \"a\"\npath = \"a.img\"\n"),
        "s.toml: image[1].name: \"a\" is used twice"
    );
    assert_eq!(
        fail("[[image]]\nname = \"x\"\npath = \"missing.img\"\n"),
        "s.toml: image[0].path: missing.img: stat: No such file or directory (os error 2)"
    );
    // Every setting is bounded; the error names the key, value and range.
    assert_eq!(
        fail("cohort-window-ms = 60001\n"),
        "s.toml: cohort-window-ms: 60001 is out of range: 0 to 60000"
    );
    let e = fail("broadcast = \"yes\"\n");
    assert!(e.starts_with("s.toml: ") && e.contains("broadcast"), "{e}");
    assert_eq!(
        fail("resend-rounds = 32\n"),
        "s.toml: resend-rounds: 32 is out of range: 0 to 10"
    );
    assert_eq!(
        fail("resend-after-ms = 1000\n"),
        "s.toml: resend-after-ms: 1000 is out of range: 0 (off) to 900"
    );
    assert_eq!(
        fail("max-sessions = 0\n"),
        "s.toml: max-sessions: 0 is out of range: 1 to 65536"
    );
    assert_eq!(
        fail("rate = \"fast\"\n"),
        "s.toml: rate: \"fast\" is not a rate: no number (give e.g. 1gbit, 10gbit, 100mbit, 2.5gbit)"
    );
    assert_eq!(
        fail("sled-rate = \"1gbyte\"\n"),
        "s.toml: sled-rate: \"1gbyte\" is not a rate: unknown unit (tbit, gbit, mbit, kbit, bit) (give e.g. 1gbit, 10gbit, 100mbit, 2.5gbit)"
    );
    fs::write(dir.path().join("bad.img"), vec![0u8; 8192]).unwrap();
    assert_eq!(
        fail("[[image]]\nname = \"x\"\npath = \"bad.img\"\n"),
        "s.toml: image[0].path: bad.img: bad magic 0x00000000 (expected 0x1deb0075)"
    );
}

#[test]
fn the_shipped_configuration_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bootserver.toml");
    let text = fs::read_to_string(&path).unwrap();
    // Point it at an image of our own: the demo image may not be built yet.
    let dir = tempfile::tempdir().unwrap();
    write_image(dir.path(), "demo", 3);
    let copy = dir.path().join("bootserver.toml");
    fs::write(
        &copy,
        text.replace("../target/bootimage/demo.img", "demo.img"),
    )
    .unwrap();
    let c = Config::load(&copy).unwrap();
    assert_eq!(served(&c, "02:aa:00:00:00:01").as_deref(), Some("demo"));
}

#[test]
fn replaced_files_are_reloaded_in_the_background_and_verified_first() {
    use netboot::image::{Catalog, Reload};
    let dir = tempfile::tempdir().unwrap();
    write_image(dir.path(), "a", 1);
    write_image(dir.path(), "b", 2);
    let mut c = Catalog::new();
    let i = c.add_file("os", &dir.path().join("a.img")).unwrap();
    c.set_default(Some(i));
    let mac: Mac = "02:00:00:00:00:01".parse().unwrap();
    let sum = |c: &Catalog| match c.choose(mac) {
        Choice::Serve(img) => Some(img.header.sha256),
        _ => None,
    };
    let old = sum(&c).unwrap();
    assert!(c.refresh().is_empty(), "nothing changed");
    // Replaced by rename, as a build does.
    std::fs::rename(dir.path().join("b.img"), dir.path().join("a.img")).unwrap();
    c.refresh();
    let reloads = c.settle();
    assert!(
        matches!(&reloads[..], [Reload::Loaded { image, .. }] if image == "os"),
        "{reloads:?}"
    );
    let new = sum(&c).unwrap();
    assert_ne!(old, new);
    // A corrupt replacement is withdrawn, not offered.
    let mut bytes = std::fs::read(dir.path().join("a.img")).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(dir.path().join("bad.img"), bytes).unwrap();
    std::fs::rename(dir.path().join("bad.img"), dir.path().join("a.img")).unwrap();
    c.refresh();
    let reloads = c.settle();
    assert!(
        matches!(&reloads[..], [Reload::Failed { error, .. }] if error.contains("checksum mismatch")),
        "{reloads:?}"
    );
    assert!(matches!(c.choose(mac), Choice::Unavailable { .. }));
    // So is a replacement a sled could not verify over the network (not a
    // whole number of 128 KiB batches), however sound the image itself.
    let raw = dir.path().join("odd.raw");
    fs::write(&raw, vec![7u8; (1 << 20) + 777]).unwrap();
    let odd = dir.path().join("odd.img");
    bootimage::make_image(&raw, &odd, &bootimage::ImageSpec::default(), &|_| {}).unwrap();
    std::fs::rename(&odd, dir.path().join("a.img")).unwrap();
    c.refresh();
    let reloads = c.settle();
    assert!(
        matches!(&reloads[..], [Reload::Failed { error, .. }]
            if error.contains("image size 1049353 is not a multiple of 128 KiB")),
        "{reloads:?}"
    );
    assert!(matches!(c.choose(mac), Choice::Unavailable { .. }));
}

#[test]
fn an_image_a_sled_cannot_verify_is_refused_at_start_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("odd.raw");
    fs::write(&raw, vec![7u8; (2 << 20) + 777]).unwrap();
    bootimage::make_image(
        &raw,
        &dir.path().join("odd.img"),
        &bootimage::ImageSpec::default(),
        &|_| {},
    )
    .unwrap();
    let path = dir.path().join("s.toml");
    fs::write(&path, "[[image]]\nname = \"x\"\npath = \"odd.img\"\n").unwrap();
    let e = Config::load(&path)
        .err()
        .unwrap()
        .to_string()
        .replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(
        e,
        "s.toml: image[0].path: odd.img: image size 2097929 is not a multiple of 128 KiB \
         (131072 bytes): a sled booting over the network hashes whole 128 KiB batches and \
         fails its integrity check (pad the raw image, e.g. mkimage --pad-to 128KiB)"
    );
}
