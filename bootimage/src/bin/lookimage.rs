//! `lookimage`: prints a boot image's header exactly as the previous tool
//! did, then verifies the payload.

use std::path::PathBuf;
use std::process::ExitCode;

use bootimage::{inspect, progress, InspectOptions};
use clap::Parser;

/// Print an Oxide phase-2 boot image's header, then verify it: header
/// limits, payload length, the zlib stream, the image size and the SHA-256.
/// Also reads the OS build's archives: an image archive (NAME.tar.gz: its
/// oxide.json, its members, and image/zfs.img verified against its header
/// and oxide.json, streaming) and a boot archive (whether it holds
/// boot_image_csum, and with --image whether that matches an image).
/// Exits non-zero with a message naming what is wrong.
#[derive(Parser)]
#[command(name = "lookimage", version)]
struct Args {
    /// Skip verifying the payload against the header's checksum
    #[arg(short = 's', long = "skip-checksum")]
    skip_checksum: bool,
    /// Print one JSON object (with "verified" and any "error") instead
    #[arg(long)]
    json: bool,
    /// With a boot archive: the image its boot_image_csum must match
    #[arg(long = "image", value_name = "IMAGE")]
    against: Option<PathBuf>,
    /// Boot image, image archive or boot archive to inspect
    #[arg(value_name = "FILE")]
    image: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = InspectOptions {
        skip_verify: args.skip_checksum,
        json: args.json,
    };
    let bar = progress::bar(0, "verify");
    let result = inspect(
        &args.image,
        opts,
        args.against.as_deref(),
        &mut std::io::stdout(),
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookimage: {e}");
            ExitCode::FAILURE
        }
    }
}
