//! What `lookimage` and `cargo xtask inspect` share: their arguments and
//! how they run (behind the `cli` feature, which brings clap).

use std::path::PathBuf;

use crate::extract::{extract, Sink};
use crate::{inspect, progress, Error, InspectOptions};

/// Arguments for inspecting a boot image, image archive or boot archive.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Skip verifying the payload against the header's checksum
    #[arg(short = 's', long = "skip-checksum")]
    pub skip_checksum: bool,
    /// Print one JSON object (with "verified" and any "error") instead
    #[arg(long)]
    pub json: bool,
    /// With a boot archive: the image its boot_image_csum must match
    #[arg(long = "image", value_name = "IMAGE")]
    pub against: Option<PathBuf>,
    /// Write the raw image (inflated when compressed) of a boot image, or
    /// of image/zfs.img in an image archive, to RAW, verifying its SHA-256
    /// on the way: sparse, and atomic (nothing is left at RAW, and an
    /// existing RAW is untouched, unless the image verified). `-` writes to
    /// standard output, which cannot be atomic: a failed check is reported
    /// after the bytes went out
    #[arg(long = "extract", value_name = "RAW")]
    pub extract: Option<PathBuf>,
    /// Boot image, image archive or boot archive to inspect
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

impl InspectArgs {
    /// Prints and verifies to standard output, with a progress bar on a
    /// terminal.
    pub fn run(&self) -> Result<(), Error> {
        if let Some(raw) = &self.extract {
            return self.run_extract(raw);
        }
        let opts = InspectOptions {
            skip_verify: self.skip_checksum,
            json: self.json,
        };
        let bar = progress::bar(0, "verify");
        let result = inspect(
            &self.file,
            opts,
            self.against.as_deref(),
            &mut std::io::stdout(),
            &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        );
        bar.finish_and_clear();
        result
    }

    /// `--extract RAW`: the raw image out, verified; one line (or JSON
    /// object) on standard output saying what was written, unless the
    /// image itself goes there.
    fn run_extract(&self, raw: &std::path::Path) -> Result<(), Error> {
        let bar = progress::bar(0, "extract");
        let show = |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let to_stdout = raw.as_os_str() == "-";
        let result = if to_stdout {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            extract(&self.file, Sink::Stream(&mut w), &show)
        } else {
            extract(&self.file, Sink::File(raw), &show)
        };
        bar.finish_and_clear();
        let done = result?;
        if to_stdout {
            return Ok(());
        }
        let h = &done.header;
        let from = match done.member {
            Some(m) => format!("{}:{m}", self.file.display()),
            None => self.file.display().to_string(),
        };
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "extracted": raw.display().to_string(),
                    "from": from,
                    "bytes": h.image_size,
                    "sha256": h.sha256_hex(),
                    "verified": true,
                })
            );
        } else {
            println!(
                "ok, {} bytes of raw image written to {} (SHA-256 {} verified)",
                h.image_size,
                raw.display(),
                h.sha256_hex()
            );
        }
        Ok(())
    }
}
