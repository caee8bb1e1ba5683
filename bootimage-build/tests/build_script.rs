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

/// 64 MiB that compress slowly, so that the build script runs for a while.
fn write_slow_input(path: &Path) {
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

/// Ctrl-C during `cargo build` (SIGINT to the whole process group, as a
/// terminal sends it) while the build script is making the image: the
/// build fails and its OUT_DIR holds no staging directory or temporary
/// file.
#[test]
fn ctrl_c_during_a_build_script_leaves_no_staging_directory() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    write_consumer(dir.path());
    let toml = fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
    fs::write(
        dir.path().join("Cargo.toml"),
        toml.replace("name = \"firmware\"", "name = \"interrupted-firmware\""),
    )
    .unwrap();
    write_slow_input(&dir.path().join("big.raw"));
    fs::write(
        dir.path().join("image.toml"),
        "name = \"slow\"\ntarget-size = \"128MiB\"\ncompress = true\n\
         [source]\nfile = \"big.raw\"\n",
    )
    .unwrap();
    // Anything a previous run of this test left.
    let build = target_dir().join("debug/build");
    let out_dirs = || -> Vec<PathBuf> {
        fs::read_dir(&build)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("interrupted-firmware-")
            })
            .map(|p| p.join("out"))
            .filter(|p| p.is_dir())
            .collect()
    };
    for d in out_dirs() {
        fs::remove_dir_all(&d).unwrap();
    }
    let hidden = |d: &Path| -> Vec<String> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    };

    // As a shell's foreground job: SIGINT not ignored, even when the tests
    // run in a background job.
    let mut child = Command::new("env")
        .arg("--default-signal=INT,TERM,HUP")
        .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .args(["--quiet", "build", "--offline"])
        .current_dir(dir.path())
        .process_group(0)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let out = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it was interrupted"
        );
        if let Some(d) = out_dirs().into_iter().find(|d| {
            hidden(d)
                .iter()
                .any(|n| n.starts_with(".image.") && n.ends_with(".staging"))
        }) {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "no staging directory");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The whole process group, as a terminal's Ctrl-C. Spelt `-s INT --
    // -PGID`: procps kill reads `kill -INT -PGID` as another (even `-1`).
    let st = Command::new("kill")
        .args(["-s", "INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Cargo may end before its build script has finished cleaning up: wait
    // until no process of the group is left.
    let group_alive = || {
        Command::new("kill")
            .args(["-s", "0", "--", &format!("-{}", child.id())])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while group_alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the build script lives on"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(hidden(&out), Vec::<String>::new(), "in {}", out.display());
    assert!(!out.join("image.img").exists());
}
