//! `mkimage`: makes a boot image from a raw image. Drop-in for the previous
//! tool's command line (`-i -o -O -s -N -z`), with long forms and more.

use std::path::PathBuf;
use std::process::ExitCode;

use bootimage::{make_image, parse_size, progress, write_checksum_file, Error, ImageSpec};
use clap::Parser;

/// Make an Oxide phase-2 boot image: a 4096-byte header (sizes, SHA-256,
/// dataset and image name) followed by the raw image, or by one zlib stream
/// with -z. The output is written to an unnamed file in IMAGE's directory,
/// synced, and renamed into place only when complete: an interrupted run
/// (Ctrl-C, kill, power loss) leaves the previous IMAGE and no partial file.
#[derive(Parser)]
#[command(
    name = "mkimage",
    version,
    after_help = "Examples:
  mkimage -i zfs.raw -o zfs.img -N helios-2.0 -z
      compressed image named helios-2.0, for a 4 GiB ramdisk
  mkimage -i zfs.raw -o zfs.img -O boot_image_csum --target-size 2GiB --json
      plain image and its raw checksum file; prints what was written as JSON"
)]
struct Args {
    /// Raw image to wrap (a file system or archive, 4096 bytes to 4 GiB)
    #[arg(short = 'i', long = "input", value_name = "RAW")]
    input: PathBuf,
    /// Boot image to write
    #[arg(short = 'o', long = "output", value_name = "IMAGE")]
    output: PathBuf,
    /// Also write the image's SHA-256 as 32 raw bytes (the boot archive's
    /// boot_image_csum file)
    #[arg(short = 'O', long = "checksum-file", value_name = "CSUM_FILE")]
    checksum_file: Option<PathBuf>,
    /// Size of the ramdisk the OS creates, in MiB [default: 4096]
    #[arg(short = 's', long = "target-mib", value_name = "MEBIBYTES",
          conflicts_with = "target_size", value_parser = parse_mib)]
    target_mib: Option<u64>,
    /// Size of the ramdisk the OS creates, with a unit: 4GiB, 512MiB, 64M
    #[arg(long = "target-size", value_name = "SIZE", value_parser = parse_size)]
    target_size: Option<u64>,
    /// Image name (a name starting with "recovery" marks a recovery image)
    #[arg(short = 'N', long = "name", value_name = "NAME", default_value = "")]
    name: String,
    /// ZFS dataset the OS creates the ramdisk pool as
    #[arg(long = "dataset", value_name = "DATASET",
          default_value = bootimage::header::DEFAULT_DATASET)]
    dataset: String,
    /// Compress the payload as one zlib stream
    #[arg(short = 'z', long = "compress")]
    compress: bool,
    /// zlib level with -z: 1 (fastest) to 9 (smallest)
    #[arg(long = "level", value_name = "1-9", requires = "compress",
          default_value_t = bootimage::DEFAULT_LEVEL,
          value_parser = clap::value_parser!(u32).range(1..=9))]
    level: u32,
    /// Compression threads with -z [default: one per core]. The output is
    /// byte-identical for every thread count.
    #[arg(long = "threads", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Append zeros to the raw image, before hashing, up to a multiple of
    /// SIZE. A sled booting over the network needs a multiple of 128 KiB:
    /// --pad-to 128KiB
    #[arg(long = "pad-to", value_name = "SIZE", value_parser = parse_size)]
    pad_to: Option<u64>,
    /// Print what was written as one JSON object (path, checksum_file,
    /// flags, sizes, sha256, image_name, dataset, ratio, netboot) instead
    /// of the previous tool's lines
    #[arg(long)]
    json: bool,
}

/// `-s` takes mebibytes.
fn parse_mib(s: &str) -> Result<u64, String> {
    let mib: u64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of MiB: {e}"))?;
    mib.checked_mul(1 << 20)
        .ok_or_else(|| format!("{mib} MiB is too large"))
}

fn run(args: Args) -> Result<(), Error> {
    // Refuse outputs that cannot be written before reading anything.
    bootimage::atomic::check_output(&args.output)?;
    if let Some(path) = &args.checksum_file {
        bootimage::atomic::check_output(path)?;
    }
    let target_size = match (args.target_mib, args.target_size) {
        (Some(size), _) => size,
        (None, Some(size)) => size,
        (None, None) => bootimage::header::DEFAULT_TARGET_SIZE,
    };
    let spec = ImageSpec {
        target_size,
        compression: args.compress.then_some(args.level),
        threads: args.threads.unwrap_or(0) as usize,
        pad_to: args.pad_to.unwrap_or(0),
        ..ImageSpec::default()
    }
    .with_names(&args.dataset, &args.name)?;

    let total = std::fs::metadata(&args.input).map(|m| m.len()).unwrap_or(0);
    let bar = progress::bar(total, "mkimage");
    let header = make_image(&args.input, &args.output, &spec, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    if !args.json {
        println!("ok, image written!");
    }
    // The image is fine for disk boot; say so on stderr (stdout stays the
    // previous tool's) when a sled could not boot it over the network.
    if let Some(problem) = header.netboot_problem() {
        eprintln!(
            "mkimage: {}: note: cannot be booted over the network: {problem}",
            args.output.display()
        );
    }
    if let Some(path) = &args.checksum_file {
        write_checksum_file(path, &header.sha256)?;
        if !args.json {
            println!("ok, boot_image_csum file written!");
        }
    }
    if args.json {
        let v = bootimage::report::made_json(&args.output, args.checksum_file.as_deref(), &header);
        println!("{v}");
    }
    Ok(())
}

fn main() -> ExitCode {
    // Ctrl-C, SIGTERM, SIGHUP: remove the temporary names, then stop.
    if let Err(e) = bootimage::atomic::clean_up_on_signals() {
        eprintln!("mkimage: {e}");
        return ExitCode::FAILURE;
    }
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkimage: {e}");
            ExitCode::FAILURE
        }
    }
}
