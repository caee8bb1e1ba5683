//! FFI: the illumos backend, over libdlpi (`dlpi_open`, `dlpi_bind`,
//! `dlpi_recv`, `dlpi_send`, `dlpi_close`; struct layouts from
//! `<libdlpi.h>`). On Linux, with the `dlpi-shim` feature, the same code
//! links against a small C implementation of those five functions over
//! AF_PACKET (`shim/dlpi_shim.c`), so that the real-socket tests exercise
//! this wiring.
//!
//! The link is opened in the ordinary (not raw) mode: DLPI adds and strips
//! the Ethernet header and fills in our source address, so frames are
//! rebuilt here around the payload. Unicast frames DLPI delivers are ours by
//! definition; they are given this link's address as destination.

use std::ffi::CString;
use std::io;
use std::os::raw::{c_char, c_int, c_uchar, c_uint, c_void};
use std::time::{Duration, Instant};

use super::{Link, LinkError, RecvBatch};
use crate::wire::{self, Mac, ETHERTYPE, ETH_HEADER_LEN};
use crate::Outbox;

/// Opaque `dlpi_handle_t` target.
#[repr(C)]
pub struct DlpiImpl {
    _private: [u8; 0],
}

pub const DLPI_SUCCESS: c_int = 10000;
pub const DLPI_ETIMEDOUT: c_int = 10006;
pub const DLPI_ENOLINK: c_int = 10003;
pub const DLPI_PHYSADDR_MAX: usize = 64;
pub const DLPI_ADDRTYPE_UNICAST: c_uint = 0;

/// `dlpi_recvinfo_t`.
#[repr(C)]
pub struct DlpiRecvinfo {
    pub dri_destaddr: [c_uchar; DLPI_PHYSADDR_MAX],
    pub dri_destaddrlen: c_uchar,
    pub dri_destaddrtype: c_uint,
    pub dri_totmsglen: usize,
}

#[cfg_attr(target_os = "illumos", link(name = "dlpi"))]
extern "C" {
    fn dlpi_open(linkname: *const c_char, dhp: *mut *mut DlpiImpl, flags: c_uint) -> c_int;
    fn dlpi_bind(dh: *mut DlpiImpl, sap: c_uint, boundsap: *mut c_uint) -> c_int;
    fn dlpi_recv(
        dh: *mut DlpiImpl,
        saddrp: *mut c_void,
        saddrlenp: *mut usize,
        msgbuf: *mut c_void,
        msglenp: *mut usize,
        msec: c_int,
        recvp: *mut DlpiRecvinfo,
    ) -> c_int;
    fn dlpi_send(
        dh: *mut DlpiImpl,
        daddrp: *const c_void,
        daddrlen: usize,
        msgbuf: *const c_void,
        msglen: usize,
        sendp: *const c_void,
    ) -> c_int;
    fn dlpi_close(dh: *mut DlpiImpl);
}

/// A DLPI link.
pub struct DlpiLink {
    handle: *mut DlpiImpl,
    name: String,
}

// SAFETY: the handle is used by one thread at a time (`&mut self`), and
// libdlpi handles are not tied to the thread that opened them.
unsafe impl Send for DlpiLink {}

/// The address this end answers to in rebuilt frames (see the module
/// documentation): DLPI needs no source address from us.
pub const SELF: Mac = Mac([0, 0, 0, 0, 0, 0]);

fn dlpi_error(link: &str, op: &str, code: c_int) -> LinkError {
    if code == DLPI_ENOLINK {
        return LinkError::NoSuchLink(link.to_owned());
    }
    LinkError::Io {
        link: link.to_owned(),
        source: io::Error::other(format!("{op} failed (DLPI error {code})")),
    }
}

impl DlpiLink {
    pub fn open(name: &str) -> Result<DlpiLink, LinkError> {
        let cname = CString::new(name).map_err(|_| LinkError::NoSuchLink(name.to_owned()))?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: `cname` is NUL-terminated and `handle` is a valid place
        // for the handle pointer.
        let r = unsafe { dlpi_open(cname.as_ptr(), &mut handle, 0) };
        if r != DLPI_SUCCESS {
            // The shim reports a refused socket as a system error; say so.
            let os = io::Error::last_os_error();
            if matches!(os.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return Err(LinkError::NotPermitted(name.to_owned()));
            }
            return Err(dlpi_error(name, "dlpi_open", r));
        }
        let link = DlpiLink {
            handle,
            name: name.to_owned(),
        };
        // SAFETY: `handle` is open; a null boundsap is allowed.
        let r = unsafe { dlpi_bind(link.handle, ETHERTYPE as c_uint, std::ptr::null_mut()) };
        if r != DLPI_SUCCESS {
            return Err(dlpi_error(name, "dlpi_bind", r));
        }
        Ok(link)
    }

    /// Receives one frame into `buf` (rebuilt with its Ethernet header);
    /// `Ok(None)` on timeout.
    fn recv_one(&mut self, buf: &mut [u8], msec: c_int) -> io::Result<Option<usize>> {
        let mut src = [0u8; DLPI_PHYSADDR_MAX];
        let mut srclen = src.len();
        let payload = &mut buf[ETH_HEADER_LEN..];
        let mut len = payload.len();
        // SAFETY: an all-zero recvinfo is valid; DLPI fills it.
        let mut info: DlpiRecvinfo = unsafe { std::mem::zeroed() };
        // SAFETY: every pointer is to a live buffer whose length is passed
        // with it; the handle is open.
        let r = unsafe {
            dlpi_recv(
                self.handle,
                src.as_mut_ptr() as *mut c_void,
                &mut srclen,
                payload.as_mut_ptr() as *mut c_void,
                &mut len,
                msec,
                &mut info,
            )
        };
        if r == DLPI_ETIMEDOUT {
            return Ok(None);
        }
        if r != DLPI_SUCCESS {
            return Err(io::Error::other(format!(
                "dlpi_recv failed (DLPI error {r})"
            )));
        }
        if srclen != 6 || info.dri_totmsglen != len {
            // Not Ethernet, or truncated: not a frame of ours.
            return Ok(Some(0));
        }
        let dst = if info.dri_destaddrtype == DLPI_ADDRTYPE_UNICAST {
            SELF
        } else {
            let mut m = [0u8; 6];
            m.copy_from_slice(&info.dri_destaddr[..6]);
            Mac(m)
        };
        buf[0..6].copy_from_slice(&dst.0);
        buf[6..12].copy_from_slice(&src[..6]);
        buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        Ok(Some(ETH_HEADER_LEN + len))
    }
}

impl Drop for DlpiLink {
    fn drop(&mut self) {
        // SAFETY: the handle is open and closed only here.
        unsafe { dlpi_close(self.handle) };
    }
}

impl Link for DlpiLink {
    fn mac(&self) -> Mac {
        SELF
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        batch.clear();
        let deadline = Instant::now() + timeout;
        let mut msec = timeout.as_millis().clamp(1, i32::MAX as u128) as c_int;
        while let Some(buf) = batch.next_buf() {
            match self.recv_one(buf, msec)? {
                None => break,
                Some(0) => {}
                Some(n) => batch.commit(n),
            }
            // After the first frame, take only what is already there.
            msec = if batch.is_empty() {
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as c_int
            } else {
                0
            };
            if batch.is_empty() && msec == 0 {
                break;
            }
        }
        Ok(batch.len())
    }

    fn sends_with(&self) -> &'static str {
        "DLPI"
    }

    fn send(&mut self, out: &Outbox) -> io::Result<()> {
        for frame in out.frames() {
            let payload = &frame[ETH_HEADER_LEN..];
            // Send the frame's own length, not the Ethernet padding.
            let len = wire::Packet::new_checked(payload)
                .map(|p| wire::field::HEADER_LEN + p.len() as usize)
                .unwrap_or(payload.len());
            // SAFETY: the address and payload point into `frame`, which
            // outlives the call; a null sendinfo is allowed.
            let r = unsafe {
                dlpi_send(
                    self.handle,
                    frame.as_ptr() as *const c_void,
                    6,
                    payload.as_ptr() as *const c_void,
                    len,
                    std::ptr::null(),
                )
            };
            if r != DLPI_SUCCESS {
                return Err(io::Error::other(format!(
                    "dlpi_send failed (DLPI error {r})"
                )));
            }
        }
        Ok(())
    }
}
