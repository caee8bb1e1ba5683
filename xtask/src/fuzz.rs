//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the libFuzzer targets in
//! `fuzz/` (with cargo-fuzz, installed from crates.io if missing), each
//! for a bounded time, from seeds made of real inputs.

use std::path::Path;

use xshell::{cmd, Shell};

use crate::{Result, Workspace};

const TARGETS: [&str; 5] = ["header", "verify", "frame", "server", "manifest"];

/// Writes seed inputs for `target` into `dir`.
fn seed(ws: &Workspace, target: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let vectors = ws.root.join("../shared/vectors");
    let put = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes);
    match target {
        "header" | "verify" => {
            for v in ["small-plain.img", "small-z.img"] {
                let bytes = std::fs::read(vectors.join(v))?;
                let bytes = if target == "header" {
                    &bytes[..4096]
                } else {
                    &bytes[..]
                };
                put(v, bytes)?;
            }
        }
        "frame" | "server" => {
            let mut read = vec![0u8; 12 + 1032];
            read[..12].copy_from_slice(b"\x1d\xe1\x23\x45\x00\x00\x90\x03\x00\x00\x04\x08");
            read[19] = 128;
            for i in 1..128u64 {
                let at = 20 + 8 * i as usize;
                read[at..at + 8].copy_from_slice(&(i * 1024).to_be_bytes());
            }
            if target == "frame" {
                put("read", &read)?;
                put(
                    "hello",
                    b"\x1d\xe1\x23\x45\x00\x00\x90\x01\x00\x00\x00\x02hi",
                )?;
            } else {
                let mut s = vec![0x81, 0, 2];
                s.extend_from_slice(b"\x1d\xe1\x23\x45\x00\x00\x90\x01\x00\x00\x00\x00");
                s.extend_from_slice(&[1, 1, (read.len() / 6) as u8]);
                s.extend_from_slice(&read);
                put("hello-read", &s)?;
            }
        }
        _ => {
            for m in crate::default_manifests(&ws.root.join("config/images"))? {
                std::fs::copy(&m, dir.join(m.file_name().expect("a file")))?;
            }
        }
    }
    Ok(())
}

pub fn fuzz(target: Option<String>, seconds: u64) -> Result<()> {
    let ws = crate::workspace()?;
    let targets: Vec<&str> = match &target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => {
            return Err(format!("no fuzz target {t:?} (targets: {})", TARGETS.join(", ")).into())
        }
        None => TARGETS.to_vec(),
    };
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    if cmd!(sh, "cargo fuzz --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        eprintln!("xtask: installing cargo-fuzz from crates.io");
        cmd!(sh, "cargo install cargo-fuzz --locked").run()?;
    }
    // No sanitizer: the stable toolchain builds it, and panics and
    // libFuzzer's own checks still find the bugs that matter here.
    cmd!(sh, "cargo fuzz build --sanitizer none").run()?;
    for t in targets {
        let corpus = ws.target.join("fuzz-corpus").join(t);
        seed(&ws, t, &corpus)?;
        let time = format!("-max_total_time={seconds}");
        eprintln!("xtask: fuzzing {t} for {seconds} s");
        let run = cmd!(
            sh,
            "cargo fuzz run --sanitizer none {t} {corpus} -- {time} -rss_limit_mb=4096 -timeout=20"
        )
        .run();
        if run.is_err() {
            return Err(format!(
                "fuzz target {t} found a crash: the input is in fuzz/artifacts/{t}/; fix it and \
                 add the input to fuzz/regressions/{t}/ (see fuzz/regressions/README.md)"
            )
            .into());
        }
    }
    Ok(())
}
