//! FFI: sending through an AF_XDP socket in copy mode, for the Linux
//! backend. Frames are written into a region shared with the kernel (the
//! UMEM) and described on a transmit ring; one system call then hands up to
//! a whole READ's worth to the driver. Compared with `sendmmsg` this skips,
//! per frame, the message header and iovec import, the socket layer and
//! the copy from user memory: on veth it costs about a quarter less CPU a
//! frame (`cargo xtask bench netboot`). Copy mode works on every interface
//! and needs no XDP program: transmit only, frames are still received on
//! the AF_PACKET socket.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// UMEM frames: room for 32 sleds' batches in flight.
const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 2048;
/// Transmit and completion ring entries (powers of two; the completion
/// ring holds every frame, so it never overflows).
const RING: u32 = FRAMES;
/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17): descriptors one send may take.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const BUDGET: u32 = 256;

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// A memory mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset` (a ring), or anonymous memory
    /// when `fd` is None (the UMEM).
    fn new(fd: Option<libc::c_int>, len: usize, offset: libc::off_t) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a fresh mapping chosen by the kernel; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_error());
        }
        Ok(Mapping {
            ptr: ptr as *mut u8,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length and is
        // not used after this.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A single-producer, single-consumer ring shared with the kernel.
struct Ring {
    map: Mapping,
    producer: usize,
    consumer: usize,
    desc: usize,
}

impl Ring {
    fn map(
        fd: libc::c_int,
        off: &libc::xdp_ring_offset,
        pgoff: u64,
        entry: usize,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + RING as usize * entry;
        Ok(Ring {
            map: Mapping::new(Some(fd), len, pgoff as libc::off_t)?,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            desc: off.desc as usize,
        })
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: the kernel places the 4-byte aligned producer and
        // consumer indices inside the mapping, at the offsets it reported.
        unsafe { &*(self.map.ptr.add(at) as *const AtomicU32) }
    }

    fn producer(&self) -> &AtomicU32 {
        self.index(self.producer)
    }

    fn consumer(&self) -> &AtomicU32 {
        self.index(self.consumer)
    }

    /// Entry `i` (mod the ring size) as a `T`.
    fn entry<T>(&self, i: u32) -> *mut T {
        let at = self.desc + (i & (RING - 1)) as usize * mem::size_of::<T>();
        debug_assert!(at + mem::size_of::<T>() <= self.map.len);
        // SAFETY: `at` lies inside the mapping (the ring has RING entries
        // of T after `desc`).
        unsafe { self.map.ptr.add(at) as *mut T }
    }
}

/// An AF_XDP socket that only transmits.
pub struct XdpTx {
    fd: OwnedFd,
    umem: Mapping,
    tx: Ring,
    cq: Ring,
    /// Our copy of the transmit ring's producer index.
    tx_head: u32,
    /// UMEM frames not in the kernel's hands.
    free: Vec<u64>,
}

// SAFETY: the mappings are owned by the socket and used by one thread at a
// time (`send` takes `&mut self`).
unsafe impl Send for XdpTx {}

fn setsockopt<T>(fd: libc::c_int, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T of the given size for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            value as *const T as *const libc::c_void,
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(last_error())
    } else {
        Ok(())
    }
}

impl XdpTx {
    /// Binds a transmit-only AF_XDP socket to queue 0 of interface
    /// `ifindex`, in copy mode.
    pub fn open(ifindex: u32) -> io::Result<XdpTx> {
        // SAFETY: plain system call with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let umem = Mapping::new(None, (FRAMES * FRAME_SIZE) as usize, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(s, libc::XDP_UMEM_REG, &reg)?;
        // A fill ring is required even though nothing is received here.
        setsockopt(s, libc::XDP_UMEM_FILL_RING, &64u32)?;
        setsockopt(s, libc::XDP_UMEM_COMPLETION_RING, &RING)?;
        setsockopt(s, libc::XDP_TX_RING, &RING)?;
        // More than the default 32 frames per send; older kernels lack it.
        let _ = setsockopt(s, XDP_MAX_TX_SKB_BUDGET, &BUDGET);

        // SAFETY: all-zero is a valid xdp_mmap_offsets; the kernel fills it.
        let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `len` are valid for writing by the call.
        let r = unsafe {
            libc::getsockopt(
                s,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut libc::xdp_mmap_offsets as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 {
            return Err(last_error());
        }
        if len as usize != mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(io::Error::other("AF_XDP: kernel too old (no ring flags)"));
        }
        let tx = Ring::map(
            s,
            &off.tx,
            libc::XDP_PGOFF_TX_RING as u64,
            mem::size_of::<libc::xdp_desc>(),
        )?;
        let cq = Ring::map(
            s,
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            mem::size_of::<u64>(),
        )?;
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sxdp` is a valid sockaddr_xdp of the given length.
        let r = unsafe {
            libc::bind(
                s,
                &sxdp as *const libc::sockaddr_xdp as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(last_error());
        }
        let tx_head = tx.producer().load(Ordering::Relaxed);
        Ok(XdpTx {
            fd,
            umem,
            tx,
            cq,
            tx_head,
            free: (0..FRAMES as u64)
                .rev()
                .map(|i| i * FRAME_SIZE as u64)
                .collect(),
        })
    }

    /// Takes back the frames the kernel is done with.
    fn reclaim(&mut self) {
        let head = self.cq.producer().load(Ordering::Acquire);
        let mut tail = self.cq.consumer().load(Ordering::Relaxed);
        while tail != head {
            // SAFETY: entries between the consumer and producer indices
            // were written by the kernel before it published `head`.
            let addr = unsafe { self.cq.entry::<u64>(tail).read_volatile() };
            self.free.push(addr);
            tail = tail.wrapping_add(1);
        }
        self.cq.consumer().store(tail, Ordering::Release);
    }

    /// Asks the kernel to transmit what is on the ring. Returns whether
    /// the ring is empty afterwards.
    fn kick(&mut self) -> io::Result<bool> {
        let mut stalls = 0;
        loop {
            let before = self.tx.consumer().load(Ordering::Acquire);
            if before == self.tx_head {
                return Ok(true);
            }
            // SAFETY: a send with no buffer: the kernel takes the ring.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = last_error();
                match e.raw_os_error() {
                    // More to send than one call takes, or a frame the
                    // device dropped (veth with its peer down): go on.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::EINTR) => {}
                    // The device queue is full or the completion ring has
                    // no room: let it drain.
                    Some(libc::ENOBUFS) => {}
                    // The link is down or gone: what is on the ring waits
                    // for it, as frames in a NIC's queue would.
                    Some(libc::ENETDOWN) | Some(libc::ENXIO) => return Ok(false),
                    _ => return Err(e),
                }
            }
            self.reclaim();
            if self.tx.consumer().load(Ordering::Acquire) == before {
                stalls += 1;
                if stalls > 100 {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_micros(50));
            } else {
                stalls = 0;
            }
        }
    }

    /// Sends `frames`. A frame that finds no room (the link is down or
    /// stuck) is lost, as it would be on a wire: the sleds ask again.
    pub fn send<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
        self.reclaim();
        let mut stuck = false;
        for frame in frames {
            // Every descriptor on the ring holds a UMEM frame, so a free
            // frame means a free ring slot too.
            if self.free.is_empty() && !stuck {
                self.tx.producer().store(self.tx_head, Ordering::Release);
                stuck = !self.kick()?;
                self.reclaim();
            }
            let Some(addr) = self.free.pop() else {
                stuck = true;
                continue;
            };
            let len = frame.len().min(FRAME_SIZE as usize);
            // SAFETY: `addr` is a free UMEM frame (the kernel gave it back
            // or never had it) of FRAME_SIZE bytes, and `len` fits it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    self.umem.ptr.add(addr as usize),
                    len,
                );
            }
            let desc = libc::xdp_desc {
                addr,
                len: len as u32,
                options: 0,
            };
            // SAFETY: the slot at `tx_head` is ours: fewer than RING
            // descriptors are outstanding (checked above).
            unsafe {
                self.tx
                    .entry::<libc::xdp_desc>(self.tx_head)
                    .write_volatile(desc)
            };
            self.tx_head = self.tx_head.wrapping_add(1);
        }
        self.tx.producer().store(self.tx_head, Ordering::Release);
        self.kick()?;
        Ok(())
    }
}
