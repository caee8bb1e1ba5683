//! What `lookimage` and `cargo xtask inspect` share: their arguments and
//! how they run (behind the `cli` feature, which brings clap).

use std::path::PathBuf;

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
    /// Boot image, image archive or boot archive to inspect
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

impl InspectArgs {
    /// Prints and verifies to standard output, with a progress bar on a
    /// terminal.
    pub fn run(&self) -> Result<(), Error> {
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
}
