//! Link rates and pacing: [`Rate`] (bits a second, parsed from `1gbit`,
//! `100mbit`, `2.5gbit` as `tc` writes them) and [`Bucket`], a token bucket
//! over wire bytes that says when a frame may leave.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::wire;

/// A link's line rate, in bits a second (1 Mbit/s to 1 Tbit/s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

impl Rate {
    pub const MIN: Rate = Rate(1_000_000);
    pub const MAX: Rate = Rate(1_000_000_000_000);
    pub const GBIT: Rate = Rate(1_000_000_000);

    /// `bits` a second, if within [`Rate::MIN`]..=[`Rate::MAX`].
    pub fn from_bits(bits: u64) -> Option<Rate> {
        (Rate::MIN.0..=Rate::MAX.0)
            .contains(&bits)
            .then_some(Rate(bits))
    }

    /// `n` Gbit/s.
    pub const fn gbit(n: u64) -> Rate {
        Rate(n * 1_000_000_000)
    }

    /// `n` Mbit/s.
    pub const fn mbit(n: u64) -> Rate {
        Rate(n * 1_000_000)
    }

    pub fn bits_per_sec(self) -> u64 {
        self.0
    }

    pub fn bytes_per_sec(self) -> f64 {
        self.0 as f64 / 8.0
    }

    /// How long `bytes` take at this rate.
    pub fn time_for(self, bytes: u64) -> Duration {
        let ns = (bytes as u128 * 8 * 1_000_000_000 + self.0 as u128 / 2) / self.0 as u128;
        Duration::from_nanos(ns.min(u64::MAX as u128) as u64)
    }

    /// Bytes this rate carries in `d`.
    pub fn bytes_in(self, d: Duration) -> f64 {
        d.as_secs_f64() * self.bytes_per_sec()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, scale) in [("tbit", 1e12), ("gbit", 1e9), ("mbit", 1e6)] {
            if b as f64 >= scale {
                let v = b as f64 / scale;
                return if v.fract() == 0.0 {
                    write!(f, "{v}{unit}")
                } else {
                    write!(f, "{v:.3}{unit}")
                };
            }
        }
        write!(f, "{b}bit")
    }
}

/// A rate that cannot be parsed or is out of range, with the text given.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a rate: {why} (give e.g. 1gbit, 10gbit, 100mbit, 2.5gbit)")]
pub struct RateError {
    pub text: String,
    pub why: &'static str,
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(text: &str) -> Result<Rate, RateError> {
        let err = |why| RateError {
            text: text.to_string(),
            why,
        };
        let t = text.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| err("no number"))?;
        let scale = match unit.trim() {
            "tbit" | "t" => 1e12,
            "gbit" | "g" => 1e9,
            "mbit" | "m" => 1e6,
            "kbit" | "k" => 1e3,
            "bit" | "" => 1.0,
            _ => return Err(err("unknown unit (tbit, gbit, mbit, kbit, bit)")),
        };
        let bits = n * scale;
        if !(bits.is_finite() && bits >= Rate::MIN.0 as f64 && bits <= Rate::MAX.0 as f64) {
            return Err(err("out of range 1mbit..1tbit"));
        }
        Ok(Rate(bits.round() as u64))
    }
}

/// A token bucket over wire bytes ([`wire::wire_len`]): `rate`, at most
/// `burst` bytes at once. A frame may leave when the bucket holds any
/// tokens at all (it may go negative by one frame), so a burst never
/// starves and the long-run rate is exact.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    rate: Rate,
    burst: f64,
    tokens: f64,
    at: Duration,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(rate: Rate, burst: u64, now: Duration) -> Bucket {
        Bucket {
            rate,
            burst: burst as f64,
            tokens: burst as f64,
            at: now,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    fn refill(&mut self, now: Duration) {
        if now > self.at {
            self.tokens = (self.tokens + self.rate.bytes_in(now - self.at)).min(self.burst);
            self.at = now;
        }
    }

    /// Whether a frame may leave at `now`.
    pub fn ready(&mut self, now: Duration) -> bool {
        self.refill(now);
        self.tokens > 0.0
    }

    /// Charges a frame of `len` bytes (its wire length is charged).
    pub fn spend(&mut self, len: usize) {
        self.tokens -= wire::wire_len(len) as f64;
    }

    /// How long the bytes sent beyond the rate take to drain: if the
    /// bucket's rate is a link's, when the frame just sent leaves it.
    pub fn backlog(&mut self, now: Duration) -> Duration {
        self.refill(now);
        Duration::from_secs_f64((self.burst - self.tokens).max(0.0) / self.rate.bytes_per_sec())
    }

    /// When a frame may next leave (`now` if it may now).
    pub fn ready_at(&mut self, now: Duration) -> Duration {
        self.refill(now);
        if self.tokens > 0.0 {
            return now;
        }
        let wait = (-self.tokens + 1.0) / self.rate.bytes_per_sec();
        now + Duration::from_secs_f64(wait)
    }

    /// When the bucket will hold `bytes` (at most its burst): a loop that
    /// waits for this sends several frames per wake-up, not one.
    pub fn full_for(&mut self, now: Duration, bytes: u64) -> Duration {
        self.refill(now);
        let want = (bytes as f64).min(self.burst);
        if self.tokens >= want {
            return now;
        }
        now + Duration::from_secs_f64((want - self.tokens) / self.rate.bytes_per_sec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_tc_writes_them() {
        assert_eq!("1gbit".parse::<Rate>().unwrap(), Rate::GBIT);
        assert_eq!("10GBIT".parse::<Rate>().unwrap(), Rate::gbit(10));
        assert_eq!(
            "2.5gbit".parse::<Rate>().unwrap().bits_per_sec(),
            2_500_000_000
        );
        assert_eq!("100mbit".parse::<Rate>().unwrap(), Rate::mbit(100));
        assert_eq!("25g".parse::<Rate>().unwrap(), Rate::gbit(25));
        assert_eq!(Rate::gbit(1).to_string(), "1gbit");
        assert_eq!(Rate::mbit(2500).to_string(), "2.500gbit");
        for bad in [
            "", "gbit", "1 gbyte", "0", "5kbit", "2tbit", "-1gbit", "1e3gbit",
        ] {
            let e = bad.parse::<Rate>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_bucket_paces_at_its_rate() {
        let mut b = Bucket::new(Rate::GBIT, 10_000, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut sent = 0u64;
        while now < Duration::from_millis(10) {
            now = b.ready_at(now);
            b.spend(wire::DATA_FRAME_LEN);
            sent += 1;
        }
        // 10 ms of 1 Gbit/s is 1,250,000 bytes: 1155 frames of 1082, plus
        // the first burst.
        assert!((1155..=1166).contains(&sent), "{sent}");
        assert_eq!(Rate::GBIT.time_for(1082), Duration::from_nanos(8656));
    }

    #[test]
    fn a_buckets_backlog_is_what_it_let_go_beyond_its_rate() {
        let mut b = Bucket::new(Rate::GBIT, 100_000, Duration::ZERO);
        assert_eq!(b.backlog(Duration::ZERO), Duration::ZERO);
        // 10,000 wire bytes at once: 80 µs at 1 Gbit/s to drain.
        b.spend(10_000 - 24);
        assert_eq!(b.backlog(Duration::ZERO), Duration::from_micros(80));
        assert_eq!(
            b.backlog(Duration::from_micros(30)),
            Duration::from_micros(50)
        );
        assert_eq!(b.backlog(Duration::from_millis(1)), Duration::ZERO);
    }
}
