//! A deterministic, in-memory network in virtual time: one server, many
//! emulated sleds, a modeled network ([`net`]: links with line rates and
//! drop-tail buffers, a switch) and seeded loss, duplication and
//! reordering. Simulated boots of hundreds of sleds run in milliseconds,
//! the same way every time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::server::{Event, Server};
use crate::sled::Sled;
use crate::wire::{EthFrame, Mac, Repr};
use crate::Outbox;

pub mod net;
pub mod rack;

pub use net::{Network, Node, Port, PortStats, Topology};
pub use rack::{Rack, RackReport};

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

/// Faults applied to every frame delivered, seeded.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability that a frame to the server is lost.
    pub loss_to_server: f64,
    /// Probability that a frame to a sled is lost.
    pub loss_to_sled: f64,
    /// Probability that a frame to the server is delivered twice.
    pub duplicate_to_server: f64,
    /// Probability that a frame to a sled is delivered twice.
    pub duplicate_to_sled: f64,
    /// Probability that a frame is held back by up to `reorder_by`, so that
    /// later frames overtake it.
    pub reorder: f64,
    pub reorder_by: Duration,
}

impl Faults {
    /// `loss` and `duplicate` the same each way.
    pub fn each_way(loss: f64, duplicate: f64) -> Faults {
        Faults {
            loss_to_server: loss,
            loss_to_sled: loss,
            duplicate_to_server: duplicate,
            duplicate_to_sled: duplicate,
            ..Faults::default()
        }
    }
}

/// Where a frame is: crossing the switch from its sender (for one host or
/// every host but the sender), or arriving at a host.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Switch { from: Node, to: Option<Node> },
    Arrive(Node),
}

/// A frame on its way, due at `at` (ties in send order).
struct InFlight {
    at: Duration,
    seq: u64,
    stage: Stage,
    frame: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulated network, server and sleds.
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
    /// DATA frames the server sent.
    pub data_sent: u64,
    /// The links, ports and their counters.
    pub net: Network,
    rng: Rng,
    latency: Duration,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    wake: Vec<Duration>,
    /// Sleds unplugged: they neither send nor receive.
    unplugged: Vec<bool>,
    /// When each sled is powered on: before, it receives nothing.
    power_on: Vec<Duration>,
    next_server_poll: Duration,
    out: Outbox,
}

impl Sim {
    /// Server and sleds on an [`Topology::Ideal`] network (20 µs latency).
    pub fn new(server: Server, sleds: Vec<Sled>, faults: Faults, seed: u64) -> Sim {
        let n = sleds.len();
        Sim {
            now: Duration::ZERO,
            server: Some(server),
            sleds,
            faults,
            events: Vec::new(),
            frames: 0,
            data_sent: 0,
            net: Network::new(Topology::Ideal, n),
            rng: Rng::new(seed),
            latency: Duration::from_micros(20),
            queue: BinaryHeap::new(),
            seq: 0,
            wake: vec![Duration::ZERO; n],
            unplugged: vec![false; n],
            power_on: vec![Duration::ZERO; n],
            next_server_poll: Duration::from_secs(1),
            out: Outbox::new(),
        }
    }

    /// The same on `topology`, with 5 µs of latency (cables and the
    /// switch's forwarding) on top of serialization and queueing.
    pub fn on(mut self, topology: Topology) -> Sim {
        self.net = Network::new(topology, self.sleds.len());
        self.latency = Duration::from_micros(5);
        self
    }

    /// Puts `frame` on the wire now, as if a sled had sent it (for
    /// malformed and hostile frames).
    pub fn inject_to_server(&mut self, frame: &[u8]) {
        let at = self.now + self.latency;
        self.schedule(at, Stage::Arrive(Node::Server), frame.to_vec());
    }

    fn schedule(&mut self, at: Duration, stage: Stage, frame: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            stage,
            frame,
        }));
    }

    /// Sends what is in the outbox from `from`: through its NIC to the
    /// switch.
    fn transmit(&mut self, from: Node) {
        let out = std::mem::take(&mut self.out);
        let server_mac = self.server.as_ref().map(Server::mac);
        for frame in out.frames() {
            self.frames += 1;
            let Ok(eth) = EthFrame::parse(frame) else {
                continue;
            };
            let to = if eth.dst.is_broadcast() {
                None
            } else if from == Node::Server {
                match self.sleds.iter().position(|s| s.mac() == eth.dst) {
                    Some(i) => Some(Node::Sled(i)),
                    None => continue,
                }
            } else if Some(eth.dst) == server_mac {
                Some(Node::Server)
            } else {
                continue;
            };
            if from == Node::Server && matches!(Repr::parse(eth.payload), Ok(Repr::Data { .. })) {
                self.data_sent += 1;
            }
            let at = self.net.send(from, self.now, frame.len());
            let stage = Stage::Switch { from, to };
            if at == self.now {
                self.switch(from, to, frame.to_vec());
            } else {
                self.schedule(at, stage, frame.to_vec());
            }
        }
        self.out = out;
        self.out.clear();
    }

    /// A frame crosses the switch (now) into its recipients' ports.
    fn switch(&mut self, from: Node, to: Option<Node>, frame: Vec<u8>) {
        match to {
            Some(to) => self.egress(to, frame),
            None => {
                let mut all: Vec<Node> = (0..self.sleds.len()).map(Node::Sled).collect();
                all.push(Node::Server);
                all.retain(|&n| n != from);
                for to in all {
                    self.egress(to, frame.clone());
                }
            }
        }
    }

    /// A frame enters `to`'s switch port (now), then the wire's faults.
    fn egress(&mut self, to: Node, frame: Vec<u8>) {
        let Some(left) = self.net.forward(to, self.now, frame.len()) else {
            return;
        };
        let (loss, dup) = match to {
            Node::Server => (self.faults.loss_to_server, self.faults.duplicate_to_server),
            Node::Sled(_) => (self.faults.loss_to_sled, self.faults.duplicate_to_sled),
        };
        if self.rng.chance(loss) {
            return;
        }
        let copies = if self.rng.chance(dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = left + self.latency;
            if self.rng.chance(self.faults.reorder) {
                let by = self.faults.reorder_by.as_nanos() as u64;
                at += Duration::from_nanos(self.rng.below(by.max(1)));
            }
            self.schedule(at, Stage::Arrive(to), frame.clone());
        }
    }

    /// Powers sled `i` on at `at` instead of at once: it receives nothing
    /// before and says its first HELLO then.
    pub fn power_on_at(&mut self, i: usize, at: Duration) {
        self.wake[i] = at;
        self.power_on[i] = at;
    }

    /// Unplugs sled `i` (its cable, or it dies): from now on it neither
    /// sends nor receives anything.
    pub fn unplug(&mut self, i: usize) {
        self.unplugged[i] = true;
        self.wake[i] = Duration::MAX;
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
            let next_frame = self.queue.peek().map(|Reverse(f)| f.at);
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
                let Some(Reverse(f)) = self.queue.pop() else {
                    continue;
                };
                match f.stage {
                    Stage::Switch { from, to } => self.switch(from, to, f.frame),
                    Stage::Arrive(Node::Server) => {
                        if let Some(server) = &mut self.server {
                            server.handle(self.now, &f.frame, &mut self.out);
                            self.events.extend(server.drain_events());
                            self.next_server_poll =
                                self.next_server_poll.min(server.next_deadline(self.now));
                            self.transmit(Node::Server);
                        }
                    }
                    Stage::Arrive(Node::Sled(i))
                        if self.unplugged[i] || self.now < self.power_on[i] => {}
                    Stage::Arrive(Node::Sled(i)) => {
                        self.sleds[i].handle(self.now, &f.frame, &mut self.out);
                        self.wake[i] = self.sleds[i].next_wakeup(self.now);
                        self.transmit(Node::Sled(i));
                    }
                }
            } else if next == next_sled {
                self.sleds[i].poll(self.now, &mut self.out);
                self.wake[i] = self.sleds[i].next_wakeup(self.now);
                self.transmit(Node::Sled(i));
            } else {
                if let Some(server) = &mut self.server {
                    server.poll(self.now, &mut self.out);
                    self.events.extend(server.drain_events());
                    self.next_server_poll = server
                        .next_deadline(self.now)
                        .max(self.now + Duration::from_micros(5));
                    self.transmit(Node::Server);
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
