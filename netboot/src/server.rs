//! The boot server's protocol logic, without I/O: fed with (time, frame),
//! it puts the frames to send in an [`Outbox`] and reports [`Event`]s. It
//! opens no sockets and reads no clock; link backends and simulations
//! drive it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::image::{Catalog, Choice, ServedImage};
use crate::wire::{self, EthFrame, Kind, Mac, Repr, DATA_CHUNK, ETHERTYPE};
use crate::Outbox;

/// Limits that keep a misbehaving segment from exhausting the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A session not heard from for this long is dropped.
    pub idle_timeout: Duration,
    /// At most this many sessions at once; HELLOs beyond it are ignored.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(60),
            max_sessions: 1024,
        }
    }
}

/// Something worth logging.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Hello {
        mac: Mac,
    },
    Offer {
        mac: Mac,
        image: String,
        size: u64,
    },
    /// A sled with no session (the server restarted mid-boot) asked for
    /// data: its boot continues from its image.
    Resumed {
        mac: Mac,
        image: String,
    },
    Finished {
        mac: Mac,
        image: String,
        elapsed: Duration,
        bytes: u64,
    },
    /// Re-requests from a sled (lost frames); one event per burst.
    Retransmit {
        mac: Mac,
        blocks: u64,
    },
    Reset {
        mac: Mac,
        reason: String,
    },
    /// A HELLO from a sled the configuration refuses: nothing is offered.
    Refused {
        mac: Mac,
    },
    Ignored {
        mac: Mac,
        why: String,
    },
    ReadError {
        mac: Mac,
        image: String,
        error: String,
    },
    Expired {
        mac: Mac,
        image: String,
    },
    /// An image file changed on disk and was verified: new boots get it.
    Reloaded {
        image: String,
    },
    /// An image file changed on disk and failed verification: it is not
    /// offered until it changes again.
    ImageFailed {
        image: String,
        error: String,
    },
}

impl Event {
    /// A short lower-case name for the event kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Hello { .. } => "hello",
            Event::Offer { .. } => "offer",
            Event::Resumed { .. } => "resumed",
            Event::Finished { .. } => "finished",
            Event::Retransmit { .. } => "retransmit",
            Event::Reset { .. } => "reset",
            Event::Refused { .. } => "refused",
            Event::Ignored { .. } => "ignored",
            Event::ReadError { .. } => "read-error",
            Event::Expired { .. } => "expired",
            Event::Reloaded { .. } => "reloaded",
            Event::ImageFailed { .. } => "image-failed",
        }
    }

    /// The event as one JSON object, with `t` (seconds since start).
    pub fn to_json(&self, t: Duration) -> serde_json::Value {
        use serde_json::json;
        let mut v = match self {
            Event::Hello { mac } | Event::Refused { mac } => json!({ "mac": mac.to_string() }),
            Event::Offer { mac, image, size } => {
                json!({ "mac": mac.to_string(), "image": image, "bytes": size })
            }
            Event::Resumed { mac, image } | Event::Expired { mac, image } => {
                json!({ "mac": mac.to_string(), "image": image })
            }
            Event::Finished {
                mac,
                image,
                elapsed,
                bytes,
            } => json!({
                "mac": mac.to_string(),
                "image": image,
                "bytes": bytes,
                "seconds": elapsed.as_secs_f64(),
                "mb_per_s": rate(*bytes, *elapsed),
            }),
            Event::Retransmit { mac, blocks } => {
                json!({ "mac": mac.to_string(), "blocks": blocks })
            }
            Event::Reset { mac, reason } => json!({ "mac": mac.to_string(), "reason": reason }),
            Event::Ignored { mac, why } => json!({ "mac": mac.to_string(), "why": why }),
            Event::ReadError { mac, image, error } => {
                json!({ "mac": mac.to_string(), "image": image, "error": error })
            }
            Event::Reloaded { image } => json!({ "image": image }),
            Event::ImageFailed { image, error } => json!({ "image": image, "error": error }),
        };
        v["event"] = self.kind().into();
        v["t"] = t.as_secs_f64().into();
        v
    }
}

/// MB/s (10^6 bytes per second).
fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// One log line per event.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Hello { mac } => write!(f, "HELLO from {mac}"),
            Event::Offer { mac, image, size } => write!(f, "OFFER {image} ({size} bytes) to {mac}"),
            Event::Resumed { mac, image } => {
                write!(
                    f,
                    "RESUMED {mac}: serving {image} to a boot already under way"
                )
            }
            Event::Finished {
                mac,
                image,
                elapsed,
                bytes,
            } => write!(
                f,
                "FINISHED {mac}: {image}, {bytes} bytes in {:.2} s ({:.1} MB/s)",
                elapsed.as_secs_f64(),
                rate(*bytes, *elapsed)
            ),
            Event::Retransmit { mac, blocks } => {
                write!(f, "RETRANSMIT {mac}: {blocks} blocks asked for again")
            }
            Event::Reset { mac, reason } => write!(f, "RESET {mac}: {reason}"),
            Event::Refused { mac } => write!(f, "REFUSED {mac}: not in the configuration"),
            Event::Ignored { mac, why } => write!(f, "IGNORED frame from {mac}: {why}"),
            Event::ReadError { mac, image, error } => {
                write!(f, "READ ERROR {mac}: {image}: {error}")
            }
            Event::Expired { mac, image } => write!(f, "EXPIRED {mac}: {image} (idle)"),
            Event::Reloaded { image } => write!(f, "RELOADED {image}: changed on disk, verified"),
            Event::ImageFailed { image, error } => {
                write!(f, "IMAGE FAILED {image}: {error} (not offered)")
            }
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
    /// Re-requested blocks not yet reported.
    pending_retransmits: u64,
    last_retransmit_report: Option<Duration>,
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
        if !self.sessions.contains_key(&mac) && self.sessions.len() >= self.limits.max_sessions {
            self.events.push(Event::Ignored {
                mac,
                why: format!("HELLO: {} sessions already", self.sessions.len()),
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
                    if self.sessions.len() >= self.limits.max_sessions {
                        self.events.push(Event::Ignored {
                            mac,
                            why: "READ: too many sessions".into(),
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
        let image = session.image.clone();
        let size = image.size();

        let offsets: Vec<u64> = read.requested().collect();
        // A re-request is sparse: fewer entries than a full batch, or not
        // the dense run a new batch is.
        let dense = read.count == wire::READ_SLOTS as u64
            && read
                .offsets
                .windows(2)
                .all(|w| w[1] == w[0].wrapping_add(DATA_CHUNK as u64));
        if !dense {
            session.pending_retransmits += offsets.len() as u64;
        }

        // A dense batch within the image is one contiguous read.
        let first = offsets.first().copied().unwrap_or(0);
        let contiguous = dense && first < size;
        let mut base = 0u64;
        let mut loaded = 0usize;
        if contiguous {
            let len = (size - first).min((wire::READ_SLOTS * DATA_CHUNK) as u64) as usize;
            if let Err(e) = image.read_exact_at(&mut self.scratch[..len], first) {
                self.events.push(Event::ReadError {
                    mac,
                    image: image.name.clone(),
                    error: e.to_string(),
                });
                return;
            }
            base = first;
            loaded = len;
        }
        for offset in offsets {
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
                &self.scratch[at..at + len]
            } else {
                let buf = &mut self.scratch[..len];
                if let Err(e) = image.read_exact_at(buf, offset) {
                    self.events.push(Event::ReadError {
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
            out.push(mac, self.mac, &Repr::Data { offset, bytes });
            session.sent += len as u64;
            session.high = session
                .high
                .max(offset.saturating_add(len as u64).min(size));
        }
        let report = session.pending_retransmits > 0
            && session
                .last_retransmit_report
                .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
        if report {
            self.events.push(Event::Retransmit {
                mac,
                blocks: session.pending_retransmits,
            });
            session.pending_retransmits = 0;
            session.last_retransmit_report = Some(now);
        }
    }

    fn finish(&mut self, now: Duration, mac: Mac) {
        match self.sessions.remove(&mac) {
            Some(s) => {
                self.finished += 1;
                self.events.push(Event::Finished {
                    mac,
                    image: s.image.name.clone(),
                    elapsed: now.saturating_sub(s.started),
                    bytes: s.image.size(),
                });
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

    /// Timers: drops sessions idle for longer than the limit.
    pub fn poll(&mut self, now: Duration) {
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
    }
}

impl Session {
    fn new(image: Arc<ServedImage>, now: Duration) -> Session {
        Session {
            image,
            started: now,
            last_seen: now,
            sent: 0,
            high: 0,
            pending_retransmits: 0,
            last_retransmit_report: None,
        }
    }
}
