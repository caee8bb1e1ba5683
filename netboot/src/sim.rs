//! A deterministic, in-memory network in virtual time: one server, many
//! emulated sleds, and seeded loss, duplication and reordering. Simulated
//! boots of hundreds of sleds run in milliseconds, the same way every time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::server::{Event, Server};
use crate::sled::Sled;
use crate::wire::{EthFrame, Mac};
use crate::Outbox;

/// A small, seeded pseudo-random generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        p > 0.0 && x < p
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Faults applied to every frame on the simulated wire.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability that a frame to the server is lost.
    pub loss_to_server: f64,
    /// Probability that a frame to a sled is lost.
    pub loss_to_sled: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_by`, so that
    /// later frames overtake it.
    pub reorder: f64,
    pub reorder_by: Duration,
}

/// A frame on the wire: delivery time, sequence (ties in send order),
/// recipient, bytes.
type InFlight = (Duration, u64, To, Vec<u8>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum To {
    Server,
    Sled(usize),
}

/// The simulated segment.
pub struct Sim {
    pub now: Duration,
    /// `None` while the server is down.
    pub server: Option<Server>,
    pub sleds: Vec<Sled>,
    pub faults: Faults,
    /// Every event the server reported, in order.
    pub events: Vec<Event>,
    /// Frames put on the wire, before faults.
    pub frames: u64,
    rng: Rng,
    latency: Duration,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    wake: Vec<Duration>,
    next_server_poll: Duration,
    out: Outbox,
}

impl Sim {
    pub fn new(server: Server, sleds: Vec<Sled>, faults: Faults, seed: u64) -> Sim {
        let n = sleds.len();
        Sim {
            now: Duration::ZERO,
            server: Some(server),
            sleds,
            faults,
            events: Vec::new(),
            frames: 0,
            rng: Rng::new(seed),
            latency: Duration::from_micros(20),
            queue: BinaryHeap::new(),
            seq: 0,
            wake: vec![Duration::ZERO; n],
            next_server_poll: Duration::from_secs(1),
            out: Outbox::new(),
        }
    }

    /// Puts `frame` on the wire now, as if a sled had sent it (for
    /// malformed and hostile frames).
    pub fn inject_to_server(&mut self, frame: &[u8]) {
        self.enqueue(To::Server, frame.to_vec(), self.latency);
    }

    fn enqueue(&mut self, to: To, frame: Vec<u8>, delay: Duration) {
        self.seq += 1;
        self.queue
            .push(Reverse((self.now + delay, self.seq, to, frame)));
    }

    /// Sends what is in the outbox, from a sled (`from_sled`) or the
    /// server, through the faults.
    fn transmit(&mut self, from_server: bool) {
        let out = std::mem::take(&mut self.out);
        let server_mac = self.server.as_ref().map(Server::mac);
        for frame in out.frames() {
            self.frames += 1;
            let Ok(eth) = EthFrame::parse(frame) else {
                continue;
            };
            let mut to = Vec::new();
            if from_server {
                if eth.dst.is_broadcast() {
                    to.extend((0..self.sleds.len()).map(To::Sled));
                } else if let Some(i) = self.sleds.iter().position(|s| s.mac() == eth.dst) {
                    to.push(To::Sled(i));
                }
            } else if eth.dst.is_broadcast() || Some(eth.dst) == server_mac {
                to.push(To::Server);
            }
            for to in to {
                let loss = match to {
                    To::Server => self.faults.loss_to_server,
                    To::Sled(_) => self.faults.loss_to_sled,
                };
                if self.rng.chance(loss) {
                    continue;
                }
                let copies = if self.rng.chance(self.faults.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut delay = self.latency;
                    if self.rng.chance(self.faults.reorder) {
                        let by = self.faults.reorder_by.as_nanos() as u64;
                        delay += Duration::from_nanos(self.rng.below(by.max(1)));
                    }
                    self.enqueue(to, frame.to_vec(), delay);
                }
            }
        }
        self.out = out;
        self.out.clear();
    }

    /// Stops the server (its sessions are lost); frames to it vanish.
    pub fn stop_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            self.events.extend(s.drain_events());
        }
    }

    /// Starts a server (a fresh one, as after a restart).
    pub fn start_server(&mut self, server: Server) {
        self.server = Some(server);
    }

    /// Runs until `done` holds or virtual time passes `deadline`; returns
    /// whether `done` held.
    pub fn run_until(&mut self, deadline: Duration, done: impl Fn(&Sim) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let next_frame = self.queue.peek().map(|Reverse((t, ..))| *t);
            let (i, next_sled) = self
                .wake
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|&(_, t)| t)
                .unwrap_or((0, Duration::MAX));
            let next = next_frame
                .unwrap_or(Duration::MAX)
                .min(next_sled)
                .min(self.next_server_poll);
            if next > deadline {
                self.now = deadline;
                return done(self);
            }
            self.now = self.now.max(next);
            if next_frame == Some(next) {
                let Some(Reverse((_, _, to, frame))) = self.queue.pop() else {
                    continue;
                };
                match to {
                    To::Server => {
                        if let Some(server) = &mut self.server {
                            server.handle(self.now, &frame, &mut self.out);
                            self.events.extend(server.drain_events());
                            self.next_server_poll =
                                self.next_server_poll.min(server.next_deadline(self.now));
                            self.transmit(true);
                        }
                    }
                    To::Sled(i) => {
                        self.sleds[i].handle(self.now, &frame, &mut self.out);
                        self.wake[i] = self.sleds[i].next_wakeup(self.now);
                        self.transmit(false);
                    }
                }
            } else if next == next_sled {
                self.sleds[i].poll(self.now, &mut self.out);
                self.wake[i] = self.sleds[i].next_wakeup(self.now);
                self.transmit(false);
            } else {
                if let Some(server) = &mut self.server {
                    server.poll(self.now, &mut self.out);
                    self.events.extend(server.drain_events());
                    self.next_server_poll = server
                        .next_deadline(self.now)
                        .max(self.now + Duration::from_micros(100));
                    self.transmit(true);
                } else {
                    self.next_server_poll = self.now + Duration::from_secs(1);
                }
            }
        }
    }

    /// Runs until every sled has an outcome and the wire is quiet (their
    /// last frames delivered), or `deadline`.
    pub fn run_to_completion(&mut self, deadline: Duration) -> bool {
        self.run_until(deadline, |s| {
            s.queue.is_empty() && s.sleds.iter().all(|s| s.outcome().is_some())
        })
    }

    /// The MAC of sled `i`.
    pub fn sled_mac(&self, i: usize) -> Mac {
        self.sleds[i].mac()
    }
}
