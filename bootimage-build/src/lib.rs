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

pub mod cpio;
pub mod manifest;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bootimage::header::hex;
use bootimage::{AtomicFile, Header};

pub use manifest::{Manifest, Source};

/// Errors name the manifest, and the key or input file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", path.display())]
    Field {
        path: PathBuf,
        key: &'static str,
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

/// What a build produced.
#[derive(Clone, Debug)]
pub struct Built {
    pub manifest: Manifest,
    /// The boot image, `OUT/STEM.img`.
    pub image: PathBuf,
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

/// Builds the image the manifest at `manifest` describes into `out_dir`.
pub fn build(manifest: &Path, out_dir: &Path) -> Result<Built, Error> {
    let manifest = Manifest::load(manifest)?;
    let image = out_dir.join(format!("{}.img", manifest.stem));
    let mut inputs = vec![manifest.path.clone()];
    let noop = |_| {};
    let header = match &manifest.source {
        Source::File(path) => {
            inputs.push(path.clone());
            bootimage::make_image(path, &image, &manifest.spec, &noop)
                .map_err(|e| blame(&manifest, "source.file", e))?
        }
        Source::Directory { path, min_size } => {
            let input_err = |source| Error::Input {
                path: manifest.path.clone(),
                key: "source.directory",
                source,
            };
            let entries = cpio::walk(path).map_err(input_err)?;
            inputs.push(path.clone());
            inputs.extend(entries.iter().map(|e| path.join(e)));
            let archive = out_dir.join(format!("{}.cpio", manifest.stem));
            let mut f = AtomicFile::create(&archive)?;
            let mut w = BufWriter::new(f.file());
            cpio::write_newc(path, source_date_epoch()?, *min_size, &mut w).map_err(input_err)?;
            w.flush().map_err(|source| Error::Io {
                path: archive.clone(),
                op: "write",
                source,
            })?;
            drop(w);
            // The archive is kept (committed) only beside a finished image.
            let header = bootimage::make_image(f.temporary_path(), &image, &manifest.spec, &noop)
                .map_err(|e| blame(&manifest, "source.directory", e))?;
            f.commit()?;
            header
        }
    };
    Ok(Built {
        manifest,
        image,
        header,
        inputs,
    })
}

/// Every file and directory the manifest's image is built from, the
/// manifest first (what [`Built::inputs`] will hold).
pub fn inputs(manifest: &Manifest) -> Result<Vec<PathBuf>, Error> {
    let mut inputs = vec![manifest.path.clone()];
    match &manifest.source {
        Source::File(path) => inputs.push(path.clone()),
        Source::Directory { path, .. } => {
            let entries = cpio::walk(path).map_err(|source| Error::Input {
                path: manifest.path.clone(),
                key: "source.directory",
                source,
            })?;
            inputs.push(path.clone());
            inputs.extend(entries.iter().map(|e| path.join(e)));
        }
    }
    Ok(inputs)
}

/// Whether `OUT/STEM.img` is missing or older than any input (or
/// `SOURCE_DATE_EPOCH` is set, which the image's bytes depend on).
pub fn is_stale(manifest_path: &Path, out_dir: &Path) -> Result<bool, Error> {
    let manifest = Manifest::load(manifest_path)?;
    let image = out_dir.join(format!("{}.img", manifest.stem));
    let Ok(built) = std::fs::metadata(&image).and_then(|m| m.modified()) else {
        return Ok(true);
    };
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() {
        return Ok(true);
    }
    for input in inputs(&manifest)? {
        let changed = std::fs::symlink_metadata(&input)
            .and_then(|m| m.modified())
            .map_err(|source| Error::Io {
                path: input.clone(),
                op: "stat",
                source,
            })?;
        if changed > built {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Turns an image error the manifest caused into one naming its key.
fn blame(manifest: &Manifest, source_key: &'static str, e: bootimage::Error) -> Error {
    use bootimage::HeaderError::*;
    let field = |key, message| Error::Field {
        path: manifest.path.clone(),
        key,
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
/// `BOOTIMAGE_<STEM>_PATH` and `BOOTIMAGE_<STEM>_SHA256` (hex) to the crate,
/// and writes `OUT_DIR/<stem>.rs` with `SHA256: [u8; 32]`, `SHA256_HEX` and
/// `PATH` for `include!`.
pub fn build_script(manifest: impl AsRef<Path>) -> Result<Built, Error> {
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
    let stdout_err = |source| Error::Io {
        path: "<stdout>".into(),
        op: "write",
        source,
    };
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
         pub const PATH: &str = {path:?};\n",
        manifest = built.manifest.path.display().to_string(),
        bytes = bytes.join(", "),
        hex = hex(&built.header.sha256),
        path = built.image.display().to_string(),
    )
}
