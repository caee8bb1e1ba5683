//! The Oxide phase-2 boot image format: a 4096-byte header followed by the
//! image, raw or as one zlib stream.
//!
//! - [`header`]: the byte layout, [`Header::parse`] and [`Header::emit`].
//! - [`make_image`]: one streaming pass from a raw image to a boot image,
//!   written to a temporary file and renamed into place when complete.
//! - [`Image::verify`]: one streaming pass that checks everything the header
//!   claims about the payload.
//!
//! Nothing here reads a whole image into memory.

#![forbid(unsafe_code)]

pub mod archive;
pub mod atomic;
#[cfg(feature = "cli")]
pub mod cli;
pub mod consumers;
mod error;
pub mod extract;
pub mod header;
mod inspect;
mod make;
mod pipe;
#[cfg(feature = "cli")]
pub mod progress;
pub mod report;
mod size;
mod verify;
pub mod zlib;

pub use atomic::{write_file, AtomicFile};
pub use error::Error;
pub use header::{
    netboot_problem, Flags, Header, HeaderError, Name, NameError, Version, NETBOOT_ALIGN,
    NETBOOT_MIN_SIZE,
};
pub use inspect::{inspect, InspectOptions};
pub use make::{
    make_image, make_image_from, padded_len, write_checksum_file, ImageSpec, DEFAULT_LEVEL,
};
pub use size::{parse_size, SizeError};
pub use verify::{
    read_header, unpack_payload, unpack_payload_serial, verify_payload, verify_payload_serial,
    Image,
};
