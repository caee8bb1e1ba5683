//! The crate's error type: every variant names the file it is about and the
//! values that are wrong.

use std::io;
use std::path::{Path, PathBuf};

use crate::header::{HeaderError, NameError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Header {
        path: PathBuf,
        #[source]
        source: HeaderError,
    },
    #[error("{field} name {value:?} {source}")]
    Name {
        field: &'static str,
        value: String,
        #[source]
        source: NameError,
    },
    #[error("{}: input is empty", path.display())]
    EmptyInput { path: PathBuf },
    #[error("{}: payload is truncated: header says {expected} bytes of data, the file holds {actual}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{}: {extra} bytes of trailing data after the {data_size}-byte payload", path.display())]
    TrailingData {
        path: PathBuf,
        data_size: u64,
        extra: u64,
    },
    #[error("{}: trailing garbage after the zlib stream: the stream ends at payload byte {end}, data size is {data_size}", path.display())]
    TrailingGarbage {
        path: PathBuf,
        end: u64,
        data_size: u64,
    },
    #[error("{}: zlib stream does not end within the {data_size}-byte payload", path.display())]
    Unterminated { path: PathBuf, data_size: u64 },
    #[error("{}: zlib stream is corrupt near payload byte {offset}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        message: String,
    },
    #[error("{}: image size mismatch: header says {expected} bytes, payload holds {actual}", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{}: image size mismatch: header says {expected} bytes, payload inflates to more", path.display())]
    InflatesTooLarge { path: PathBuf, expected: u64 },
    #[error("{}: checksum mismatch: header says {expected}, image hashes to {actual}", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: {member}: {message}", path.display())]
    Archive {
        path: PathBuf,
        member: String,
        message: String,
    },
    /// A file that is none of the kinds the tools read, named for what it
    /// is.
    #[error("{}: {what}", path.display())]
    NotABootFile { path: PathBuf, what: String },
    #[error("{}: cannot write the output here: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error("compression level {level} is out of range (1 to 9)")]
    Level { level: u32 },
}

impl Error {
    /// An I/O error on `path` while doing `op`, as `map_err` wants it. The
    /// other crates use it too, so that every such message reads the same.
    pub fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            path: path.to_owned(),
            op,
            source,
        }
    }

    pub(crate) fn header(path: &Path) -> impl FnOnce(HeaderError) -> Error + '_ {
        move |source| Error::Header {
            path: path.to_owned(),
            source,
        }
    }
}
