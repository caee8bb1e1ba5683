//! The simulator's network: links with a line rate and a drop-tail buffer,
//! and a switch with one egress queue per port.
//!
//! Every host (the server, each sled) has a port of its own: its NIC, which
//! serializes its frames at the link's rate. Its queue is the host's (the
//! socket buffer and qdisc): a sender that outruns its link waits, it does
//! not lose frames, so the server learns of a busy link only from time.
//! Frames then cross the switch into the recipient's egress port, which
//! has a finite buffer: a frame that finds it full is dropped (drop-tail),
//! as a real switch port does. Each frame costs its Ethernet length on the
//! wire ([`wire::wire_len`]: minimum frame, preamble, FCS, inter-frame gap).
//!
//! Topologies ([`Topology`]):
//! - `Ideal`: no rate, no queue, only latency (the protocol alone).
//! - `Segment`: one bottleneck for everything: the server's link at
//!   `rate`, the sleds beyond it unlimited, as a `tc tbf`-shaped link on
//!   the server's side of a bridge.
//! - `Switch`: the server's port at one rate, each sled's port at another,
//!   every egress port with `buffer` bytes.

use std::time::Duration;

use crate::pace::Rate;
use crate::wire;

/// One direction of a link: a rate (`None`: instantaneous) and a buffer in
/// bytes (`None`: the sending host's own queue, which never drops).
#[derive(Clone, Debug, Default)]
pub struct Port {
    rate: Option<Rate>,
    buffer: Option<u64>,
    busy_until: Duration,
    pub stats: PortStats,
}

/// What crossed a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames sent on, and their wire bytes.
    pub frames: u64,
    pub wire_bytes: u64,
    /// Frames dropped because the buffer was full.
    pub drops: u64,
    /// The most bytes that ever waited in the buffer.
    pub max_backlog: u64,
}

impl Port {
    fn new(rate: Option<Rate>, buffer: Option<u64>) -> Port {
        Port {
            rate,
            buffer,
            ..Port::default()
        }
    }

    /// A frame of `len` bytes arrives at `at` (never earlier than the
    /// last arrival): when its last bit has left, or `None` if the buffer
    /// had no room.
    pub fn offer(&mut self, at: Duration, len: usize) -> Option<Duration> {
        let wire = wire::wire_len(len) as u64;
        let Some(rate) = self.rate else {
            self.stats.frames += 1;
            self.stats.wire_bytes += wire;
            return Some(at);
        };
        let backlog = if self.busy_until > at {
            rate.bytes_in(self.busy_until - at).round() as u64
        } else {
            0
        };
        if self.buffer.is_some_and(|b| backlog + wire > b) {
            self.stats.drops += 1;
            return None;
        }
        self.stats.max_backlog = self.stats.max_backlog.max(backlog);
        self.stats.frames += 1;
        self.stats.wire_bytes += wire;
        self.busy_until = self.busy_until.max(at) + rate.time_for(wire);
        Some(self.busy_until)
    }
}

/// How the server and sleds are connected.
#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    /// Frames arrive after the simulator's latency, whatever the load.
    Ideal,
    /// A shared segment: the server's link at `rate` carries everything.
    Segment { rate: Rate },
    /// A switch: the server's port at `server`, each sled's at `sled`,
    /// each egress port with a drop-tail buffer of `buffer` bytes.
    Switch {
        server: Rate,
        sled: Rate,
        buffer: u64,
    },
}

impl Topology {
    /// The least time the bottleneck link needs for the DATA frames that
    /// boot sleds with images of `sizes` bytes (each a multiple of 1024:
    /// one full frame per KiB, [`wire::wire_len`] each): the wall time no
    /// server can beat on this network.
    pub fn floor(&self, sizes: &[u64]) -> Duration {
        let bytes = |size: u64| size.div_ceil(wire::DATA_CHUNK as u64) * data_wire_len();
        let total: u64 = sizes.iter().map(|&s| bytes(s)).sum();
        let largest = sizes.iter().map(|&s| bytes(s)).max().unwrap_or(0);
        match self {
            Topology::Ideal => Duration::ZERO,
            Topology::Segment { rate } => rate.time_for(total),
            Topology::Switch { server, sled, .. } => {
                server.time_for(total).max(sled.time_for(largest))
            }
        }
    }

    /// A short description for tables: `segment 1gbit`,
    /// `switch 10gbit/1gbit 96KiB`.
    pub fn describe(&self) -> String {
        match self {
            Topology::Ideal => "ideal".into(),
            Topology::Segment { rate } => format!("segment {rate}"),
            Topology::Switch {
                server,
                sled,
                buffer,
            } => format!("switch {server}/{sled} {}KiB", buffer / 1024),
        }
    }
}

fn data_wire_len() -> u64 {
    wire::wire_len(wire::DATA_FRAME_LEN) as u64
}

/// A host on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Server,
    Sled(usize),
}

/// The ports of a topology: each host's NIC, and the switch's egress port
/// toward each host.
pub struct Network {
    pub topology: Topology,
    nics: Vec<Port>,
    egress: Vec<Port>,
}

impl Network {
    /// `topology` with `sleds` sleds.
    pub fn new(topology: Topology, sleds: usize) -> Network {
        let (server, sled, buffer) = match &topology {
            Topology::Ideal => (None, None, None),
            Topology::Segment { rate } => (Some(*rate), None, None),
            Topology::Switch {
                server,
                sled,
                buffer,
            } => (Some(*server), Some(*sled), Some(*buffer)),
        };
        let mut nics = vec![Port::new(server, None)];
        let mut egress = vec![Port::new(server, buffer)];
        for _ in 0..sleds {
            nics.push(Port::new(sled, None));
            egress.push(Port::new(sled, buffer));
        }
        Network {
            topology,
            nics,
            egress,
        }
    }

    fn index(node: Node) -> usize {
        match node {
            Node::Server => 0,
            Node::Sled(i) => i + 1,
        }
    }

    /// `from` starts sending a frame at `now`: when it reaches the switch.
    pub fn send(&mut self, from: Node, now: Duration, len: usize) -> Duration {
        // A host's queue has no limit: offer always succeeds.
        self.nics[Self::index(from)].offer(now, len).unwrap_or(now)
    }

    /// A frame reaches the switch at `at` for `to`: when it has left the
    /// switch toward `to`, or `None` if `to`'s port dropped it.
    pub fn forward(&mut self, to: Node, at: Duration, len: usize) -> Option<Duration> {
        self.egress[Self::index(to)].offer(at, len)
    }

    /// The server's NIC (what it sent) and the switch's port toward it.
    pub fn server_ports(&self) -> (&PortStats, &PortStats) {
        (&self.nics[0].stats, &self.egress[0].stats)
    }

    /// Frames every switch port dropped for want of buffer.
    pub fn buffer_drops(&self) -> u64 {
        self.egress.iter().map(|p| p.stats.drops).sum()
    }

    /// The most bytes that waited in any sled's switch port.
    pub fn max_sled_backlog(&self) -> u64 {
        self.egress[1..]
            .iter()
            .map(|p| p.stats.max_backlog)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_serializes_at_its_rate_and_drops_when_full() {
        // 1 Gbit/s, room for two full DATA frames.
        let mut p = Port::new(Some(Rate::GBIT), Some(2 * 1082));
        let at = Duration::ZERO;
        let t = |ns| Some(Duration::from_nanos(ns));
        assert_eq!(p.offer(at, wire::DATA_FRAME_LEN), t(8656));
        assert_eq!(p.offer(at, wire::DATA_FRAME_LEN), t(2 * 8656));
        // A third finds two frames' worth waiting: dropped.
        assert_eq!(p.offer(at, wire::DATA_FRAME_LEN), None);
        assert_eq!(p.stats.drops, 1);
        // Once one has left there is room again.
        assert_eq!(
            p.offer(Duration::from_nanos(8656), wire::DATA_FRAME_LEN),
            t(3 * 8656)
        );
        // A short frame is padded to 60 bytes, plus 24: 84 bytes, 672 ns.
        let mut q = Port::new(Some(Rate::GBIT), None);
        assert_eq!(q.offer(at, 26), t(672));
    }

    #[test]
    fn the_floor_is_the_bottleneck_links_time() {
        let mib64 = 64 << 20;
        let seg = Topology::Segment { rate: Rate::GBIT };
        // 65536 frames of 1082 bytes at 125 MB/s: 567.3 ms.
        assert_eq!(seg.floor(&[mib64]), Duration::from_nanos(65536 * 8656));
        assert_eq!(
            seg.floor(&[mib64; 32]),
            Duration::from_nanos(32 * 65536 * 8656)
        );
        let sw = Topology::Switch {
            server: Rate::gbit(10),
            sled: Rate::GBIT,
            buffer: 96 << 10,
        };
        // One sled: its own 1 GbE port; 32: the server's 10 GbE port.
        assert_eq!(sw.floor(&[mib64]), Duration::from_nanos(65536 * 8656));
        assert_eq!(
            sw.floor(&[mib64; 32]),
            Rate::gbit(10).time_for(32 * 65536 * 1082)
        );
    }
}
