//! Making images: one streaming pass over the raw input, overlapped across
//! threads.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::header::{
    check_image_size, Flags, Header, HeaderError, Name, Version, DEFAULT_DATASET,
    DEFAULT_TARGET_SIZE, HEADER_LEN, MAX_IMAGE_SIZE,
};
use crate::pipe::overlap;
use crate::verify::read_full;
use crate::{zlib, Error};

/// zlib level used when none is given.
pub const DEFAULT_LEVEL: u32 = 9;

/// Bytes read from the input at a time.
pub(crate) const CHUNK: usize = 1 << 20;

/// What to put in the header, and how to store the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub dataset: Name,
    pub image_name: Name,
    pub target_size: u64,
    /// zlib level 1..=9, or `None` for a plain payload.
    pub compression: Option<u32>,
    /// Compression threads; 0 means one per core. The output's bytes do not
    /// depend on it.
    pub threads: usize,
    /// Append zeros to the raw input, before hashing, up to a multiple of
    /// this many bytes (0 or 1: none). [`crate::NETBOOT_ALIGN`] makes an
    /// image that can be booted over the network.
    pub pad_to: u64,
}

impl Default for ImageSpec {
    fn default() -> ImageSpec {
        ImageSpec {
            dataset: Name::new(DEFAULT_DATASET).expect("the default dataset fits"),
            image_name: Name::default(),
            target_size: DEFAULT_TARGET_SIZE,
            compression: None,
            threads: 0,
            pad_to: 0,
        }
    }
}

impl ImageSpec {
    /// The number of compression threads to use.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Sets the names, with errors that name the field and value.
    pub fn with_names(mut self, dataset: &str, image_name: &str) -> Result<ImageSpec, Error> {
        let name = |field, value: &str| {
            Name::new(value).map_err(|source| Error::Name {
                field,
                value: value.to_owned(),
                source,
            })
        };
        self.dataset = name("dataset", dataset)?;
        self.image_name = name("image", image_name)?;
        Ok(self)
    }
}

/// Makes an image at `output` from the raw image at `input`. `progress` is
/// called with the number of input bytes consumed so far. An output that
/// cannot be written is refused before the input is opened.
pub fn make_image(
    input: &Path,
    output: &Path,
    spec: &ImageSpec,
    progress: &dyn Fn(u64),
) -> Result<Header, Error> {
    crate::atomic::check_output(output)?;
    let file = File::open(input).map_err(Error::io(input, "open"))?;
    let meta = file.metadata().map_err(Error::io(input, "stat"))?;
    if meta.is_file() {
        // Fail before writing anything when the size alone rules it out.
        let size = if meta.len() == 0 {
            0
        } else {
            padded_len(meta.len(), spec.pad_to)
        };
        check_input_size(input, size, spec.target_size)?;
    }
    make_image_from(file, input, output, spec, progress)
}

fn check_input_size(input: &Path, size: u64, target_size: u64) -> Result<(), Error> {
    if size == 0 {
        return Err(Error::EmptyInput {
            path: input.to_owned(),
        });
    }
    check_image_size(size, target_size).map_err(Error::header(input))
}
/// Makes an image at `output` from everything `input` yields; `input_name`
/// names it in errors.
///
/// Plain payloads: reading runs on its own thread, overlapped with hashing
/// and writing; 4 KiB blocks of zeros become holes in the output. Compressed
/// payloads: blocks are deflated on `spec.threads` threads (see
/// [`crate::zlib`]) while this thread reads and hashes.
pub fn make_image_from(
    input: impl Read + Send,
    input_name: &Path,
    output: &Path,
    spec: &ImageSpec,
    progress: &dyn Fn(u64),
) -> Result<Header, Error> {
    if let Some(level) = spec.compression {
        if !(1..=9).contains(&level) {
            return Err(Error::Level { level });
        }
    }
    let mut input = PadTo {
        inner: input,
        align: spec.pad_to,
        len: 0,
        ended: false,
    };
    let mut out = AtomicFile::create(output)?;
    let file = out.file();
    let mut hasher = Sha256::new();
    let mut image_size = 0u64;
    let too_large = |image_size| Error::Header {
        path: input_name.to_owned(),
        source: HeaderError::ImageTooLarge { image_size },
    };

    let data_size = match spec.compression {
        None => {
            overlap(
                CHUNK,
                4,
                |feed| {
                    while let Some(mut buf) = feed.take() {
                        let n = read_full(&mut input, &mut buf)
                            .map_err(Error::io(input_name, "read"))?;
                        if n == 0 || !feed.send(buf, n) {
                            break;
                        }
                    }
                    Ok(())
                },
                |data| {
                    hasher.update(data);
                    write_sparse(file, data, HEADER_LEN as u64 + image_size)
                        .map_err(Error::io(output, "write"))?;
                    image_size += data.len() as u64;
                    if image_size > MAX_IMAGE_SIZE {
                        return Err(too_large(image_size));
                    }
                    progress(image_size);
                    Ok(())
                },
            )?;
            // Trailing zeros were skipped: give the file its full length.
            file.set_len(HEADER_LEN as u64 + image_size)
                .map_err(Error::io(output, "write"))?;
            image_size
        }
        Some(level) => {
            file.seek(SeekFrom::Start(HEADER_LEN as u64))
                .map_err(Error::io(output, "seek"))?;
            let sink = io::BufWriter::with_capacity(CHUNK, &mut *file);
            let result = zlib::compress(
                level,
                spec.threads(),
                |buf| {
                    let n = read_full(&mut input, buf).map_err(Error::io(input_name, "read"))?;
                    hasher.update(&buf[..n]);
                    image_size += n as u64;
                    if image_size > MAX_IMAGE_SIZE {
                        return Err(too_large(image_size));
                    }
                    progress(image_size);
                    Ok(n)
                },
                sink,
            );
            let (sink, written) = result.map_err(|e| match e {
                zlib::Failed::Input(e) => e,
                zlib::Failed::Output(e) => Error::io(output, "write")(e),
            })?;
            sink.into_inner()
                .map_err(|e| Error::io(output, "write")(e.into_error()))?;
            written
        }
    };
    check_input_size(input_name, image_size, spec.target_size)?;

    let header = Header {
        version: Version::V2,
        flags: if spec.compression.is_some() {
            Flags::COMPRESSED
        } else {
            Flags::empty()
        },
        data_size,
        image_size,
        target_size: spec.target_size,
        sha256: hasher.finalize().into(),
        dataset: spec.dataset.clone(),
        image_name: spec.image_name.clone(),
    };
    file.write_all_at(&header.emit(), 0)
        .map_err(Error::io(output, "write header"))?;
    out.commit()?;
    Ok(header)
}

/// `len` rounded up to a multiple of `align` (0 or 1: unchanged).
pub fn padded_len(len: u64, align: u64) -> u64 {
    if align <= 1 {
        len
    } else {
        len.div_ceil(align).saturating_mul(align)
    }
}

/// A reader that yields its input, then zeros up to a multiple of `align`
/// (an empty input stays empty).
struct PadTo<R> {
    inner: R,
    align: u64,
    len: u64,
    ended: bool,
}

impl<R: Read> Read for PadTo<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.ended {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.len += n as u64;
                return Ok(n);
            }
            self.ended = true;
        }
        let missing = padded_len(self.len, self.align) - self.len;
        let n = buf
            .len()
            .min(usize::try_from(missing).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.len += n as u64;
        Ok(n)
    }
}

/// Writes `data` at `offset`, leaving 4 KiB blocks of zeros as holes.
/// `offset` must be a multiple of 4096 for the holes to be whole blocks.
pub(crate) fn write_sparse(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut run_start = None;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let at = i * BLOCK;
        let zero = block == &ZEROS[..block.len()];
        match (zero, run_start) {
            (false, None) => run_start = Some(at),
            (true, Some(start)) => {
                file.write_all_at(&data[start..at], offset + start as u64)?;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        file.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}

/// Writes the checksum file `mkimage -O` writes: the 32 raw digest bytes.
pub fn write_checksum_file(path: &Path, sha256: &[u8; 32]) -> Result<(), Error> {
    crate::atomic::write_file(path, sha256)
}
