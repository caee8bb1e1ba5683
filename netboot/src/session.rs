//! One sled's boot, as the server sees it: its READ limits, the batch in
//! flight and when to resend it, and the frames waiting to leave at the
//! sled's pace. [`crate::server::Server`] routes frames to sessions, admits
//! them and shares the link between them; everything about one sled is
//! here (`on_read`, `on_timer`, `emit`), as quinn-proto splits its endpoint
//! from its connections.
//!
//! Resends follow measured delivery (RFC 6298 in spirit): each batch's
//! round trip, from its last frame leaving the server to the READ that
//! follows it, feeds a smoothed estimate `srtt` and its variation
//! `rttvar`; the resend timeout is `srtt + 4 rttvar` within
//! [`Limits::resend_after`] and [`Limits::resend_max`]. A batch is resent
//! only when the sled's next READ is overdue by that long; each resend
//! doubles the timeout (kept until a batch is answered without one), and a
//! resent batch is never sampled (Karn). A busy link delays READs, and the
//! estimate grows with it: busy is not lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Event;
use crate::image::ServedImage;
use crate::pace::{self, Rate};
use crate::wire::{self, Mac, Repr, DATA_CHUNK, READ_SLOTS};
use crate::Outbox;

/// A dense READ for the batch in flight sooner than this after the first
/// is a duplicated frame; later, the client's re-request of every slot
/// (it re-requests after 1 s).
pub const REREQUEST_AFTER: Duration = Duration::from_millis(900);

/// Frames a paced sled or link gathers before the server wakes up to send
/// them: fewer wake-ups (system calls) for the same rate.
pub const WAKE_FRAMES: u64 = 8;

/// Bytes in one client batch (128 frames of 1024).
pub const BATCH_BYTES: u64 = (READ_SLOTS * DATA_CHUNK) as u64;

/// The image bytes DATA frames carry, read a 128 KiB batch at a time: a
/// batch's frames leave one by one, but the image is read once per batch.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    /// `at..at + cache.len()` of the image.
    cache: Vec<u8>,
    at: u64,
    /// One chunk read alone, when its batch cannot be cached.
    alone: Vec<u8>,
}

impl Chunks {
    /// The bytes a DATA frame for `offset` carries: up to 1 KiB, none at or
    /// past the end (the client's EOF).
    pub(crate) fn chunk(&mut self, image: &ServedImage, offset: u64) -> std::io::Result<&[u8]> {
        let size = image.size();
        if offset >= size {
            return Ok(&[]);
        }
        let len = (size - offset).min(DATA_CHUNK as u64) as usize;
        let hit = |c: &Chunks| offset >= c.at && offset - c.at + len as u64 <= c.cache.len() as u64;
        if !hit(self) {
            let start = offset - offset % BATCH_BYTES;
            let n = (size - start).min(BATCH_BYTES) as usize;
            self.cache.resize(n, 0);
            if image.read_exact_at(&mut self.cache, start).is_err() {
                self.cache.clear();
            }
            self.at = start;
        }
        if hit(self) {
            let at = (offset - self.at) as usize;
            return Ok(&self.cache[at..at + len]);
        }
        // Not within one cached batch, or the batch could not be read:
        // read the chunk alone (and report its error).
        self.alone.resize(len, 0);
        image.read_exact_at(&mut self.alone, offset)?;
        Ok(&self.alone)
    }
}

/// A new batch is dense: 128 consecutive offsets at the slot indices.
/// Anything else is a re-request of lost frames.
pub fn is_dense(read: &wire::Read) -> bool {
    read.count == READ_SLOTS as u64
        && read
            .offsets
            .windows(2)
            .all(|w| w[1] == w[0].wrapping_add(DATA_CHUNK as u64))
}

/// Limits that keep a misbehaving segment from exhausting the server, its
/// loss recovery and its pacing. [`Limits::check`] bounds every field.
#[derive(Clone, Debug, PartialEq)]
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
    /// The least resend timeout, however fast the round trips; zero turns
    /// the server's resending off (the client's own 1 s re-requests
    /// remain).
    pub resend_after: Duration,
    /// The most resend timeout, however slow the round trips (below the
    /// client's own 1 s).
    pub resend_max: Duration,
    /// How many times to resend one batch (each wait twice the last):
    /// odd rounds the batch, even rounds the next one. Past that the
    /// client's own re-request (after 1 s) asks for exactly what is
    /// missing.
    pub resend_rounds: u32,
    /// The server link's rate: all sleds together never get more. `None`:
    /// as fast as the link takes frames.
    pub rate: Option<Rate>,
    /// One sled's rate (its port's): `None`: no limit per sled.
    pub sled_rate: Option<Rate>,
    /// Broadcast cohorts (`bootserver --broadcast`, see [`crate::cohort`]):
    /// sleds offered together get each batch in one broadcast frame. Only
    /// on a segment where this is the only boot server.
    pub broadcast: bool,
    /// How long a cohort gathers HELLOs, from the first, before its OFFERs
    /// go out (a little over the client's 4 s HELLO period).
    pub cohort_window: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(60),
            max_sessions: 1024,
            max_reads_per_sec: 5_000,
            max_rereads_per_sec: 64,
            resend_after: Duration::from_millis(1),
            resend_max: Duration::from_millis(250),
            resend_rounds: 4,
            rate: None,
            sled_rate: Some(Rate::GBIT),
            broadcast: false,
            cohort_window: Duration::from_millis(4_500),
        }
    }
}

/// A limit out of its bounds: the setting (as the configuration names it),
/// its value and the bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {value} is out of range: {range}")]
pub struct LimitError {
    pub key: &'static str,
    pub value: String,
    pub range: &'static str,
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    lo: T,
    hi: T,
    range: &'static str,
) -> Result<(), LimitError> {
    if value < lo || value > hi {
        return Err(LimitError {
            key,
            value: value.to_string(),
            range,
        });
    }
    Ok(())
}

impl Limits {
    /// Every setting within its bounds (named as the configuration file
    /// names them).
    pub fn check(&self) -> Result<(), LimitError> {
        check_range("max-sessions", self.max_sessions, 1, 65_536, "1 to 65536")?;
        check_range(
            "idle-timeout-secs",
            self.idle_timeout.as_secs(),
            1,
            86_400,
            "1 to 86400",
        )?;
        check_range(
            "max-reads-per-sec",
            self.max_reads_per_sec,
            1,
            1_000_000,
            "1 to 1000000",
        )?;
        check_range(
            "max-rereads-per-sec",
            self.max_rereads_per_sec,
            1,
            100_000,
            "1 to 100000",
        )?;
        check_range(
            "resend-after-ms",
            self.resend_after.as_millis(),
            0,
            900,
            "0 (off) to 900",
        )?;
        check_range(
            "resend-max-ms",
            self.resend_max.as_millis(),
            self.resend_after.as_millis().max(1),
            900,
            "resend-after-ms (at least 1) to 900, below the client's own 1 s",
        )?;
        check_range("resend-rounds", self.resend_rounds, 0, 10, "0 to 10")?;
        check_range(
            "cohort-window-ms",
            self.cohort_window.as_millis(),
            0,
            60_000,
            "0 to 60000",
        )?;
        Ok(())
    }

    /// A sled's burst: half a millisecond at its rate, at least 16 frames.
    /// Into a slower port behind a faster server it queues at most that.
    pub(crate) fn sled_burst(rate: Rate) -> u64 {
        let frame = wire::wire_len(wire::DATA_FRAME_LEN) as u64;
        (rate.bytes_in(Duration::from_micros(500)) as u64).max(16 * frame)
    }

    /// The link's burst: a quarter millisecond at its rate, at least one
    /// batch (128 KiB: a millisecond at 1 Gbit/s, for a server loop whose
    /// timer is late now and then). A longer one lets the server's own
    /// queue fill, and as it drains it bunches one sled's paced frames
    /// into its port (the simulator's 10 GbE server dropped frames at
    /// 1 GbE ports with a full millisecond).
    pub(crate) fn link_burst(rate: Rate) -> u64 {
        (rate.bytes_in(Duration::from_micros(250)) as u64).max(BATCH_BYTES)
    }
}

/// Consecutive offsets to send: `start`, `start + 1024`, ... (`count`);
/// `resend`: the server's own resend, sent at [`RESEND_GAP`].
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    count: u32,
    resend: bool,
}

/// The gap between the frames of a resent batch. The server does not know
/// which frame of the batch was lost; each frame the sled already has costs
/// it a console line, printed synchronously (about 4 ms at 115200 baud,
/// less on a faster console). Resent frames go out about as fast as a
/// fast console prints, so that the sled's next READ, which comes as soon
/// as the missing frame arrives, cancels the rest: half a batch of
/// console lines on average instead of all of it. A twentieth more than
/// 0.2 ms, a fast console's line: each resent frame before the missing one
/// costs the sled that line whatever the gap, so a longer gap only slows
/// the search (250 µs: 5 % more wall time for 32 sleds behind a switch
/// at 0.1 % loss, simulated, 11 % for one sled).
pub const RESEND_GAP: Duration = Duration::from_micros(210);

/// The most gap between resent frames: a console line at 9600 baud.
pub const RESEND_GAP_MAX: Duration = Duration::from_millis(50);

/// How long a sled with a 115200-baud console (about 4 ms a line) takes
/// to print a line for every frame of a resent batch: before the server
/// knows a sled keeps up with resent frames, it waits that long after one
/// resend round before the next, so that rounds never pile up on a sled
/// still printing the last one's lines.
/// Half as long again, to spare.
pub const SLOW_DRAIN: Duration = Duration::from_micros(
    crate::sled::CONSOLE_LINE_115200.as_micros() as u64 * READ_SLOTS as u64 * 3 / 2,
);

/// What a resend answered by the sled's next READ says of its pace: the
/// READ came `answer` after the first resent frame left (less a round trip
/// as long as any the link has lately given), `frames` resent frames having
/// left `gap` apart, over `took` at least (the link, shared with other
/// sleds, may have held them longer). A sled that prints a line as fast as the gap answers
/// just after its missing frame, while frames are still leaving: it keeps
/// up. One that answers more than twice as late as the resent frames took
/// to leave (and later than [`SLOW_ANSWER`]) printed slower than the gap
/// and was buried in lines (at 115200
/// baud a line takes about 4 ms; frames at 210 µs pile up 18 lines for
/// each it prints): it needed at least `answer / frames` a frame (less, as
/// its last turn took only the frames queued when it began), and the gap
/// rises to a quarter more than that at once. Twice, not a little more: a
/// round trip longer than usual must not ratchet the gap up, for the gap
/// never comes down again for that sled (one a little slower than the gap
/// answers while frames still leave, yet owes lines that make its next
/// batch look late: resends on resends). Late also when the whole round
/// had left (the link may have held it) more than [`SLOW_ANSWER`] before
/// the answer: a sled that keeps up answers while the frames still leave,
/// the missing one among them. Returns the new gap and whether the sled
/// kept up: `None` after too few frames to tell ([`KEPT_UP_FRAMES`]: its
/// READ may have been on its way when the round began).
/// An answer sooner than this is never taken for a slow console: five
/// lines at 115200 baud, more than a loaded host's scheduling delays. Nor
/// one after fewer than half a batch of resent frames: a slow console
/// falls behind frames 210 µs apart by the dozen, while a delay on a busy
/// host comes after a few and, divided by them, would ratchet the gap up
/// for good.
const SLOW_ANSWER: Duration = Duration::from_millis(20);

/// The fewest resent frames before an answer that say a sled kept up
/// (3.4 ms of frames at [`RESEND_GAP`]; a READ that was on its way when
/// the round began comes sooner, the timeout being a quarter more than
/// the sled's round trip and console line). Fewer say nothing.
const KEPT_UP_FRAMES: u32 = 16;

pub(crate) fn next_gap(
    gap: Duration,
    answer: Duration,
    frames: u32,
    took: Duration,
) -> (Duration, Option<bool>) {
    if frames < KEPT_UP_FRAMES {
        return (gap, None);
    }
    let sending = (gap * frames).max(took);
    let late = answer > sending * 2 || answer > sending + SLOW_ANSWER;
    if frames >= READ_SLOTS as u32 / 2 && late && answer > SLOW_ANSWER {
        (
            (answer / frames * 5 / 4).clamp(gap, RESEND_GAP_MAX),
            Some(false),
        )
    } else {
        (gap, Some(true))
    }
}

/// The last dense batch the sled asked for, and its resending.
#[derive(Clone, Copy, Debug)]
struct Batch {
    first: u64,
    /// When the sled asked for it.
    asked_at: Duration,
    /// When its last queued frame left the server (None while frames of
    /// it are still queued).
    done_at: Option<Duration>,
    /// When its first sending's last frame left.
    first_done: Option<Duration>,
    /// When it was last resent.
    resent_at: Option<Duration>,
    /// Resends so far.
    rounds: u32,
}

/// Doublings of the resend timeout at most, in a row.
const MAX_BACKOFF: u32 = 3;

/// When the OFFER goes again after the first, while the sled has sent no
/// READ. The turn of the client's loop that accepts an OFFER ends there
/// (`oxide_boot_net_ether_turn` returns), and the loop sleeps until a frame
/// arrives or 50 ms pass; only the next turn sends the first READ. A frame
/// wakes it at once: the OFFER again, which a reading client drops without
/// a word (and one that lost the first takes). The first after 250 µs,
/// once the turn that took the first OFFER is under way (a frame queued
/// before it began would wake nothing); the second in case the first came
/// too soon, or was lost.
pub const OFFER_AGAIN: [Duration; 2] = [Duration::from_micros(250), Duration::from_millis(5)];

/// How long a round trip counts toward `Rtt`'s peak: one to two of
/// these.
pub const PEAK_EPOCH: Duration = Duration::from_millis(1_500);

/// The most a sled's console line is taken to cost from its first READ
/// (`Rtt::line`): three lines at 115200 baud. A first READ later than
/// that was late for another reason (the OFFER sent again was lost, and
/// the client's loop slept its 50 ms), not a slower console; a console
/// that slow is found by its resends (`next_gap`).
pub const LINE_MAX: Duration =
    Duration::from_micros(crate::sled::CONSOLE_LINE_115200.as_micros() as u64 * 3);

/// The round-trip estimate (RFC 6298's variables), what a console line
/// costs the sled, the longest round trip lately, and the backoff.
///
/// The timeout is a quarter more than the longest of: `srtt + 4 rttvar`;
/// `srtt` and a console line; the peak. Once a second the client prints
/// its progress line at the start of a turn (`oxide_boot_net_ether_turn`):
/// when that turn ends a batch, its READ is late by a console line (4 ms
/// at 115200 baud). When batches come slowly (a shared link) the line
/// falls mid-batch and delays nothing, for seconds on end: no sample
/// shows it, and `srtt + 4 rttvar` forgets it within a few hundred
/// samples. The line's cost is the sled's own, measured once from its
/// first READ ([`Session::take_first_trip`]): a console line is not a lost
/// frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The least round trip sampled (batches only).
    min_rtt: Option<Duration>,
    /// The first READ's round trip, a console line included.
    first: Option<Duration>,
    /// The longest round trip sampled in this [`PEAK_EPOCH`] and the last
    /// one, and when this one began: a delay that comes now and then (a
    /// busy host's) is not forgotten as soon as `rttvar` forgets it.
    peak: [Duration; 2],
    epoch: Option<Duration>,
    /// Timeouts not yet undone by answers: each doubles the timeout.
    backoff: u32,
    pub(crate) rto: Duration,
}

impl Rtt {
    pub(crate) fn new(limits: &Limits) -> Rtt {
        let mut r = Rtt {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            first: None,
            peak: [Duration::ZERO; 2],
            epoch: None,
            backoff: 0,
            rto: Duration::ZERO,
        };
        r.update(limits);
        r
    }

    fn update(&mut self, limits: &Limits) {
        // G, the clock's granularity, is zero in virtual time and small
        // against the floor in real time. Before any sample: 50 ms.
        let base = match self.srtt {
            Some(s) => (s + self.rttvar * 4).max((s + self.line()).max(self.peak()) * 5 / 4),
            None => Duration::from_millis(50),
        };
        let factor = 1u32 << self.backoff.min(MAX_BACKOFF);
        let most = limits.resend_max.max(limits.resend_after);
        self.rto = base
            .clamp(limits.resend_after, most)
            .saturating_mul(factor)
            .min(most);
    }

    /// A round trip as long as any the path has lately given (`srtt + 4
    /// rttvar`): a busy link's queue is not a slow sled.
    pub(crate) fn long_trip(&self) -> Duration {
        self.srtt.unwrap_or_default() + self.rttvar * 4
    }

    /// The longest round trip of the last one to two [`PEAK_EPOCH`]s.
    pub(crate) fn peak(&self) -> Duration {
        self.peak[0].max(self.peak[1])
    }

    /// What a console line costs the sled, at most [`LINE_MAX`]: its
    /// first READ's round trip less the least a batch's took.
    pub(crate) fn line(&self) -> Duration {
        let first = self.first.unwrap_or_default();
        first
            .saturating_sub(self.min_rtt.unwrap_or_default())
            .min(LINE_MAX)
    }

    /// The first READ's round trip `r` ([`Session::take_first_trip`]).
    pub(crate) fn first_trip(&mut self, r: Duration, limits: &Limits) {
        self.first = Some(r);
        self.update(limits);
    }

    /// Epochs are whole [`PEAK_EPOCH`]s from the first sample. Without
    /// samples (every batch resent) the peak stays: the longer timeout is
    /// the safe side while the path loses frames.
    fn note_peak(&mut self, now: Duration, r: Duration) {
        let Some(e) = self.epoch else {
            self.peak = [r, Duration::ZERO];
            self.epoch = Some(now);
            return;
        };
        let passed = (now.saturating_sub(e).as_nanos() / PEAK_EPOCH.as_nanos()) as u32;
        match passed {
            0 => self.peak[0] = self.peak[0].max(r),
            1 => self.peak = [r, self.peak[0]],
            _ => self.peak = [r, Duration::ZERO],
        }
        self.epoch = Some(e + PEAK_EPOCH * passed);
    }

    /// A round trip `r`, sampled at `now`.
    pub(crate) fn sample(&mut self, now: Duration, r: Duration, limits: &Limits) {
        self.note_peak(now, r);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        self.backoff = 0;
        self.update(limits);
    }

    /// A timeout: wait twice as long from now on (at most eight times the
    /// estimate), until a batch sent once is answered. The cap keeps heavy
    /// loss, where few batches go without a resend, from pinning the
    /// timeout at its maximum; eight times is room enough for a queue to
    /// build up between samples.
    pub(crate) fn back_off(&mut self, limits: &Limits) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
        self.update(limits);
    }

    /// A resent batch answered by its resend: a frame was lost, the
    /// timeout was not too short. One doubling is undone.
    pub(crate) fn loss_confirmed(&mut self, limits: &Limits) {
        self.backoff = 0;
        self.update(limits);
    }
}

/// A sled's pace for resent frames, a session's or a broadcast cohort
/// member's: its round trip and resend timeout, the gap its console needs
/// between resent frames, whether it was seen to keep up with them (until
/// then, rounds are [`SLOW_DRAIN`] apart), no resend before `quiet_until`
/// (a slow console still printing lines for frames resent before its last
/// READ), and when its next resent frame may leave.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResendPace {
    pub(crate) rtt: Rtt,
    /// The gap [`next_gap`] raised it to (zero: not raised; see
    /// [`ResendPace::gap`]).
    pub(crate) slow_gap: Duration,
    pub(crate) keeps_up: bool,
    pub(crate) quiet_until: Duration,
    pub(crate) next: Duration,
}

impl ResendPace {
    pub(crate) fn new(now: Duration, limits: &Limits) -> ResendPace {
        ResendPace {
            rtt: Rtt::new(limits),
            slow_gap: Duration::ZERO,
            keeps_up: false,
            quiet_until: now,
            next: now,
        }
    }

    /// The gap between resent frames now: [`RESEND_GAP`], or what the
    /// sled's resends showed it needs.
    pub(crate) fn gap(&self) -> Duration {
        self.slow_gap.max(RESEND_GAP)
    }

    /// How long a second resend round waits after the first's frames
    /// left, besides the timeout: until the sled was seen to keep up, the
    /// time a 115200-baud console takes to print the round.
    pub(crate) fn drain(&self) -> Duration {
        if self.keeps_up {
            Duration::ZERO
        } else {
            SLOW_DRAIN.saturating_sub(self.gap() * READ_SLOTS as u32)
        }
    }

    /// A batch answered at `now` by its first resend round alone, whose
    /// `frames` frames left from `first` to `last`: how fast the sled took
    /// them ([`next_gap`]). A slow one gets the gap it needs and no resend
    /// for [`SLOW_DRAIN`]: lines for most of the round may still be ahead
    /// of its next batch, at a pace not known yet. Returns the verdict.
    pub(crate) fn judge(
        &mut self,
        now: Duration,
        first: Duration,
        last: Duration,
        frames: u32,
    ) -> Option<bool> {
        let answer = now
            .saturating_sub(first)
            .saturating_sub(self.rtt.long_trip());
        let took = last.saturating_sub(first) + self.gap();
        let (gap, kept_up) = next_gap(self.gap(), answer, frames, took);
        self.keeps_up = kept_up.unwrap_or(self.keeps_up);
        if kept_up == Some(false) {
            self.slow_gap = gap;
            self.quiet_until = now + SLOW_DRAIN;
        }
        kept_up
    }
}

/// A READ token bucket: `rate` a second, a tenth of a second's worth (at
/// least 16) at once.
#[derive(Clone, Copy, Debug)]
struct ReadBucket {
    tokens: f64,
    at: Duration,
}

impl ReadBucket {
    fn full(now: Duration) -> ReadBucket {
        ReadBucket {
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

/// What sending a frame needs besides the session: the server's MAC, the
/// outbox, where events go, and how long frames queue on the server's
/// link before they leave it (the link's pace lets a little more than its
/// rate go at once).
pub struct SendCtx<'a> {
    pub from: Mac,
    pub out: &'a mut Outbox,
    pub events: &'a mut Vec<Event>,
    pub queued: Duration,
}

/// One sled being served.
#[derive(Debug)]
pub struct Session {
    pub mac: Mac,
    pub image: Arc<ServedImage>,
    pub started: Duration,
    pub last_seen: Duration,
    /// Bytes of image sent in DATA frames, retransmissions included.
    pub sent: u64,
    /// DATA frames sent.
    pub frames: u64,
    /// The highest image offset served so far (progress).
    pub high: u64,
    /// The broadcast cohort the sled is in (`--broadcast`).
    pub cohort: Option<u64>,
    /// Batches resent because the sled's next READ was overdue.
    pub resent_batches: u64,
    /// Re-requested blocks and resent batches not yet reported.
    pending_retransmits: u64,
    pending_resent: u64,
    last_retransmit_report: Option<Duration>,
    batch: Option<Batch>,
    /// Its round trip, console and resend timing.
    resend: ResendPace,
    /// When the OFFER went out, until the first READ answers it; how many
    /// times it went again ([`OFFER_AGAIN`]), the first of them when.
    offered_at: Option<Duration>,
    offers_again: usize,
    again_at: Option<Duration>,
    /// Whether the sled has sent a READ (it is booting, not just asking).
    reading: bool,
    /// READ rate limits: new batches, and re-requests.
    reads: ReadBucket,
    rereads: ReadBucket,
    dropped_reads: u64,
    last_drop_report: Option<Duration>,
    /// Frames waiting to leave, in order.
    queue: VecDeque<Run>,
    /// The sled's pace.
    pace: Option<pace::Bucket>,
    /// Image bytes of the batch being sent (read once, sent a frame at a
    /// time).
    chunks: Chunks,
    /// The server's fair share per sled ([`crate::server`]'s pacer) when
    /// this sled first had frames to send.
    pub(crate) share_from: Option<f64>,
    /// The batch in flight's first resend round: when its first frame
    /// left, and how many have left.
    resend_started: Option<Duration>,
    resend_frames: u32,
    /// When the last of them left.
    resend_last: Duration,
    /// A round the sled was too slow for: when its first frame left and
    /// how many left before the READ (see [`Session::answered`]).
    judging: Option<(Duration, u32)>,
}

impl Session {
    pub fn new(mac: Mac, image: Arc<ServedImage>, now: Duration, limits: &Limits) -> Session {
        Session {
            mac,
            image,
            started: now,
            last_seen: now,
            sent: 0,
            frames: 0,
            high: 0,
            cohort: None,
            resent_batches: 0,
            pending_retransmits: 0,
            pending_resent: 0,
            last_retransmit_report: None,
            batch: None,
            offered_at: None,
            offers_again: 0,
            again_at: None,
            resend: ResendPace::new(now, limits),
            reading: false,
            reads: ReadBucket::full(now),
            rereads: ReadBucket::full(now),
            dropped_reads: 0,
            last_drop_report: None,
            queue: VecDeque::new(),
            pace: limits
                .sled_rate
                .map(|r| pace::Bucket::new(r, Limits::sled_burst(r), now)),
            chunks: Chunks::default(),
            share_from: None,
            resend_started: None,
            resend_frames: 0,
            resend_last: now,
            judging: None,
        }
    }

    /// The gap between resent frames now: [`RESEND_GAP`], or what the
    /// sled's resends showed it needs.
    pub fn gap(&self) -> Duration {
        self.resend.gap()
    }

    /// The server sent this sled an OFFER at `now`: the first READ after it
    /// gives the path's least round trip.
    pub fn offered(&mut self, now: Duration) {
        self.offered_at = Some(now);
        self.offers_again = 0;
        self.again_at = None;
    }

    /// When the OFFER is to go again ([`OFFER_AGAIN`]).
    fn offer_again_at(&self) -> Option<Duration> {
        if self.reading {
            return None;
        }
        Some(self.offered_at? + *OFFER_AGAIN.get(self.offers_again)?)
    }

    /// Whether the OFFER is to go again now (the caller sends it).
    pub fn offer_again(&mut self, now: Duration) -> bool {
        if self.offer_again_at().is_none_or(|t| now < t) {
            return false;
        }
        self.offers_again += 1;
        self.again_at.get_or_insert(now);
        true
    }

    /// The first READ after the OFFER, at `now`: the time since the OFFER
    /// first went again (if the READ came after that; since the OFFER
    /// otherwise). The client's first reading turn prints its progress
    /// line before it sends that READ: this round trip holds a console
    /// line, the same delay the READ after each second's progress line may
    /// have (see [`Rtt`]), measured before any batch. More, if the loop was
    /// still printing the OFFER's own line when that frame came (at 115200
    /// baud it is: three lines' worth), or if that frame was lost and a
    /// later one woke it: a longer timeout than needed, the safe side. The
    /// last frame sent before the READ would come too late on some
    /// consoles (during the progress line), and a timeout shorter than a
    /// line takes the line for loss.
    pub(crate) fn take_first_trip(&mut self, now: Duration) -> Option<Duration> {
        let offered = self.offered_at.take()?;
        let from = self.again_at.filter(|&t| t <= now).unwrap_or(offered);
        Some(now.saturating_sub(from))
    }

    /// Whether the sled has sent a READ.
    pub fn is_reading(&self) -> bool {
        self.reading
    }

    /// The current resend timeout.
    pub fn rto(&self) -> Duration {
        self.resend.rtt.rto
    }

    /// The smoothed round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.resend.rtt.srtt
    }

    /// How far the sled is behind its fair share of the link, in bytes:
    /// what each booting sled's share (`share`) grew by since it began,
    /// less what it was sent. A sled that waited for a repair, and so
    /// did not take its share meanwhile, is behind: it goes first until
    /// it has caught up, and the sleds that boot together finish
    /// together instead of the unlucky ones last, alone, at their port's
    /// rate. A sled that begins later is entitled only to the shares
    /// from then on.
    pub(crate) fn behind(&self, share: f64) -> f64 {
        share - self.share_from.unwrap_or(share) - self.sent as f64
    }

    /// Whether the next frame to leave is a resent one.
    pub(crate) fn resending(&self) -> bool {
        self.queue.front().is_some_and(|r| r.resend)
    }

    /// Whether frames are waiting to leave.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A READ from the sled: queues the frames it asks for. False if the
    /// READ was dropped (over its rate limit, or a repeat of one served).
    pub fn on_read(
        &mut self,
        now: Duration,
        read: &wire::Read,
        limits: &Limits,
        events: &mut Vec<Event>,
    ) -> bool {
        self.last_seen = now;
        self.reading = true;
        let dense = is_dense(read);
        if dense {
            if let Some(b) = &self.batch {
                // The client asks for each batch once, in order: a READ
                // for an earlier batch, or for this one within the client's
                // 1 s re-request time, is a duplicate frame. (When a whole
                // batch is lost, the client's re-request of all 128 slots
                // looks exactly like the batch's first READ.)
                let first = read.offsets[0];
                let repeat = first == b.first && now.saturating_sub(b.asked_at) < REREQUEST_AFTER;
                if first < b.first || repeat {
                    return false;
                }
            }
        }
        if !self.admit(now, dense, limits, events) {
            return false;
        }
        self.queue_read(now, dense, read, limits, events);
        true
    }

    /// A cohort member handed to this session (its cohort serves by
    /// unicast now): `read` is its READ for a new batch; it has every frame
    /// before it. As [`Session::on_read`], without the check against a
    /// batch this session never served.
    /// It keeps what its cohort measured of it (`pace`): its round trip,
    /// the gap its console takes and whether it keeps up with it.
    pub(crate) fn take_over(
        &mut self,
        now: Duration,
        read: &wire::Read,
        limits: &Limits,
        events: &mut Vec<Event>,
        pace: ResendPace,
    ) -> bool {
        self.batch = None;
        self.queue.clear();
        // Its OFFER was long ago: no measure of the path.
        self.offered_at = None;
        // Not its quiet spell nor when a resent frame may next leave: the
        // cohort's repairs are over.
        self.resend.rtt = pace.rtt;
        self.resend.slow_gap = pace.slow_gap;
        self.resend.keeps_up = pace.keeps_up;
        self.on_read(now, read, limits, events)
    }

    /// The sled's READ rate limits: whether a READ (a new batch if `dense`,
    /// else a re-request) at `now` is within them. One event a second at
    /// most reports what was dropped.
    pub(crate) fn admit(
        &mut self,
        now: Duration,
        dense: bool,
        limits: &Limits,
        events: &mut Vec<Event>,
    ) -> bool {
        self.last_seen = now;
        self.reading = true;
        // Per-sled rate limits (token buckets), new batches and re-requests
        // apart: a client re-requests a slot at most once a second, so a
        // flood of scattered READs from one MAC costs little.
        let (bucket, rate, what) = if dense {
            (&mut self.reads, limits.max_reads_per_sec, "READs")
        } else {
            (
                &mut self.rereads,
                limits.max_rereads_per_sec,
                "re-request READs",
            )
        };
        if !bucket.take(now, rate as f64) {
            self.dropped_reads += 1;
            let due = self
                .last_drop_report
                .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
            if due {
                events.push(Event::Ignored {
                    mac: self.mac,
                    why: format!(
                        "{what} over the limit of {rate} a second: {} dropped so far",
                        self.dropped_reads
                    ),
                });
                self.last_drop_report = Some(now);
            }
            return false;
        }
        true
    }

    fn queue_read(
        &mut self,
        now: Duration,
        dense: bool,
        read: &wire::Read,
        limits: &Limits,
        events: &mut Vec<Event>,
    ) {
        if dense {
            let first = read.offsets[0];
            if let Some(b) = &self.batch {
                if first == b.first.wrapping_add(BATCH_BYTES) {
                    self.answered(now, *b, limits);
                }
            } else if let Some(trip) = self.take_first_trip(now) {
                self.resend.rtt.first_trip(trip, limits);
            }
            self.resend_started = None;
            self.resend_frames = 0;
            // The sled has every frame before this batch: whatever is
            // still queued (a resend it no longer needs) would only cost
            // it console lines.
            self.queue.clear();
            self.queue.push_back(Run {
                start: first,
                count: READ_SLOTS as u32,
                resend: false,
            });
            self.batch = Some(Batch {
                first,
                asked_at: now,
                done_at: None,
                first_done: None,
                resent_at: None,
                rounds: 0,
            });
        } else {
            // The client waited a second for these: send them first.
            let offsets: Vec<u64> = read.requested().collect();
            for &offset in offsets.iter().rev() {
                self.queue.push_front(Run {
                    start: offset,
                    count: 1,
                    resend: false,
                });
            }
            self.pending_retransmits += offsets.len() as u64;
            if let Some(b) = &mut self.batch {
                b.done_at = None;
            }
        }
        self.report_retransmits(now, events);
    }

    /// Counts retransmissions for the sled's RETRANSMIT event (one a
    /// second at most): `blocks` asked for again, `resent` batches.
    pub(crate) fn note_retransmits(
        &mut self,
        now: Duration,
        blocks: u64,
        resent: u64,
        events: &mut Vec<Event>,
    ) {
        self.pending_retransmits += blocks;
        self.pending_resent += resent;
        self.resent_batches += resent;
        self.report_retransmits(now, events);
    }

    /// A DATA frame for `offset` with `len` image bytes went to the sled
    /// (broadcast or not): progress and counters.
    pub(crate) fn count_sent(&mut self, offset: u64, len: usize) {
        self.sent += len as u64;
        self.frames += 1;
        let size = self.image.size();
        self.high = self.high.max(offset.saturating_add(len as u64).min(size));
    }

    /// The READ that follows batch `b` came at `now`: a round-trip sample.
    /// A batch sent once gives one (from its last frame to this READ). A
    /// resent one is ambiguous (Karn): if the READ came sooner after the
    /// resend than the shortest round trip seen, it answered the first
    /// sending (the timeout was too short: busy, not lost) and the sample
    /// is from that sending; otherwise it gives none, and one doubling of
    /// the backoff is undone (the resend was needed).
    fn answered(&mut self, now: Duration, b: Batch, limits: &Limits) {
        let Some(first_done) = b.first_done else {
            return;
        };
        let first_answered = match b.resent_at {
            None => true,
            Some(r) => self
                .resend
                .rtt
                .min_rtt
                .is_some_and(|m| now.saturating_sub(r) < m),
        };
        let judged = self.judging.take();
        if let (Some((t0, frames)), 0) = (judged, b.rounds) {
            // The batch after a slow answer, sent once: its READ came when
            // the sled had printed a line for every frame of that round
            // but the missing one, and those of this batch took no longer
            // (it came right after the answer), unless the batch took
            // longer to come than the lines to print (a busy link: that
            // time is not the console's). So the lines took about this
            // long each: the gap becomes a quarter more. Not a round trip
            // of the path.
            let coming = b
                .first_done
                .unwrap_or(b.asked_at)
                .saturating_sub(b.asked_at);
            let line = now.saturating_sub(t0).saturating_sub(coming) / frames.max(1);
            self.resend.slow_gap = self.resend.slow_gap.max((line * 5 / 4).min(RESEND_GAP_MAX));
            return;
        }
        if first_answered {
            self.resend
                .rtt
                .sample(now, now.saturating_sub(first_done), limits);
            if b.rounds == 1 {
                // The sled answered its first sending right after a resend
                // began: it was not buried in lines.
                self.resend.keeps_up = true;
            }
        } else {
            self.resend.rtt.loss_confirmed(limits);
            // Answered by the batch's first resend round (no other round
            // sent yet): how fast the sled took it.
            if let (1, Some(t0)) = (b.rounds, self.resend_started) {
                let frames = self.resend_frames;
                if self.resend.judge(now, t0, self.resend_last, frames) == Some(false) {
                    // The next batch's READ, if it needs no resend, says
                    // how long the lines took.
                    self.judging = Some((t0, frames));
                }
            }
        }
    }

    /// When [`Session::on_timer`] or [`Session::offer_again`] next has
    /// work.
    pub fn next_timer(&self, limits: &Limits) -> Option<Duration> {
        match (self.resend_at(limits), self.offer_again_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The resend deadline.
    fn resend_at(&self, limits: &Limits) -> Option<Duration> {
        if limits.resend_after.is_zero() {
            return None;
        }
        let b = self.batch.as_ref()?;
        if b.rounds >= limits.resend_rounds {
            return None;
        }
        let drain = if b.rounds == 0 {
            Duration::ZERO
        } else {
            self.resend.drain()
        };
        Some((b.done_at? + self.resend.rtt.rto.max(drain)).max(self.resend.quiet_until))
    }

    /// Timers: resends the batch when the sled's next READ is overdue.
    pub fn on_timer(&mut self, now: Duration, limits: &Limits, events: &mut Vec<Event>) {
        let Some(at) = self.resend_at(limits) else {
            return;
        };
        if now < at {
            return;
        }
        let Some(b) = &mut self.batch else { return };
        // No READ since this batch left: a frame of it was lost (likely),
        // or the READ after it was. Odd rounds resend the batch: the
        // client takes the frames it waits for and drops the rest, and its
        // next READ cancels what is still queued. Even rounds send the next
        // batch, in case that READ was lost (or the one after a resend
        // was): the client then waits for exactly those. Alternating also
        // covers a resent frame lost again, without waiting for the
        // client's own re-request a second later.
        b.rounds += 1;
        b.done_at = None;
        b.resent_at = Some(now);
        let start = if b.rounds % 2 == 1 {
            b.first
        } else {
            b.first.saturating_add(BATCH_BYTES)
        };
        self.queue.push_back(Run {
            start,
            count: READ_SLOTS as u32,
            resend: true,
        });
        self.resend.rtt.back_off(limits);
        self.resent_batches += 1;
        self.pending_resent += 1;
        self.report_retransmits(now, events);
    }

    /// When the sled's pace lets its next frame leave (`now` if it may).
    pub fn ready_at(&mut self, now: Duration) -> Duration {
        let paced = match &mut self.pace {
            Some(p) => p.ready_at(now),
            None => now,
        };
        match self.queue.front() {
            Some(r) if r.resend => paced.max(self.resend.next),
            _ => paced,
        }
    }

    /// When to wake up for this sled's next frames: when its pace allows
    /// [`WAKE_FRAMES`] of them (or the next resent one may leave).
    pub fn wake_at(&mut self, now: Duration) -> Duration {
        let frames = WAKE_FRAMES * wire::wire_len(wire::DATA_FRAME_LEN) as u64;
        let paced = match &mut self.pace {
            Some(p) => p.full_for(now, frames),
            None => now,
        };
        match self.queue.front() {
            Some(r) if r.resend => self.ready_at(now).max(self.resend.next),
            _ => paced,
        }
    }

    /// Sends the next queued frame, if any. Returns the frame's length.
    pub fn emit(&mut self, now: Duration, ctx: &mut SendCtx<'_>) -> Option<usize> {
        let gap = self.gap();
        let run = self.queue.front_mut()?;
        if run.resend {
            self.resend.next = now + gap;
            if self.batch.is_some_and(|b| b.rounds == 1) {
                self.resend_started.get_or_insert(now);
                self.resend_frames += 1;
                self.resend_last = now;
            }
        }
        let offset = run.start;
        run.start = run.start.saturating_add(DATA_CHUNK as u64);
        run.count -= 1;
        if run.count == 0 {
            self.queue.pop_front();
        }
        let size = self.image.size();
        let bytes = match self.chunks.chunk(&self.image, offset) {
            Ok(bytes) => bytes,
            Err(e) => {
                ctx.events.push(Event::ReadError {
                    mac: self.mac,
                    image: self.image.name.clone(),
                    error: e.to_string(),
                });
                self.after_emit(now, 0, ctx.queued);
                return Some(0);
            }
        };
        let len = bytes.len();
        ctx.out
            .push(self.mac, ctx.from, &Repr::Data { offset, bytes });
        let frame = wire::ETH_HEADER_LEN + wire::field::HEADER_LEN + 8 + len;
        self.sent += len as u64;
        self.frames += 1;
        self.high = self.high.max(offset.saturating_add(len as u64).min(size));
        self.after_emit(now, frame, ctx.queued);
        Some(frame)
    }

    /// A frame left (`queued` is how long the server's link holds it).
    /// The batch is done when its last frame leaves the link, or the
    /// sled's port: its pace lets a burst go faster than the port takes
    /// it (then that queue is in the switch). Round trips start there.
    fn after_emit(&mut self, now: Duration, frame: usize, queued: Duration) {
        let mut port = Duration::ZERO;
        if let Some(p) = &mut self.pace {
            // With this frame: when it has left the port.
            p.spend(frame.max(wire::ETH_MIN_FRAME));
            port = p.backlog(now);
        }
        if self.queue.is_empty() {
            if let Some(b) = &mut self.batch {
                let left = now + queued.max(port);
                b.done_at = Some(left);
                b.first_done.get_or_insert(left);
            }
        }
    }

    /// One event a second at most for a sled's retransmissions.
    fn report_retransmits(&mut self, now: Duration, events: &mut Vec<Event>) {
        let due = self
            .last_retransmit_report
            .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
        if due && (self.pending_retransmits > 0 || self.pending_resent > 0) {
            events.push(Event::Retransmit {
                mac: self.mac,
                blocks: self.pending_retransmits,
                resent: self.pending_resent,
            });
            self.pending_retransmits = 0;
            self.pending_resent = 0;
            self.last_retransmit_report = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ServedImage;

    #[test]
    fn the_estimate_follows_round_trips_within_its_bounds() {
        let limits = Limits::default();
        let mut r = Rtt::new(&limits);
        assert_eq!(r.rto, Duration::from_millis(50));
        let ms = Duration::from_millis;
        for i in 0..20 {
            r.sample(ms(i), ms(10), &limits);
        }
        // srtt 10 ms, rttvar decays toward 0; the peak is 10 ms: rto a
        // quarter more.
        assert_eq!(r.rto, ms(12) + Duration::from_micros(500));
        for i in 0..80 {
            r.sample(ms(20 + 50 * i), Duration::from_micros(100), &limits);
        }
        assert_eq!(
            r.rto, limits.resend_after,
            "the floor, the 10 ms trips forgotten"
        );
        for _ in 0..16 {
            r.back_off(&limits);
        }
        assert_eq!(r.rto, limits.resend_after * 8, "eight times at most");
        r.sample(ms(5_000), Duration::from_secs(5), &limits);
        assert_eq!(r.rto, limits.resend_max, "the cap");
    }

    /// The READ after the client's once-a-second progress line may be late
    /// by a console line: the timeout keeps room for it. The first READ's
    /// round trip (the progress line printed before it) says how long a
    /// line is, for the whole boot; the peak keeps room for a late READ a
    /// few seconds.
    #[test]
    fn the_timeout_keeps_room_for_the_progress_line() {
        let limits = Limits {
            resend_after: Duration::from_millis(1),
            ..Limits::default()
        };
        let us = Duration::from_micros;
        // A 115200-baud console: the first READ 4.1 ms after the OFFER,
        // batches answered in 200 µs, never a late one seen.
        let mut r = Rtt::new(&limits);
        r.first_trip(us(4_100), &limits);
        for i in 0..10_000u64 {
            r.sample(us(2_000 * i), us(200), &limits);
        }
        assert_eq!(r.line(), us(3_900));
        assert_eq!(r.rto, us(4_100) * 5 / 4, "20 s on");
        // A fast console: its line is small, the floor rules.
        let mut fast = Rtt::new(&limits);
        fast.first_trip(us(400), &limits);
        for i in 0..1_000u64 {
            fast.sample(us(2_000 * i), us(200), &limits);
        }
        assert_eq!(fast.rto, limits.resend_after);
        // A first READ that waited for the client's 50 ms tick (the OFFER
        // sent again was lost) is not a console line.
        let mut lost = Rtt::new(&limits);
        lost.first_trip(Duration::from_millis(50), &limits);
        lost.sample(Duration::ZERO, us(200), &limits);
        assert_eq!(lost.line(), LINE_MAX);
        // Late READs now and then (a busy host): the timeout keeps room
        // for them for a few seconds, as a smoothed estimate does not.
        let mut busy = Rtt::new(&limits);
        let mut late = Duration::ZERO;
        for i in 0..3_000u64 {
            let now = us(2_000 * i);
            let trip = if i % 500 == 0 { us(4_100) } else { us(200) };
            busy.sample(now, trip, &limits);
            if i % 500 == 499 {
                late = late.max(busy.rto);
                assert!(busy.rto > us(5_000), "{:?} at {now:?}", busy.rto);
            }
        }
        assert!(late < us(5_200));
        for i in 3_000..5_000u64 {
            busy.sample(us(2_000 * i), us(200), &limits);
        }
        assert_eq!(busy.rto, limits.resend_after, "forgotten");
    }

    /// A session serving a 1 MiB image, and a helper that sends what it
    /// may by `now`, returning the DATA offsets (KiB).
    fn session() -> (Session, Limits) {
        let image = crate::sim::rack::test_image(1 << 20, 1);
        let image = Arc::new(ServedImage::from_memory("t", image).unwrap());
        let limits = Limits {
            sled_rate: None,
            ..Limits::default()
        };
        (
            Session::new(Mac([2, 0, 0, 0, 0, 1]), image, Duration::ZERO, &limits),
            limits,
        )
    }

    fn send_until(s: &mut Session, now: Duration) -> Vec<u64> {
        let mut out = Outbox::new();
        let mut events = Vec::new();
        let mut t = Duration::ZERO;
        while s.has_queued() {
            t = t.max(s.ready_at(t));
            if t > now {
                break;
            }
            let mut ctx = SendCtx {
                from: Mac([2, 0, 0, 0, 0, 0xfe]),
                out: &mut out,
                events: &mut events,
                queued: Duration::ZERO,
            };
            s.emit(t, &mut ctx);
        }
        out.frames()
            .map(|f| match Repr::parse(&f[14..]).unwrap() {
                Repr::Data { offset, .. } => offset >> 10,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn dense(first: u64) -> wire::Read {
        let mut offsets = [0; READ_SLOTS];
        for (i, o) in offsets.iter_mut().enumerate() {
            *o = first + i as u64 * DATA_CHUNK as u64;
        }
        wire::Read {
            count: READ_SLOTS as u64,
            offsets,
        }
    }

    #[test]
    fn resend_rounds_alternate_between_the_batch_and_the_next() {
        let (mut s, limits) = session();
        let mut events = Vec::new();
        assert!(s.on_read(Duration::ZERO, &dense(0), &limits, &mut events));
        assert_eq!(send_until(&mut s, Duration::ZERO).len(), 128);
        let mut firsts = Vec::new();
        let mut now = Duration::ZERO;
        while let Some(at) = s.next_timer(&limits) {
            now = at;
            s.on_timer(now, &limits, &mut events);
            let sent = send_until(&mut s, now + Duration::from_secs(1));
            assert_eq!(sent.len(), 128);
            firsts.push(sent[0]);
            now += Duration::from_secs(1);
        }
        // The batch, the next (its READ lost?), and again: as many rounds
        // as resend-rounds.
        assert_eq!(firsts, [0, 128, 0, 128]);
        // The READ for the next batch gets it (the frames a round sent
        // ahead may have come while the sled still waited for this one,
        // and been dropped).
        assert!(s.on_read(now, &dense(128 << 10), &limits, &mut events));
        assert_eq!(send_until(&mut s, now + Duration::from_secs(1)).len(), 128);
    }

    #[test]
    fn the_resend_gap_follows_the_sleds_pace() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let zero = Duration::ZERO;
        // Answered while frames were still leaving: it kept up; the gap
        // stays.
        assert_eq!(next_gap(us(500), ms(10), 80, zero), (us(500), Some(true)));
        assert_eq!(
            next_gap(RESEND_GAP, ms(15), 64, zero),
            (RESEND_GAP, Some(true))
        );
        // Too few frames to tell (its READ may have been on its way), even
        // if late (a busy host).
        assert_eq!(next_gap(RESEND_GAP, ms(1), 4, zero), (RESEND_GAP, None));
        assert_eq!(next_gap(RESEND_GAP, ms(40), 4, zero), (RESEND_GAP, None));
        assert_eq!(
            next_gap(RESEND_GAP, ms(4), 16, zero),
            (RESEND_GAP, Some(true))
        );
        // Never down.
        assert_eq!(next_gap(ms(4), ms(100), 128, zero), (ms(4), Some(true)));
        // Answered half a second after 128 frames at 210 µs (27 ms): it
        // prints about 3.9 ms a line, and the gap is a quarter more at once.
        let (gap, kept_up) = next_gap(RESEND_GAP, ms(500), 128, zero);
        assert_eq!(kept_up, Some(false));
        assert_eq!(gap, ms(500) / 128 * 5 / 4);
        // Bounded.
        assert_eq!(
            next_gap(RESEND_GAP, Duration::from_secs(60), 128, zero).0,
            RESEND_GAP_MAX
        );
        // Frames the link held (other sleds' went first) took longer to
        // leave: an answer soon after the last is not a slow console.
        assert_eq!(
            next_gap(RESEND_GAP, ms(44), 128, ms(40)),
            (RESEND_GAP, Some(true))
        );
        // But the whole round left well before the answer: the sled was
        // still printing lines for it.
        let (gap, kept_up) = next_gap(RESEND_GAP, ms(56), 128, ms(35));
        assert_eq!(kept_up, Some(false));
        assert_eq!(gap, ms(56) / 128 * 5 / 4);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(Limits::default().check(), Ok(()));
        let bad = |l: Limits| l.check().unwrap_err().to_string();
        let d = Limits::default;
        assert_eq!(
            bad(Limits {
                resend_rounds: 32,
                ..d()
            }),
            "resend-rounds: 32 is out of range: 0 to 10"
        );
        assert!(bad(Limits {
            max_sessions: 0,
            ..d()
        })
        .starts_with("max-sessions: 0 "));
        assert!(bad(Limits {
            resend_after: Duration::from_millis(300),
            resend_max: Duration::from_millis(200),
            ..d()
        })
        .starts_with("resend-max-ms: 200 "));
        assert!(bad(Limits {
            resend_after: Duration::from_secs(1),
            ..d()
        })
        .starts_with("resend-after-ms: 1000 "));
        assert!(bad(Limits {
            idle_timeout: Duration::ZERO,
            ..d()
        })
        .starts_with("idle-timeout-secs: 0 "));
    }
}
