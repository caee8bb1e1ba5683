//! Broadcast cohorts (`bootserver --broadcast`): sleds that get the same
//! image and say HELLO within a gathering window are offered together, and
//! each batch goes out once, broadcast, when every member has asked for it.
//!
//! The deployed client takes a DATA frame from anyone, sent to its MAC or to
//! broadcast, if its offset is one of its 128 outstanding slots; for any
//! other offset it prints a console line ("dropped data packet for offset
//! N"), synchronously. Before it accepts an OFFER it ignores DATA silently.
//! So the state here keeps one invariant: **nothing is broadcast that any
//! sled in transfer is not waiting for.**
//!
//! - At most one cohort is in transfer, and no other sled of this server is
//!   in transfer meanwhile: a sled saying HELLO then (or wanting another
//!   image) waits in the lobby, gets no OFFER, and joins the next cohort.
//!   A waiting sled is in discovery and ignores our broadcasts.
//! - Per member, the server tracks the batch it last asked for (`asked`),
//!   whether that batch was queued for it (`served`; a member that asked
//!   before the others is held until they ask too) and which of its slots
//!   any frame was sent to it for (`sent`: it may have those, so they are
//!   never broadcast again).
//! - A frame of the cohort's batch is broadcast only if every member has
//!   sent a READ, is on that batch and was sent nothing for that slot yet;
//!   otherwise it goes by unicast to each member still waiting for it.
//! - Repairs are unicast: a member's sparse re-request, and the adaptive
//!   resend of its batch when its next READ is overdue (one round: the
//!   client's own 1 s re-request says exactly what is missing after that).
//!   The others wait.
//! - A member that never READs after its OFFER (1.5 s: past the client's
//!   1 s re-request), is silent for 5 s (five of its re-request periods),
//!   says HELLO again, or goes past the idle timeout leaves the cohort;
//!   FINISHED ends its membership. When no member is left, the next cohort
//!   forms at once from the lobby (the image of the longest-waiting sled).
//! - A READ from a sled without a session (a server restart) joins the
//!   cohort in transfer if it has the same image (it catches up by unicast
//!   while the others wait), else starts one when none is in transfer, and
//!   is otherwise ignored until the cohort is done (the client re-requests
//!   every second; nothing is sent to it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::event::{mb_per_s, Event};
use crate::image::ServedImage;
use crate::pace;
use crate::server::Sessions;
use crate::session::REREQUEST_AFTER;
use crate::session::{is_dense, Chunks, Limits, ResendPace, SendCtx, Session, BATCH_BYTES};
use crate::sled::HELLO_INTERVAL;
use crate::wire::{self, Mac, Repr, DATA_CHUNK, READ_SLOTS};
use crate::Outbox;

/// An offered member that has sent no READ by then leaves (its OFFER was
/// lost: it is still in discovery). Past the client's 1 s re-request, so a
/// lost first READ is repeated before.
pub const OFFER_WAIT: Duration = Duration::from_millis(1_500);
/// A member not heard from for this long leaves the cohort: a live client
/// re-requests every second.
pub const MEMBER_SILENCE: Duration = Duration::from_secs(5);
/// A waiting sled heard from within this long is still in discovery (it
/// says HELLO every 4 s).
const ALIVE: Duration = Duration::from_millis(HELLO_INTERVAL.as_millis() as u64 + 500);
/// A waiting sled not heard from for this long is forgotten.
const FORGET: Duration = Duration::from_secs(12);

fn same(a: &ServedImage, b: &ServedImage) -> bool {
    a.offer == b.offer
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    /// Every member waiting for it (broadcast if that is all of them).
    Cohort,
    Sled(Mac),
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    offset: u64,
    dest: Dest,
    /// The server's own resend: spaced for the sled's console.
    resend: bool,
    /// The last frame of a batch queued for one member.
    last: bool,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    /// When it was offered (or resumed).
    since: Duration,
    reading: bool,
    /// The batch (first offset) it last asked for.
    asked: u64,
    asked_at: Duration,
    /// Whether that batch was queued for it.
    served: bool,
    /// Slots of that batch any frame was sent to it for.
    sent: u128,
    /// Resend rounds for that batch: 1, the batch again; 2, the next
    /// batch (its READ may have been lost).
    rounds: u32,
    /// When the last frame of its round-1 resend left.
    resend_done: Option<Duration>,
    /// When the first frame of its round-1 resend left, and how many have.
    resend_started: Option<Duration>,
    resend_frames: u32,
    /// When the last of them left.
    resend_last: Duration,
    /// Its console's pace, as its repairs showed it (kept across batches).
    pace: ResendPace,
    /// When the last frame of its batch left by unicast (a cohort serving
    /// by unicast: see [`Cohort::lockstep`]).
    unicast_done: Option<Duration>,
}

impl Member {
    fn new(now: Duration, limits: &Limits) -> Member {
        Member {
            since: now,
            reading: false,
            asked: 0,
            asked_at: now,
            served: false,
            sent: 0,
            rounds: 0,
            resend_done: None,
            resend_started: None,
            resend_frames: 0,
            resend_last: Duration::ZERO,
            unicast_done: None,
            pace: ResendPace::new(now, limits),
        }
    }

    /// It asked for the batch at `asked` at `now` (reading from then on):
    /// the batch's state starts over; `since` and its pace stay.
    fn begin(&mut self, now: Duration, asked: u64, served: bool, sent: u128, rounds: u32) {
        *self = Member {
            reading: true,
            asked,
            asked_at: now,
            served,
            sent,
            rounds,
            resend_done: None,
            resend_started: None,
            resend_frames: 0,
            resend_last: Duration::ZERO,
            unicast_done: None,
            ..*self
        };
    }

    /// Whether it waits for `offset` as far as the server knows: on that
    /// batch, asked for by a READ, and nothing sent to it for that slot.
    fn waits_for(&self, offset: u64) -> bool {
        self.reading && slot(self.asked, offset).is_some_and(|i| self.sent & (1 << i) == 0)
    }
}

/// `offset`'s slot in the batch starting at `first`.
fn slot(first: u64, offset: u64) -> Option<u32> {
    let d = offset.checked_sub(first)?;
    (d < BATCH_BYTES && d % DATA_CHUNK as u64 == 0).then_some((d / DATA_CHUNK as u64) as u32)
}

/// A sled waiting for the next cohort.
#[derive(Debug)]
struct Waiting {
    image: Arc<ServedImage>,
    since: Duration,
    last_hello: Duration,
}

/// One cohort: its members and the frames waiting to leave.
#[derive(Debug)]
pub struct Cohort {
    pub id: u64,
    pub image: Arc<ServedImage>,
    pub started: Duration,
    members: BTreeMap<Mac, Member>,
    /// Members that left: they do not join this cohort again.
    gone: BTreeSet<Mac>,
    /// Members handed to unicast sessions (see `Cohort::maybe_unicast`):
    /// still in transfer, so the next cohort waits for them too.
    pub handed: BTreeSet<Mac>,
    /// The batch last queued for the cohort, and when its last frame left.
    batch: Option<u64>,
    batch_done: Option<Duration>,
    queue: VecDeque<Frame>,
    /// Resent frames, per member: each leaves at its member's console pace
    /// (`ResendPace::next`), without holding up `queue` or the others.
    resends: BTreeMap<Mac, VecDeque<Frame>>,
    /// Cohort frames still in `queue`.
    queued_cohort: usize,
    pace: Option<pace::Bucket>,
    chunks: Chunks,
    /// The server's limits (for the sessions that take members over).
    limits: Limits,
    /// Each batch goes out once, broadcast, when every member asked for it;
    /// false once waiting for repairs costs more than unicast would
    /// (`Cohort::maybe_unicast`).
    pub lockstep: bool,
    /// Time spent waiting for members to ask for the next batch, and
    /// sending batches (from queued to the last frame out), and how many.
    stalled: Duration,
    sending: Duration,
    batches: u64,
    waiting_since: Option<Duration>,
    queued_at: Duration,
    pub broadcast_frames: u64,
    pub unicast_frames: u64,
    pub booted: usize,
    pub left: usize,
}

impl Cohort {
    fn new(id: u64, image: Arc<ServedImage>, now: Duration, limits: &Limits) -> Cohort {
        Cohort {
            id,
            image,
            started: now,
            members: BTreeMap::new(),
            gone: BTreeSet::new(),
            handed: BTreeSet::new(),
            batch: None,
            batch_done: None,
            queue: VecDeque::new(),
            resends: BTreeMap::new(),
            queued_cohort: 0,
            pace: limits
                .sled_rate
                .map(|r| pace::Bucket::new(r, Limits::sled_burst(r), now)),
            chunks: Chunks::default(),
            limits: limits.clone(),
            lockstep: true,
            stalled: Duration::ZERO,
            sending: Duration::ZERO,
            batches: 0,
            waiting_since: None,
            queued_at: now,
            broadcast_frames: 0,
            unicast_frames: 0,
            booted: 0,
            left: 0,
        }
    }

    /// Members in the cohort now.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty() || !self.resends.is_empty()
    }

    fn drop_queued_for(&mut self, mac: Mac) {
        self.queue.retain(|f| f.dest != Dest::Sled(mac));
        self.resends.remove(&mac);
    }

    fn leave(&mut self, mac: Mac, why: String, sessions: &mut Sessions, events: &mut Vec<Event>) {
        if self.members.remove(&mac).is_none() && !self.handed.remove(&mac) {
            return;
        }
        sessions.remove(&mac);
        self.drop_queued_for(mac);
        self.gone.insert(mac);
        self.left += 1;
        events.push(Event::Left {
            mac,
            cohort: self.id,
            why,
        });
    }

    /// Lockstep: once every member has sent a READ and all ask for the
    /// same batch, it is queued once for the cohort; members behind the
    /// others get their batch by unicast (they catch up); members ahead
    /// wait. A cohort no longer in lockstep hands each member to a unicast
    /// session at its next batch.
    fn advance(&mut self, now: Duration) {
        if !self.lockstep {
            return;
        }
        if self.members.is_empty() || self.members.values().any(|m| !m.reading) {
            return;
        }
        let Some(target) = self.members.values().map(|m| m.asked).max() else {
            return;
        };
        if self.members.values().all(|m| m.asked == target) {
            if self.members.values().any(|m| !m.served) {
                self.batch = Some(target);
                self.batch_done = None;
                self.queued_at = now;
                if let Some(t) = self.waiting_since.take() {
                    self.stalled += now.saturating_sub(t);
                }
                for i in 0..READ_SLOTS as u64 {
                    self.queue.push_back(Frame {
                        offset: target.saturating_add(i * DATA_CHUNK as u64),
                        dest: Dest::Cohort,
                        resend: false,
                        last: false,
                    });
                }
                self.queued_cohort += READ_SLOTS;
                for m in self.members.values_mut() {
                    m.served = true;
                }
            }
            return;
        }
        // Some member asked for a batch the others have not: the cohort
        // waits for them from now.
        if self.batch != Some(target) {
            self.waiting_since.get_or_insert(now);
        }
        let behind: Vec<(Mac, u64)> = self
            .members
            .iter_mut()
            .filter(|(_, m)| m.asked < target && !m.served)
            .map(|(mac, m)| {
                m.served = true;
                (*mac, m.asked)
            })
            .collect();
        for (mac, first) in behind {
            self.queue_batch(first, Dest::Sled(mac), false);
        }
    }

    /// Whether the cohort would finish sooner serving its members one by
    /// one: after 16 batches, if the time it waited for members' repairs
    /// (from a member's READ for the next batch to the last member's) is
    /// more than `members - 1` times its time sending, unicast (which
    /// sends each batch `members` times but never waits) is faster. With
    /// loss and a slow console, each repair is a blind search for the lost
    /// frame at the console's pace, and the whole cohort waits for it.
    fn maybe_unicast(
        &mut self,
        now: Duration,
        limits: &Limits,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
    ) {
        let n = self.members.len() as u32;
        if !self.lockstep || self.batches < 4 || n < 2 {
            return;
        }
        if self.stalled <= self.sending * (n - 1) {
            return;
        }
        self.lockstep = false;
        // Members held for the others (they asked for the next batch and
        // were sent nothing of it) go to their sessions at once; the rest
        // at their next batch.
        let held: Vec<(Mac, u64)> = self
            .members
            .iter()
            .filter(|(_, m)| m.reading && !m.served)
            .map(|(mac, m)| (*mac, m.asked))
            .collect();
        for (mac, first) in held {
            if let (Some(s), Some(m)) = (sessions.get_mut(&mac), self.members.remove(&mac)) {
                self.handed.insert(mac);
                let mut read = wire::Read {
                    count: READ_SLOTS as u64,
                    offsets: [0; READ_SLOTS],
                };
                for (i, o) in read.offsets.iter_mut().enumerate() {
                    *o = first.saturating_add(i as u64 * DATA_CHUNK as u64);
                }
                s.take_over(now, &read, limits, events, m.pace);
            }
        }
        events.push(Event::CohortUnicast {
            cohort: self.id,
            why: format!(
                "waited {:.2} s for repairs against {:.2} s sending {} batches to {n} sleds",
                self.stalled.as_secs_f64(),
                self.sending.as_secs_f64(),
                self.batches
            ),
        });
    }

    /// A READ from member `mac` (its session exists). False if dropped.
    fn on_read(
        &mut self,
        now: Duration,
        mac: Mac,
        read: &wire::Read,
        limits: &Limits,
        session: &mut Session,
        events: &mut Vec<Event>,
    ) -> bool {
        let Some(m) = self.members.get_mut(&mac) else {
            return false;
        };
        if let Some(trip) = session.take_first_trip(now) {
            m.pace.rtt.first_trip(trip, limits);
        }
        let dense = is_dense(read);
        let first = read.offsets[0];
        let again = dense && m.reading && first == m.asked;
        if dense && m.reading && (first < m.asked || (again && now < m.asked_at + REREQUEST_AFTER))
        {
            // A duplicated frame.
            session.last_seen = now;
            return false;
        }
        if dense && !again && !self.lockstep {
            // Serving by unicast now: its session takes it from this batch
            // on (it has every frame before it).
            let pace = m.pace;
            self.members.remove(&mac);
            self.drop_queued_for(mac);
            self.handed.insert(mac);
            return session.take_over(now, read, limits, events, pace);
        }
        if !session.admit(now, dense && !again, limits, events) {
            return false;
        }
        if dense && !again {
            if m.reading && first == m.asked.saturating_add(BATCH_BYTES) {
                // The READ that follows the cohort's batch: a round trip,
                // unless it was resent to this member (Karn); then the
                // resend was needed: one doubling is undone.
                if m.rounds > 0 {
                    m.pace.rtt.loss_confirmed(limits);
                    // Answered by its round-1 resend alone: how fast it
                    // took that.
                    if let (1, Some(t0)) = (m.rounds, m.resend_started) {
                        m.pace.judge(now, t0, m.resend_last, m.resend_frames);
                    }
                } else if self.batch == Some(m.asked) {
                    if let Some(d) = self.batch_done {
                        m.pace.rtt.sample(now, now.saturating_sub(d), limits);
                    }
                } else if let Some(d) = m.unicast_done {
                    m.pace.rtt.sample(now, now.saturating_sub(d), limits);
                }
            }
            m.begin(now, first, false, 0, 0);
            self.drop_queued_for(mac);
            self.advance(now);
            return true;
        }
        // A re-request (the client's own, after 1 s; all 128 slots look
        // like the batch's first READ).
        let requested: Vec<u64> = read.requested().collect();
        let elsewhere = requested
            .first()
            .is_some_and(|&o| slot(m.asked, o).is_none());
        if !dense && (!m.reading || (m.served && elsewhere)) {
            // A re-request says exactly what the sled waits for: these
            // slots of their batch (batches start at multiples of 128 KiB),
            // and it has the others. So a resumed sled's first READ (the
            // server restarted mid-batch), or a member that was not where
            // the server's guess (round 2) put it, is in sync again.
            let Some(&o) = requested.first() else {
                return false;
            };
            let batch = o - o % BATCH_BYTES;
            let mut waiting = 0u128;
            for offset in read.requested() {
                if let Some(i) = slot(batch, offset) {
                    waiting |= 1 << i;
                }
            }
            m.begin(now, batch, true, !waiting, limits.resend_rounds);
        } else if !m.served {
            // Held members have been sent nothing: their batch goes out
            // when the others are there.
            return false;
        }
        let offsets: Vec<u64> = if again {
            (0..READ_SLOTS as u64)
                .map(|i| first.saturating_add(i * DATA_CHUNK as u64))
                .collect()
        } else {
            read.requested().collect()
        };
        let mut n = 0;
        for &offset in offsets.iter().rev() {
            // Only what it waits for: a stale re-request costs nothing.
            if slot(m.asked, offset).is_none() {
                continue;
            }
            self.queue.push_front(Frame {
                offset,
                dest: Dest::Sled(mac),
                resend: false,
                last: false,
            });
            n += 1;
        }
        session.note_retransmits(now, n, 0, events);
        n > 0
    }

    /// Timers: members that never READ or went silent leave; members whose
    /// next READ is overdue after the cohort's batch get it again by
    /// unicast.
    fn poll(
        &mut self,
        now: Duration,
        limits: &Limits,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
    ) {
        // Sessions expired (idle timeout) or evicted are members no more.
        let gone: Vec<Mac> = self
            .members
            .keys()
            .filter(|m| !sessions.contains_key(m))
            .copied()
            .collect();
        for mac in gone {
            self.members.remove(&mac);
            self.drop_queued_for(mac);
            self.gone.insert(mac);
            self.left += 1;
        }
        // Handed members: gone with their sessions, or silent as long as a
        // member may be.
        let silent: Vec<Mac> = self
            .handed
            .iter()
            .filter(|m| {
                sessions
                    .get(m)
                    .is_none_or(|s| now >= s.last_seen + MEMBER_SILENCE)
            })
            .copied()
            .collect();
        for mac in silent {
            self.handed.remove(&mac);
            self.gone.insert(mac);
            self.left += 1;
            if sessions.remove(&mac).is_some() {
                events.push(Event::Left {
                    mac,
                    cohort: self.id,
                    why: "silent for 5 s".into(),
                });
            }
        }
        let mut leaving = Vec::new();
        for (mac, m) in &self.members {
            let seen = sessions.get(mac).map_or(m.since, |s| s.last_seen);
            if !m.reading && now >= m.since + OFFER_WAIT {
                leaving.push((*mac, "no READ within 1.5 s of its OFFER".to_string()));
            } else if m.reading && now >= seen + MEMBER_SILENCE {
                leaving.push((*mac, "silent for 5 s".to_string()));
            }
        }
        for (mac, why) in leaving {
            self.leave(mac, why, sessions, events);
        }
        let due: Vec<(Mac, u32)> = self
            .members
            .iter()
            .filter(|(_, m)| self.due(m, limits).is_some_and(|t| now >= t))
            .map(|(mac, m)| (*mac, m.rounds))
            .collect();
        for (mac, rounds) in due {
            let Some(m) = self.members.get_mut(&mac) else {
                continue;
            };
            m.rounds += 1;
            m.pace.rtt.back_off(limits);
            let b = m.asked;
            if rounds == 0 {
                // Round 1: its batch again, spaced for its console; its
                // next READ cancels the rest.
                m.resend_done = None;
                self.queue_batch(b, Dest::Sled(mac), true);
            } else {
                // Round 2: its READ for the next batch was lost, likely:
                // it gets that batch by unicast (the others too, then: it
                // may have those frames, so they are never broadcast).
                let next = b.saturating_add(BATCH_BYTES);
                m.asked = next;
                m.asked_at = now;
                m.served = true;
                // A guess: never count it as waiting for a broadcast.
                m.sent = u128::MAX;
                m.resend_done = None;
                self.drop_queued_for(mac);
                self.queue_batch(next, Dest::Sled(mac), false);
            }
            if let Some(s) = sessions.get_mut(&mac) {
                s.note_retransmits(now, 0, 1, events);
            }
        }
        self.advance(now);
    }

    /// When member `m`'s next READ is overdue: the cohort's batch (round
    /// 0) or its resend (round 1) left, plus the resend timeout.
    fn due(&self, m: &Member, limits: &Limits) -> Option<Duration> {
        if limits.resend_after.is_zero() || m.rounds >= limits.resend_rounds.min(2) {
            return None;
        }
        if !(m.reading && m.served) {
            return None;
        }
        let (done, wait) = match m.rounds {
            0 if self.batch == Some(m.asked) => (self.batch_done?, m.pace.rtt.rto),
            0 => (m.unicast_done?, m.pace.rtt.rto),
            // Before the next round, time for a slow console to print a
            // line for each resent frame, until it was seen to keep up.
            1 => (m.resend_done?, m.pace.rtt.rto.max(m.pace.drain())),
            _ => return None,
        };
        Some((done + wait).max(m.pace.quiet_until))
    }

    fn queue_batch(&mut self, first: u64, dest: Dest, resend: bool) {
        let queue = match dest {
            Dest::Sled(mac) if resend => self.resends.entry(mac).or_default(),
            _ => &mut self.queue,
        };
        for i in 0..READ_SLOTS as u64 {
            queue.push_back(Frame {
                offset: first.saturating_add(i * DATA_CHUNK as u64),
                dest,
                resend,
                last: i == READ_SLOTS as u64 - 1,
            });
        }
    }

    fn next_timer(&self, now: Duration, limits: &Limits, sessions: &Sessions) -> Duration {
        let mut at = now + Duration::from_secs(1);
        for (mac, m) in &self.members {
            if m.reading {
                let seen = sessions.get(mac).map_or(m.since, |s| s.last_seen);
                at = at.min(seen + MEMBER_SILENCE);
            } else {
                at = at.min(m.since + OFFER_WAIT);
            }
        }
        for m in self.members.values() {
            if let Some(t) = self.due(m, limits) {
                at = at.min(t);
            }
        }
        at
    }

    /// When the next frame may leave at the sled's pace.
    fn ready_at(&mut self, now: Duration) -> Duration {
        let paced = match &mut self.pace {
            Some(p) => p.ready_at(now),
            None => now,
        };
        if !self.queue.is_empty() {
            return paced;
        }
        let next = self
            .resends
            .keys()
            .filter_map(|mac| self.members.get(mac).map(|m| m.pace.next))
            .min();
        next.map_or(paced, |t| paced.max(t))
    }

    /// A resent frame whose member's pace lets it leave now.
    fn due_resend(&mut self, now: Duration) -> Option<Frame> {
        let mac = self
            .resends
            .keys()
            .find(|mac| self.members.get(mac).is_none_or(|m| m.pace.next <= now))
            .copied()?;
        let q = self.resends.get_mut(&mac)?;
        let f = q.pop_front();
        if q.is_empty() {
            self.resends.remove(&mac);
        }
        f
    }

    /// Sends the next queued frame that someone waits for. Returns its
    /// length, or `None` when nothing was sent.
    fn emit(
        &mut self,
        now: Duration,
        sessions: &mut Sessions,
        ctx: &mut SendCtx<'_>,
    ) -> Option<usize> {
        loop {
            let f = match self.due_resend(now) {
                Some(f) => Some(f),
                None => self.queue.pop_front(),
            };
            let Some(f) = f else { break };
            if f.dest == Dest::Cohort {
                self.queued_cohort -= 1;
                if self.queued_cohort == 0 {
                    // Round trips start when it leaves the link.
                    self.batch_done = Some(now + ctx.queued);
                    self.sending += now.saturating_sub(self.queued_at);
                    self.batches += 1;
                    let limits = self.limits.clone();
                    self.maybe_unicast(now, &limits, sessions, ctx.events);
                }
            }
            let to = match f.dest {
                Dest::Sled(mac) => match self.members.get(&mac) {
                    Some(_) => mac,
                    None => continue,
                },
                Dest::Cohort => {
                    // The invariant: broadcast only what every member in
                    // transfer waits for (and there is more than one). On
                    // every broadcast frame: no list built when all wait.
                    if self.members.len() >= 2
                        && self.members.values().all(|m| m.waits_for(f.offset))
                    {
                        Mac::BROADCAST
                    } else {
                        let targets: Vec<Mac> = self
                            .members
                            .iter()
                            .filter(|(_, m)| m.waits_for(f.offset))
                            .map(|(mac, _)| *mac)
                            .collect();
                        let Some((&first, rest)) = targets.split_first() else {
                            continue;
                        };
                        for &mac in rest.iter().rev() {
                            self.queue.push_front(Frame {
                                offset: f.offset,
                                dest: Dest::Sled(mac),
                                resend: false,
                                last: false,
                            });
                        }
                        first
                    }
                }
            };
            if let Some(m) = self.members.get_mut(&to) {
                if f.resend {
                    m.pace.next = now + m.pace.gap();
                    m.resend_started.get_or_insert(now);
                    m.resend_frames += 1;
                    m.resend_last = now;
                    if f.last {
                        m.resend_done = Some(now + ctx.queued);
                    }
                } else if f.last {
                    m.unicast_done = Some(now + ctx.queued);
                }
            }
            return Some(self.send(now, f.offset, to, sessions, ctx));
        }
        None
    }

    fn send(
        &mut self,
        _now: Duration,
        offset: u64,
        to: Mac,
        sessions: &mut Sessions,
        ctx: &mut SendCtx<'_>,
    ) -> usize {
        let bytes = match self.chunks.chunk(&self.image, offset) {
            Ok(bytes) => bytes,
            Err(e) => {
                ctx.events.push(Event::ReadError {
                    mac: to,
                    image: self.image.name.clone(),
                    error: e.to_string(),
                });
                return 0;
            }
        };
        let len = bytes.len();
        ctx.out.push(to, ctx.from, &Repr::Data { offset, bytes });
        let frame = wire::ETH_HEADER_LEN + wire::field::HEADER_LEN + 8 + len;
        if let Some(p) = &mut self.pace {
            p.spend(frame.max(wire::ETH_MIN_FRAME));
        }
        let mark = |mac: &Mac, m: &mut Member, sessions: &mut Sessions| {
            if let Some(i) = slot(m.asked, offset) {
                m.sent |= 1 << i;
            }
            if let Some(s) = sessions.get_mut(mac) {
                s.count_sent(offset, len);
            }
        };
        if to.is_broadcast() {
            self.broadcast_frames += 1;
            for (mac, m) in self.members.iter_mut() {
                mark(mac, m, sessions);
            }
        } else {
            self.unicast_frames += 1;
            if let Some(m) = self.members.get_mut(&to) {
                mark(&to, m, sessions);
            }
        }
        frame
    }
}

/// The lobby, the gathering cohort and the cohort in transfer.
#[derive(Debug, Default)]
pub struct Cohorts {
    next_id: u64,
    lobby: BTreeMap<Mac, Waiting>,
    /// The image the next cohort gathers for, and when its OFFERs go out.
    gathering: Option<(Arc<ServedImage>, Duration)>,
    pub current: Option<Cohort>,
}

impl Cohorts {
    /// Members handed to their sessions that have frames to send.
    pub(crate) fn handed_with_frames(&self, sessions: &Sessions) -> Vec<Mac> {
        let Some(c) = &self.current else {
            return Vec::new();
        };
        c.handed
            .iter()
            .filter(|m| sessions.get(m).is_some_and(Session::has_queued))
            .copied()
            .collect()
    }

    /// Whether `mac` is a member handed to its unicast session.
    pub fn is_handed(&self, mac: Mac) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.handed.contains(&mac))
    }

    /// Sleds waiting for a cohort.
    pub fn waiting(&self) -> usize {
        self.lobby.len()
    }

    pub fn has_queued(&self) -> bool {
        self.current.as_ref().is_some_and(Cohort::has_queued)
    }

    /// A HELLO from `mac`, which is to get `image`: it waits in the lobby
    /// (a member saying HELLO again has rebooted and leaves its cohort).
    pub(crate) fn hello(
        &mut self,
        now: Duration,
        mac: Mac,
        image: Arc<ServedImage>,
        limits: &Limits,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
    ) {
        if let Some(c) = &mut self.current {
            c.leave(mac, "said HELLO again (rebooted)".into(), sessions, events);
        }
        let new = match self.lobby.get_mut(&mac) {
            Some(w) => {
                w.last_hello = now;
                if !same(&w.image, &image) {
                    w.image = image.clone();
                    w.since = now;
                }
                false
            }
            None => {
                if self.lobby.len() >= limits.max_sessions {
                    // Full: the longest-silent waiting sled makes room.
                    let oldest = self.lobby.iter().min_by_key(|(_, w)| w.last_hello);
                    if let Some(m) = oldest.map(|(m, _)| *m) {
                        self.lobby.remove(&m);
                    }
                }
                self.lobby.insert(
                    mac,
                    Waiting {
                        image: image.clone(),
                        since: now,
                        last_hello: now,
                    },
                );
                true
            }
        };
        match (&self.current, &self.gathering) {
            (None, None) => self.gathering = Some((image, now + limits.cohort_window)),
            (None, Some((g, _))) if same(g, &image) => {}
            _ if new => events.push(Event::Waiting {
                mac,
                image: image.name.clone(),
            }),
            _ => {}
        }
    }

    /// A READ from `mac`, which has no session (the server restarted, or
    /// the sled left its cohort): it joins the cohort in transfer if that
    /// has its image, or starts one when none is in transfer. False if it
    /// must wait (nothing is sent to it).
    pub(crate) fn resume(
        &mut self,
        now: Duration,
        mac: Mac,
        image: Arc<ServedImage>,
        limits: &Limits,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
    ) -> bool {
        if sessions.len() >= limits.max_sessions {
            return false;
        }
        if self.current.is_none() {
            self.next_id += 1;
            self.gathering = None;
            events.push(Event::Cohort {
                cohort: self.next_id,
                image: image.name.clone(),
                sleds: 1,
            });
            self.current = Some(Cohort::new(self.next_id, image.clone(), now, limits));
        }
        let Some(c) = &mut self.current else {
            return false;
        };
        if !same(&c.image, &image) || c.gone.contains(&mac) {
            return false;
        }
        self.lobby.remove(&mac);
        events.push(Event::Resumed {
            mac,
            image: image.name.clone(),
        });
        let mut s = Session::new(mac, c.image.clone(), now, limits);
        s.cohort = Some(c.id);
        sessions.insert(mac, s);
        c.members.insert(mac, Member::new(now, limits));
        true
    }

    /// A READ from member `mac`. False if dropped.
    pub(crate) fn on_read(
        &mut self,
        now: Duration,
        mac: Mac,
        read: &wire::Read,
        limits: &Limits,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
    ) -> bool {
        let (Some(c), Some(s)) = (&mut self.current, sessions.get_mut(&mac)) else {
            return false;
        };
        if c.handed.contains(&mac) {
            return s.on_read(now, read, limits, events);
        }
        c.on_read(now, mac, read, limits, s, events)
    }

    /// Member `mac` sent FINISHED (its session is gone).
    pub(crate) fn finished(&mut self, now: Duration, mac: Mac, events: &mut Vec<Event>) {
        if let Some(c) = &mut self.current {
            if c.members.remove(&mac).is_some() {
                c.booted += 1;
                c.drop_queued_for(mac);
                c.advance(now);
            } else if c.handed.remove(&mac) {
                c.booted += 1;
            }
        }
        self.end_if_done(now, events);
    }

    /// The cohort in transfer ends when no member is left.
    fn end_if_done(&mut self, now: Duration, events: &mut Vec<Event>) {
        let Some(c) = &self.current else { return };
        if !c.members.is_empty() || !c.handed.is_empty() {
            return;
        }
        let elapsed = now.saturating_sub(c.started);
        events.push(Event::CohortDone {
            cohort: c.id,
            image: c.image.name.clone(),
            booted: c.booted,
            left: c.left,
            elapsed,
            mb_per_s: mb_per_s(c.image.size(), elapsed),
            broadcast: c.broadcast_frames,
            unicast: c.unicast_frames,
        });
        self.current = None;
    }

    /// Timers: members leaving, resends, the cohort's end, and the next
    /// cohort's OFFERs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn poll(
        &mut self,
        now: Duration,
        limits: &Limits,
        server: Mac,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
        out: &mut Outbox,
    ) {
        self.lobby
            .retain(|_, w| now.saturating_sub(w.last_hello) < FORGET);
        if let Some(c) = &mut self.current {
            c.poll(now, limits, sessions, events);
        }
        self.end_if_done(now, events);
        if self.current.is_some() {
            return;
        }
        if self.gathering.is_none() {
            // The next cohort: the longest-waiting sled's image, at once
            // (its sleds have been saying HELLO all along).
            let next = self
                .lobby
                .values()
                .filter(|w| now.saturating_sub(w.last_hello) <= ALIVE)
                .min_by_key(|w| w.since);
            if let Some(w) = next {
                self.gathering = Some((w.image.clone(), now));
            }
        }
        if let Some((image, until)) = self.gathering.clone() {
            if now >= until {
                self.gathering = None;
                self.form(now, image, limits, server, sessions, events, out);
            }
        }
    }

    /// OFFERs to every live waiting sled that gets `image`.
    #[allow(clippy::too_many_arguments)]
    fn form(
        &mut self,
        now: Duration,
        image: Arc<ServedImage>,
        limits: &Limits,
        server: Mac,
        sessions: &mut Sessions,
        events: &mut Vec<Event>,
        out: &mut Outbox,
    ) {
        let room = limits.max_sessions.saturating_sub(sessions.len());
        let macs: Vec<Mac> = self
            .lobby
            .iter()
            .filter(|(_, w)| same(&w.image, &image) && now.saturating_sub(w.last_hello) <= ALIVE)
            .map(|(m, _)| *m)
            .take(room)
            .collect();
        if macs.is_empty() {
            return;
        }
        self.next_id += 1;
        let mut c = Cohort::new(self.next_id, image.clone(), now, limits);
        events.push(Event::Cohort {
            cohort: c.id,
            image: image.name.clone(),
            sleds: macs.len(),
        });
        for mac in macs {
            self.lobby.remove(&mac);
            out.push(mac, server, &Repr::Offer(image.offer));
            events.push(
                Event::Offer {
                    mac,
                    image: image.name.clone(),
                    size: image.size(),
                    cohort: None,
                }
                .in_cohort(Some(c.id)),
            );
            let mut s = Session::new(mac, image.clone(), now, limits);
            s.offered(now);
            s.cohort = Some(c.id);
            sessions.insert(mac, s);
            c.members.insert(mac, Member::new(now, limits));
        }
        self.current = Some(c);
    }

    /// When [`Cohorts::poll`] next has work, and when the next frame may
    /// leave (the link's pace aside).
    pub(crate) fn next_deadline(
        &mut self,
        now: Duration,
        limits: &Limits,
        sessions: &Sessions,
    ) -> (Duration, Option<Duration>) {
        let mut at = now + Duration::from_secs(1);
        if let Some((_, until)) = &self.gathering {
            at = at.min(*until);
        }
        let mut send = None;
        if self.current.is_none() && !self.lobby.is_empty() {
            // The next cohort forms at the next poll.
            at = now;
        }
        if let Some(c) = &mut self.current {
            at = at.min(c.next_timer(now, limits, sessions));
            if c.has_queued() {
                send = Some(c.ready_at(now));
            }
        }
        (at, send)
    }

    /// Sends the cohort's next frame if its pace allows: its length.
    pub(crate) fn emit(
        &mut self,
        now: Duration,
        sessions: &mut Sessions,
        ctx: &mut SendCtx<'_>,
    ) -> Option<usize> {
        let c = self.current.as_mut()?;
        if !c.has_queued() || c.ready_at(now) > now {
            return None;
        }
        c.emit(now, sessions, ctx)
    }
}
