//! FFI: the illumos backend, over libdlpi. Every struct layout and constant
//! below is taken from illumos' `<libdlpi.h>`
//! (`usr/src/lib/libdlpi/common/libdlpi.h`) and `<sys/dlpi.h>`
//! (`usr/src/uts/common/sys/dlpi.h`); each says which.
//!
//! Two ways to open a link:
//!
//! - [`DlpiLink::open`], for the server: the ordinary mode. DLPI adds and
//!   strips the Ethernet header and fills in our source address, so frames
//!   are rebuilt here around the payload. Unicast frames DLPI delivers are
//!   ours by definition; they are given this link's address
//!   (`dlpi_get_physaddr(DL_CURR_PHYS_ADDR)`) as destination.
//! - [`DlpiLink::open_emulator`], for `sledsim`: `DLPI_RAW` (whole Ethernet
//!   frames in and out, so each emulated sled sends with its own source
//!   MAC) and `dlpi_promiscon(DL_PROMISC_PHYS)` (frames for every MAC
//!   arrive, not only this NIC's).
//!
//! An interrupted wait (`DL_SYSERR` with `EINTR`, which libdlpi returns when
//! a signal arrives during its `poll` or `putmsg`) is retried, not an error.
//! Errors carry `dlpi_strerror`'s text, or errno's for `DL_SYSERR`.
//!
//! On Linux, with the test-only `dlpi-shim` feature, the same code links
//! against `shim/dlpi_shim.c`, which implements these libdlpi functions
//! over AF_PACKET as strictly as libdlpi checks its arguments, so that the
//! real-socket tests exercise this wiring.

use std::ffi::{CStr, CString};
use std::io;
use std::os::raw::{c_char, c_int, c_uchar, c_uint, c_void};
use std::time::{Duration, Instant};

use super::{Link, LinkError, RecvBatch};
use crate::wire::{self, Mac, ETHERTYPE, ETH_HEADER_LEN};
use crate::Outbox;

/// The target of `dlpi_handle_t` (`<libdlpi.h>`: `typedef struct
/// __dlpi_handle *dlpi_handle_t`), opaque.
#[repr(C)]
pub struct DlpiImpl {
    _private: [u8; 0],
}

// `<libdlpi.h>`: libdlpi's own return codes start at 10000 (an anonymous
// enum, in this order).
pub const DLPI_SUCCESS: c_int = 10000;
pub const DLPI_EINVAL: c_int = 10001;
pub const DLPI_ENOLINK: c_int = 10003;
pub const DLPI_ETIMEDOUT: c_int = 10006;
/// `<libdlpi.h>`: the largest physical address, in bytes; receive and
/// `dlpi_get_physaddr` buffers must be at least this long.
pub const DLPI_PHYSADDR_MAX: usize = 64;
/// `<libdlpi.h>`: `dlpi_open` flag: raw mode (whole frames, `DLIOCRAW`).
pub const DLPI_RAW: c_uint = 0x0004;
/// `<libdlpi.h>`: `dlpi_addrtype_t`'s `DLPI_ADDRTYPE_UNICAST` (the first
/// enumerator; `DLPI_ADDRTYPE_GROUP` is 1).
pub const DLPI_ADDRTYPE_UNICAST: c_uint = 0;

/// `<sys/dlpi.h>`: "UNIX system error occurred" (details in errno).
pub const DL_SYSERR: c_int = 0x04;
/// `<sys/dlpi.h>`: the current (not factory) physical address.
pub const DL_CURR_PHYS_ADDR: c_uint = 0x02;
/// `<sys/dlpi.h>`: promiscuous mode at the physical level.
pub const DL_PROMISC_PHYS: c_uint = 0x01;

/// `dlpi_recvinfo_t` (`<libdlpi.h>`).
#[repr(C)]
pub struct DlpiRecvinfo {
    pub dri_destaddr: [c_uchar; DLPI_PHYSADDR_MAX],
    pub dri_destaddrlen: c_uchar,
    /// `dlpi_addrtype_t`, a C enum (an `int`-sized `uint` here).
    pub dri_destaddrtype: c_uint,
    pub dri_totmsglen: usize,
}

/// `dl_priority_t` (`<sys/dlpi.h>`): two `t_scalar_t`, which
/// `<sys/types.h>` makes `int32_t` on LP64.
#[repr(C)]
pub struct DlPriority {
    pub dl_min: i32,
    pub dl_max: i32,
}

/// `dlpi_sendinfo_t` (`<libdlpi.h>`). We always pass null (the bound SAP,
/// default priority); declared so that the signature is libdlpi's.
#[repr(C)]
pub struct DlpiSendinfo {
    pub dsi_sap: c_uint,
    pub dsi_prio: DlPriority,
}

#[cfg_attr(target_os = "illumos", link(name = "dlpi"))]
extern "C" {
    fn dlpi_open(linkname: *const c_char, dhp: *mut *mut DlpiImpl, flags: c_uint) -> c_int;
    fn dlpi_bind(dh: *mut DlpiImpl, sap: c_uint, boundsap: *mut c_uint) -> c_int;
    fn dlpi_promiscon(dh: *mut DlpiImpl, level: c_uint) -> c_int;
    fn dlpi_get_physaddr(
        dh: *mut DlpiImpl,
        addrtype: c_uint,
        addrp: *mut c_void,
        addrlenp: *mut usize,
    ) -> c_int;
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
        sendp: *const DlpiSendinfo,
    ) -> c_int;
    fn dlpi_strerror(err: c_int) -> *const c_char;
    fn dlpi_close(dh: *mut DlpiImpl);
}

// Test-only, in the shim: make the handle's next `count` receives or sends
// fail as an interrupted `poll` does in libdlpi (`DL_SYSERR`, `EINTR`).
#[cfg(all(feature = "dlpi-shim", not(target_os = "illumos")))]
extern "C" {
    fn dlpi_shim_inject_eintr(dh: *mut DlpiImpl, count: c_uint);
}

/// A failed libdlpi call: the function, its return code and, for
/// `DL_SYSERR`, errno as it was right after the call.
#[derive(Debug)]
pub struct DlpiError {
    pub op: &'static str,
    pub code: c_int,
    pub errno: Option<io::Error>,
}

impl DlpiError {
    /// Checks a libdlpi return code. Call it straight after the call, so
    /// that errno is still the call's.
    fn check(op: &'static str, code: c_int) -> Result<(), DlpiError> {
        if code == DLPI_SUCCESS {
            return Ok(());
        }
        let errno = (code == DL_SYSERR).then(io::Error::last_os_error);
        Err(DlpiError { op, code, errno })
    }

    fn interrupted(&self) -> bool {
        self.errno
            .as_ref()
            .is_some_and(|e| e.kind() == io::ErrorKind::Interrupted)
    }

    /// `dlpi_strerror`'s text. For `DL_SYSERR` it would read errno, which
    /// may have changed since the call: ours was saved, so use that.
    fn text(&self) -> String {
        if let Some(e) = &self.errno {
            return e.to_string();
        }
        // SAFETY: dlpi_strerror takes any int and returns a pointer to a
        // static NUL-terminated message (or null, checked).
        let p = unsafe { dlpi_strerror(self.code) };
        if p.is_null() {
            return "unknown DLPI error".to_owned();
        }
        // SAFETY: non-null, static and NUL-terminated (above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn into_io(self) -> io::Error {
        let kind = self
            .errno
            .as_ref()
            .map_or(io::ErrorKind::Other, io::Error::kind);
        io::Error::new(kind, self.to_string())
    }

    fn into_link_error(self, link: &str) -> LinkError {
        if self.code == DLPI_ENOLINK {
            return LinkError::NoSuchLink(link.to_owned());
        }
        if let Some(e) = &self.errno {
            if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return LinkError::NotPermitted(link.to_owned());
            }
        }
        LinkError::Io {
            link: link.to_owned(),
            source: self.into_io(),
        }
    }
}

impl std::fmt::Display for DlpiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.errno {
            Some(_) => write!(f, "{}: {}", self.op, self.text()),
            None => write!(f, "{}: {} (DLPI error {})", self.op, self.text(), self.code),
        }
    }
}

impl std::error::Error for DlpiError {}

/// A DLPI link.
pub struct DlpiLink {
    handle: *mut DlpiImpl,
    name: String,
    mac: Mac,
    /// Opened with `DLPI_RAW` (and promiscuous): whole frames both ways.
    raw: bool,
}

// SAFETY: the handle is used by one thread at a time (`&mut self`), and
// libdlpi handles are not tied to the thread that opened them.
unsafe impl Send for DlpiLink {}

/// What one `dlpi_recv` gave.
enum Got {
    Frame(usize),
    /// Something that is not a whole frame of ours: skipped.
    Skip,
    TimedOut,
    /// `EINTR`: try again.
    Interrupted,
}

/// Milliseconds from now until `deadline`, rounded up (so that 300 µs
/// waits 1 ms, not 0), as `dlpi_recv` takes them.
fn millis_until(deadline: Instant) -> c_int {
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = left.as_micros().div_ceil(1000);
    ms.min(i32::MAX as u128) as c_int
}

impl DlpiLink {
    /// Opens `name` for a server: ordinary mode, bound to the protocol's
    /// ethertype.
    pub fn open(name: &str) -> Result<DlpiLink, LinkError> {
        DlpiLink::open_with(name, false)
    }

    /// Opens `name` for the sled emulator: `DLPI_RAW`, bound to the
    /// protocol's ethertype, and promiscuous (`DL_PROMISC_PHYS`), so that
    /// many emulated sleds send and receive with their own MACs.
    pub fn open_emulator(name: &str) -> Result<DlpiLink, LinkError> {
        DlpiLink::open_with(name, true)
    }

    fn open_with(name: &str, raw: bool) -> Result<DlpiLink, LinkError> {
        let cname = CString::new(name).map_err(|_| LinkError::NoSuchLink(name.to_owned()))?;
        let mut handle = std::ptr::null_mut();
        let flags = if raw { DLPI_RAW } else { 0 };
        // SAFETY: `cname` is NUL-terminated and `handle` is a valid place
        // for the handle pointer.
        let r = unsafe { dlpi_open(cname.as_ptr(), &mut handle, flags) };
        DlpiError::check("dlpi_open", r).map_err(|e| e.into_link_error(name))?;
        // From here on, Drop closes the handle on every error path.
        let mut link = DlpiLink {
            handle,
            name: name.to_owned(),
            mac: Mac([0; 6]),
            raw,
        };
        // SAFETY: `handle` is open; a null boundsap is allowed (libdlpi
        // then fails unless the SAP bound is the one asked for).
        let r = unsafe { dlpi_bind(link.handle, ETHERTYPE as c_uint, std::ptr::null_mut()) };
        DlpiError::check("dlpi_bind", r).map_err(|e| e.into_link_error(name))?;
        if raw {
            // SAFETY: `handle` is open and bound.
            let r = unsafe { dlpi_promiscon(link.handle, DL_PROMISC_PHYS) };
            DlpiError::check("dlpi_promiscon(DL_PROMISC_PHYS)", r)
                .map_err(|e| e.into_link_error(name))?;
        }
        link.mac = link.physaddr()?;
        Ok(link)
    }

    /// This link's current Ethernet address.
    fn physaddr(&mut self) -> Result<Mac, LinkError> {
        let mut addr = [0u8; DLPI_PHYSADDR_MAX];
        let mut len = addr.len();
        // SAFETY: `addr` is writable for `len` (DLPI_PHYSADDR_MAX) bytes,
        // as libdlpi requires; the handle is open.
        let r = unsafe {
            dlpi_get_physaddr(
                self.handle,
                DL_CURR_PHYS_ADDR,
                addr.as_mut_ptr() as *mut c_void,
                &mut len,
            )
        };
        DlpiError::check("dlpi_get_physaddr(DL_CURR_PHYS_ADDR)", r)
            .map_err(|e| e.into_link_error(&self.name))?;
        if len != 6 {
            return Err(LinkError::Io {
                link: self.name.clone(),
                source: io::Error::other(format!(
                    "not an Ethernet link: dlpi_get_physaddr gave a {len}-byte address"
                )),
            });
        }
        let mut m = [0u8; 6];
        m.copy_from_slice(&addr[..6]);
        Ok(Mac(m))
    }

    /// Test-only (the shim): the next `count` receives or sends on this
    /// link fail as libdlpi's do when a signal interrupts them.
    #[cfg(all(feature = "dlpi-shim", not(target_os = "illumos")))]
    pub fn inject_eintr(&mut self, count: u32) {
        // SAFETY: the handle is open; the shim only records the count.
        unsafe { dlpi_shim_inject_eintr(self.handle, count) };
    }

    /// Receives one frame into `buf`, waiting up to `msec`.
    fn recv_one(&mut self, buf: &mut [u8], msec: c_int) -> io::Result<Got> {
        if self.raw {
            self.recv_raw(buf, msec)
        } else {
            self.recv_ordinary(buf, msec)
        }
    }

    /// Raw mode: DLPI gives the whole frame; only `dri_totmsglen` of the
    /// receive information is filled in (libdlpi.c, `dlpi_recv`).
    fn recv_raw(&mut self, buf: &mut [u8], msec: c_int) -> io::Result<Got> {
        let mut len = buf.len();
        // SAFETY: an all-zero recvinfo is valid; DLPI fills it.
        let mut info: DlpiRecvinfo = unsafe { std::mem::zeroed() };
        // SAFETY: `buf` is writable for `len` bytes; no source buffer is
        // passed (raw mode ignores it); the handle is open.
        let r = unsafe {
            dlpi_recv(
                self.handle,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                buf.as_mut_ptr() as *mut c_void,
                &mut len,
                msec,
                &mut info,
            )
        };
        match recv_status(r)? {
            Some(other) => Ok(other),
            None if len < ETH_HEADER_LEN || info.dri_totmsglen != len => Ok(Got::Skip),
            None if buf[12..14] != ETHERTYPE.to_be_bytes() => Ok(Got::Skip),
            None => Ok(Got::Frame(len)),
        }
    }

    /// Ordinary mode: DLPI gives the payload, the source address and the
    /// destination; the Ethernet header is rebuilt around the payload.
    fn recv_ordinary(&mut self, buf: &mut [u8], msec: c_int) -> io::Result<Got> {
        // libdlpi refuses a source buffer shorter than DLPI_PHYSADDR_MAX.
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
        if let Some(other) = recv_status(r)? {
            return Ok(other);
        }
        if srclen != 6 || info.dri_totmsglen != len {
            // Not Ethernet, or truncated: not a frame of ours.
            return Ok(Got::Skip);
        }
        let dst = if info.dri_destaddrtype == DLPI_ADDRTYPE_UNICAST {
            self.mac
        } else if info.dri_destaddrlen == 6 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&info.dri_destaddr[..6]);
            Mac(m)
        } else {
            return Ok(Got::Skip);
        };
        buf[0..6].copy_from_slice(&dst.0);
        buf[6..12].copy_from_slice(&src[..6]);
        buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        Ok(Got::Frame(ETH_HEADER_LEN + len))
    }

    /// Sends one frame, retrying when interrupted.
    fn send_one(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            let r = if self.raw {
                // SAFETY: the frame is live for the call; raw mode ignores
                // the destination (it is in the frame); null sendinfo is
                // allowed.
                unsafe {
                    dlpi_send(
                        self.handle,
                        std::ptr::null(),
                        0,
                        frame.as_ptr() as *const c_void,
                        frame.len(),
                        std::ptr::null(),
                    )
                }
            } else {
                let payload = &frame[ETH_HEADER_LEN..];
                // Send the message's own length, not the Ethernet padding.
                let len = wire::Packet::new_checked(payload)
                    .map(|p| wire::field::HEADER_LEN + p.len() as usize)
                    .unwrap_or(payload.len())
                    .min(payload.len());
                // SAFETY: the address and payload point into `frame`, which
                // outlives the call; a null sendinfo means the bound SAP
                // and default priority.
                unsafe {
                    dlpi_send(
                        self.handle,
                        frame.as_ptr() as *const c_void,
                        6,
                        payload.as_ptr() as *const c_void,
                        len,
                        std::ptr::null(),
                    )
                }
            };
            match DlpiError::check("dlpi_send", r) {
                Ok(()) => return Ok(()),
                Err(e) if e.interrupted() => continue,
                Err(e) => return Err(e.into_io()),
            }
        }
    }
}

/// `None` on success; the outcome otherwise (timeout, interruption), or
/// the error.
fn recv_status(r: c_int) -> io::Result<Option<Got>> {
    if r == DLPI_ETIMEDOUT {
        return Ok(Some(Got::TimedOut));
    }
    match DlpiError::check("dlpi_recv", r) {
        Ok(()) => Ok(None),
        Err(e) if e.interrupted() => Ok(Some(Got::Interrupted)),
        Err(e) => Err(e.into_io()),
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
        self.mac
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        batch.clear();
        let deadline = Instant::now() + timeout;
        // Bounded, so that a stream of frames we skip cannot keep us here.
        let mut calls = 4 * batch.capacity();
        while calls > 0 {
            calls -= 1;
            // Wait for the first frame; after it, take only what is there.
            let msec = if batch.is_empty() {
                millis_until(deadline)
            } else {
                0
            };
            let Some(buf) = batch.next_buf() else { break };
            match self.recv_one(buf, msec)? {
                Got::TimedOut => break,
                Got::Frame(n) => batch.commit(n),
                Got::Skip | Got::Interrupted => {}
            }
        }
        Ok(batch.len())
    }

    fn sends_with(&self) -> &'static str {
        "DLPI"
    }

    fn send(&mut self, out: &Outbox) -> io::Result<()> {
        for frame in out.frames() {
            if frame.len() < ETH_HEADER_LEN {
                continue;
            }
            self.send_one(frame)?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "dlpi-shim", target_os = "linux"))]
mod tests {
    use super::*;
    use crate::wire::Repr;

    #[test]
    fn errors_carry_dlpi_strerror_text() {
        let e = DlpiError {
            op: "dlpi_bind",
            code: DLPI_EINVAL,
            errno: None,
        };
        assert_eq!(
            e.to_string(),
            "dlpi_bind: invalid argument (DLPI error 10001)"
        );
        let e = DlpiError {
            op: "dlpi_recv",
            code: DL_SYSERR,
            errno: Some(io::Error::from_raw_os_error(libc::ENETDOWN)),
        };
        assert!(
            e.to_string().starts_with("dlpi_recv: Network is down"),
            "{e}"
        );
        assert!(!e.interrupted());
        let e = DlpiError {
            op: "dlpi_recv",
            code: DL_SYSERR,
            errno: Some(io::Error::from_raw_os_error(libc::EINTR)),
        };
        assert!(e.interrupted());
    }

    #[test]
    fn waits_round_up_to_a_millisecond() {
        assert_eq!(millis_until(Instant::now()), 0);
        let ms = millis_until(Instant::now() + Duration::from_micros(300));
        assert_eq!(ms, 1);
    }

    /// Runs `f` in a private network namespace (loopback up), so that the
    /// frames these tests put on `lo` meet nobody else's. Needs root.
    fn in_private_namespace<T: Send>(tag: &str, f: impl FnOnce() -> T + Send) -> T {
        let prefix = format!("u{}{tag}", std::process::id() % 100_000);
        let lab = crate::lab::Lab::create(&prefix, &["a"]).unwrap();
        crate::lab::in_namespace(&lab.ns("a"), f).unwrap()
    }

    fn hello_from(src: Mac) -> Outbox {
        let mut out = Outbox::new();
        // `lo`'s own address is all zeros: the frame is "for this host".
        out.push(Mac([0; 6]), src, &Repr::Hello { text: b"hi" });
        out
    }

    /// What the shim enforces as libdlpi does, so that the tests catch
    /// what a real machine would: buffer sizes, flags, raw mode.
    #[test]
    fn the_shim_is_as_strict_as_libdlpi() {
        in_private_namespace("s", || {
            let lo = CString::new("lo").unwrap();
            let mut h = std::ptr::null_mut();
            // SAFETY: valid name and handle pointer; an unknown flag.
            let r = unsafe { dlpi_open(lo.as_ptr(), &mut h, 0x4000) };
            assert_eq!(r, DLPI_EINVAL, "an open flag the shim does not emulate");

            let mut ordinary = DlpiLink::open("lo").unwrap();
            let mut addr = [0u8; DLPI_PHYSADDR_MAX];
            let mut len = 6;
            // SAFETY: `addr` is writable for `len` bytes; the handle is open.
            let r = unsafe {
                dlpi_get_physaddr(
                    ordinary.handle,
                    DL_CURR_PHYS_ADDR,
                    addr.as_mut_ptr() as *mut c_void,
                    &mut len,
                )
            };
            assert_eq!(r, DLPI_EINVAL, "a physical address buffer under 64 bytes");

            // Raw mode: the whole frame goes out as given (our source MAC,
            // not the link's) and comes back whole.
            let sled = Mac([2, 0x5e, 0, 0, 0, 7]);
            let mut raw = DlpiLink::open_emulator("lo").unwrap();
            raw.send(&hello_from(sled)).unwrap();
            let mut batch = RecvBatch::new(4);
            assert_eq!(raw.recv(&mut batch, Duration::from_secs(2)).unwrap(), 1);
            let frame = batch.frames().next().unwrap().to_vec();
            assert_eq!(&frame[6..12], &sled.0, "raw mode keeps our source MAC");
            assert_eq!(frame, hello_from(sled).frames().next().unwrap());

            // Ordinary mode: the same frame arrived here too; a source
            // buffer shorter than DLPI_PHYSADDR_MAX is refused.
            let mut src = [0u8; 6];
            let mut srclen = src.len();
            let mut msg = [0u8; 1600];
            let mut msglen = msg.len();
            // SAFETY: every buffer is live and writable for the length
            // passed with it; the handle is open.
            let r = unsafe {
                dlpi_recv(
                    ordinary.handle,
                    src.as_mut_ptr() as *mut c_void,
                    &mut srclen,
                    msg.as_mut_ptr() as *mut c_void,
                    &mut msglen,
                    2000,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(r, DLPI_EINVAL, "a source buffer under 64 bytes");

            // And with the right buffer, the frame is rebuilt around the
            // payload: the sender's MAC as source.
            raw.send(&hello_from(sled)).unwrap();
            assert_eq!(
                ordinary.recv(&mut batch, Duration::from_secs(2)).unwrap(),
                1
            );
            let got = batch.frames().next().unwrap();
            assert_eq!(&got[6..12], &sled.0);
            assert_eq!(&got[12..14], &ETHERTYPE.to_be_bytes());
        });
    }

    /// A signal during libdlpi's poll or putmsg is DL_SYSERR with EINTR:
    /// the link waits on, and sends again, instead of failing.
    #[test]
    fn an_interrupted_wait_or_send_is_retried() {
        in_private_namespace("i", || {
            let mut link = DlpiLink::open("lo").unwrap();
            link.inject_eintr(3);
            let mut batch = RecvBatch::new(4);
            let start = Instant::now();
            assert_eq!(link.recv(&mut batch, Duration::from_millis(50)).unwrap(), 0);
            assert!(start.elapsed() >= Duration::from_millis(45));
            link.inject_eintr(2);
            link.send(&hello_from(Mac([2, 0x5e, 0, 0, 0, 9]))).unwrap();
            // The frame did go out (and came back on lo).
            assert_eq!(link.recv(&mut batch, Duration::from_secs(2)).unwrap(), 1);
        });
    }
}
