//! The boot protocol's frames, in the smoltcp style: a checked view over a
//! buffer ([`Packet`]) with field positions in [`field`], and a high-level
//! [`Repr`] with `parse` and `emit`. Malformed input is an error value,
//! never a panic.
//!
//! All integers in the protocol are big-endian. The Ethernet payload starts
//! with a 12-byte header (magic, type, len) and `len` bytes of body; frames
//! may arrive padded to the Ethernet minimum, so `len`, not the buffer's
//! length, says where the body ends.

use std::fmt;
use std::str::FromStr;

/// The protocol's ethertype.
pub const ETHERTYPE: u16 = 0x1DE0;
/// Magic at the start of every frame's payload.
pub const MAGIC: u32 = 0x1DE1_2345;
/// Bytes of image per DATA frame.
pub const DATA_CHUNK: usize = 1024;
/// Entries in a READ's offset array.
pub const READ_SLOTS: usize = 128;
/// The most DATA body bytes the deployed client accepts (len <= 1476).
pub const DATA_MAX_LEN: usize = 1476;
/// Ethernet header length.
pub const ETH_HEADER_LEN: usize = 14;
/// Ethernet minimum frame (without FCS): shorter frames are padded.
pub const ETH_MIN_FRAME: usize = 60;
/// Standard MTU: the most payload an Ethernet frame carries here.
pub const MTU: usize = 1500;
/// What a frame costs a link beyond its bytes: preamble and start of frame
/// (8), frame check sequence (4) and the inter-frame gap (12).
pub const ETH_WIRE_OVERHEAD: usize = 24;
/// A full DATA frame: Ethernet header, protocol header, offset, 1024 bytes.
pub const DATA_FRAME_LEN: usize = ETH_HEADER_LEN + field::HEADER_LEN + 8 + DATA_CHUNK;

/// Bytes a frame of `len` bytes (header to payload, no FCS) occupies on an
/// Ethernet link: padded to the minimum, plus [`ETH_WIRE_OVERHEAD`]. A
/// full DATA frame takes 1082: 94.6 % of a link's rate is image.
pub const fn wire_len(len: usize) -> usize {
    let len = if len < ETH_MIN_FRAME {
        ETH_MIN_FRAME
    } else {
        len
    };
    len + ETH_WIRE_OVERHEAD
}

/// Field positions, relative to the Ethernet payload.
pub mod field {
    use std::ops::{Range, RangeFrom};

    pub const MAGIC: Range<usize> = 0..4;
    pub const TYPE: Range<usize> = 4..8;
    pub const LEN: Range<usize> = 8..12;
    pub const BODY: RangeFrom<usize> = 12..;
    pub const HEADER_LEN: usize = 12;

    /// OFFER body.
    pub mod offer {
        use std::ops::Range;
        pub const RAMDISK_SIZE: Range<usize> = 0..8;
        pub const DATA_SIZE: Range<usize> = 8..16;
        pub const SHA256: Range<usize> = 16..48;
        pub const DATASET: Range<usize> = 48..176;
        pub const LEN: usize = 176;
    }

    /// READ body.
    pub mod read {
        use std::ops::Range;
        pub const COUNT: Range<usize> = 0..8;
        pub const OFFSETS: Range<usize> = 8..1032;
        pub const LEN: usize = 1032;
    }

    /// DATA body.
    pub mod data {
        use std::ops::{Range, RangeFrom};
        pub const OFFSET: Range<usize> = 0..8;
        pub const BYTES: RangeFrom<usize> = 8..;
    }

    /// Ethernet II header.
    pub mod eth {
        use std::ops::{Range, RangeFrom};
        pub const DST: Range<usize> = 0..6;
        pub const SRC: Range<usize> = 6..12;
        pub const ETHERTYPE: Range<usize> = 12..14;
        pub const PAYLOAD: RangeFrom<usize> = 14..;
    }
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Mac::BROADCAST
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// As JSON: the usual text form, `02:00:00:00:00:01`.
impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC address did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (expected six hex pairs, as 02:00:00:00:00:01)")]
pub struct MacError(pub String);

impl FromStr for Mac {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Mac, MacError> {
        let err = || MacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Hello,
    Offer,
    Read,
    Data,
    Finished,
    Reset,
}

impl Kind {
    pub fn code(self) -> u32 {
        match self {
            Kind::Hello => 0x9001,
            Kind::Offer => 0x9102,
            Kind::Read => 0x9003,
            Kind::Data => 0x9104,
            Kind::Finished => 0x9005,
            Kind::Reset => 0x9106,
        }
    }

    pub fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            0x9001 => Kind::Hello,
            0x9102 => Kind::Offer,
            0x9003 => Kind::Read,
            0x9104 => Kind::Data,
            0x9005 => Kind::Finished,
            0x9106 => Kind::Reset,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::Offer => "OFFER",
            Kind::Read => "READ",
            Kind::Data => "DATA",
            Kind::Finished => "FINISHED",
            Kind::Reset => "RESET",
        }
    }
}

/// Why a frame is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("frame too short: {len} bytes")]
    Truncated { len: usize },
    #[error("not our ethertype: {0:#06x}")]
    Ethertype(u16),
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unknown frame type {0:#x}")]
    UnknownType(u32),
    #[error("len {len} runs past the end of the {available}-byte frame")]
    LenPastFrame { len: u32, available: usize },
    #[error("{} with len {len}, which that type never has", kind.name())]
    BadLength { kind: Kind, len: u32 },
    #[error("READ count {0} is more than 128")]
    CountTooLarge(u64),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A checked view over a protocol frame (the Ethernet payload).
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer`, checking that the header fits, the magic is right
    /// and `len` stays within the buffer; the accessors cannot panic after.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    pub fn check(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < field::HEADER_LEN {
            return Err(Error::Truncated { len: b.len() });
        }
        if self.magic() != MAGIC {
            return Err(Error::BadMagic(self.magic()));
        }
        let available = b.len() - field::HEADER_LEN;
        if self.len() as usize > available {
            return Err(Error::LenPastFrame {
                len: self.len(),
                available,
            });
        }
        Ok(())
    }

    pub fn magic(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::MAGIC])
    }

    pub fn kind_code(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::TYPE])
    }

    pub fn len(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::LEN])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `len` bytes of body (padding excluded).
    pub fn body(&self) -> &[u8] {
        let b = &self.buffer.as_ref()[field::BODY];
        &b[..self.len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_magic(&mut self, v: u32) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_kind(&mut self, k: Kind) {
        self.buffer.as_mut()[field::TYPE].copy_from_slice(&k.code().to_be_bytes());
    }
    pub fn set_len(&mut self, v: u32) {
        self.buffer.as_mut()[field::LEN].copy_from_slice(&v.to_be_bytes());
    }
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY]
    }
}

/// An OFFER's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The ramdisk the sled creates: the image header's target size.
    pub ramdisk_size: u64,
    /// Uncompressed image bytes: the header's image size.
    pub data_size: u64,
    pub sha256: [u8; 32],
    /// NUL-padded dataset name.
    pub dataset: [u8; 128],
}

/// A READ's body, as sent: the count and all 128 entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub count: u64,
    pub offsets: [u64; READ_SLOTS],
}

impl Read {
    /// The offsets a correct server serves (the deployed client's quirk):
    /// every non-zero entry anywhere in the array, and offset 0 too when
    /// there are fewer non-zero entries than `count` (a request for offset
    /// 0 is encoded as zero).
    pub fn requested(&self) -> impl Iterator<Item = u64> + '_ {
        let nonzero = self.offsets.iter().filter(|&&o| o != 0).count() as u64;
        let zero = (nonzero < self.count).then_some(0u64);
        zero.into_iter()
            .chain(self.offsets.iter().copied().filter(|&o| o != 0))
    }
}

/// A frame, decoded.
// A READ's 1 KiB array makes this large; it lives briefly on the stack, and
// boxing it would allocate per READ.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    Hello { text: &'a [u8] },
    Offer(Offer),
    Read(Read),
    Data { offset: u64, bytes: &'a [u8] },
    Finished,
    Reset,
}

impl<'a> Repr<'a> {
    /// Decodes a frame's payload (the bytes after the Ethernet header).
    pub fn parse(payload: &'a [u8]) -> Result<Repr<'a>, Error> {
        let packet = Packet::new_checked(payload)?;
        let code = packet.kind_code();
        let kind = Kind::from_code(code).ok_or(Error::UnknownType(code))?;
        let len = packet.len();
        let body = &payload[field::BODY][..len as usize];
        let bad = || Error::BadLength { kind, len };
        Ok(match kind {
            Kind::Hello => Repr::Hello { text: body },
            Kind::Offer => {
                use field::offer::*;
                if body.len() != LEN {
                    return Err(bad());
                }
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&body[SHA256]);
                let mut dataset = [0u8; 128];
                dataset.copy_from_slice(&body[DATASET]);
                Repr::Offer(Offer {
                    ramdisk_size: be64(&body[RAMDISK_SIZE]),
                    data_size: be64(&body[DATA_SIZE]),
                    sha256,
                    dataset,
                })
            }
            Kind::Read => {
                use field::read::*;
                if body.len() != LEN {
                    return Err(bad());
                }
                let count = be64(&body[COUNT]);
                if count > READ_SLOTS as u64 {
                    return Err(Error::CountTooLarge(count));
                }
                let mut offsets = [0u64; READ_SLOTS];
                for (o, b) in offsets.iter_mut().zip(body[OFFSETS].chunks_exact(8)) {
                    *o = be64(b);
                }
                Repr::Read(Read { count, offsets })
            }
            Kind::Data => {
                if body.len() < 8 || body.len() > DATA_MAX_LEN {
                    return Err(bad());
                }
                Repr::Data {
                    offset: be64(&body[field::data::OFFSET]),
                    bytes: &body[field::data::BYTES],
                }
            }
            Kind::Finished | Kind::Reset => {
                if !body.is_empty() {
                    return Err(bad());
                }
                if kind == Kind::Finished {
                    Repr::Finished
                } else {
                    Repr::Reset
                }
            }
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Repr::Hello { .. } => Kind::Hello,
            Repr::Offer(_) => Kind::Offer,
            Repr::Read(_) => Kind::Read,
            Repr::Data { .. } => Kind::Data,
            Repr::Finished => Kind::Finished,
            Repr::Reset => Kind::Reset,
        }
    }

    /// Body length this frame emits.
    pub fn body_len(&self) -> usize {
        match self {
            Repr::Hello { text } => text.len(),
            Repr::Offer(_) => field::offer::LEN,
            Repr::Read(_) => field::read::LEN,
            Repr::Data { bytes, .. } => 8 + bytes.len(),
            Repr::Finished | Repr::Reset => 0,
        }
    }

    /// Bytes of payload this frame emits (header and body, no padding).
    pub fn buffer_len(&self) -> usize {
        field::HEADER_LEN + self.body_len()
    }

    /// Encodes into `packet`, whose buffer must be at least
    /// [`buffer_len`](Repr::buffer_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_magic(MAGIC);
        packet.set_kind(self.kind());
        packet.set_len(self.body_len() as u32);
        let body = packet.body_mut();
        match self {
            Repr::Hello { text } => body[..text.len()].copy_from_slice(text),
            Repr::Offer(o) => {
                use field::offer::*;
                body[RAMDISK_SIZE].copy_from_slice(&o.ramdisk_size.to_be_bytes());
                body[DATA_SIZE].copy_from_slice(&o.data_size.to_be_bytes());
                body[SHA256].copy_from_slice(&o.sha256);
                body[DATASET].copy_from_slice(&o.dataset);
            }
            Repr::Read(r) => {
                use field::read::*;
                body[COUNT].copy_from_slice(&r.count.to_be_bytes());
                for (b, o) in body[OFFSETS].chunks_exact_mut(8).zip(r.offsets) {
                    b.copy_from_slice(&o.to_be_bytes());
                }
            }
            Repr::Data { offset, bytes } => {
                body[field::data::OFFSET].copy_from_slice(&offset.to_be_bytes());
                body[8..8 + bytes.len()].copy_from_slice(bytes);
            }
            Repr::Finished | Repr::Reset => {}
        }
    }
}

/// A received Ethernet frame, split.
#[derive(Clone, Copy, Debug)]
pub struct EthFrame<'a> {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

impl<'a> EthFrame<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<EthFrame<'a>, Error> {
        if frame.len() < ETH_HEADER_LEN {
            return Err(Error::Truncated { len: frame.len() });
        }
        let mac = |r: std::ops::Range<usize>| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&frame[r]);
            Mac(m)
        };
        Ok(EthFrame {
            dst: mac(field::eth::DST),
            src: mac(field::eth::SRC),
            ethertype: u16::from_be_bytes([frame[12], frame[13]]),
            payload: &frame[field::eth::PAYLOAD],
        })
    }
}

/// Appends a whole Ethernet frame carrying `repr` to `out`, padded to the
/// Ethernet minimum; returns its length.
pub fn emit_frame(out: &mut Vec<u8>, dst: Mac, src: Mac, repr: &Repr<'_>) -> usize {
    let start = out.len();
    let len = (ETH_HEADER_LEN + repr.buffer_len()).max(ETH_MIN_FRAME);
    out.resize(start + len, 0);
    let f = &mut out[start..];
    f[field::eth::DST].copy_from_slice(&dst.0);
    f[field::eth::SRC].copy_from_slice(&src.0);
    f[field::eth::ETHERTYPE].copy_from_slice(&ETHERTYPE.to_be_bytes());
    let mut p = Packet::new_unchecked(&mut f[field::eth::PAYLOAD]);
    repr.emit(&mut p);
    len
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_frame_on_the_wire() {
        assert_eq!(super::DATA_FRAME_LEN, 1058);
        assert_eq!(super::wire_len(super::DATA_FRAME_LEN), 1082);
        // A 26-byte FINISHED is padded to 60, then 24 more.
        assert_eq!(super::wire_len(26), 84);
    }

    use super::*;

    fn parse(b: &[u8]) -> Result<Repr<'_>, Error> {
        Repr::parse(b)
    }

    const HELLO: &[u8] = b"\x1d\xe1\x23\x45\x00\x00\x90\x01\x00\x00\x00\x06Hello!";

    #[test]
    fn hello_both_ways() {
        assert_eq!(parse(HELLO), Ok(Repr::Hello { text: b"Hello!" }));
        let mut buf = vec![0u8; 18];
        Repr::Hello { text: b"Hello!" }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, HELLO);
    }

    #[test]
    fn padding_is_ignored_but_len_is_trusted() {
        let mut padded = HELLO.to_vec();
        padded.resize(46, 0);
        assert_eq!(parse(&padded), Ok(Repr::Hello { text: b"Hello!" }));
        let mut fin = b"\x1d\xe1\x23\x45\x00\x00\x90\x05\x00\x00\x00\x00".to_vec();
        fin.resize(46, 0);
        assert_eq!(parse(&fin), Ok(Repr::Finished));
    }

    #[test]
    fn offer_both_ways() {
        let mut dataset = [0u8; 128];
        dataset[..5].copy_from_slice(b"rpool");
        let o = Offer {
            ramdisk_size: 0x0400_0000,
            data_size: 0x0010_0000,
            sha256: [0xab; 32],
            dataset,
        };
        let mut want = b"\x1d\xe1\x23\x45\x00\x00\x91\x02\x00\x00\x00\xb0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
        want.extend_from_slice(&[0xab; 32]);
        want.extend_from_slice(&dataset);
        let mut buf = vec![0u8; want.len()];
        Repr::Offer(o).emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, want);
        assert_eq!(parse(&want), Ok(Repr::Offer(o)));
    }

    #[test]
    fn read_both_ways_and_the_quirk() {
        let mut offsets = [0u64; 128];
        offsets[100] = 0x1_9000;
        let r = Read { count: 1, offsets };
        let mut want = b"\x1d\xe1\x23\x45\x00\x00\x90\x03\x00\x00\x04\x08".to_vec();
        want.extend_from_slice(&1u64.to_be_bytes());
        for o in offsets {
            want.extend_from_slice(&o.to_be_bytes());
        }
        let mut buf = vec![0u8; want.len()];
        Repr::Read(r).emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, want);
        assert_eq!(parse(&want), Ok(Repr::Read(r)));
        // Sparse: only slot 100, not offset 0.
        assert_eq!(r.requested().collect::<Vec<_>>(), [0x1_9000]);
        // A dense first batch: offset 0 at index 0 is encoded as zero.
        let mut dense = Read {
            count: 128,
            offsets: [0; 128],
        };
        for (i, o) in dense.offsets.iter_mut().enumerate() {
            *o = i as u64 * 1024;
        }
        let got: Vec<u64> = dense.requested().collect();
        assert_eq!(got.len(), 128);
        assert_eq!(got[0], 0);
        // Sparse re-request of slot 0 (offset 0) and slot 5.
        let mut s = Read {
            count: 2,
            offsets: [0; 128],
        };
        s.offsets[5] = 5 * 1024;
        assert_eq!(s.requested().collect::<Vec<_>>(), [0, 5 * 1024]);
    }

    #[test]
    fn data_both_ways() {
        let mut want = b"\x1d\xe1\x23\x45\x00\x00\x91\x04\x00\x00\x00\x0b".to_vec();
        want.extend_from_slice(&0x400u64.to_be_bytes());
        want.extend_from_slice(b"abc");
        let mut buf = vec![0u8; want.len()];
        Repr::Data {
            offset: 0x400,
            bytes: b"abc",
        }
        .emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, want);
        assert_eq!(
            parse(&want),
            Ok(Repr::Data {
                offset: 0x400,
                bytes: b"abc"
            })
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(parse(&HELLO[..11]), Err(Error::Truncated { len: 11 }));
        let mut b = HELLO.to_vec();
        b[0] = 0;
        assert_eq!(parse(&b), Err(Error::BadMagic(0x00e1_2345)));
        let mut b = HELLO.to_vec();
        b[7] = 0x77;
        assert_eq!(parse(&b), Err(Error::UnknownType(0x9077)));
        let mut b = HELLO.to_vec();
        b[11] = 7;
        assert_eq!(
            parse(&b),
            Err(Error::LenPastFrame {
                len: 7,
                available: 6
            })
        );
        let mut b = HELLO.to_vec();
        b[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&b), Err(Error::LenPastFrame { .. })));
        // Wrong len for the type.
        let offer = b"\x1d\xe1\x23\x45\x00\x00\x91\x02\x00\x00\x00\x04abcd";
        assert_eq!(
            parse(offer),
            Err(Error::BadLength {
                kind: Kind::Offer,
                len: 4
            })
        );
        let fin = b"\x1d\xe1\x23\x45\x00\x00\x90\x05\x00\x00\x00\x01x";
        assert_eq!(
            parse(fin).unwrap_err().to_string(),
            "FINISHED with len 1, which that type never has"
        );
        let data = b"\x1d\xe1\x23\x45\x00\x00\x91\x04\x00\x00\x00\x07abcdefg";
        assert!(matches!(parse(data), Err(Error::BadLength { .. })));
        // READ count over 128.
        let mut read = b"\x1d\xe1\x23\x45\x00\x00\x90\x03\x00\x00\x04\x08".to_vec();
        read.extend_from_slice(&129u64.to_be_bytes());
        read.resize(12 + 1032, 0);
        assert_eq!(parse(&read), Err(Error::CountTooLarge(129)));
    }

    #[test]
    fn macs() {
        let m: Mac = "02:00:5e:10:00:0a".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x5e, 0x10, 0, 0x0a]);
        assert_eq!(m.to_string(), "02:00:5e:10:00:0a");
        assert!("02:00:5e:10:00".parse::<Mac>().is_err());
        assert!("02:00:5e:10:00:0a:01".parse::<Mac>().is_err());
        assert!("02:00:5e:10:00:zz".parse::<Mac>().is_err());
        assert!("2:0:5e:10:0:a".parse::<Mac>().is_err());
    }

    #[test]
    fn whole_frames_are_padded_to_the_minimum() {
        let mut out = Vec::new();
        let n = emit_frame(
            &mut out,
            Mac::BROADCAST,
            Mac([2, 0, 0, 0, 0, 1]),
            &Repr::Finished,
        );
        assert_eq!(n, 60);
        let f = EthFrame::parse(&out).unwrap();
        assert_eq!(f.ethertype, ETHERTYPE);
        assert!(f.dst.is_broadcast());
        assert_eq!(parse(f.payload), Ok(Repr::Finished));
    }
}
