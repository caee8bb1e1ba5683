//! The boot server's protocol logic, without I/O: fed with (time, frame),
//! it puts the frames to send in an [`Outbox`] and reports [`Event`]s. It
//! opens no sockets and reads no clock; link backends and simulations
//! drive it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::event::Event;
use crate::image::{Catalog, Choice, ServedImage};
use crate::wire::{self, EthFrame, Kind, Mac, Repr, DATA_CHUNK, ETHERTYPE};
use crate::Outbox;

/// Limits that keep a misbehaving segment from exhausting the server, and
/// the server's loss recovery.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A session not heard from for this long is dropped.
    pub idle_timeout: Duration,
    /// At most this many sessions at once. When full, a new sled takes the
    /// place of the longest-silent one that never sent a READ; if every
    /// session is booting, it is ignored until one ends.
    pub max_sessions: usize,
    /// New-batch READs a second one sled may send; more are dropped. Each
    /// is 128 KiB of image: 5,000 a second is 655 MB/s, more than a sled
    /// can take.
    pub max_reads_per_sec: u32,
    /// Re-request READs a second one sled may send (a client re-requests a
    /// slot at most once a second); more are dropped.
    pub max_rereads_per_sec: u32,
    /// After a batch, if the sled sends no READ for this long, send the
    /// batch again (and the next one): a lost frame then costs the sled
    /// this, not the client's 1 s timer. Zero turns it off.
    pub resend_after: Duration,
    /// How many times to resend one batch (each wait twice the last).
    pub resend_rounds: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(60),
            max_sessions: 1024,
            max_reads_per_sec: 5_000,
            max_rereads_per_sec: 64,
            resend_after: Duration::from_millis(20),
            resend_rounds: 3,
        }
    }
}

/// One sled being served.
#[derive(Debug)]
pub struct Session {
    pub image: Arc<ServedImage>,
    pub started: Duration,
    pub last_seen: Duration,
    /// Bytes of image sent in DATA frames, retransmissions included.
    pub sent: u64,
    /// The highest image offset served so far (progress).
    pub high: u64,
    /// Batches resent because the sled seemed stuck.
    pub resent_batches: u64,
    /// Re-requested blocks and resent batches not yet reported.
    pending_retransmits: u64,
    pending_resent: u64,
    last_retransmit_report: Option<Duration>,
    /// The last dense batch served, for resending.
    batch: Option<Batch>,
    /// Whether the sled has sent a READ (it is booting, not just asking).
    reading: bool,
    /// READ rate limits: new batches, and re-requests.
    reads: Bucket,
    rereads: Bucket,
    dropped_reads: u64,
    last_drop_report: Option<Duration>,
}

/// A token bucket: `rate` a second, a tenth of a second's worth (at least
/// 16) at once.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

impl Bucket {
    fn full(now: Duration) -> Bucket {
        Bucket {
            tokens: f64::INFINITY,
            at: now,
        }
    }

    fn take(&mut self, now: Duration, rate: f64) -> bool {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min((rate / 10.0).max(16.0));
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// A dense batch and its resending state.
#[derive(Clone, Copy, Debug)]
struct Batch {
    first: u64,
    sent_at: Duration,
    rounds: u32,
}

/// Sends DATA for `offsets` of `image` to `mac`. A dense batch within the
/// image (`dense_from`) is read from the image in one piece.
#[allow(clippy::too_many_arguments)]
fn send_data(
    scratch: &mut [u8],
    image: &ServedImage,
    from: Mac,
    mac: Mac,
    offsets: &[u64],
    dense_from: Option<u64>,
    session: &mut Session,
    out: &mut Outbox,
    events: &mut Vec<Event>,
) {
    let size = image.size();
    let mut base = 0u64;
    let mut loaded = 0usize;
    if let Some(first) = dense_from.filter(|&f| f < size) {
        let len = (size - first).min(scratch.len() as u64) as usize;
        if let Err(e) = image.read_exact_at(&mut scratch[..len], first) {
            events.push(Event::ReadError {
                mac,
                image: image.name.clone(),
                error: e.to_string(),
            });
            return;
        }
        base = first;
        loaded = len;
    }
    for &offset in offsets {
        // Offsets at or past the end get an empty DATA: the client's EOF.
        let len = if offset >= size {
            0
        } else {
            (size - offset).min(DATA_CHUNK as u64) as usize
        };
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if offset >= base && offset - base + len as u64 <= loaded as u64 {
            let at = (offset - base) as usize;
            &scratch[at..at + len]
        } else {
            let buf = &mut scratch[..len];
            if let Err(e) = image.read_exact_at(buf, offset) {
                events.push(Event::ReadError {
                    mac,
                    image: image.name.clone(),
                    error: e.to_string(),
                });
                continue;
            }
            // The scratch buffer no longer holds the batch.
            loaded = 0;
            buf
        };
        out.push(mac, from, &Repr::Data { offset, bytes });
        session.sent += len as u64;
        session.high = session
            .high
            .max(offset.saturating_add(len as u64).min(size));
    }
}

/// The server state machine.
pub struct Server {
    mac: Mac,
    catalog: Catalog,
    sessions: HashMap<Mac, Session>,
    limits: Limits,
    events: Vec<Event>,
    scratch: Vec<u8>,
    finished: u64,
}

impl Server {
    pub fn new(mac: Mac, catalog: Catalog, limits: Limits) -> Server {
        Server {
            mac,
            catalog,
            sessions: HashMap::new(),
            limits,
            events: Vec::new(),
            scratch: vec![0u8; wire::READ_SLOTS * DATA_CHUNK],
            finished: 0,
        }
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    /// Sessions in progress, for progress displays.
    pub fn sessions(&self) -> impl Iterator<Item = (&Mac, &Session)> {
        self.sessions.iter()
    }

    /// How many sleds have sent FINISHED.
    pub fn finished_count(&self) -> u64 {
        self.finished
    }

    /// Takes the events reported since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Handles one received Ethernet frame at time `now`.
    pub fn handle(&mut self, now: Duration, frame: &[u8], out: &mut Outbox) {
        let Ok(eth) = EthFrame::parse(frame) else {
            return;
        };
        if eth.ethertype != ETHERTYPE || eth.src == self.mac {
            return;
        }
        let mac = eth.src;
        let repr = match Repr::parse(eth.payload) {
            Ok(r) => r,
            Err(e) => {
                self.events.push(Event::Ignored {
                    mac,
                    why: format!("malformed frame: {e}"),
                });
                return;
            }
        };
        // Only HELLO is broadcast; anything else must be for us.
        if repr.kind() != Kind::Hello && eth.dst != self.mac {
            return;
        }
        match repr {
            Repr::Hello { .. } => self.hello(now, mac, out),
            Repr::Read(read) => self.read(now, mac, &read, out),
            Repr::Finished => self.finish(now, mac),
            Repr::Offer(_) | Repr::Data { .. } | Repr::Reset => {
                self.events.push(Event::Ignored {
                    mac,
                    why: format!("{} is a server's frame", repr.kind().name()),
                });
            }
        }
    }

    fn hello(&mut self, now: Duration, mac: Mac, out: &mut Outbox) {
        self.events.push(Event::Hello { mac });
        let image = match self.catalog.choose(mac) {
            Choice::Serve(img) => img,
            Choice::Refused => {
                self.events.push(Event::Refused { mac });
                return;
            }
            Choice::Unavailable { image } => {
                self.events.push(Event::Ignored {
                    mac,
                    why: format!("HELLO: image {image} is unavailable"),
                });
                return;
            }
        };
        if !self.sessions.contains_key(&mac) && !self.make_room(now) {
            self.events.push(Event::Ignored {
                mac,
                why: format!(
                    "HELLO: {} sessions already, all of them booting",
                    self.sessions.len()
                ),
            });
            return;
        }
        out.push(mac, self.mac, &Repr::Offer(image.offer));
        self.events.push(Event::Offer {
            mac,
            image: image.name.clone(),
            size: image.size(),
        });
        // A HELLO starts the boot over: the sled gets the image on offer now.
        self.sessions.insert(mac, Session::new(image, now));
    }

    fn read(&mut self, now: Duration, mac: Mac, read: &wire::Read, out: &mut Outbox) {
        if !self.sessions.contains_key(&mac) {
            // No session: the server restarted (or expired it) mid-boot.
            // Serve the sled's image rather than kill the boot.
            match self.catalog.choose(mac) {
                Choice::Serve(img) => {
                    if !self.make_room(now) {
                        self.events.push(Event::Ignored {
                            mac,
                            why: format!("READ: {} sessions already", self.sessions.len()),
                        });
                        return;
                    }
                    self.events.push(Event::Resumed {
                        mac,
                        image: img.name.clone(),
                    });
                    self.sessions.insert(mac, Session::new(img, now));
                }
                choice => {
                    let reason = match choice {
                        Choice::Refused => "READ from a sled this server does not serve".into(),
                        Choice::Unavailable { image } => format!("image {image} is unavailable"),
                        Choice::Serve(_) => unreachable!(),
                    };
                    out.push(mac, self.mac, &Repr::Reset);
                    self.events.push(Event::Reset { mac, reason });
                    return;
                }
            }
        }
        let Some(session) = self.sessions.get_mut(&mac) else {
            return;
        };
        session.last_seen = now;
        session.reading = true;
        // A new batch is dense: 128 consecutive offsets at the slot indices.
        // Anything else is a re-request of lost frames.
        let dense = read.count == wire::READ_SLOTS as u64
            && read
                .offsets
                .windows(2)
                .all(|w| w[1] == w[0].wrapping_add(DATA_CHUNK as u64));
        // Per-sled rate limits (token buckets), new batches and re-requests
        // apart: a client re-requests a slot at most once a second, so a
        // flood of scattered READs from one MAC costs little.
        let (bucket, rate, what) = if dense {
            (&mut session.reads, self.limits.max_reads_per_sec, "READs")
        } else {
            (
                &mut session.rereads,
                self.limits.max_rereads_per_sec,
                "re-request READs",
            )
        };
        if !bucket.take(now, rate as f64) {
            session.dropped_reads += 1;
            let due = session
                .last_drop_report
                .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
            if due {
                self.events.push(Event::Ignored {
                    mac,
                    why: format!(
                        "{what} over the limit of {rate} a second: {} dropped so far",
                        session.dropped_reads
                    ),
                });
                session.last_drop_report = Some(now);
            }
            return;
        }
        let image = session.image.clone();
        let offsets: Vec<u64> = read.requested().collect();
        if dense {
            session.batch = Some(Batch {
                first: read.offsets[0],
                sent_at: now,
                rounds: 0,
            });
        } else {
            session.pending_retransmits += offsets.len() as u64;
            // The client is re-requesting: it has what it will get of
            // the batch otherwise; stop resending on its behalf.
            if let Some(b) = &mut session.batch {
                b.sent_at = now;
            }
        }
        let first = if dense { Some(read.offsets[0]) } else { None };
        send_data(
            &mut self.scratch,
            &image,
            self.mac,
            mac,
            &offsets,
            first,
            session,
            out,
            &mut self.events,
        );
        session.report_retransmits(now, mac, &mut self.events);
    }

    /// Makes room for one more session if the limit is reached, by
    /// dropping the longest-silent session that never sent a READ (a HELLO
    /// flood cannot lock real sleds out). False if every session is busy.
    fn make_room(&mut self, _now: Duration) -> bool {
        if self.sessions.len() < self.limits.max_sessions {
            return true;
        }
        let victim = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.reading)
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(m, _)| *m);
        match victim {
            Some(m) => {
                self.sessions.remove(&m);
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, now: Duration, mac: Mac) {
        match self.sessions.remove(&mac) {
            Some(s) => {
                self.finished += 1;
                self.events.push(Event::finished(
                    mac,
                    s.image.name.clone(),
                    s.image.size(),
                    now.saturating_sub(s.started),
                ));
            }
            None => self.events.push(Event::Ignored {
                mac,
                why: "FINISHED without a session".into(),
            }),
        }
    }

    /// Reloads images whose files changed on disk (call about once a
    /// second). Sessions keep the image they were offered.
    pub fn refresh_images(&mut self) {
        for r in self.catalog.refresh() {
            self.events.push(match r {
                crate::image::Reload::Loaded { image, .. } => Event::Reloaded { image },
                crate::image::Reload::Failed { image, error } => {
                    Event::ImageFailed { image, error }
                }
            });
        }
    }

    /// Timers: resends batches a sled seems stuck on (see [`Limits`]), and
    /// drops sessions idle for longer than the limit. Call it at least as
    /// often as [`Server::next_deadline`] says.
    pub fn poll(&mut self, now: Duration, out: &mut Outbox) {
        let timeout = self.limits.idle_timeout;
        let events = &mut self.events;
        self.sessions.retain(|mac, s| {
            let keep = now.saturating_sub(s.last_seen) < timeout;
            if !keep {
                events.push(Event::Expired {
                    mac: *mac,
                    image: s.image.name.clone(),
                });
            }
            keep
        });
        let after = self.limits.resend_after;
        if after.is_zero() {
            return;
        }
        for (mac, s) in self.sessions.iter_mut() {
            let Some(b) = &mut s.batch else { continue };
            if b.rounds >= self.limits.resend_rounds || now < b.sent_at + after * (1 << b.rounds) {
                continue;
            }
            // No READ since this batch went out: the sled is waiting for
            // frames that were lost, or its next READ was. Send the batch
            // again and the one after it; the client keeps what it waits
            // for and drops the rest.
            b.rounds += 1;
            b.sent_at = now;
            let first = b.first;
            let image = s.image.clone();
            let batch = (wire::READ_SLOTS * DATA_CHUNK) as u64;
            for start in [first, first.saturating_add(batch)] {
                let offsets: Vec<u64> = (0..wire::READ_SLOTS as u64)
                    .map(|i| start.saturating_add(i * DATA_CHUNK as u64))
                    .collect();
                send_data(
                    &mut self.scratch,
                    &image,
                    self.mac,
                    *mac,
                    &offsets,
                    Some(start),
                    s,
                    out,
                    events,
                );
            }
            s.resent_batches += 1;
            s.pending_resent += 1;
            s.report_retransmits(now, *mac, events);
        }
    }

    /// The latest time [`Server::poll`] should next run.
    pub fn next_deadline(&self, now: Duration) -> Duration {
        let mut at = now + Duration::from_secs(1);
        if !self.limits.resend_after.is_zero() {
            for s in self.sessions.values() {
                if let Some(b) = &s.batch {
                    if b.rounds < self.limits.resend_rounds {
                        at = at.min(b.sent_at + self.limits.resend_after * (1 << b.rounds));
                    }
                }
            }
        }
        at.max(now)
    }
}

impl Session {
    /// One event a second at most for a sled's retransmissions.
    fn report_retransmits(&mut self, now: Duration, mac: Mac, events: &mut Vec<Event>) {
        let due = self
            .last_retransmit_report
            .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
        if due && (self.pending_retransmits > 0 || self.pending_resent > 0) {
            events.push(Event::Retransmit {
                mac,
                blocks: self.pending_retransmits,
                resent: self.pending_resent,
            });
            self.pending_retransmits = 0;
            self.pending_resent = 0;
            self.last_retransmit_report = Some(now);
        }
    }

    fn new(image: Arc<ServedImage>, now: Duration) -> Session {
        Session {
            image,
            started: now,
            last_seen: now,
            sent: 0,
            high: 0,
            resent_batches: 0,
            pending_retransmits: 0,
            pending_resent: 0,
            last_retransmit_report: None,
            batch: None,
            reading: false,
            reads: Bucket::full(now),
            rereads: Bucket::full(now),
            dropped_reads: 0,
            last_drop_report: None,
        }
    }
}
