//! Build boot images from a TOML manifest, from a `build.rs` or from
//! `cargo xtask image`.
//!
//! From a build script:
//!
//! ```ignore
//! // build.rs
//! fn main() {
//!     if let Err(e) = bootimage_build::build_script("image.toml") {
//!         eprintln!("{e}");
//!         std::process::exit(1);
//!     }
//! }
//! ```
//!
//! and in the crate, with `image.toml` giving `STEM.img`:
//!
//! ```ignore
//! mod image {
//!     include!(concat!(env!("OUT_DIR"), "/image.rs"));
//! }
//! // image::SHA256: [u8; 32], image::SHA256_HEX, image::PATH
//! ```
//!
//! Outputs are deterministic: the same inputs give byte-identical images
//! (sorted cpio entries, uid/gid 0, normalised modes, mtime 0 or
//! `SOURCE_DATE_EPOCH`).

#![forbid(unsafe_code)]

mod archive;
pub mod cpio;
pub mod manifest;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bootimage::consumers::ROM_SIZE;
use bootimage::header::hex;
use bootimage::Header;

pub use manifest::{Manifest, Source};

/// Errors name the manifest, and the key or input file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", path.display())]
    Field {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: {key}: {source}", path.display())]
    Input {
        path: PathBuf,
        key: &'static str,
        #[source]
        source: cpio::CpioError,
    },
    #[error(transparent)]
    Image(#[from] bootimage::Error),
    #[error("SOURCE_DATE_EPOCH: {value:?} is not a time in seconds that fits the archive format (0 to 4294967295)")]
    SourceDateEpoch { value: String },
    #[error("OUT_DIR is not set: build_script runs only from a build script")]
    NoOutDir,
}

/// An I/O error on `path` while doing `op` (worded as the format
/// library words them).
pub(crate) fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::Image(bootimage::Error::io(path, op)(e))
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct Built {
    pub manifest: Manifest,
    /// The boot image, `OUT/STEM.img`.
    pub image: PathBuf,
    /// The raw checksum, when the manifest asks for one.
    pub checksum_file: Option<PathBuf>,
    /// The boot archive, when the manifest asks for one.
    pub boot_archive: Option<PathBuf>,
    /// The image archive, when the manifest asks for one.
    pub image_archive: Option<PathBuf>,
    /// The image's header: sizes and checksum.
    pub header: Header,
    /// Every file and directory the image was built from, the manifest
    /// first.
    pub inputs: Vec<PathBuf>,
}

/// The mtime for archive entries: `SOURCE_DATE_EPOCH` when set, else 0.
pub fn source_date_epoch() -> Result<u32, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::SourceDateEpoch { value: v }),
        Err(_) => Ok(0),
    }
}

/// Builds everything the manifest at `manifest` describes into `out_dir`:
/// the image, and the checksum file, boot archive and image archive it
/// asks for. `out_dir` and every output path are checked before any work.
/// All outputs are made in a staging directory inside `out_dir`
/// (`.STEM.PID-RANDOM.staging`), each synced, and renamed into place only
/// once every one of them is complete, then `out_dir` is synced; a failure
/// leaves nothing behind, and so does a signal when the process called
/// [`bootimage::atomic::clean_up_on_signals`] ([`build_script`] does).
pub fn build(manifest: &Path, out_dir: &Path) -> Result<Built, Error> {
    bootimage::atomic::check_output_dir(out_dir)?;
    let manifest = Manifest::load(manifest)?;
    for name in output_names(&manifest) {
        bootimage::atomic::check_output(&out_dir.join(name))?;
    }
    let inputs = inputs(&manifest)?;
    check_inputs(&manifest)?;
    let mtime = source_date_epoch()?;
    let staging = bootimage::atomic::StagingDir::create(out_dir, &manifest.stem)?;
    let stage = |name: &str| staging.path().join(name);
    let mut staged = Vec::new();

    let image_name = format!("{}.img", manifest.stem);
    let noop = |_| {};
    let header = match &manifest.source {
        Source::File(path) => {
            bootimage::make_image(path, &stage(&image_name), &manifest.spec, &noop)
                .map_err(|e| blame(&manifest, "source.file", e))?
        }
        Source::Directory { path, min_size } => {
            let cpio_name = format!("{}.cpio", manifest.stem);
            write_staged(&stage(&cpio_name), |w| {
                cpio::write_newc(path, mtime, *min_size, w).map_err(|source| Error::Input {
                    path: manifest.path.clone(),
                    key: "source.directory",
                    source,
                })?;
                Ok(())
            })?;
            staged.push(cpio_name.clone());
            bootimage::make_image(
                &stage(&cpio_name),
                &stage(&image_name),
                &manifest.spec,
                &noop,
            )
            .map_err(|e| blame(&manifest, "source.directory", e))?
        }
    };
    staged.push(image_name.clone());
    if let Some(name) = &manifest.checksum_file {
        bootimage::write_checksum_file(&stage(name), &header.sha256)?;
        staged.push(name.clone());
    }
    // Intermediate files (the plain or zlib form of the boot archive that
    // is not an output, unix.z): never moved into place.
    // They live in the staging directory, so that whatever removes it
    // (failure, signal, the next run after a kill) removes them too.
    let scratch = stage(".scratch");
    std::fs::create_dir(&scratch).map_err(io_err(&scratch, "create scratch directory"))?;
    let threads = manifest.spec.threads();
    // The boot archive's zlib form, for the image archive's cpio.z.
    let mut cpio_z = None;
    if let Some(b) = &manifest.boot_archive {
        if b.zlib {
            let plain = scratch.join("boot.cpio");
            archive::write_boot_archive(&manifest, b, &header, mtime, &plain)?;
            archive::zlib_file(&plain, &stage(&b.output), threads)?;
            cpio_z = Some(stage(&b.output));
        } else {
            archive::write_boot_archive(&manifest, b, &header, mtime, &stage(&b.output))?;
            if manifest.image_archive.is_some() {
                let z = scratch.join("cpio.z");
                archive::zlib_file(&stage(&b.output), &z, threads)?;
                cpio_z = Some(z);
            }
        }
        staged.push(b.output.clone());
    }
    if let Some(a) = &manifest.image_archive {
        let unix_z = match &a.unix {
            Some(unix) => {
                let z = scratch.join("unix.z");
                archive::zlib_file(unix, &z, threads)?;
                Some(z)
            }
            None => None,
        };
        let members =
            archive::image_members(a, &stage(&image_name), unix_z.as_deref(), cpio_z.as_deref());
        archive::write_image_archive(&manifest, a, &header, &members, mtime, &stage(&a.output))?;
        staged.push(a.output.clone());
    }
    // Everything is complete and synced: move it into place, all of it
    // before a signal may end the process, then make the renames durable.
    bootimage::atomic::uninterrupted(out_dir, || {
        for name in &staged {
            std::fs::rename(stage(name), out_dir.join(name)).map_err(bootimage::Error::io(
                &out_dir.join(name),
                "rename into place",
            ))?;
        }
        Ok(())
    })?;
    bootimage::atomic::sync_dir(out_dir)?;
    let out = |name: &Option<String>| name.as_ref().map(|n| out_dir.join(n));
    Ok(Built {
        image: out_dir.join(&image_name),
        checksum_file: out(&manifest.checksum_file),
        boot_archive: out(&manifest.boot_archive.as_ref().map(|b| b.output.clone())),
        image_archive: out(&manifest.image_archive.as_ref().map(|a| a.output.clone())),
        header,
        inputs,
        manifest,
    })
}

/// Every file name a build of `m` puts in the output directory.
fn output_names(m: &Manifest) -> Vec<String> {
    let mut names = vec![format!("{}.img", m.stem)];
    if let Source::Directory { .. } = m.source {
        names.push(format!("{}.cpio", m.stem));
    }
    names.extend(m.checksum_file.iter().cloned());
    names.extend(m.boot_archive.iter().map(|b| b.output.clone()));
    names.extend(m.image_archive.iter().map(|a| a.output.clone()));
    names
}

/// Writes a file through a buffered writer and an [`AtomicFile`] (synced,
/// never partial).
///
/// [`AtomicFile`]: bootimage::AtomicFile
pub(crate) fn write_staged(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut f = bootimage::AtomicFile::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f.file());
    body(&mut w)?;
    w.flush().map_err(io_err(path, "write"))?;
    drop(w);
    f.commit()?;
    Ok(())
}

/// Checks, before any work, that every input the manifest names exists and
/// is what it must be (each ROM exactly [`ROM_SIZE`]).
fn check_inputs(m: &Manifest) -> Result<(), Error> {
    let field = |key: String, message: String| Error::Field {
        path: m.path.clone(),
        key,
        message,
    };
    let exists = |key: String, p: &Path, dir: bool| -> Result<u64, Error> {
        match std::fs::metadata(p) {
            Ok(md) if md.is_dir() == dir => Ok(md.len()),
            Ok(_) => Err(field(
                key,
                format!(
                    "{}: is not a {}",
                    p.display(),
                    if dir { "directory" } else { "file" }
                ),
            )),
            Err(e) => Err(field(key, format!("{}: {e}", p.display()))),
        }
    };
    if let Some(b) = &m.boot_archive {
        if let Some(r) = &b.root {
            exists("boot-archive.root".into(), r, true)?;
        }
        for (name, p) in &b.files {
            exists(format!("boot-archive.files.{name:?}"), p, false)?;
        }
    }
    if let Some(a) = &m.image_archive {
        for rom in &a.roms {
            let size = exists(rom.key.clone(), &rom.path, false)?;
            if size != ROM_SIZE {
                return Err(field(
                    rom.key.clone(),
                    format!(
                        "{}: is {size} bytes; the OS build's {} host boot ROM is exactly {ROM_SIZE} (32 MiB)",
                        rom.path.display(),
                        rom.board,
                    ),
                ));
            }
        }
        if let Some(u) = &a.unix {
            exists("image-archive.unix".into(), u, false)?;
        }
        for (name, p) in &a.extra {
            exists(format!("image-archive.extra.{name:?}"), p, false)?;
        }
    }
    Ok(())
}

/// Every file and directory the manifest's outputs are built from, the
/// manifest first (what [`Built::inputs`] will hold).
pub fn inputs(manifest: &Manifest) -> Result<Vec<PathBuf>, Error> {
    let mut inputs = vec![manifest.path.clone()];
    let tree = |key: &'static str, path: &Path, inputs: &mut Vec<PathBuf>| {
        let entries = cpio::walk(path).map_err(|source| Error::Input {
            path: manifest.path.clone(),
            key,
            source,
        })?;
        inputs.push(path.to_owned());
        inputs.extend(entries.iter().map(|e| path.join(e)));
        Ok::<_, Error>(())
    };
    match &manifest.source {
        Source::File(path) => inputs.push(path.clone()),
        Source::Directory { path, .. } => tree("source.directory", path, &mut inputs)?,
    }
    if let Some(b) = &manifest.boot_archive {
        if let Some(r) = &b.root {
            if r.is_dir() {
                tree("boot-archive.root", r, &mut inputs)?;
            }
        }
        inputs.extend(b.files.iter().map(|(_, p)| p.clone()));
    }
    if let Some(a) = &manifest.image_archive {
        inputs.extend(a.roms.iter().map(|r| r.path.clone()));
        inputs.extend(a.unix.iter().cloned());
        inputs.extend(a.extra.iter().map(|(_, p)| p.clone()));
    }
    Ok(inputs)
}

/// Whether any output is missing or older than any input (or
/// `SOURCE_DATE_EPOCH` is set, which the outputs' bytes depend on).
pub fn is_stale(manifest_path: &Path, out_dir: &Path) -> Result<bool, Error> {
    let manifest = Manifest::load(manifest_path)?;
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() {
        return Ok(true);
    }
    let mut outputs = vec![format!("{}.img", manifest.stem)];
    outputs.extend(manifest.checksum_file.iter().cloned());
    outputs.extend(manifest.boot_archive.iter().map(|b| b.output.clone()));
    outputs.extend(manifest.image_archive.iter().map(|a| a.output.clone()));
    let mut oldest = None;
    for o in outputs {
        let Ok(t) = std::fs::metadata(out_dir.join(o)).and_then(|m| m.modified()) else {
            return Ok(true);
        };
        oldest = Some(oldest.map_or(t, |o: std::time::SystemTime| o.min(t)));
    }
    let Some(built) = oldest else { return Ok(true) };
    for input in inputs(&manifest)? {
        let Ok(changed) = std::fs::symlink_metadata(&input).and_then(|m| m.modified()) else {
            return Ok(true);
        };
        if changed > built {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Turns an image error the manifest caused into one naming its key.
fn blame(manifest: &Manifest, source_key: &'static str, e: bootimage::Error) -> Error {
    use bootimage::HeaderError::*;
    let field = |key: &str, message| Error::Field {
        path: manifest.path.clone(),
        key: key.to_owned(),
        message,
    };
    match e {
        bootimage::Error::Io {
            path,
            op: "open",
            source,
        } => field(source_key, format!("{}: {source}", path.display())),
        bootimage::Error::Header { source, .. } => match source {
            ImageExceedsTarget {
                image_size,
                target_size,
            } => field(
                "target-size",
                format!("{target_size} bytes cannot hold the {image_size}-byte image from {source_key}"),
            ),
            ImageTooSmall { image_size } if source_key == "source.directory" => field(
                "source.min-size",
                format!("the packed directory is {image_size} bytes; images need at least 4096 (the network client 1 MiB): raise min-size"),
            ),
            other => field(source_key, other.to_string()),
        },
        bootimage::Error::EmptyInput { path } => {
            field(source_key, format!("{}: is empty", path.display()))
        }
        e => Error::Image(e),
    }
}

/// For `build.rs`: builds the manifest (relative to the package) into
/// `OUT_DIR`, tells Cargo when to rebuild, exports
/// `BOOTIMAGE_<STEM>_PATH` and `BOOTIMAGE_<STEM>_SHA256` (hex) to the crate
/// (and `_CHECKSUM_FILE`, `_BOOT_ARCHIVE`, `_IMAGE_ARCHIVE` when the
/// manifest makes them), and writes `OUT_DIR/<stem>.rs` with
/// `SHA256: [u8; 32]`, `SHA256_HEX`, `PATH`, `CHECKSUM_FILE`,
/// `BOOT_ARCHIVE` and `IMAGE_ARCHIVE` for `include!`.
pub fn build_script(manifest: impl AsRef<Path>) -> Result<Built, Error> {
    // Ctrl-C during `cargo build` reaches the build script too: leave no
    // staging directory behind.
    bootimage::atomic::clean_up_on_signals()?;
    let out_dir = std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?;
    build_script_to(manifest.as_ref(), Path::new(&out_dir), &mut io::stdout())
}

/// [`build_script`] with the output directory and Cargo's instruction
/// stream given.
pub fn build_script_to(
    manifest: &Path,
    out_dir: &Path,
    cargo: &mut dyn Write,
) -> Result<Built, Error> {
    let stdout_err = |e| io_err(Path::new("<stdout>"), "write")(e);
    // Tell Cargo about the inputs first, so that a failed build is retried
    // when they change.
    writeln!(cargo, "cargo:rerun-if-changed={}", manifest.display()).map_err(stdout_err)?;
    writeln!(cargo, "cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH").map_err(stdout_err)?;
    let built = build(manifest, out_dir)?;
    for input in &built.inputs[1..] {
        writeln!(cargo, "cargo:rerun-if-changed={}", input.display()).map_err(stdout_err)?;
    }
    let var = env_name(&built.manifest.stem);
    let sum = hex(&built.header.sha256);
    writeln!(
        cargo,
        "cargo:rustc-env=BOOTIMAGE_{var}_PATH={}",
        built.image.display()
    )
    .map_err(stdout_err)?;
    writeln!(cargo, "cargo:rustc-env=BOOTIMAGE_{var}_SHA256={sum}").map_err(stdout_err)?;
    for (what, path) in [
        ("CHECKSUM_FILE", &built.checksum_file),
        ("BOOT_ARCHIVE", &built.boot_archive),
        ("IMAGE_ARCHIVE", &built.image_archive),
    ] {
        if let Some(p) = path {
            writeln!(
                cargo,
                "cargo:rustc-env=BOOTIMAGE_{var}_{what}={}",
                p.display()
            )
            .map_err(stdout_err)?;
        }
    }
    let rs = out_dir.join(format!("{}.rs", built.manifest.stem));
    bootimage::write_file(&rs, rust_constants(&built).as_bytes())?;
    Ok(built)
}

/// `demo-image` becomes `DEMO_IMAGE`.
pub fn env_name(stem: &str) -> String {
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn rust_constants(built: &Built) -> String {
    let bytes: Vec<String> = built
        .header
        .sha256
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    format!(
        "// Generated by bootimage-build from {manifest:?}. Do not edit.\n\
         /// SHA-256 of the uncompressed image (the header's checksum).\n\
         pub const SHA256: [u8; 32] = [{bytes}];\n\
         /// [`SHA256`] as lower-case hex.\n\
         pub const SHA256_HEX: &str = {hex:?};\n\
         /// The built boot image.\n\
         pub const PATH: &str = {path:?};\n\
         /// The raw checksum file, if the manifest asks for one.\n\
         pub const CHECKSUM_FILE: Option<&str> = {csum:?};\n\
         /// The boot archive (with boot_image_csum), if the manifest asks for one.\n\
         pub const BOOT_ARCHIVE: Option<&str> = {boot:?};\n\
         /// The image archive (NAME.tar.gz), if the manifest asks for one.\n\
         pub const IMAGE_ARCHIVE: Option<&str> = {archive:?};\n",
        manifest = built.manifest.path.display().to_string(),
        bytes = bytes.join(", "),
        hex = hex(&built.header.sha256),
        path = built.image.display().to_string(),
        csum = built
            .checksum_file
            .as_ref()
            .map(|p| p.display().to_string()),
        boot = built.boot_archive.as_ref().map(|p| p.display().to_string()),
        archive = built
            .image_archive
            .as_ref()
            .map(|p| p.display().to_string()),
    )
}
