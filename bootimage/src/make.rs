//! Making images: one streaming pass over the raw input.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
use crate::header::{
    check_image_size, Flags, Header, HeaderError, Name, Version, DEFAULT_DATASET,
    DEFAULT_TARGET_SIZE, HEADER_LEN, MAX_IMAGE_SIZE,
};
use crate::Error;

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
}

impl Default for ImageSpec {
    fn default() -> ImageSpec {
        ImageSpec {
            dataset: Name::new(DEFAULT_DATASET).expect("the default dataset fits"),
            image_name: Name::default(),
            target_size: DEFAULT_TARGET_SIZE,
            compression: None,
        }
    }
}

impl ImageSpec {
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
/// called with the number of input bytes consumed so far.
pub fn make_image(
    input: &Path,
    output: &Path,
    spec: &ImageSpec,
    progress: &dyn Fn(u64),
) -> Result<Header, Error> {
    let file = File::open(input).map_err(Error::io(input, "open"))?;
    let meta = file.metadata().map_err(Error::io(input, "stat"))?;
    if meta.is_file() {
        // Fail before writing anything when the size alone rules it out.
        check_input_size(input, meta.len(), spec.target_size)?;
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
pub fn make_image_from(
    mut input: impl Read,
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
    let mut out = AtomicFile::create(output)?;
    let file = out.file();
    file.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(Error::io(output, "seek"))?;

    let mut hasher = Sha256::new();
    let mut image_size = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let buffered = io::BufWriter::with_capacity(CHUNK, &mut *file);
    let mut sink = match spec.compression {
        None => Sink::Plain(buffered),
        Some(level) => Sink::Zlib(flate2::write::ZlibEncoder::new(
            buffered,
            flate2::Compression::new(level),
        )),
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(input_name, "read")(e)),
        };
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n])
            .map_err(Error::io(output, "write"))?;
        image_size += n as u64;
        if image_size > MAX_IMAGE_SIZE {
            return Err(Error::Header {
                path: input_name.to_owned(),
                source: HeaderError::ImageTooLarge { image_size },
            });
        }
        progress(image_size);
    }
    sink.finish().map_err(Error::io(output, "write"))?;
    check_input_size(input_name, image_size, spec.target_size)?;

    let end = file.stream_position().map_err(Error::io(output, "seek"))?;
    let header = Header {
        version: Version::V2,
        flags: if spec.compression.is_some() {
            Flags::COMPRESSED
        } else {
            Flags::empty()
        },
        data_size: end - HEADER_LEN as u64,
        image_size,
        target_size: spec.target_size,
        sha256: hasher.finalize().into(),
        dataset: spec.dataset.clone(),
        image_name: spec.image_name.clone(),
    };
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&header.emit()))
        .map_err(Error::io(output, "write header"))?;
    out.commit()?;
    Ok(header)
}

enum Sink<W: Write> {
    Plain(W),
    Zlib(flate2::write::ZlibEncoder<W>),
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Zlib(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Zlib(w) => w.finish()?.flush(),
        }
    }
}

/// Writes the checksum file `mkimage -O` writes: the 32 raw digest bytes.
pub fn write_checksum_file(path: &Path, sha256: &[u8; 32]) -> Result<(), Error> {
    crate::atomic::write_file(path, sha256)
}
