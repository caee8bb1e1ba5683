//! `cargo xtask check-illumos` (a step of `cargo xtask ci`): type-checks
//! the whole workspace, tests included, for illumos
//! (`x86_64-unknown-illumos`), in a target directory of its own
//! (`TARGET/illumos`) so that it does not disturb the host build.
//!
//! The standard library for the target comes, in order of preference,
//! from rustup (`rustup target add`, run when the target is missing), or
//! from Debian's `rustc-web`, `cargo-web` and `rust-web-src` (installed
//! with apt-get when missing, run by absolute path, with the library built
//! from source: `-Zbuild-std=std,panic_abort`, `RUSTC_BOOTSTRAP=1`). If
//! neither can be had, the check says so and fails: it is never skipped in
//! silence.
//!
//! `XTASK_DEBIAN_RUST_ROOT=DIR` looks for Debian's toolchain under DIR
//! (say, the packages unpacked with `dpkg -x`) instead of `/`, and does not
//! install it; the tests use it to prove that a missing toolchain fails
//! the check.

use std::path::{Path, PathBuf};
use std::process::Command;

use xshell::{cmd, Shell};

use crate::{Result, Workspace};

pub const TARGET: &str = "x86_64-unknown-illumos";

/// Debian's toolchain, by absolute path under its root (its packages
/// install `cargo` and `rustc` in /usr/bin, beside whatever rustup put
/// first on the PATH).
const DEBIAN_CARGO: &str = "usr/bin/cargo";
const DEBIAN_RUSTC: &str = "usr/bin/rustc";
/// Where `rust-web-src` puts the standard library's source (a link into
/// /usr/src/rustc-VERSION), which `-Zbuild-std` reads.
const DEBIAN_STD_SRC: &str = "usr/lib/rustlib/src/rust/library";
const DEBIAN_PACKAGES: [&str; 3] = ["rustc-web", "cargo-web", "rust-web-src"];

/// Where Debian's toolchain is looked for, and whether it may be installed
/// there (only at `/`).
fn debian_root() -> (PathBuf, bool) {
    match std::env::var_os("XTASK_DEBIAN_RUST_ROOT") {
        Some(dir) => (PathBuf::from(dir), false),
        None => (PathBuf::from("/"), true),
    }
}

/// Whether rustup has the illumos standard library for the toolchain in
/// use, adding it if it can.
fn rustup_target(sh: &Shell) -> std::result::Result<(), String> {
    let installed = cmd!(sh, "rustup target list --installed")
        .quiet()
        .ignore_stderr()
        .read()
        .map_err(|e| e.to_string())?;
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    eprintln!("xtask: adding the {TARGET} target (rustup target add {TARGET})");
    cmd!(sh, "rustup target add {TARGET}")
        .run()
        .map_err(|e| format!("rustup target add {TARGET}: {e}"))
}

/// Whether Debian's toolchain with the standard library's source is here,
/// installing it if it can.
fn debian_toolchain(sh: &Shell) -> std::result::Result<PathBuf, String> {
    let (root, may_install) = debian_root();
    let present = || {
        root.join(DEBIAN_CARGO).exists()
            && root.join(DEBIAN_RUSTC).exists()
            && root.join(DEBIAN_STD_SRC).join("std/Cargo.toml").exists()
    };
    if present() {
        return Ok(root);
    }
    if !may_install {
        return Err(format!(
            "no {DEBIAN_CARGO}, {DEBIAN_RUSTC} and {DEBIAN_STD_SRC} under {} (XTASK_DEBIAN_RUST_ROOT)",
            root.display()
        ));
    }
    if !crate::on_path("apt-get") {
        return Err("no apt-get to install Debian's rustc-web, cargo-web and rust-web-src".into());
    }
    let list = DEBIAN_PACKAGES.join(" ");
    eprintln!("xtask: installing Debian's Rust toolchain for the illumos check: {list}");
    cmd!(sh, "apt-get update -qq")
        .run()
        .map_err(|e| format!("apt-get update: {e}"))?;
    cmd!(sh, "apt-get install -y -qq {DEBIAN_PACKAGES...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .map_err(|e| format!("apt-get install {list}: {e}"))?;
    if present() {
        Ok(root)
    } else {
        Err(format!(
            "{list} installed, but /{DEBIAN_CARGO}, /{DEBIAN_RUSTC} or /{DEBIAN_STD_SRC} is missing"
        ))
    }
}

/// The check's command: `cargo check` for illumos, every crate and target,
/// warnings denied, in `TARGET/illumos`; with rustup's toolchain, or
/// Debian's under `debian`.
fn check_command(ws: &Workspace, debian: Option<&Path>) -> Command {
    let mut c = match debian {
        Some(root) => Command::new(root.join(DEBIAN_CARGO)),
        None => Command::new("cargo"),
    };
    c.current_dir(&ws.root)
        .args(["check", "--quiet", "--workspace", "--all-targets"])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(ws.target.join("illumos"))
        // Only the target's crates: build scripts and proc macros run on
        // the host and are built without it.
        .env("RUSTFLAGS", "-D warnings");
    if let Some(root) = debian {
        c.args(["-Zbuild-std=std,panic_abort"])
            .env("RUSTC", root.join(DEBIAN_RUSTC))
            .env("RUSTC_BOOTSTRAP", "1")
            // Not rustup's cargo or rustc in between.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO");
    }
    c
}

/// Runs the illumos check; an error if it fails or cannot be run.
pub fn check(ws: &Workspace) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(&ws.root);
    let debian = match rustup_target(&sh) {
        Ok(()) => None,
        Err(why) => {
            eprintln!("xtask: no illumos target from rustup ({why}); trying Debian's rustc-web");
            match debian_toolchain(&sh) {
                Ok(root) => Some(root),
                Err(why2) => {
                    return Err(format!(
                        "the illumos check was SKIPPED, which fails it: no standard library for \
                         {TARGET} (rustup: {why}; Debian: {why2})"
                    )
                    .into())
                }
            }
        }
    };
    let mut c = check_command(ws, debian.as_deref());
    eprintln!(
        "xtask: checking the workspace for illumos ({}): {c:?}",
        if debian.is_some() {
            "Debian's rustc-web, std built from source"
        } else {
            "rustup"
        }
    );
    let status = c.status().map_err(|e| format!("{c:?}: {e}"))?;
    if !status.success() {
        return Err(format!("the illumos check failed ({status})").into());
    }
    eprintln!("xtask: the workspace type-checks for {TARGET}");
    Ok(())
}
