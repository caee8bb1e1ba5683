//! The boot server's protocol logic, without I/O: fed with (time, frame),
//! it puts the frames to send in an [`Outbox`] and reports [`Event`]s. It
//! opens no sockets and reads no clock; link backends and simulations
//! drive it.
//!
//! The [`Server`] is the endpoint: it parses frames, admits sleds (OFFER,
//! the session table and its limit, resuming a boot after a restart, RESET
//! when a sled cannot be served), routes each READ to the sled's
//! [`Session`], and shares the link between sessions: one sled's frame at
//! a time, resent frames first, then the sled furthest behind its fair
//! share since it began (`Session::behind`), no faster than the link's
//! rate ([`Limits::rate`]) nor any sled's ([`Limits::sled_rate`]).
//!
//! With [`Limits::broadcast`], sleds are served in broadcast cohorts
//! ([`crate::cohort`]) instead: HELLO puts a sled in the lobby, the
//! cohort's OFFERs go out together, READs go to the cohort, and its frames
//! share the link in the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cohort::Cohorts;
pub use crate::event::Event;
use crate::image::{Catalog, Choice};
use crate::pace;
use crate::session::SendCtx;
pub use crate::session::{LimitError, Limits, Session};
use crate::wire::{self, EthFrame, Kind, Mac, Repr, ETHERTYPE};
use crate::Outbox;

/// Which sessions have frames to send, and the link's pace.
struct Pacer {
    link: Option<pace::Bucket>,
    /// Sessions with queued frames (each once), with what choosing the
    /// next to send needs: a look-up per session per frame cost the
    /// simulated rack of 32 sleds half again its CPU.
    active: Vec<Active>,
    /// Each booting sled's fair share of the bytes sent so far: every
    /// frame adds its length over the number of sleds booting. A sled's
    /// entitlement is what it grew by since the sled began
    /// ([`Session::behind`]).
    share: f64,
}

/// A session with frames to send, as of its last change.
#[derive(Clone, Copy, Debug)]
struct Active {
    mac: Mac,
    /// Its next frame is a resent one.
    resending: bool,
    /// How far behind its fair share, but for the share's growth since
    /// (the same for all).
    behind: f64,
    /// When its pace lets its next frame leave.
    ready: Duration,
}

impl Active {
    fn of(mac: Mac, s: &mut Session, now: Duration, share: f64) -> Active {
        Active {
            mac,
            resending: s.resending(),
            behind: s.behind(share) - share,
            ready: s.ready_at(now),
        }
    }
}

impl Pacer {
    /// `mac`'s frames to send changed at `now`.
    fn wake(&mut self, mac: Mac, sessions: &mut Sessions, now: Duration) {
        let i = self.active.iter().position(|a| a.mac == mac);
        let Some(s) = sessions.get_mut(&mac).filter(|s| s.has_queued()) else {
            if let Some(i) = i {
                self.active.remove(i);
            }
            return;
        };
        s.share_from.get_or_insert(self.share);
        let a = Active::of(mac, s, now, self.share);
        match i {
            Some(i) => self.active[i] = a,
            None => self.active.push(a),
        }
    }

    /// Of the sessions whose pace allows a frame at `now`: resent frames
    /// first (a few, paced for the sled's console: the sled waits for one
    /// of them), then the sled furthest behind its fair share of the link
    /// (ties in turn).
    fn next(&self, now: Duration) -> Option<usize> {
        let mut best: Option<(usize, (bool, f64))> = None;
        for (i, a) in self.active.iter().enumerate() {
            if a.ready <= now {
                let key = (a.resending, a.behind);
                if best.is_none_or(|(_, b)| key > b) {
                    best = Some((i, key));
                }
            }
        }
        best.map(|(i, _)| i)
    }
}

/// The session table, by MAC, in order: timers and eviction run in the same order every time,
/// so simulations are deterministic.
pub(crate) type Sessions = BTreeMap<Mac, Session>;

/// The server state machine.
pub struct Server {
    mac: Mac,
    catalog: Catalog,
    sessions: Sessions,
    limits: Limits,
    events: Vec<Event>,
    pacer: Pacer,
    finished: u64,
    /// Broadcast cohorts, with [`Limits::broadcast`].
    cohorts: Option<Cohorts>,
}

impl Server {
    /// A server with `limits` (see [`Limits::check`]; out-of-range values
    /// are used as given).
    pub fn new(mac: Mac, catalog: Catalog, limits: Limits) -> Server {
        Server {
            mac,
            catalog,
            sessions: BTreeMap::new(),
            pacer: Pacer {
                link: limits
                    .rate
                    .map(|r| pace::Bucket::new(r, Limits::link_burst(r), Duration::ZERO)),
                active: Vec::new(),
                share: 0.0,
            },
            cohorts: limits.broadcast.then(Cohorts::default),
            limits,
            events: Vec::new(),
            finished: 0,
        }
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    /// Sessions in progress, for progress displays.
    pub fn sessions(&self) -> impl Iterator<Item = (&Mac, &Session)> {
        self.sessions.iter()
    }

    /// Broadcast cohorts (the lobby and the cohort in transfer), with
    /// [`Limits::broadcast`].
    pub fn cohorts(&self) -> Option<&Cohorts> {
        self.cohorts.as_ref()
    }

    /// Whether frames wait for the link's or a sled's pace.
    pub fn has_queued(&self) -> bool {
        self.sessions.values().any(Session::has_queued)
            || self.cohorts.as_ref().is_some_and(Cohorts::has_queued)
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
        if let Some(cohorts) = &mut self.cohorts {
            cohorts.hello(
                now,
                mac,
                image,
                &self.limits,
                &mut self.sessions,
                &mut self.events,
            );
            cohorts.poll(
                now,
                &self.limits,
                self.mac,
                &mut self.sessions,
                &mut self.events,
                out,
            );
            return;
        }
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
            cohort: None,
        });
        // A HELLO starts the boot over: the sled gets the image on offer now.
        let mut session = Session::new(mac, image, now, &self.limits);
        session.offered(now);
        self.sessions.insert(mac, session);
    }

    fn read(&mut self, now: Duration, mac: Mac, read: &wire::Read, out: &mut Outbox) {
        if self.cohorts.is_some() {
            return self.read_in_cohort(now, mac, read, out);
        }
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
                    self.sessions
                        .insert(mac, Session::new(mac, img, now, &self.limits));
                }
                Choice::Refused => {
                    return self.reset(mac, "READ from a sled this server does not serve", out)
                }
                Choice::Unavailable { image } => {
                    return self.reset(mac, &format!("image {image} is unavailable"), out)
                }
            }
        }
        let Some(session) = self.sessions.get_mut(&mac) else {
            return;
        };
        if session.on_read(now, read, &self.limits, &mut self.events) {
            self.pacer.wake(mac, &mut self.sessions, now);
        }
        self.pump(now, out);
    }

    /// RESET: the sled cannot be served (its image cannot be had).
    fn reset(&mut self, mac: Mac, reason: &str, out: &mut Outbox) {
        out.push(mac, self.mac, &Repr::Reset);
        self.events.push(Event::Reset {
            mac,
            reason: reason.into(),
        });
    }

    /// A READ with broadcast cohorts: to the sled's cohort; without a
    /// session it joins or starts one, or waits.
    fn read_in_cohort(&mut self, now: Duration, mac: Mac, read: &wire::Read, out: &mut Outbox) {
        let Some(cohorts) = &mut self.cohorts else {
            return;
        };
        if !self.sessions.contains_key(&mac) {
            match self.catalog.choose(mac) {
                Choice::Serve(img) => {
                    let joined = cohorts.resume(
                        now,
                        mac,
                        img,
                        &self.limits,
                        &mut self.sessions,
                        &mut self.events,
                    );
                    if !joined {
                        let id = cohorts.current.as_ref().map_or(0, |c| c.id);
                        self.events.push(Event::Ignored {
                            mac,
                            why: format!("READ: waiting for cohort {id} to finish"),
                        });
                        return;
                    }
                }
                Choice::Refused => {
                    return self.reset(mac, "READ from a sled this server does not serve", out)
                }
                Choice::Unavailable { image } => {
                    return self.reset(mac, &format!("image {image} is unavailable"), out)
                }
            }
        }
        cohorts.on_read(
            now,
            mac,
            read,
            &self.limits,
            &mut self.sessions,
            &mut self.events,
        );
        if cohorts.is_handed(mac) && self.sessions.get(&mac).is_some_and(Session::has_queued) {
            self.pacer.wake(mac, &mut self.sessions, now);
        }
        self.pump(now, out);
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
            .filter(|(_, s)| !s.is_reading())
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
                self.events.push(
                    Event::finished(
                        mac,
                        s.image.name.clone(),
                        s.image.size(),
                        now.saturating_sub(s.started),
                    )
                    .in_cohort(s.cohort),
                );
                if let Some(c) = &mut self.cohorts {
                    c.finished(now, mac, &mut self.events);
                }
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

    /// Timers: resends batches whose next READ is overdue (see
    /// [`crate::session`]), drops sessions idle for longer than the limit,
    /// and sends the frames the link's and the sleds' pace now allow. Call
    /// it at least as often as [`Server::next_deadline`] says.
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
        let mut woken = Vec::new();
        for (mac, s) in self.sessions.iter_mut() {
            if s.offer_again(now) {
                out.push(*mac, self.mac, &Repr::Offer(s.image.offer));
            }
            if s.next_timer(&self.limits).is_some_and(|t| now >= t) {
                s.on_timer(now, &self.limits, &mut self.events);
                if s.has_queued() {
                    woken.push(*mac);
                }
            }
        }
        for mac in woken {
            self.pacer.wake(mac, &mut self.sessions, now);
        }
        if let Some(c) = &mut self.cohorts {
            c.poll(
                now,
                &self.limits,
                self.mac,
                &mut self.sessions,
                &mut self.events,
                out,
            );
        }
        self.pump(now, out);
    }

    /// Sends queued frames, a frame per sled in turn, while the link's and
    /// each sled's pace allow.
    fn pump(&mut self, now: Duration, out: &mut Outbox) {
        let mut ctx = SendCtx {
            from: self.mac,
            out,
            events: &mut self.events,
            queued: Duration::ZERO,
        };
        if let Some(c) = &mut self.cohorts {
            // One cohort in transfer, no sessions of its own to pace: its
            // frames, within the link's pace.
            loop {
                if let Some(link) = &mut self.pacer.link {
                    if !link.ready(now) {
                        break;
                    }
                    ctx.queued = link.backlog(now);
                }
                match c.emit(now, &mut self.sessions, &mut ctx) {
                    Some(len) => {
                        if let Some(link) = &mut self.pacer.link {
                            link.spend(len.max(wire::ETH_MIN_FRAME));
                        }
                    }
                    None => break,
                }
            }
            // Members its sessions took over (a cohort serving by unicast
            // now) take their turns with the other sessions.
            for mac in c.handed_with_frames(&self.sessions) {
                self.pacer.wake(mac, &mut self.sessions, now);
            }
        }
        let sharing = self
            .sessions
            .values()
            .filter(|s| s.share_from.is_some())
            .count();
        loop {
            if let Some(link) = &mut self.pacer.link {
                if !link.ready(now) {
                    break;
                }
            }
            let Some(i) = self.pacer.next(now) else { break };
            let a = self.pacer.active.remove(i);
            let Some(s) = self.sessions.get_mut(&a.mac).filter(|s| s.has_queued()) else {
                continue;
            };
            if let Some(link) = &mut self.pacer.link {
                ctx.queued = link.backlog(now);
            }
            if let Some(len) = s.emit(now, &mut ctx) {
                if let Some(link) = &mut self.pacer.link {
                    link.spend(len.max(wire::ETH_MIN_FRAME));
                }
                self.pacer.share += len as f64 / sharing.max(1) as f64;
            }
            if s.has_queued() {
                // At the back: ties go in turn.
                let a = Active::of(a.mac, s, now, self.pacer.share);
                self.pacer.active.push(a);
            }
        }
    }

    /// The latest time [`Server::poll`] should next run.
    pub fn next_deadline(&mut self, now: Duration) -> Duration {
        let mut at = now + Duration::from_secs(1);
        for s in self.sessions.values() {
            if let Some(t) = s.next_timer(&self.limits) {
                at = at.min(t);
            }
        }
        // Frames waiting: when several may leave.
        let mut send = None::<Duration>;
        if let Some(c) = &mut self.cohorts {
            let (t, s) = c.next_deadline(now, &self.limits, &self.sessions);
            at = at.min(t);
            send = s;
        }
        for a in &self.pacer.active {
            if let Some(s) = self.sessions.get_mut(&a.mac) {
                if s.has_queued() {
                    let t = s.wake_at(now);
                    send = Some(send.map_or(t, |x| x.min(t)));
                }
            }
        }
        if let Some(mut t) = send {
            if let Some(link) = &mut self.pacer.link {
                let frames =
                    crate::session::WAKE_FRAMES * wire::wire_len(wire::DATA_FRAME_LEN) as u64;
                t = t.max(link.full_for(now, frames));
            }
            at = at.min(t);
        }
        at.max(now)
    }
}
