//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the libFuzzer targets in
//! `fuzz/` (with cargo-fuzz, installed from crates.io if missing), each
//! for a bounded time, from seeds made of real inputs.

use std::path::Path;

use xshell::{cmd, Shell};

use crate::{Result, Workspace};

/// The fuzz targets' checks and seeds (the same file the targets use).
#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

/// Writes seed inputs for `target` into `dir`.
fn seed(ws: &Workspace, target: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let manifests = crate::default_manifests(&ws.root.join("config/images"))?;
    for (name, bytes) in checks::seeds(target, &ws.root.join("../shared/vectors"), &manifests)? {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

pub fn fuzz(target: Option<String>, seconds: u64) -> Result<()> {
    let ws = crate::workspace()?;
    let names: Vec<&str> = checks::TARGETS.iter().map(|(n, _)| *n).collect();
    let targets: Vec<&str> = match &target {
        Some(t) if names.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => {
            return Err(format!("no fuzz target {t:?} (targets: {})", names.join(", ")).into())
        }
        None => names.clone(),
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
