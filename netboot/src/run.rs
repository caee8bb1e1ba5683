//! The run loops: the server state machine and the sled emulator driven
//! over a real [`Link`], with the wall clock.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::link::{Link, RecvBatch};
use crate::server::{Event, Server};
use crate::sim::Rng;
use crate::sled::Sled;
use crate::wire::Mac;
use crate::Outbox;

/// When the server loop stops.
#[derive(Default)]
pub struct ServeOptions<'a> {
    /// Stop after this many sleds sent FINISHED (`bootserver -s`: 1).
    pub finished: Option<u64>,
    /// Give up after this long (`bootserver -t`).
    pub timeout: Option<Duration>,
    /// Stop when this becomes true (Ctrl-C, tests).
    pub stop: Option<&'a AtomicBool>,
}

/// Why the server loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    Finished,
    TimedOut,
    Stopped,
}

/// What the server loop reports to.
pub trait Observer {
    /// Every event, with the time since start.
    fn event(&mut self, event: &Event, server: &Server, now: Duration);
    /// About every 200 ms, for progress displays.
    fn tick(&mut self, _server: &Server, _now: Duration) {}
}

impl<F: FnMut(&Event, &Server, Duration)> Observer for F {
    fn event(&mut self, event: &Event, server: &Server, now: Duration) {
        self(event, server, now)
    }
}

/// Serves until `opts` says stop, reporting to `observer`.
pub fn serve(
    link: &mut dyn Link,
    server: &mut Server,
    opts: &ServeOptions<'_>,
    observer: &mut dyn Observer,
) -> io::Result<ServeEnd> {
    let start = Instant::now();
    let mut batch = RecvBatch::new(64);
    let mut out = Outbox::new();
    let mut next_poll = Duration::from_secs(1);
    let mut next_tick = Duration::ZERO;
    loop {
        let now = start.elapsed();
        if opts.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Ok(ServeEnd::Stopped);
        }
        if opts.timeout.is_some_and(|t| now >= t) {
            return Ok(ServeEnd::TimedOut);
        }
        // The server's pacing asks for waits of tens of microseconds.
        let wait = server
            .next_deadline(now)
            .saturating_sub(now)
            .clamp(Duration::from_micros(20), Duration::from_millis(50));
        link.recv(&mut batch, wait)?;
        let now = start.elapsed();
        for frame in batch.frames() {
            server.handle(now, frame, &mut out);
            if out.len() >= 256 {
                link.send(&out)?;
                out.clear();
            }
        }
        server.poll(now, &mut out);
        if !out.is_empty() {
            link.send(&out)?;
            out.clear();
        }
        if now >= next_poll {
            server.refresh_images();
            next_poll = now + Duration::from_secs(1);
        }
        for e in server.drain_events() {
            observer.event(&e, server, now);
        }
        if now >= next_tick {
            observer.tick(server, now);
            next_tick = now + Duration::from_millis(200);
        }
        if opts.finished.is_some_and(|n| server.finished_count() >= n) {
            drain(link, server, start, &mut out)?;
            return Ok(ServeEnd::Finished);
        }
    }
}

/// Sends the frames still waiting for their pace (other sleds' batches in
/// flight), for up to a second, before the server loop returns.
fn drain(
    link: &mut dyn Link,
    server: &mut Server,
    start: Instant,
    out: &mut Outbox,
) -> io::Result<()> {
    let until = start.elapsed() + Duration::from_secs(1);
    while server.has_queued() && start.elapsed() < until {
        let now = start.elapsed();
        let wait = server.next_deadline(now).saturating_sub(now);
        std::thread::sleep(wait.min(Duration::from_millis(1)));
        server.poll(start.elapsed(), out);
        if !out.is_empty() {
            link.send(out)?;
            out.clear();
        }
    }
    Ok(())
}

/// Faults the emulator injects on its own link, seeded.
#[derive(Clone, Debug, Default)]
pub struct SledFaults {
    /// Probability that a received frame is dropped.
    pub loss_rx: f64,
    /// Probability that a frame to send is dropped.
    pub loss_tx: f64,
    /// Probability that a frame to send goes out twice.
    pub duplicate_tx: f64,
    pub seed: u64,
}

/// How long the emulator keeps polling without sleeping after a frame.
const SPIN: Duration = Duration::from_micros(300);

/// Runs `sleds` (distinct MACs, sharing `link`) until each has an outcome
/// or `timeout` passes; returns whether all finished. `progress` is called
/// about every 200 ms.
pub fn run_sleds(
    link: &mut dyn Link,
    sleds: &mut [Sled],
    faults: &SledFaults,
    timeout: Duration,
    progress: &mut dyn FnMut(&[Sled], Duration),
) -> io::Result<bool> {
    let start = Instant::now();
    let index: HashMap<Mac, usize> = sleds
        .iter()
        .enumerate()
        .map(|(i, s)| (s.mac(), i))
        .collect();
    let mut rng = Rng::new(faults.seed);
    let mut batch = RecvBatch::new(64);
    batch.accept_other_hosts = true;
    let mut out = Outbox::new();
    let mut wire = Outbox::new();
    let mut next_progress = Duration::ZERO;
    let mut last_frame = Duration::ZERO;
    loop {
        let now = start.elapsed();
        if now >= next_progress {
            progress(sleds, now);
            next_progress = now + Duration::from_millis(200);
        }
        if sleds.iter().all(|s| s.outcome().is_some()) {
            progress(sleds, now);
            return Ok(true);
        }
        if now >= timeout {
            progress(sleds, now);
            return Ok(false);
        }
        for s in sleds.iter_mut() {
            s.poll(now, &mut out);
        }
        send_with_faults(link, &out, &mut wire, faults, &mut rng)?;
        out.clear();
        let wake = sleds
            .iter()
            .map(|s| s.next_wakeup(now))
            .min()
            .unwrap_or(now)
            .saturating_sub(now);
        // While frames are flowing, poll without sleeping: a batch's 128
        // DATA frames arrive over a few hundred microseconds, and a sleep
        // and wake-up per handful of them costs more than it saves.
        let flowing = now.saturating_sub(last_frame) < SPIN;
        let timeout = if flowing {
            Duration::ZERO
        } else {
            wake.max(Duration::from_millis(1))
        };
        if link.recv(&mut batch, timeout)? > 0 {
            last_frame = start.elapsed();
        }
        let now = start.elapsed();
        for frame in batch.frames() {
            if rng.chance(faults.loss_rx) || frame.len() < 6 {
                continue;
            }
            let mut dst = [0u8; 6];
            dst.copy_from_slice(&frame[..6]);
            if Mac(dst).is_broadcast() {
                // Every sled's NIC takes broadcasts (HELLOs of the other
                // sleds included: the client ignores them).
                for s in sleds.iter_mut() {
                    s.handle(now, frame, &mut out);
                }
            } else if let Some(&i) = index.get(&Mac(dst)) {
                sleds[i].handle(now, frame, &mut out);
            }
        }
        send_with_faults(link, &out, &mut wire, faults, &mut rng)?;
        out.clear();
    }
}

fn send_with_faults(
    link: &mut dyn Link,
    out: &Outbox,
    wire: &mut Outbox,
    faults: &SledFaults,
    rng: &mut Rng,
) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    if faults.loss_tx == 0.0 && faults.duplicate_tx == 0.0 {
        return link.send(out);
    }
    wire.clear();
    for f in out.frames() {
        if rng.chance(faults.loss_tx) {
            continue;
        }
        wire.push_raw(f);
        if rng.chance(faults.duplicate_tx) {
            wire.push_raw(f);
        }
    }
    link.send(wire)
}
