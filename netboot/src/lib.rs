//! The sled network boot protocol (ethertype 0x1DE0): a boot server that
//! serves every sled on the segment at once, its link backends (Linux
//! AF_PACKET, illumos DLPI), and an emulator of the sled's client.
//!
//! - [`wire`]: frames, parsed and emitted (no I/O).
//! - [`server`]: the server's logic as a state machine (no I/O).
//! - [`session`]: one sled's boot: resends and pacing (no I/O).
//! - [`event`]: what the server reports, as log lines and JSON.
//! - [`sled`]: the deployed client's behaviour, emulated (no I/O).
//! - [`image`]: verified images and which sled gets which.
//! - [`sim`]: a deterministic, virtual-time network for tests.
//!
//! Two systems are supported: Linux (AF_PACKET and AF_XDP, `link::packet`,
//! `link::xdp`, and the namespace labs in `lab`) and illumos (DLPI,
//! `link::dlpi`). [`link::sys`] asks either one about its links.

#[cfg(not(any(target_os = "linux", target_os = "illumos")))]
compile_error!(
    "netboot supports two systems: Linux (AF_PACKET) and illumos (DLPI); build it for one of them"
);

pub mod cohort;
pub mod config;
pub mod event;
pub mod image;
#[cfg(target_os = "linux")]
pub mod lab;
pub mod link;
pub mod pace;
pub mod run;
pub mod server;
pub mod session;
pub mod sim;
pub mod sled;
pub mod wire;

use std::ops::Range;

use wire::{Mac, Repr};

/// Frames to send: whole Ethernet frames packed in one buffer, so that a
/// READ's 128 DATA frames cost no allocation and go out in one batch.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    frames: Vec<Range<usize>>,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Appends a frame carrying `repr` from `src` to `dst`.
    pub fn push(&mut self, dst: Mac, src: Mac, repr: &Repr<'_>) {
        let start = self.buf.len();
        let len = wire::emit_frame(&mut self.buf, dst, src, repr);
        self.frames.push(start..start + len);
    }

    /// Appends a frame given as bytes.
    pub fn push_raw(&mut self, frame: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(frame);
        self.frames.push(start..self.buf.len());
    }

    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(|r| &self.buf[r.clone()])
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
    }
}
