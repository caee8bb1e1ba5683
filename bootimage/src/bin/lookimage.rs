//! `lookimage`: prints a boot image's header exactly as the previous tool
//! did, then verifies the payload.

use std::process::ExitCode;

use bootimage::cli::InspectArgs;
use clap::Parser;

/// Print an Oxide phase-2 boot image's header, then verify it: header
/// limits, payload length, the zlib stream, the image size and the SHA-256.
/// Also reads the OS build's archives: an image archive (NAME.tar.gz: its
/// oxide.json, its members, and image/zfs.img verified against its header
/// and oxide.json, streaming) and a boot archive (whether it holds
/// boot_image_csum, and with --image whether that matches an image).
/// Exits non-zero with a message naming what is wrong.
#[derive(Parser)]
#[command(
    name = "lookimage",
    version,
    after_help = "Examples:
  lookimage zfs.img
      print the header as the previous tool did, then verify the image
  lookimage --json os.tar.gz
      one JSON object for an image archive, with \"error\" if anything is wrong
  lookimage --image zfs.img cpio.z
      check that a boot archive's boot_image_csum matches zfs.img"
)]
struct Args {
    #[command(flatten)]
    inspect: InspectArgs,
}

fn main() -> ExitCode {
    // Ctrl-C, SIGTERM, SIGHUP: remove any temporary output, then stop.
    if let Err(e) = bootimage::atomic::clean_up_on_signals() {
        eprintln!("lookimage: {e}");
        return ExitCode::FAILURE;
    }
    match Args::parse().inspect.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookimage: {e}");
            ExitCode::FAILURE
        }
    }
}
