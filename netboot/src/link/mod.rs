//! Link backends: where frames meet a network. One small trait; the server
//! and emulator run loops work over any of them.

#[cfg(any(target_os = "illumos", feature = "dlpi-shim"))]
pub mod dlpi;
pub mod mem;
#[cfg(target_os = "linux")]
pub mod packet;
pub mod sys;
#[cfg(target_os = "linux")]
pub mod xdp;

use std::io;
use std::time::Duration;

use crate::wire::Mac;
use crate::Outbox;

/// Received frames, up to a fixed number per call.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<(usize, usize)>,
    /// Keep frames addressed to other hosts (a promiscuous emulator).
    pub accept_other_hosts: bool,
}

/// Room for any Ethernet frame this protocol sees.
pub const FRAME_BUF: usize = 2048;

impl RecvBatch {
    pub fn new(capacity: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![vec![0u8; FRAME_BUF]; capacity.max(1)],
            lens: Vec::with_capacity(capacity),
            accept_other_hosts: false,
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub fn clear(&mut self) {
        self.lens.clear();
    }

    /// The frames received, in order.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.lens.iter().map(|&(i, n)| &self.bufs[i][..n])
    }

    /// The next free buffer, for backends that receive one frame at a time;
    /// `commit` it with the length received.
    pub fn next_buf(&mut self) -> Option<&mut [u8]> {
        let i = self.lens.len();
        self.bufs.get_mut(i).map(|b| &mut b[..])
    }

    pub fn commit(&mut self, len: usize) {
        let i = self.lens.len();
        self.lens.push((i, len));
    }
}

/// A network interface that carries the protocol's frames.
pub trait Link: Send {
    /// This end's Ethernet address (the source of frames sent).
    fn mac(&self) -> Mac;
    fn name(&self) -> &str;
    /// Waits up to `timeout` for frames addressed to this end (or
    /// broadcast) and puts them in `batch`; returns how many (0 on
    /// timeout).
    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize>;
    /// Sends every frame in `out`.
    fn send(&mut self, out: &Outbox) -> io::Result<()>;
    /// How frames are sent, for logs.
    fn sends_with(&self) -> &'static str;
}

/// How a server's link sends frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tx {
    /// AF_XDP where the system allows it (Linux), otherwise the platform's
    /// own way.
    #[default]
    Auto,
    /// AF_XDP or fail (Linux).
    Xdp,
    /// The platform's own way (AF_PACKET or DLPI).
    Native,
}

impl std::str::FromStr for Tx {
    type Err = String;
    fn from_str(s: &str) -> Result<Tx, String> {
        match s {
            "auto" => Ok(Tx::Auto),
            "xdp" => Ok(Tx::Xdp),
            "native" => Ok(Tx::Native),
            _ => Err(format!("unknown send method {s:?}: auto, xdp or native")),
        }
    }
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no such link: {0}")]
    NoSuchLink(String),
    /// What is needed is the system's own: see [`sys::RAW_ACCESS_HINT`].
    #[error("{0}: not permitted: {hint}", hint = sys::RAW_ACCESS_HINT)]
    NotPermitted(String),
    #[error("{link}: {source}")]
    Io {
        link: String,
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    pub fn from_io(link: &str, e: io::Error) -> LinkError {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => LinkError::NotPermitted(link.to_owned()),
            Some(libc::ENODEV) | Some(libc::ENXIO) => LinkError::NoSuchLink(link.to_owned()),
            _ => LinkError::Io {
                link: link.to_owned(),
                source: e,
            },
        }
    }
}

/// Opens a link for a server by name, sending as `tx` says.
#[cfg(any(target_os = "linux", target_os = "illumos"))]
pub fn open_server(name: &str, tx: Tx) -> Result<Box<dyn Link>, LinkError> {
    #[cfg(target_os = "linux")]
    {
        let mut link = packet::PacketLink::open(name, false)?;
        match tx {
            Tx::Native => {}
            Tx::Auto => {
                let _ = link.use_xdp_tx();
            }
            Tx::Xdp => link.use_xdp_tx().map_err(|e| LinkError::Io {
                link: format!("{name}: AF_XDP"),
                source: e,
            })?,
        }
        Ok(Box::new(link))
    }
    #[cfg(target_os = "illumos")]
    {
        if tx == Tx::Xdp {
            return Err(LinkError::Io {
                link: name.to_owned(),
                source: io::Error::other("AF_XDP is Linux only"),
            });
        }
        Ok(Box::new(dlpi::DlpiLink::open(name)?))
    }
}

/// Opens a link by name with the platform's backend. `promiscuous` is for
/// the sled emulator: frames for every MAC arrive, and frames go out with
/// the source MAC they carry (on illumos: `DLPI_RAW` and
/// `DL_PROMISC_PHYS`).
#[cfg(any(target_os = "linux", target_os = "illumos"))]
pub fn open(name: &str, promiscuous: bool) -> Result<Box<dyn Link>, LinkError> {
    #[cfg(target_os = "linux")]
    {
        Ok(Box::new(packet::PacketLink::open(name, promiscuous)?))
    }
    #[cfg(target_os = "illumos")]
    {
        if promiscuous {
            Ok(Box::new(dlpi::DlpiLink::open_emulator(name)?))
        } else {
            Ok(Box::new(dlpi::DlpiLink::open(name)?))
        }
    }
}
