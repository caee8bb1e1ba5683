//! A rack booting at once, simulated: `n` sleds fetch one image through a
//! [`Topology`], and [`RackReport`] says how the server did against the
//! network's floor. `cargo xtask bench rack` prints these; tests run them
//! at smaller sizes.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Faults, Sim, Topology};
use crate::event::Event;
use crate::image::{Catalog, ServedImage};
use crate::server::{Limits, Server};
use crate::sled::{HashMemo, Outcome, Sled};
use crate::wire::Mac;

/// One simulated rack boot.
#[derive(Clone, Debug)]
pub struct Rack {
    pub topology: Topology,
    pub sleds: usize,
    /// Image bytes (a multiple of 128 KiB).
    pub size: u64,
    /// Probability of losing a frame, each way.
    pub loss: f64,
    /// Time a sled's loop is blocked per dropped-DATA console line.
    pub console: Duration,
    pub limits: Limits,
    pub seed: u64,
}

/// How a simulated rack boot went.
#[derive(Clone, Debug)]
pub struct RackReport {
    /// Until the last sled's outcome.
    pub wall: Duration,
    /// The bottleneck link's time for the DATA the sleds need.
    pub floor: Duration,
    /// Sleds that booted (the SHA-256 matched).
    pub booted: usize,
    /// DATA frames the server sent, and how many the sleds needed.
    pub data_sent: u64,
    pub data_needed: u64,
    /// Dropped-DATA console lines, per sled: mean and most.
    pub console_lines_mean: f64,
    pub console_lines_max: u64,
    /// Frames the switch ports dropped for want of buffer.
    pub buffer_drops: u64,
    /// RETRANSMIT events the server reported.
    pub retransmit_events: u64,
    /// The longest boot of a sled that booted, from its OFFER to its
    /// FINISHED (with broadcast cohorts, the wall time less the wait for
    /// the OFFER).
    pub slowest_boot: Duration,
}

impl RackReport {
    /// Wall time over the floor.
    pub fn ratio(&self) -> f64 {
        self.wall.as_secs_f64() / self.floor.as_secs_f64().max(1e-12)
    }

    /// DATA frames beyond those needed, as a percentage of those needed.
    pub fn extra_data_percent(&self) -> f64 {
        self.data_sent.saturating_sub(self.data_needed) as f64 * 100.0
            / self.data_needed.max(1) as f64
    }
}

/// An image of `size` bytes that does not compress or repeat.
pub fn test_image(size: u64, seed: u64) -> Vec<u8> {
    let mut rng = super::Rng::new(seed);
    let mut v = Vec::with_capacity(size as usize);
    while (v.len() as u64) < size {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(size as usize);
    v
}

impl Rack {
    /// Defaults: no loss, no console cost, the server's default limits
    /// with its link's rate (as `bootserver` takes it from the interface).
    pub fn new(topology: Topology, sleds: usize, size: u64) -> Rack {
        let rate = match &topology {
            Topology::Ideal => None,
            Topology::Segment { rate } => Some(*rate),
            Topology::Switch { server, .. } => Some(*server),
        };
        Rack {
            topology,
            sleds,
            size,
            loss: 0.0,
            console: Duration::ZERO,
            limits: Limits {
                rate,
                ..Limits::default()
            },
            seed: 1,
        }
    }

    /// Boots the rack; an error if the image is not servable (its size).
    pub fn run(&self) -> Result<RackReport, String> {
        let bytes = test_image(self.size, self.seed);
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        let image = ServedImage::from_memory("rack", bytes).map_err(|e| e.to_string())?;
        let mut catalog = Catalog::new();
        let i = catalog.add(image);
        catalog.set_default(Some(i));
        let server = Server::new(Mac([2, 0, 0, 0, 0, 0xfe]), catalog, self.limits.clone());
        let memo = HashMemo::shared();
        let sleds = (0..self.sleds)
            .map(|i| {
                let mac = Mac([2, 0, 0, 1, (i >> 8) as u8, i as u8]);
                Sled::new(mac, sha)
                    .with_console(self.console)
                    .with_hash_memo(memo.clone())
            })
            .collect();
        let faults = Faults::each_way(self.loss, 0.0);
        let mut sim = Sim::new(server, sleds, faults, self.seed).on(self.topology.clone());
        // Generous: a whole minute of virtual time past a 10 % loss rate.
        let deadline =
            self.topology.floor(&vec![self.size; self.sleds]) * 20 + Duration::from_secs(60);
        sim.run_until(deadline, |s| s.sleds.iter().all(|s| s.outcome().is_some()));
        let booted = sim
            .sleds
            .iter()
            .filter(|s| matches!(s.outcome(), Some(Outcome::Booted { .. })))
            .count();
        let lines: Vec<u64> = sim.sleds.iter().map(|s| s.stats.data_dropped).collect();
        let slowest_boot = sim
            .sleds
            .iter()
            .filter_map(|s| match s.outcome() {
                Some(Outcome::Booted { elapsed, .. }) => Some(*elapsed),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        Ok(RackReport {
            wall: sim.now,
            floor: self.topology.floor(&vec![self.size; self.sleds]),
            booted,
            data_sent: sim.data_sent,
            data_needed: self.size.div_ceil(crate::wire::DATA_CHUNK as u64) * self.sleds as u64,
            console_lines_mean: lines.iter().sum::<u64>() as f64 / lines.len().max(1) as f64,
            console_lines_max: lines.iter().copied().max().unwrap_or(0),
            buffer_drops: sim.net.buffer_drops(),
            retransmit_events: sim
                .events
                .iter()
                .filter(|e| matches!(e, Event::Retransmit { .. }))
                .count() as u64,
            slowest_boot,
        })
    }
}
