//! Reading and verifying images: one streaming pass over the payload,
//! reading and inflating overlapped with hashing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Decompress, FlushDecompress, Status};
use sha2::{Digest, Sha256};

use crate::header::{hex, Header, HEADER_LEN};
use crate::make::CHUNK;
use crate::pipe::{overlap, serial, Sink};
use crate::Error;

/// An image file whose header has been decoded.
pub struct Image {
    path: PathBuf,
    file: File,
    header: Header,
}

impl Image {
    /// Opens `path` and decodes its header (no checks beyond decoding).
    pub fn open(path: &Path) -> Result<Image, Error> {
        let mut file = File::open(path).map_err(Error::io(path, "open"))?;
        let header = read_header(&mut file, path)?;
        Ok(Image {
            path: path.to_owned(),
            file,
            header,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the header's limits, then the payload: its length, the zlib
    /// stream, the image size and the SHA-256. `progress` is called with the
    /// payload bytes read so far.
    pub fn verify(self, progress: &dyn Fn(u64)) -> Result<(), Error> {
        verify_payload(&self.header, self.file, &self.path, progress)
    }
}

/// Reads and decodes the header at the start of `reader`.
pub fn read_header(reader: &mut impl Read, path: &Path) -> Result<Header, Error> {
    let mut buf = vec![0u8; HEADER_LEN];
    let len = read_full(reader, &mut buf).map_err(Error::io(path, "read header"))?;
    Header::parse(&buf[..len]).map_err(Error::header(path))
}

/// Checks `header` and the payload that follows it in `payload` (read to
/// its end). `path` names the image in errors; `progress` is called with the
/// image bytes checked so far.
///
/// Reading (and inflating) runs on its own thread, overlapped with hashing
/// on this one.
pub fn verify_payload(
    header: &Header,
    payload: impl Read + Send,
    path: &Path,
    progress: &dyn Fn(u64),
) -> Result<(), Error> {
    check_payload(header, path, progress, None, |consume| {
        overlap(
            CHUNK,
            4,
            |feed| produce(header, payload, path, feed),
            consume,
        )
    })
}

/// [`verify_payload`] on one thread, for a reader that cannot move to
/// another (a member borrowed from an archive).
pub fn verify_payload_serial(
    header: &Header,
    payload: impl Read,
    path: &Path,
    progress: &dyn Fn(u64),
) -> Result<(), Error> {
    check_payload(header, path, progress, None, |consume| {
        serial(CHUNK, |feed| produce(header, payload, path, feed), consume)
    })
}

/// Reads (and inflates) the payload into `feed`; returns how many bytes
/// follow it.
fn produce(
    header: &Header,
    payload: impl Read,
    path: &Path,
    feed: &dyn Sink,
) -> Result<u64, Error> {
    if header.flags.compressed() {
        inflate(header, payload, path, feed)
    } else {
        copy(header.data_size, payload, path, feed)
    }
}

/// Like [`verify_payload`], and writes the uncompressed image to `out` as
/// it goes (`out_name` names it in errors; `progress` is called with the
/// image bytes written). What `out` holds is only good once this returns
/// `Ok`.
pub fn unpack_payload(
    header: &Header,
    payload: impl Read + Send,
    path: &Path,
    out: &mut dyn Write,
    out_name: &Path,
    progress: &dyn Fn(u64),
) -> Result<(), Error> {
    check_payload(header, path, progress, Some((out, out_name)), |consume| {
        overlap(
            CHUNK,
            4,
            |feed| produce(header, payload, path, feed),
            consume,
        )
    })
}

/// [`unpack_payload`] on one thread, for a reader that cannot move to
/// another (a member borrowed from an archive).
pub fn unpack_payload_serial(
    header: &Header,
    payload: impl Read,
    path: &Path,
    out: &mut dyn Write,
    out_name: &Path,
    progress: &dyn Fn(u64),
) -> Result<(), Error> {
    check_payload(header, path, progress, Some((out, out_name)), |consume| {
        serial(CHUNK, |feed| produce(header, payload, path, feed), consume)
    })
}

/// Runs the pipeline `run` with a consumer that hashes (and writes to
/// `out`), then checks what it saw against `header`.
fn check_payload(
    header: &Header,
    path: &Path,
    progress: &dyn Fn(u64),
    mut out: Option<(&mut dyn Write, &Path)>,
    run: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Result<u64, Error>,
) -> Result<(), Error> {
    header.check().map_err(Error::header(path))?;
    let data_size = header.data_size;
    let mut hasher = Sha256::new();
    let mut hashed = 0u64;
    let extra = run(&mut |data| {
        if let Some((w, name)) = &mut out {
            w.write_all(data).map_err(Error::io(name, "write"))?;
        }
        hasher.update(data);
        hashed += data.len() as u64;
        progress(hashed);
        Ok(())
    })?;
    if extra > 0 {
        return Err(Error::TrailingData {
            path: path.to_owned(),
            data_size,
            extra,
        });
    }
    if hashed != header.image_size {
        return Err(Error::SizeMismatch {
            path: path.to_owned(),
            expected: header.image_size,
            actual: hashed,
        });
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != header.sha256 {
        return Err(Error::ChecksumMismatch {
            path: path.to_owned(),
            expected: header.sha256_hex(),
            actual: hex(&actual),
        });
    }
    Ok(())
}

/// Feeds the `data_size` payload bytes of a plain image; returns how many
/// bytes follow them.
fn copy(data_size: u64, payload: impl Read, path: &Path, feed: &dyn Sink) -> Result<u64, Error> {
    let mut payload = payload.take(data_size);
    let mut read = 0u64;
    while let Some(mut buf) = feed.take() {
        let n = read_full(&mut payload, &mut buf).map_err(Error::io(path, "read"))?;
        if n == 0 || !feed.send(buf, n) {
            break;
        }
        read += n as u64;
    }
    if read < data_size {
        return Err(Error::Truncated {
            path: path.to_owned(),
            expected: data_size,
            actual: read,
        });
    }
    count_rest(payload.into_inner(), path)
}

/// Inflates the zlib stream in the `data_size` payload bytes and feeds what
/// it yields; checks that the stream ends exactly at the end of the payload.
/// Returns how many bytes follow the payload.
fn inflate(
    header: &Header,
    payload: impl Read,
    path: &Path,
    feed: &dyn Sink,
) -> Result<u64, Error> {
    let data_size = header.data_size;
    let mut payload = payload.take(data_size);
    let mut input = vec![0u8; CHUNK];
    let mut z = Decompress::new(true);
    let mut read = 0u64;
    let (mut pos, mut len) = (0, 0);
    let mut ended = false;
    'out: while let Some(mut out) = feed.take() {
        let mut filled = 0;
        while filled < out.len() {
            let eof = pos == len && {
                len = read_full(&mut payload, &mut input).map_err(Error::io(path, "read"))?;
                pos = 0;
                read += len as u64;
                len == 0
            };
            let (in0, out0) = (z.total_in(), z.total_out());
            let flush = if eof {
                FlushDecompress::Finish
            } else {
                FlushDecompress::None
            };
            let status = z
                .decompress(&input[pos..len], &mut out[filled..], flush)
                .map_err(|e| Error::Corrupt {
                    path: path.to_owned(),
                    offset: z.total_in(),
                    message: e.to_string(),
                })?;
            pos += (z.total_in() - in0) as usize;
            let produced = (z.total_out() - out0) as usize;
            filled += produced;
            if z.total_out() > header.image_size {
                return Err(Error::InflatesTooLarge {
                    path: path.to_owned(),
                    expected: header.image_size,
                });
            }
            if status == Status::StreamEnd {
                ended = true;
            }
            if ended || (eof && produced == 0) {
                if filled > 0 && !feed.send(out, filled) {
                    return Ok(0);
                }
                break 'out;
            }
        }
        if !feed.send(out, filled) {
            return Ok(0);
        }
    }
    // Whatever of the payload the stream did not use.
    let rest = io::copy(&mut payload, &mut io::sink()).map_err(Error::io(path, "read"))?;
    let available = read + rest;
    if available < data_size {
        return Err(Error::Truncated {
            path: path.to_owned(),
            expected: data_size,
            actual: available,
        });
    }
    if !ended {
        return Err(Error::Unterminated {
            path: path.to_owned(),
            data_size,
        });
    }
    if z.total_in() < data_size {
        return Err(Error::TrailingGarbage {
            path: path.to_owned(),
            end: z.total_in(),
            data_size,
        });
    }
    count_rest(payload.into_inner(), path)
}

/// Counts the bytes left in `reader`.
fn count_rest(mut reader: impl Read, path: &Path) -> Result<u64, Error> {
    io::copy(&mut reader, &mut io::sink()).map_err(Error::io(path, "read"))
}

/// Fills `buf` as far as `reader` allows; returns the bytes read (less than
/// `buf.len()` only at end of input).
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}
