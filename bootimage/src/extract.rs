//! The raw image back out of a boot image, or of `image/zfs.img` inside an
//! image archive, as U-Boot's `dumpimage` does for its images: inflated
//! when compressed, verified against the header's SHA-256 on the way,
//! streamed in bounded memory, written sparse (4 KiB blocks of zeros become
//! holes) and atomically (a temporary file renamed into place only when the
//! checksum matched).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use crate::archive::Kind;
use crate::atomic::AtomicFile;
use crate::header::Header;
use crate::make::write_sparse;
use crate::{read_header, Error};

/// What was extracted.
#[derive(Clone, Debug)]
pub struct Extracted {
    /// The boot image's header (of `image/zfs.img` for an archive).
    pub header: Header,
    /// `image/zfs.img` when it came from an image archive.
    pub member: Option<&'static str>,
}

/// Where the raw image goes.
pub enum Sink<'a> {
    /// A file, written atomically and sparse.
    File(&'a Path),
    /// A stream (standard output): neither atomic nor sparse; a failed
    /// check is reported after the bytes went out.
    Stream(&'a mut dyn Write),
}

/// Writes the raw image held by `path` (a boot image, or an image archive's
/// `image/zfs.img`) to `sink`, verifying it. `progress` is called with the
/// image bytes written and the image size.
pub fn extract(
    path: &Path,
    sink: Sink<'_>,
    progress: &dyn Fn(u64, u64),
) -> Result<Extracted, Error> {
    // An output that is a directory, or in a missing or read-only one, is
    // refused before any input is read.
    if let Sink::File(out) = &sink {
        crate::atomic::check_output(out)?;
    }
    let kind = crate::archive::detect(path)?;
    // The output is checked (and its temporary file made) before any input
    // is read past its first bytes.
    let mut target = match sink {
        Sink::File(out) => Target::File(AtomicFile::create(out)?, 0),
        Sink::Stream(w) => Target::Stream(w),
    };
    let name = target.name();
    let result = match kind {
        Kind::Image => {
            let mut f = File::open(path).map_err(Error::io(path, "open"))?;
            let header = read_header(&mut f, path)?;
            let total = header.image_size;
            crate::verify::unpack_payload(&header, f, path, &mut target, &name, &|n| {
                progress(n, total)
            })?;
            Extracted {
                header,
                member: None,
            }
        }
        Kind::ImageArchive => {
            let f = File::open(path).map_err(Error::io(path, "open"))?;
            let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, f));
            let mut tar = tar::Archive::new(gz);
            let read_err = Error::io(path, "read");
            let mut found = None;
            for entry in tar.entries().map_err(read_err)? {
                let mut entry = entry.map_err(Error::io(path, "read"))?;
                let is_image = entry
                    .path()
                    .map(|p| p.as_os_str() == "image/zfs.img")
                    .unwrap_or(false);
                if !is_image {
                    continue;
                }
                let member = format!("{}:image/zfs.img", path.display());
                let member = Path::new(&member);
                let header = read_header(&mut entry, member)?;
                let total = header.image_size;
                crate::verify::unpack_payload_serial(
                    &header,
                    &mut entry,
                    member,
                    &mut target,
                    &name,
                    &|n| progress(n, total),
                )?;
                found = Some(header);
                break;
            }
            let header = found.ok_or_else(|| Error::Archive {
                path: path.to_owned(),
                member: "image/zfs.img".into(),
                message: "missing: the image archive holds no image".into(),
            })?;
            Extracted {
                header,
                member: Some("image/zfs.img"),
            }
        }
        Kind::BootArchive { .. } => {
            return Err(Error::Archive {
                path: path.to_owned(),
                member: "boot_image_csum".into(),
                message: "this is a boot archive: it holds a checksum, not an image".into(),
            })
        }
    };
    target.finish(&name)?;
    Ok(result)
}

enum Target<'a> {
    /// The output file and how many bytes of it are written.
    File(AtomicFile, u64),
    Stream(&'a mut dyn Write),
}

impl Target<'_> {
    fn name(&self) -> std::path::PathBuf {
        match self {
            Target::File(f, _) => f.path().to_owned(),
            Target::Stream(_) => "<stdout>".into(),
        }
    }

    /// Gives the file its full length (trailing zeros were holes) and
    /// renames it into place; flushes a stream.
    fn finish(self, name: &Path) -> Result<(), Error> {
        match self {
            Target::File(mut f, len) => {
                f.file().set_len(len).map_err(Error::io(name, "write"))?;
                f.commit()
            }
            Target::Stream(w) => w.flush().map_err(Error::io(name, "write")),
        }
    }
}

impl Write for Target<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Target::File(f, at) => {
                write_sparse(f.file(), data, *at)?;
                *at += data.len() as u64;
                Ok(data.len())
            }
            Target::Stream(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::File(..) => Ok(()),
            Target::Stream(w) => w.flush(),
        }
    }
}
