//! An emulator of the sled's network boot client, without I/O, behaving as
//! the deployed client does: illumos `uts/oxide/boot_image/oxide_boot_net.c`
//! (`oxide_boot_net_ether_rx`, `oxide_boot_net_ether_turn`) and
//! `oxide_boot.c`; see `shared/spec/netboot-protocol.md`.
//!
//! - HELLO (broadcast) every 4 s until it accepts an OFFER;
//! - takes frames sent to its MAC or to the broadcast address, from anyone:
//!   the client never checks a frame's source (`ether_rx` looks only at the
//!   magic, type and len; `ether_turn` at the offset);
//! - accepts an OFFER only if len is 176, the dataset's byte 127 is NUL,
//!   ramdisk and data size are at least 1 MiB, data size <= ramdisk size,
//!   and the SHA-256 is the one it expects; the OFFER's source is its server
//!   (the only thing that MAC is used for is addressing READ and FINISHED);
//!   the turn that accepts it prints a line about it and ends: the first
//!   READ goes out in the next turn, after the progress line, when a frame
//!   or the loop's 50 ms tick wakes it;
//! - before that it ignores DATA silently; after it, OFFERs;
//! - keeps 128 slots; only when all are empty, and while neither the end
//!   was seen nor the next offset reached the OFFER's data size, does it
//!   start a batch of the next 128 offsets (1024 apart, even past the end),
//!   sent as a dense READ;
//! - re-requests slots that waited over 1 s with the sparse encoding (each
//!   offset at its slot index, count = how many);
//! - takes DATA with 8 <= len <= 1476 for an offset it waits for; an empty
//!   DATA means end of image: no more batches. A DATA for any other offset
//!   is dropped with a console line ("dropped data packet for offset N"),
//!   printed synchronously: the client's loop is blocked for the time the
//!   serial console takes ([`Sled::with_console`]), and frames that arrive
//!   meanwhile wait in its queue;
//! - runs in turns, as `oxide_boot_net_ether_turn` does under the lock the
//!   receive callback needs to queue a frame: a turn prints the progress
//!   line if a second has passed (the same console cost), takes every frame
//!   queued when it began, and only then starts a batch or re-requests: a
//!   batch completed early in a long queue is answered after the rest of
//!   the queue (each stray frame a console line) is drained;
//! - when every slot is empty and the end is reached it sends FINISHED once,
//!   sets the ramdisk's length to the end of its last batch
//!   (`oxide_boot_ramdisk_set_len(oe_offset)`) and hashes that many bytes of
//!   its zero-filled ramdisk. So an image verifies over the network only if
//!   its size is a multiple of 128 KiB ([`crate::image::BATCH_ALIGN`]);
//! - a RESET with len 0, from anyone, at any time, ends the boot (the real
//!   client panics and reboots).
//!
//! It hashes each batch as it completes (batches complete in order), so it
//! checks the SHA-256 in bounded memory, and can also keep the bytes. Sleds
//! that share a [`HashMemo`] hash a batch they received byte for byte alike
//! (a broadcast cohort) once between them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::image::MIN_CLIENT_SIZE;
use crate::wire::{self, EthFrame, Mac, Repr, DATA_CHUNK, ETHERTYPE, READ_SLOTS};
use crate::Outbox;

/// The deployed client's HELLO text.
pub const HELLO_TEXT: &[u8] = b"Hello!  I'd like to buy a ramdisk please.";
/// HELLO interval while discovering.
pub const HELLO_INTERVAL: Duration = Duration::from_secs(4);
/// A slot waiting longer than this is requested again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The client's loop wakes at least this often.
pub const TICK: Duration = Duration::from_millis(50);
/// What one console line costs at 115200 baud (about 45 characters of
/// "dropped data packet for offset N", 10 bits each): a typical value for
/// [`Sled::with_console`].
pub const CONSOLE_LINE_115200: Duration = Duration::from_micros(3_900);
/// Frames held while the client's loop is blocked on its console; more are
/// dropped, as a NIC's receive ring would.
const QUEUE_LIMIT: usize = 4096;

const BATCH_BYTES: usize = READ_SLOTS * DATA_CHUNK;

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The ramdisk hashed to the SHA-256 offered: `bytes` is the length
    /// the client set (the end of its last batch).
    Booted {
        server: Mac,
        bytes: u64,
        elapsed: Duration,
    },
    /// The ramdisk (`bytes` long, zero-filled past what arrived) did not
    /// hash to what was offered: a real sled panics with "boot image
    /// integrity failure".
    ChecksumMismatch { actual: [u8; 32], bytes: u64 },
    /// A RESET arrived (the real client panics and reboots).
    Reset { server: Mac },
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    offset: u64,
    sent_at: Duration,
}

struct Transfer {
    server: Mac,
    offer: wire::Offer,
    started: Duration,
    slots: [Option<Slot>; READ_SLOTS],
    /// Slots not empty.
    outstanding: usize,
    /// The earliest time a slot has waited past [`RETRY_AFTER`].
    next_retry: Duration,
    /// Offset of the current batch's first slot.
    batch_start: u64,
    /// The client's `oe_offset`: the end of the last batch started.
    next_offset: u64,
    batch: Vec<u8>,
    eof: bool,
    hasher: Sha256,
    /// Which hash state `hasher` is in [`HashMemo`]'s numbering (0: none
    /// shared).
    state: u64,
    hashed: u64,
}

/// Batches hashed lately, shared by the sleds one process emulates: a sled
/// whose hash state and batch equal an entry's (compared byte for byte)
/// takes the entry's result instead of hashing 128 KiB again. Emulating a
/// cohort of 32 sleds on one core otherwise costs 32 SHA-256 computations
/// per batch broadcast once: the emulator, not the network, would set the
/// pace. The outcome is the same as hashing alone.
#[derive(Debug)]
pub struct HashMemo {
    entries: VecDeque<MemoEntry>,
    next_state: u64,
}

#[derive(Debug)]
struct MemoEntry {
    before: u64,
    batch: Vec<u8>,
    after: Sha256,
    state: u64,
}

impl HashMemo {
    /// Entries kept: sleds in step are a batch or two apart.
    const KEEP: usize = 8;
    /// The state every sled starts in: the empty hash.
    const EMPTY: u64 = 1;

    /// A memo to give sleds ([`Sled::with_hash_memo`]).
    pub fn shared() -> Arc<Mutex<HashMemo>> {
        Arc::new(Mutex::new(HashMemo {
            entries: VecDeque::new(),
            next_state: HashMemo::EMPTY + 1,
        }))
    }

    /// `hasher` (in state `state`) updated with `batch`: from an entry, or
    /// hashed and remembered. Returns the new state.
    fn update(&mut self, state: u64, hasher: &mut Sha256, batch: &[u8]) -> u64 {
        if state != 0 {
            if let Some(e) = self
                .entries
                .iter()
                .find(|e| e.before == state && e.batch == batch)
            {
                *hasher = e.after.clone();
                return e.state;
            }
        }
        hasher.update(batch);
        let new = self.next_state;
        self.next_state += 1;
        if self.entries.len() == Self::KEEP {
            self.entries.pop_front();
        }
        self.entries.push_back(MemoEntry {
            before: state,
            batch: batch.to_vec(),
            after: hasher.clone(),
            state: new,
        });
        new
    }
}

/// One emulated sled.
pub struct Sled {
    mac: Mac,
    expected: [u8; 32],
    last_hello: Option<Duration>,
    /// When the loop last printed its progress line.
    last_status: Option<Duration>,
    transfer: Option<Transfer>,
    outcome: Option<Outcome>,
    finished_sent: bool,
    keep: Option<Vec<u8>>,
    /// Time the client's loop is blocked per console line.
    console: Duration,
    /// The loop is printing until then; frames wait in `queue`.
    busy_until: Duration,
    /// A turn of the client's loop is under way: it takes the frames that
    /// were queued when it began (`turn_left` of them still), and only then
    /// issues READs. Frames arriving meanwhile wait for the next turn.
    in_turn: bool,
    turn_left: usize,
    /// The turn under way accepted an OFFER: it ends there, and the first
    /// READ waits for the next turn (a frame or the 50 ms tick wakes it).
    just_offered: bool,
    queue: VecDeque<Vec<u8>>,
    memo: Option<Arc<Mutex<HashMemo>>>,
    /// DATA frames taken, dropped (not waited for) and READs sent.
    pub stats: SledStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SledStats {
    pub data_taken: u64,
    /// DATA frames for an offset the client was not waiting for, while
    /// reading: each is a console line on a real sled ("dropped data
    /// packet for offset N").
    pub data_dropped: u64,
    /// Of those, the frames sent to the broadcast address (a broadcast
    /// cohort's server never sends one: see `crate::cohort`).
    pub data_dropped_broadcast: u64,
    pub reads: u64,
    pub rereads: u64,
    pub hellos: u64,
    pub offers_ignored: u64,
    /// Frames lost because the queue was full while the console blocked
    /// the loop.
    pub queue_overflow: u64,
    /// Progress lines printed (one a second while reading).
    pub status_lines: u64,
}

impl Sled {
    /// A sled that boots only an image whose SHA-256 is `expected` (the
    /// checksum built into its boot archive).
    pub fn new(mac: Mac, expected: [u8; 32]) -> Sled {
        Sled {
            mac,
            expected,
            last_hello: None,
            last_status: None,
            transfer: None,
            outcome: None,
            finished_sent: false,
            keep: None,
            console: Duration::ZERO,
            busy_until: Duration::ZERO,
            in_turn: false,
            turn_left: 0,
            just_offered: false,
            queue: VecDeque::new(),
            memo: None,
            stats: SledStats::default(),
        }
    }

    /// Shares batch hashing with the other sleds given `memo`.
    pub fn with_hash_memo(mut self, memo: Arc<Mutex<HashMemo>>) -> Sled {
        self.memo = Some(memo);
        self
    }

    /// Also keep the received ramdisk in memory ([`Sled::image`]).
    pub fn keep_image(mut self) -> Sled {
        self.keep = Some(Vec::new());
        self
    }

    /// Blocks the client's loop for `per_line` for every dropped-DATA
    /// console line, as a synchronous serial console does.
    pub fn with_console(mut self, per_line: Duration) -> Sled {
        self.console = per_line;
        self
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The ramdisk received (up to the end of the last batch), when kept.
    pub fn image(&self) -> Option<&[u8]> {
        self.keep.as_deref()
    }

    /// Bytes received in order so far, and the image size (0 before an
    /// OFFER is accepted).
    pub fn progress(&self) -> (u64, u64) {
        match &self.transfer {
            Some(t) => (t.hashed.min(t.offer.data_size), t.offer.data_size),
            None => (0, 0),
        }
    }

    /// When the client's loop next needs to run, at the latest.
    pub fn next_wakeup(&self, now: Duration) -> Duration {
        if self.outcome.is_some() {
            return now + Duration::from_secs(3600);
        }
        if now < self.busy_until {
            return self.busy_until;
        }
        if self.in_turn || !self.queue.is_empty() {
            return now;
        }
        let mut at = now + TICK;
        match &self.transfer {
            None => {
                if let Some(h) = self.last_hello {
                    at = at.min(h + HELLO_INTERVAL);
                }
            }
            Some(t) if t.outstanding > 0 => {
                at = at.min(t.next_retry + Duration::from_nanos(1));
            }
            Some(_) => {}
        }
        at.max(now)
    }

    /// Timers: HELLO, new batches, re-requests, FINISHED; and frames that
    /// waited while the console blocked the loop.
    pub fn poll(&mut self, now: Duration, out: &mut Outbox) {
        if now < self.busy_until {
            return;
        }
        if !self.in_turn {
            // A turn begins (a frame or the 50 ms tick woke the loop): the
            // progress line first, then the frames queued now.
            self.in_turn = true;
            self.turn_left = self.queue.len();
            if self.print_status(now) {
                return;
            }
        }
        while self.turn_left > 0 && now >= self.busy_until {
            let Some(frame) = self.queue.pop_front() else {
                break;
            };
            self.turn_left -= 1;
            self.take(now, &frame);
        }
        if now < self.busy_until {
            return;
        }
        self.turn_left = 0;
        self.in_turn = false;
        self.turn(now, out);
    }

    fn turn(&mut self, now: Duration, out: &mut Outbox) {
        if self.outcome.is_some() || std::mem::take(&mut self.just_offered) {
            return;
        }
        let Some(t) = &mut self.transfer else {
            if self.last_hello.is_none_or(|h| now >= h + HELLO_INTERVAL) {
                out.push(Mac::BROADCAST, self.mac, &Repr::Hello { text: HELLO_TEXT });
                self.last_hello = Some(now);
                self.stats.hellos += 1;
            }
            return;
        };
        if t.outstanding == 0 {
            t.complete_batch(&mut self.keep, self.memo.as_deref());
            if t.eof || t.next_offset >= t.offer.data_size {
                // oxide_boot_net_ether_turn: FINISHED, once, then
                // oxide_boot_ramdisk_set_len(oe_offset) and the hash of
                // that many bytes of the zero-filled ramdisk.
                if !self.finished_sent {
                    out.push(t.server, self.mac, &Repr::Finished);
                    self.finished_sent = true;
                    let actual: [u8; 32] = t.hasher.clone().finalize().into();
                    self.outcome = Some(if actual == t.offer.sha256 {
                        Outcome::Booted {
                            server: t.server,
                            bytes: t.hashed,
                            elapsed: now.saturating_sub(t.started),
                        }
                    } else {
                        Outcome::ChecksumMismatch {
                            actual,
                            bytes: t.hashed,
                        }
                    });
                }
                return;
            }
            // A new batch: the next 128 offsets, dense.
            let mut read = wire::Read {
                count: READ_SLOTS as u64,
                offsets: [0; READ_SLOTS],
            };
            t.batch_start = t.next_offset;
            for (i, slot) in t.slots.iter_mut().enumerate() {
                let offset = t.next_offset;
                t.next_offset = t.next_offset.saturating_add(DATA_CHUNK as u64);
                *slot = Some(Slot {
                    offset,
                    sent_at: now,
                });
                read.offsets[i] = offset;
            }
            t.outstanding = READ_SLOTS;
            t.next_retry = now + RETRY_AFTER;
            t.batch.clear();
            t.batch.resize(BATCH_BYTES, 0);
            out.push(t.server, self.mac, &Repr::Read(read));
            self.stats.reads += 1;
            return;
        }
        // Re-request every slot that has waited too long, sparsely.
        if now <= t.next_retry {
            return;
        }
        let mut read = wire::Read {
            count: 0,
            offsets: [0; READ_SLOTS],
        };
        let mut next = now + RETRY_AFTER;
        for (i, slot) in t.slots.iter_mut().enumerate() {
            if let Some(s) = slot {
                if now.saturating_sub(s.sent_at) > RETRY_AFTER {
                    read.offsets[i] = s.offset;
                    read.count += 1;
                    s.sent_at = now;
                }
                next = next.min(s.sent_at + RETRY_AFTER);
            }
        }
        t.next_retry = next;
        if read.count > 0 {
            out.push(t.server, self.mac, &Repr::Read(read));
            self.stats.rereads += 1;
        }
    }

    /// Handles one received Ethernet frame: at once, or after the console
    /// lets the client's loop run again.
    pub fn handle(&mut self, now: Duration, frame: &[u8], out: &mut Outbox) {
        if self.outcome.is_some() {
            return;
        }
        let Ok(eth) = EthFrame::parse(frame) else {
            return;
        };
        // The NIC's filter: the sled's own MAC and broadcast.
        if eth.ethertype != ETHERTYPE || (eth.dst != self.mac && !eth.dst.is_broadcast()) {
            return;
        }
        // oxide_boot_net_ether_rx: a RESET is acted on in the receive
        // callback itself, whatever the loop is doing.
        let Ok(repr) = Repr::parse(eth.payload) else {
            return;
        };
        if let Repr::Reset = repr {
            self.outcome = Some(Outcome::Reset { server: eth.src });
            self.queue.clear();
            return;
        }
        if self.in_turn || now < self.busy_until || !self.queue.is_empty() {
            if self.queue.len() < QUEUE_LIMIT {
                self.queue.push_back(frame.to_vec());
            } else {
                self.stats.queue_overflow += 1;
            }
            return;
        }
        // The loop was idle: this frame wakes it for a turn of its own.
        if self.print_status(now) {
            self.in_turn = true;
            self.turn_left = 1;
            self.queue.push_back(frame.to_vec());
            return;
        }
        self.take_repr(now, &eth, repr);
        if now < self.busy_until {
            // A console line: the turn ends (READs are issued) after it.
            self.in_turn = true;
            self.turn_left = 0;
            return;
        }
        self.turn(now, out);
    }

    /// The READING state's progress line: each turn of the loop starts by
    /// printing "\r receiving OFFSET / SIZE (PCT%)" when a second has
    /// passed since the last (`oxide_boot_net_ether_turn`), about as long
    /// as a dropped-DATA line: the loop is blocked meanwhile. True if it
    /// printed now.
    fn print_status(&mut self, now: Duration) -> bool {
        if self.transfer.is_none() || self.outcome.is_some() || self.console.is_zero() {
            return false;
        }
        if self
            .last_status
            .is_some_and(|t| now.saturating_sub(t) <= RETRY_AFTER)
        {
            return false;
        }
        self.last_status = Some(now);
        self.stats.status_lines += 1;
        self.busy_until = now + self.console;
        true
    }

    /// The loop's handling of one queued frame.
    fn take(&mut self, now: Duration, frame: &[u8]) {
        let Ok(eth) = EthFrame::parse(frame) else {
            return;
        };
        let Ok(repr) = Repr::parse(eth.payload) else {
            return;
        };
        self.take_repr(now, &eth, repr);
    }

    /// The loop's handling of one parsed frame.
    fn take_repr(&mut self, now: Duration, eth: &EthFrame<'_>, repr: Repr<'_>) {
        if self.outcome.is_some() {
            return;
        }
        match repr {
            Repr::Offer(offer) => {
                if self.transfer.is_some() {
                    // READING: oxide_boot_net_ether_turn frees every frame
                    // that is not DATA without a word (an OFFER sent again
                    // to wake the loop, too); only DATA costs a line.
                    return;
                }
                let ok = offer.dataset[127] == 0
                    && offer.ramdisk_size >= MIN_CLIENT_SIZE
                    && offer.data_size >= MIN_CLIENT_SIZE
                    && offer.data_size <= offer.ramdisk_size
                    && offer.sha256 == self.expected;
                if !ok {
                    self.stats.offers_ignored += 1;
                    return;
                }
                self.transfer = Some(Transfer {
                    server: eth.src,
                    offer,
                    started: now,
                    slots: [None; READ_SLOTS],
                    outstanding: 0,
                    next_retry: now,
                    batch_start: 0,
                    next_offset: 0,
                    batch: Vec::with_capacity(BATCH_BYTES),
                    eof: false,
                    hasher: Sha256::new(),
                    state: if self.memo.is_some() {
                        HashMemo::EMPTY
                    } else {
                        0
                    },
                    hashed: 0,
                });
                // oxide_boot_net_ether_turn prints "received offer from
                // MAC -- size N data size N dataset NAME" (about two
                // lines' worth) and returns: the next turn, woken by a
                // frame or the 50 ms tick, prints the progress line first
                // and then sends the first READ.
                self.just_offered = true;
                self.busy_until = now + self.console * 2;
            }
            Repr::Data { offset, bytes } => {
                // Before an OFFER is accepted, DATA is ignored silently.
                let Some(t) = &mut self.transfer else { return };
                let Some(slot) = t
                    .slots
                    .iter_mut()
                    .find(|s| s.is_some_and(|s| s.offset == offset))
                else {
                    // "dropped data packet for offset N", synchronously.
                    self.stats.data_dropped += 1;
                    if eth.dst.is_broadcast() {
                        self.stats.data_dropped_broadcast += 1;
                    }
                    self.busy_until = now + self.console;
                    return;
                };
                *slot = None;
                t.outstanding -= 1;
                self.stats.data_taken += 1;
                if bytes.is_empty() {
                    t.eof = true;
                } else {
                    let at = (offset - t.batch_start) as usize;
                    let n = bytes.len().min(BATCH_BYTES - at);
                    t.batch[at..at + n].copy_from_slice(&bytes[..n]);
                }
            }
            Repr::Reset | Repr::Hello { .. } | Repr::Read(_) | Repr::Finished => {}
        }
    }
}

impl Transfer {
    /// Hashes (and keeps) the finished batch: all of it, zero-filled where
    /// nothing arrived, as the client hashes its ramdisk up to `oe_offset`.
    fn complete_batch(&mut self, keep: &mut Option<Vec<u8>>, memo: Option<&Mutex<HashMemo>>) {
        if self.batch.is_empty() {
            return;
        }
        if self.batch_start == self.hashed {
            match memo.and_then(|m| m.lock().ok()) {
                Some(mut m) => self.state = m.update(self.state, &mut self.hasher, &self.batch),
                None => self.hasher.update(&self.batch),
            }
            if let Some(k) = keep {
                k.extend_from_slice(&self.batch);
            }
            self.hashed += BATCH_BYTES as u64;
        }
        self.batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_memo_hashes_as_each_sled_would_alone() {
        let memo = HashMemo::shared();
        let a = vec![1u8; BATCH_BYTES];
        let mut b = a.clone();
        b[BATCH_BYTES - 1] = 2;
        // Two sleds take `a`, a third `b`, then all take `a` again.
        let mut sleds: Vec<(u64, Sha256)> =
            (0..3).map(|_| (HashMemo::EMPTY, Sha256::new())).collect();
        for (i, (state, h)) in sleds.iter_mut().enumerate() {
            let batch = if i == 2 { &b } else { &a };
            *state = memo.lock().unwrap().update(*state, h, batch);
        }
        assert_eq!(
            sleds[0].0, sleds[1].0,
            "the second sled took the first's result"
        );
        assert_ne!(sleds[0].0, sleds[2].0, "other bytes, another state");
        for (state, h) in sleds.iter_mut() {
            *state = memo.lock().unwrap().update(*state, h, &a);
        }
        let alone = |first: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(first);
            h.update(&a);
            h.finalize().into()
        };
        let got: Vec<[u8; 32]> = sleds
            .iter()
            .map(|(_, h)| h.clone().finalize().into())
            .collect();
        assert_eq!(got, vec![alone(&a), alone(&a), alone(&b)]);
        // Entries are bounded.
        let mut m = memo.lock().unwrap();
        for i in 0..3 * HashMemo::KEEP {
            let mut h = Sha256::new();
            m.update(HashMemo::EMPTY, &mut h, &[i as u8; 16]);
        }
        assert_eq!(m.entries.len(), HashMemo::KEEP);
    }

    /// The frames a sled sent: (type, first offset asked for).
    fn sent(out: &mut Outbox) -> Vec<Repr<'static>> {
        let v = out
            .frames()
            .map(|f| match Repr::parse(&f[14..]).unwrap() {
                Repr::Read(r) => Repr::Read(r),
                Repr::Hello { .. } => Repr::Hello { text: HELLO_TEXT },
                Repr::Finished => Repr::Finished,
                other => panic!("{other:?}"),
            })
            .collect();
        out.clear();
        v
    }

    #[test]
    fn a_turn_answers_only_after_the_strays_queued_before_it() {
        // oxide_boot_net_ether_turn takes every frame queued when the turn
        // began and only then starts the next batch: a batch completed
        // early in a queue of strays is answered after them.
        let ms = Duration::from_millis;
        let img = vec![7u8; 1 << 20];
        let sum: [u8; 32] = Sha256::digest(&img).into();
        let server = Mac([2, 0, 0, 0, 0, 0xfe]);
        let me = Mac([2, 0, 0, 0, 0, 1]);
        let mut sled = Sled::new(me, sum).with_console(ms(1));
        let mut out = Outbox::new();
        let frame = |r: &Repr<'_>| {
            let mut f = Vec::new();
            wire::emit_frame(&mut f, me, server, r);
            f
        };
        let mut dataset = [0u8; 128];
        dataset[0] = b'x';
        let offer = wire::Offer {
            ramdisk_size: 4 << 20,
            data_size: img.len() as u64,
            sha256: sum,
            dataset,
        };
        sled.poll(Duration::ZERO, &mut out);
        out.clear(); // HELLO
        sled.handle(Duration::ZERO, &frame(&Repr::Offer(offer)), &mut out);
        assert!(sent(&mut out).is_empty(), "the offer's turn ends there");
        sled.poll(ms(2), &mut out);
        // The next frame wakes the loop: the progress line, then the READ.
        sled.handle(ms(3), &frame(&Repr::Offer(offer)), &mut out);
        assert_eq!(sled.stats.status_lines, 1);
        assert_eq!(sled.next_wakeup(ms(3)), ms(4));
        sled.poll(ms(4), &mut out);
        assert!(matches!(sent(&mut out)[..], [Repr::Read(_)]));
        let data = |k: u64| {
            frame(&Repr::Data {
                offset: k << 10,
                bytes: &img[(k << 10) as usize..((k + 1) << 10) as usize],
            })
        };
        let t = |us: u64| ms(5) + Duration::from_micros(us);
        // 127 of the batch's frames arrive while the loop is idle.
        for k in 0..127 {
            sled.handle(t(1), &data(k), &mut out);
        }
        // A stray blocks the loop 1 ms (a console line); meanwhile the
        // batch's last frame and another stray queue up.
        sled.handle(t(2), &data(0), &mut out);
        sled.handle(t(3), &data(127), &mut out);
        sled.handle(t(4), &data(1), &mut out);
        assert!(sent(&mut out).is_empty());
        // The stray's turn ends; the next takes both queued frames: the
        // batch completes, then the stray blocks the loop again, and the
        // READ waits for it.
        sled.poll(t(1_002), &mut out);
        assert_eq!(sled.next_wakeup(t(1_002)), t(1_002));
        sled.poll(t(1_002), &mut out);
        assert!(sent(&mut out).is_empty(), "no READ before the stray's line");
        assert_eq!(sled.stats.data_dropped, 2);
        sled.poll(t(2_002), &mut out);
        match &sent(&mut out)[..] {
            [Repr::Read(r)] => assert_eq!(r.offsets[0], 128 << 10),
            other => panic!("{other:?}"),
        }
    }
}
