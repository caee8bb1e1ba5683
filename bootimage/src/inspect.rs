//! What `lookimage` and `cargo xtask inspect` do: print the header as the
//! previous tool did (or as JSON), then verify.

use std::io::Write;
use std::path::Path;

use crate::archive::Kind;
use crate::{report, Error, Image};

/// How to inspect.
#[derive(Clone, Copy, Debug, Default)]
pub struct InspectOptions {
    /// Skip payload verification (`lookimage -s`).
    pub skip_verify: bool,
    /// One JSON object instead of the previous tool's lines.
    pub json: bool,
}

/// Prints what `path` holds to `out` and verifies it unless told not to:
/// a boot image, an image archive (`NAME.tar.gz`) or a boot archive (whose
/// `boot_image_csum` is compared with `against`'s checksum when given).
/// With `opts.json`, `out` always gets exactly one object, with `error`
/// when anything failed (even opening the file).
pub fn inspect(
    path: &Path,
    opts: InspectOptions,
    against: Option<&Path>,
    out: &mut dyn Write,
    progress: &dyn Fn(u64, u64),
) -> Result<(), Error> {
    let mut out = Tracked {
        inner: out,
        wrote: false,
    };
    let result = crate::archive::detect(path).and_then(|kind| match kind {
        Kind::Image => inspect_image(path, opts, &mut out, progress),
        Kind::ImageArchive => crate::archive::inspect_image_archive(path, opts, &mut out, progress),
        Kind::BootArchive { compression } => {
            crate::archive::inspect_boot_archive(path, compression, against, opts.json, &mut out)
        }
    });
    if let Err(e) = &result {
        if opts.json && !out.wrote {
            // Failed before there was anything to describe.
            let v = serde_json::json!({
                "file": path.display().to_string(),
                "verified": (!opts.skip_verify).then_some(false),
                "error": e.to_string(),
            });
            writeln!(out.inner, "{v}").map_err(|e| Error::Io {
                path: "<stdout>".into(),
                op: "write",
                source: e,
            })?;
        }
    }
    result
}

/// A writer that remembers whether anything was written through it.
struct Tracked<'a> {
    inner: &'a mut dyn Write,
    wrote: bool,
}

impl Write for Tracked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wrote |= !buf.is_empty();
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A boot image: the header lines are printed before verification starts,
/// as the previous tool did, so a failing image still shows what it claims.
fn inspect_image(
    path: &Path,
    opts: InspectOptions,
    out: &mut dyn Write,
    progress: &dyn Fn(u64, u64),
) -> Result<(), Error> {
    let image = Image::open(path)?;
    let header = image.header().clone();
    let stdout_err = |e| Error::Io {
        path: "<stdout>".into(),
        op: "write",
        source: e,
    };
    let result = (|| {
        if !opts.json {
            out.write_all(report::header_lines(&header).as_bytes())
                .map_err(stdout_err)?;
        }
        header.check().map_err(Error::header(path))?;
        if !opts.json {
            if let Some(line) = report::ratio_line(&header) {
                out.write_all(line.as_bytes()).map_err(stdout_err)?;
            }
        }
        if opts.skip_verify {
            return Ok(());
        }
        let total = header.image_size;
        image.verify(&|done| progress(done, total))
    })();
    if opts.json {
        let mut v = report::header_json(&header, (!opts.skip_verify).then_some(result.is_ok()));
        if let Err(e) = &result {
            v["error"] = e.to_string().into();
        }
        writeln!(out, "{v}").map_err(stdout_err)?;
    }
    result
}
