//! FFI: the Linux backend, an AF_PACKET socket bound to one interface and
//! the protocol's ethertype. Sends go out in batches (`sendmmsg`: one system
//! call for a READ's up to 128 DATA frames), receives come in batches
//! (`recvmmsg`) after a `poll` with a timeout.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::xdp::XdpTx;
use super::{Link, LinkError, RecvBatch};
use crate::wire::{Mac, ETHERTYPE};
use crate::Outbox;

/// An AF_PACKET link.
pub struct PacketLink {
    fd: OwnedFd,
    name: String,
    mac: Mac,
    ifindex: u32,
    /// Sends go here instead, once [`PacketLink::use_xdp_tx`] succeeded.
    xdp: Option<XdpTx>,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

impl PacketLink {
    /// Opens `name`. With `promiscuous`, frames for every MAC arrive (the
    /// sled emulator needs this to be many sleds on one interface).
    pub fn open(name: &str, promiscuous: bool) -> Result<PacketLink, LinkError> {
        let cname = CString::new(name).map_err(|_| LinkError::NoSuchLink(name.to_owned()))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(LinkError::NoSuchLink(name.to_owned()));
        }
        let proto = ETHERTYPE.to_be() as libc::c_int;
        // SAFETY: plain system call with constant arguments.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(LinkError::from_io(name, last_error()));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETHERTYPE.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(LinkError::from_io(name, last_error()));
        }

        // Our MAC, from the interface (in this thread's network namespace).
        // SAFETY: an all-zero ifreq is valid; the name is copied in below.
        let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(cname.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFHWADDR reads the interface named in `ifr` and
        // writes its address into `ifr`, which outlives the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
        if r < 0 {
            return Err(LinkError::from_io(name, last_error()));
        }
        // SAFETY: after SIOCGIFHWADDR the union holds `ifru_hwaddr`.
        let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }

        if promiscuous {
            // SAFETY: an all-zero packet_mreq is valid; fields set below.
            let mut mreq: libc::packet_mreq = unsafe { mem::zeroed() };
            mreq.mr_ifindex = ifindex as i32;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            // SAFETY: `mreq` is a valid packet_mreq of the given length.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    &mreq as *const libc::packet_mreq as *const libc::c_void,
                    mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(LinkError::from_io(name, last_error()));
            }
        }
        // Room for bursts: a READ's 128 DATA frames overflow the default
        // receive buffer, and every frame lost costs a sled a 1 s timer.
        // Forcing needs CAP_NET_ADMIN; otherwise ask within rmem_max.
        let bytes: libc::c_int = 8 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `bytes` is a valid c_int of the given length.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &bytes as *const libc::c_int as *const libc::c_void,
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // Frames skip the queueing discipline: a boot server has the link to
        // itself, and this saves work per frame. Best effort.
        let one: libc::c_int = 1;
        // SAFETY: `one` is a valid c_int of the given length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const libc::c_int as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(PacketLink {
            fd,
            name: name.to_owned(),
            mac: Mac(mac),
            ifindex,
            xdp: None,
        })
    }

    /// Sends through an AF_XDP socket from now on (see [`super::xdp`]);
    /// receiving stays here. On error nothing changes.
    pub fn use_xdp_tx(&mut self) -> io::Result<()> {
        self.xdp = Some(XdpTx::open(self.ifindex)?);
        Ok(())
    }

    /// Waits up to `timeout` for the socket to become readable.
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // ppoll, not poll: the server paces its frames in steps of tens of
        // microseconds, and poll's timeout is in milliseconds. A zero
        // timeout only checks.
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pfd` is one valid pollfd and `ts` a valid timespec for
        // the duration of the call; a null signal mask leaves it unchanged.
        let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        match r {
            r if r < 0 => {
                let e = last_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            0 => Ok(false),
            _ => Ok(true),
        }
    }
}

impl Link for PacketLink {
    fn mac(&self) -> Mac {
        self.mac
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        batch.clear();
        if !self.wait(timeout)? {
            return Ok(0);
        }
        let n = batch.capacity();
        // SAFETY: all-zero sockaddr_ll, iovec and mmsghdr are valid values;
        // every pointer is set below to memory that outlives the call.
        let mut addrs: Vec<libc::sockaddr_ll> = vec![unsafe { mem::zeroed() }; n];
        let mut iovs: Vec<libc::iovec> = batch
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: as above.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; n];
        for i in 0..n {
            msgs[i].msg_hdr.msg_name = &mut addrs[i] as *mut libc::sockaddr_ll as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as u32;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs` holds `n` initialised headers pointing at live
        // buffers (`batch.bufs`, `iovs`, `addrs`) that outlive the call.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = last_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                // The link is down: nothing arrives until it comes back.
                Some(libc::ENETDOWN) | Some(libc::ENXIO) => {
                    std::thread::sleep(timeout.min(Duration::from_millis(10)));
                    Ok(0)
                }
                _ => Err(e),
            };
        }
        for i in 0..r as usize {
            // Our own frames and frames for other hosts (a promiscuous
            // interface) are not for us; the emulator asks for the latter.
            let t = addrs[i].sll_pkttype;
            if t == libc::PACKET_OUTGOING {
                continue;
            }
            if t == libc::PACKET_OTHERHOST && !batch.accept_other_hosts {
                continue;
            }
            batch.lens.push((i, msgs[i].msg_len as usize));
        }
        Ok(batch.len())
    }

    fn sends_with(&self) -> &'static str {
        if self.xdp.is_some() {
            "AF_XDP"
        } else {
            "AF_PACKET"
        }
    }

    fn send(&mut self, out: &Outbox) -> io::Result<()> {
        if let Some(x) = &mut self.xdp {
            return x.send(out.frames());
        }
        let frames: Vec<&[u8]> = out.frames().collect();
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: an all-zero mmsghdr is valid; the iov pointers are set
        // below to `iovs`, which outlives every call.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; frames.len()];
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        let mut stalls = 0;
        while sent < msgs.len() {
            // SAFETY: `msgs[sent..]` are initialised headers pointing at
            // frames in `out`, which outlives the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (msgs.len() - sent) as u32,
                    0,
                )
            };
            if r < 0 {
                let e = last_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The link is down (a pulled cable): the frames are
                    // lost, as on the wire; the sleds ask again.
                    Some(libc::ENETDOWN) | Some(libc::ENXIO) => return Ok(()),
                    // The device queue is full: give it a moment, then go
                    // on. A link that stays full (or is down, which veth
                    // reports the same way) loses the rest, as a wire
                    // would; the sleds ask again. A server never dies of it.
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                        stalls += 1;
                        if stalls > 100 {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            sent += r as usize;
        }
        Ok(())
    }
}
