//! A real crate whose `build.rs` uses `bootimage-build` (offline, by path):
//! the checksum it embeds must be the one `lookimage` reports, and
//! `SOURCE_DATE_EPOCH` must reach the archive.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A target directory of its own, kept between runs so that the nested
/// builds are incremental, and apart from the one the outer `cargo test`
/// holds locked.
fn target_dir() -> PathBuf {
    let outer = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    outer.join("nested")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .arg("--quiet");
    c
}

fn write_consumer(dir: &Path) {
    let files: &[(&str, String)] = &[
        (
            "Cargo.toml",
            format!(
                "[package]\nname = \"firmware\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [build-dependencies]\nbootimage-build = {{ path = {:?} }}\n\n[workspace]\n",
                workspace().join("bootimage-build").to_str().unwrap()
            ),
        ),
        (
            "build.rs",
            "fn main() {\n    if let Err(e) = bootimage_build::build_script(\"image.toml\") {\n        \
             eprintln!(\"{e}\");\n        std::process::exit(1);\n    }\n}\n"
                .into(),
        ),
        (
            "src/main.rs",
            "mod image {\n    include!(concat!(env!(\"OUT_DIR\"), \"/image.rs\"));\n}\n\n\
             fn main() {\n    \
             let hex: String = image::SHA256.iter().map(|b| format!(\"{b:02x}\")).collect();\n    \
             println!(\"{hex}\");\n    println!(\"{}\", image::SHA256_HEX);\n    \
             println!(\"{}\", env!(\"BOOTIMAGE_IMAGE_SHA256\"));\n    \
             println!(\"{}\", image::PATH);\n    println!(\"{}\", env!(\"BOOTIMAGE_IMAGE_PATH\"));\n    \
             println!(\"{}\", image::BOOT_ARCHIVE.unwrap());\n    \
             println!(\"{}\", env!(\"BOOTIMAGE_IMAGE_IMAGE_ARCHIVE\"));\n    \
             println!(\"{}\", image::CHECKSUM_FILE.unwrap());\n}\n"
                .into(),
        ),
        (
            "image.toml",
            "name = \"firmware-embedded\"\ntarget-size = \"8MiB\"\ncompress = true\n\
             checksum-file = \"boot_image_csum\"\n\
             [source]\ndirectory = \"root\"\nmin-size = \"1MiB\"\n\
             [boot-archive]\nroot = \"boot\"\n\
             [image-archive]\ninfo = { version = \"0.1.0\" }\n"
                .into(),
        ),
        ("root/etc/motd", "hello from the firmware's ramdisk\n".into()),
        ("boot/platform/kernel", "a kernel\n".into()),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    // Resolve exactly the versions the workspace has, offline.
    fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

/// Runs the nested-built `lookimage` with `args`; its standard output.
fn lookimage(args: &[&str]) -> String {
    let st = cargo()
        .args([
            "build",
            "--offline",
            "-p",
            "bootimage",
            "--bin",
            "lookimage",
        ])
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(target_dir().join("debug/lookimage"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lookimage_sum(image: &str) -> String {
    lookimage(&[image])
        .lines()
        .find_map(|l| l.strip_prefix("image sum = "))
        .unwrap()
        .to_owned()
}

fn run_consumer(dir: &Path, epoch: Option<&str>) -> Vec<String> {
    let mut c = cargo();
    c.args(["run", "--offline"]).current_dir(dir);
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn build_script_embeds_the_checksum_lookimage_reports() {
    let dir = tempfile::tempdir().unwrap();
    write_consumer(dir.path());

    let lines = run_consumer(dir.path(), None);
    assert_eq!(lines.len(), 8, "{lines:?}");
    let (array_hex, const_hex, env_hex) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(array_hex.len(), 64);
    assert_eq!(array_hex, const_hex);
    assert_eq!(array_hex, env_hex);
    assert_eq!(lines[3], lines[4]);
    assert!(lines[3].ends_with("/image.img"), "{}", lines[3]);
    assert_eq!(&lookimage_sum(&lines[3]), array_hex);
    // The archives' paths reach the crate too, and the archives check out.
    let (boot, archive, csum) = (&lines[5], &lines[6], &lines[7]);
    assert!(boot.ends_with("/image.boot.cpio"), "{boot}");
    assert!(archive.ends_with("/image.tar.gz"), "{archive}");
    assert_eq!(
        bootimage::header::hex(&std::fs::read(csum).unwrap()),
        *array_hex
    );
    let text = lookimage(&["--image", &lines[3], boot]);
    assert_eq!(
        text,
        format!(
            "compression = none\nboot_image_csum = {array_hex}\nmatches {}\n",
            lines[3]
        )
    );
    let text = lookimage(&[archive]);
    assert!(
        text.contains("verified: image/zfs.img matches its header and oxide.json"),
        "{text}"
    );
    assert!(
        text.contains(&format!("checksum = {array_hex}\n")),
        "{text}"
    );

    // SOURCE_DATE_EPOCH reaches the archive: a different checksum, and the
    // same one again for the same epoch (rerun-if-env-changed).
    let with_epoch = run_consumer(dir.path(), Some("1700000000"));
    assert_ne!(with_epoch[0], lines[0]);
    assert_eq!(&lookimage_sum(&with_epoch[3]), &with_epoch[0]);
    assert_eq!(
        run_consumer(dir.path(), Some("1700000000"))[0],
        with_epoch[0]
    );

    // Editing an input rebuilds the image (rerun-if-changed).
    fs::write(dir.path().join("root/etc/motd"), "changed\n").unwrap();
    let changed = run_consumer(dir.path(), None);
    assert_ne!(changed[0], lines[0]);
    assert_eq!(&lookimage_sum(&changed[3]), &changed[0]);
}
