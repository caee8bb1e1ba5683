//! The 4096-byte boot image header: byte layout, parsing and emitting.
//!
//! The layout is a committed interface read by the sled's OS, the service
//! processor and the control plane; field positions are spelled out in
//! [`field`] so that a reader can check them against the specification
//! without decoding any logic.

use std::fmt;

/// Size of the header; the payload starts at this offset.
pub const HEADER_LEN: usize = 4096;
/// `0x1DEB0075`, little-endian at offset 0.
pub const MAGIC: u32 = 0x1DEB_0075;
/// The version this crate writes.
pub const VERSION: u32 = 2;
/// Width of each NUL-padded name field.
pub const NAME_FIELD_LEN: usize = 128;
/// Longest name that fits (the last byte of the field is always NUL).
pub const NAME_MAX_LEN: usize = NAME_FIELD_LEN - 1;
/// Smallest image the OS will boot.
pub const MIN_IMAGE_SIZE: u64 = 4096;
/// Largest image the OS will boot.
pub const MAX_IMAGE_SIZE: u64 = 4 << 30;
/// Network boot: the deployed client fetches whole batches of 128 x 1 KiB
/// and hashes its ramdisk up to the end of the last batch (illumos
/// `uts/oxide/boot_image/oxide_boot_net.c`, `oxide_boot_net_ether_turn`:
/// `oxide_boot_ramdisk_set_len(oxb, oe->oe_offset)`), so only an image
/// whose size is a multiple of this verifies there. Disk boot and the
/// service processor hash exactly `image_size` bytes.
pub const NETBOOT_ALIGN: u64 = 128 * 1024;
/// Network boot: the client ignores an OFFER whose sizes are under 1 MiB
/// (`oxide_boot_net_ether_turn`, REST state).
pub const NETBOOT_MIN_SIZE: u64 = 1 << 20;

/// The previous tools' default dataset.
pub const DEFAULT_DATASET: &str = "rpool/ROOT/ramdisk";
/// The previous tools' default target size (4 GiB).
pub const DEFAULT_TARGET_SIZE: u64 = 4 << 30;

/// Byte ranges of every field (all integers little-endian).
pub mod field {
    use std::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: Range<usize> = 4..8;

    /// Version 2.
    pub mod v2 {
        use std::ops::Range;
        pub const FLAGS: Range<usize> = 8..16;
        pub const DATA_SIZE: Range<usize> = 16..24;
        pub const IMAGE_SIZE: Range<usize> = 24..32;
        pub const TARGET_SIZE: Range<usize> = 32..40;
        pub const SHA256: Range<usize> = 40..72;
        pub const DATASET: Range<usize> = 72..200;
        pub const IMAGE_NAME: Range<usize> = 200..328;
        pub const RESERVED: Range<usize> = 328..4096;
    }

    /// Version 1: no flags, data size or image name; payload always raw.
    pub mod v1 {
        use std::ops::Range;
        pub const IMAGE_SIZE: Range<usize> = 8..16;
        pub const TARGET_SIZE: Range<usize> = 16..24;
        pub const SHA256: Range<usize> = 24..56;
        pub const DATASET: Range<usize> = 56..184;
    }

    const _: () = {
        assert!(v2::RESERVED.end == super::HEADER_LEN);
        assert!(v2::DATASET.end - v2::DATASET.start == super::NAME_FIELD_LEN);
        assert!(v2::IMAGE_NAME.end - v2::IMAGE_NAME.start == super::NAME_FIELD_LEN);
        assert!(v1::DATASET.end - v1::DATASET.start == super::NAME_FIELD_LEN);
    };
}

/// Header flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u64);

impl Flags {
    /// Payload is one zlib stream.
    pub const COMPRESSED: Flags = Flags(1);
    /// Every bit this format defines.
    pub const KNOWN: u64 = Self::COMPRESSED.0;

    pub const fn empty() -> Flags {
        Flags(0)
    }
    /// Flags from raw bits; `None` if any bit is unknown.
    pub const fn from_bits(bits: u64) -> Option<Flags> {
        if bits & !Self::KNOWN == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }
    pub const fn bits(self) -> u64 {
        self.0
    }
    pub const fn compressed(self) -> bool {
        self.0 & Self::COMPRESSED.0 != 0
    }
}

/// Renders as the previous tools did (`bitflags` Debug): `(empty)` or
/// `COMPRESSED`.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.compressed() {
            f.write_str("COMPRESSED")
        } else {
            f.write_str("(empty)")
        }
    }
}

/// A name that fits a 128-byte NUL-padded field: UTF-8, at most 127 bytes,
/// no NUL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    pub fn new(s: impl Into<String>) -> Result<Name, NameError> {
        let s = s.into();
        if s.len() > NAME_MAX_LEN {
            return Err(NameError::TooLong { len: s.len() });
        }
        if let Some(at) = s.bytes().position(|b| b == 0) {
            return Err(NameError::ContainsNul { at });
        }
        Ok(Name(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(field: &[u8]) -> Result<Name, NameError> {
        let end = field
            .iter()
            .position(|&b| b == 0)
            .ok_or(NameError::NotTerminated)?;
        let s = std::str::from_utf8(&field[..end]).map_err(|e| NameError::NotUtf8 {
            at: e.valid_up_to(),
        })?;
        Ok(Name(s.to_owned()))
    }

    fn emit(&self, field: &mut [u8]) {
        field.fill(0);
        field[..self.0.len()].copy_from_slice(self.0.as_bytes());
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a name does not fit its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is {len} bytes long; at most {NAME_MAX_LEN} fit")]
    TooLong { len: usize },
    #[error("contains a NUL byte at offset {at}")]
    ContainsNul { at: usize },
    #[error("has no terminating NUL within its {NAME_FIELD_LEN} bytes")]
    NotTerminated,
    #[error("is not valid UTF-8 (bad byte at offset {at})")]
    NotUtf8 { at: usize },
}

/// Which header layout a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// A decoded header. A version 1 header decodes with empty flags, an empty
/// image name and `data_size == image_size`, which is what it means.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub version: Version,
    pub flags: Flags,
    pub data_size: u64,
    pub image_size: u64,
    pub target_size: u64,
    pub sha256: [u8; 32],
    pub dataset: Name,
    pub image_name: Name,
}

/// Why 4096 bytes are not a usable header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header is truncated: {len} bytes, need {HEADER_LEN}")]
    Truncated { len: usize },
    #[error("bad magic {found:#010x} (expected {MAGIC:#010x})")]
    BadMagic { found: u32 },
    #[error("unknown header version {found} (known: 1, 2)")]
    UnknownVersion { found: u32 },
    #[error("unknown flag bits {bits:#x} in flags {flags:#x} (known: {known:#x})", known = Flags::KNOWN)]
    UnknownFlags { flags: u64, bits: u64 },
    #[error("{field} name {source}")]
    Name {
        field: &'static str,
        source: NameError,
    },
    #[error("data size is 0")]
    DataSizeZero,
    #[error("data size {data_size} differs from image size {image_size} in an uncompressed image")]
    PlainSizeMismatch { data_size: u64, image_size: u64 },
    #[error("image size {image_size} is below the minimum of {MIN_IMAGE_SIZE} bytes")]
    ImageTooSmall { image_size: u64 },
    #[error("image size {image_size} is above the maximum of {MAX_IMAGE_SIZE} bytes (4 GiB)")]
    ImageTooLarge { image_size: u64 },
    #[error("image size {image_size} is larger than target size {target_size}")]
    ImageExceedsTarget { image_size: u64, target_size: u64 },
}

fn u32_at(buf: &[u8], r: std::ops::Range<usize>) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[r]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], r: std::ops::Range<usize>) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[r]);
    u64::from_le_bytes(b)
}

impl Header {
    /// A version 2 header for a plain (uncompressed) image.
    pub fn plain(image_size: u64, target_size: u64, sha256: [u8; 32]) -> Header {
        Header {
            version: Version::V2,
            flags: Flags::empty(),
            data_size: image_size,
            image_size,
            target_size,
            sha256,
            dataset: Name(DEFAULT_DATASET.to_owned()),
            image_name: Name::default(),
        }
    }

    /// Decodes a header from the first [`HEADER_LEN`] bytes of `buf`. Checks
    /// only what decoding needs (magic, version, flags, names); see
    /// [`Header::check`] for the consumers' limits.
    pub fn parse(buf: &[u8]) -> Result<Header, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Truncated { len: buf.len() });
        }
        let magic = u32_at(buf, field::MAGIC);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic { found: magic });
        }
        let name = |field: &'static str, r| {
            Name::parse(&buf[r]).map_err(|source| HeaderError::Name { field, source })
        };
        match u32_at(buf, field::VERSION) {
            1 => {
                use field::v1::*;
                let image_size = u64_at(buf, IMAGE_SIZE);
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&buf[SHA256]);
                Ok(Header {
                    version: Version::V1,
                    flags: Flags::empty(),
                    data_size: image_size,
                    image_size,
                    target_size: u64_at(buf, TARGET_SIZE),
                    sha256,
                    dataset: name("dataset", DATASET)?,
                    image_name: Name::default(),
                })
            }
            2 => {
                use field::v2::*;
                let raw = u64_at(buf, FLAGS);
                let flags = Flags::from_bits(raw).ok_or(HeaderError::UnknownFlags {
                    flags: raw,
                    bits: raw & !Flags::KNOWN,
                })?;
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&buf[SHA256]);
                Ok(Header {
                    version: Version::V2,
                    flags,
                    data_size: u64_at(buf, DATA_SIZE),
                    image_size: u64_at(buf, IMAGE_SIZE),
                    target_size: u64_at(buf, TARGET_SIZE),
                    sha256,
                    dataset: name("dataset", DATASET)?,
                    image_name: name("image", IMAGE_NAME)?,
                })
            }
            found => Err(HeaderError::UnknownVersion { found }),
        }
    }

    /// Encodes the header. Version 1 drops the fields it does not have.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0u8; HEADER_LEN];
        buf[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        buf[field::VERSION].copy_from_slice(&self.version.number().to_le_bytes());
        match self.version {
            Version::V1 => {
                use field::v1::*;
                buf[IMAGE_SIZE].copy_from_slice(&self.image_size.to_le_bytes());
                buf[TARGET_SIZE].copy_from_slice(&self.target_size.to_le_bytes());
                buf[SHA256].copy_from_slice(&self.sha256);
                self.dataset.emit(&mut buf[DATASET]);
            }
            Version::V2 => {
                use field::v2::*;
                buf[FLAGS].copy_from_slice(&self.flags.bits().to_le_bytes());
                buf[DATA_SIZE].copy_from_slice(&self.data_size.to_le_bytes());
                buf[IMAGE_SIZE].copy_from_slice(&self.image_size.to_le_bytes());
                buf[TARGET_SIZE].copy_from_slice(&self.target_size.to_le_bytes());
                buf[SHA256].copy_from_slice(&self.sha256);
                self.dataset.emit(&mut buf[DATASET]);
                self.image_name.emit(&mut buf[IMAGE_NAME]);
            }
        }
        buf
    }

    /// The limits the previous inspector and the OS enforce: a non-empty
    /// payload, plain sizes that agree, 4096 <= image size <= 4 GiB, and
    /// image size <= target size.
    pub fn check(&self) -> Result<(), HeaderError> {
        if self.data_size == 0 {
            return Err(HeaderError::DataSizeZero);
        }
        if !self.flags.compressed() && self.data_size != self.image_size {
            return Err(HeaderError::PlainSizeMismatch {
                data_size: self.data_size,
                image_size: self.image_size,
            });
        }
        check_image_size(self.image_size, self.target_size)
    }

    /// Why a sled could not boot this image over the network, if it could
    /// not: the one statement of the network boot rules
    /// ([`NETBOOT_MIN_SIZE`], [`NETBOOT_ALIGN`]).
    pub fn netboot_problem(&self) -> Option<String> {
        netboot_problem(self.image_size, self.target_size)
    }

    /// Lower-case hex of the image checksum.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// Checks an image size against the OS's limits and the target size.
pub fn check_image_size(image_size: u64, target_size: u64) -> Result<(), HeaderError> {
    if image_size < MIN_IMAGE_SIZE {
        return Err(HeaderError::ImageTooSmall { image_size });
    }
    if image_size > MAX_IMAGE_SIZE {
        return Err(HeaderError::ImageTooLarge { image_size });
    }
    if image_size > target_size {
        return Err(HeaderError::ImageExceedsTarget {
            image_size,
            target_size,
        });
    }
    Ok(())
}

/// [`Header::netboot_problem`] for an image and target size.
pub fn netboot_problem(image_size: u64, target_size: u64) -> Option<String> {
    if image_size < NETBOOT_MIN_SIZE || target_size < NETBOOT_MIN_SIZE {
        return Some(format!(
            "image size {image_size} or target size {target_size} is under 1 MiB: \
             the sled's network client ignores the offer"
        ));
    }
    if image_size % NETBOOT_ALIGN != 0 {
        return Some(format!(
            "image size {image_size} is not a multiple of 128 KiB (131072 bytes): a sled \
             booting over the network hashes whole 128 KiB batches and fails its integrity \
             check (pad the raw image, e.g. mkimage --pad-to 128KiB)"
        ));
    }
    None
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: Version::V2,
            flags: Flags::COMPRESSED,
            data_size: 0x0102,
            image_size: 0x1122_3344,
            target_size: 0x0100_0000,
            sha256: [0xab; 32],
            dataset: Name::new("rpool/ROOT/ramdisk").unwrap(),
            image_name: Name::new("recovery-x").unwrap(),
        }
    }

    #[test]
    fn emit_puts_fields_at_their_offsets() {
        let b = sample().emit();
        assert_eq!(&b[0..4], &[0x75, 0x00, 0xeb, 0x1d]);
        assert_eq!(&b[4..8], &[2, 0, 0, 0]);
        assert_eq!(&b[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16..24], &[0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[24..32], &[0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0]);
        assert_eq!(&b[32..40], &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&b[40..72], &[0xab; 32]);
        assert_eq!(&b[72..90], b"rpool/ROOT/ramdisk");
        assert!(b[90..200].iter().all(|&x| x == 0));
        assert_eq!(&b[200..210], b"recovery-x");
        assert!(b[210..].iter().all(|&x| x == 0));
        assert_eq!(Header::parse(&b).unwrap(), sample());
    }

    #[test]
    fn v1_round_trips_and_reads_as_plain() {
        let mut h = Header::plain(8192, 1 << 20, [7; 32]);
        h.version = Version::V1;
        let b = h.emit();
        assert_eq!(&b[4..8], &[1, 0, 0, 0]);
        assert_eq!(&b[8..16], &8192u64.to_le_bytes());
        assert_eq!(&b[24..56], &[7; 32]);
        assert_eq!(&b[56..74], b"rpool/ROOT/ramdisk");
        let p = Header::parse(&b).unwrap();
        assert_eq!(p, h);
        assert_eq!(p.data_size, 8192);
        assert!(p.check().is_ok());
    }

    #[test]
    fn parse_errors() {
        let good = sample().emit();
        assert_eq!(
            Header::parse(&good[..100]),
            Err(HeaderError::Truncated { len: 100 })
        );
        let mut b = good;
        b[0] = 0;
        assert_eq!(
            Header::parse(&b),
            Err(HeaderError::BadMagic { found: 0x1deb_0000 })
        );
        let mut b = good;
        b[4] = 3;
        assert_eq!(
            Header::parse(&b),
            Err(HeaderError::UnknownVersion { found: 3 })
        );
        let mut b = good;
        b[8] = 0x5;
        let e = Header::parse(&b).unwrap_err();
        assert_eq!(e, HeaderError::UnknownFlags { flags: 5, bits: 4 });
        assert_eq!(
            e.to_string(),
            "unknown flag bits 0x4 in flags 0x5 (known: 0x1)"
        );
        let mut b = good;
        b[72..200].fill(b'a');
        assert_eq!(
            Header::parse(&b).unwrap_err().to_string(),
            "dataset name has no terminating NUL within its 128 bytes"
        );
        let mut b = good;
        b[200] = 0xff;
        assert_eq!(
            Header::parse(&b).unwrap_err().to_string(),
            "image name is not valid UTF-8 (bad byte at offset 0)"
        );
    }

    #[test]
    fn names() {
        assert!(Name::new("a".repeat(127)).is_ok());
        assert_eq!(
            Name::new("a".repeat(128)),
            Err(NameError::TooLong { len: 128 })
        );
        assert_eq!(Name::new("a\0b"), Err(NameError::ContainsNul { at: 1 }));
    }

    #[test]
    fn check_limits() {
        let mut h = Header::plain(4096, 4096, [0; 32]);
        assert!(h.check().is_ok());
        h.data_size = 0;
        assert_eq!(h.check(), Err(HeaderError::DataSizeZero));
        h.data_size = 4095;
        assert!(matches!(
            h.check(),
            Err(HeaderError::PlainSizeMismatch { .. })
        ));
        let h = Header::plain(4095, 1 << 20, [0; 32]);
        assert_eq!(
            h.check(),
            Err(HeaderError::ImageTooSmall { image_size: 4095 })
        );
        let h = Header::plain(MAX_IMAGE_SIZE + 1, u64::MAX, [0; 32]);
        assert!(matches!(h.check(), Err(HeaderError::ImageTooLarge { .. })));
        let h = Header::plain(8192, 4096, [0; 32]);
        assert_eq!(
            h.check().unwrap_err().to_string(),
            "image size 8192 is larger than target size 4096"
        );
    }

    #[test]
    fn flags_render_like_the_previous_tools() {
        assert_eq!(Flags::empty().to_string(), "(empty)");
        assert_eq!(Flags::COMPRESSED.to_string(), "COMPRESSED");
    }
}
