//! What the server reports, and how it is presented: one log line each
//! (`Display`) and one JSON object each (serde derive: the enum is the
//! schema). The server state machine only makes events; `bootserver`
//! prints them.

use std::time::Duration;

use serde::Serialize;

use crate::wire::Mac;

/// One image the server serves, as its first lines say it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServingImage {
    pub name: String,
    /// The file, when it came from one.
    pub path: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// The sleds given this image by MAC.
    pub macs: Vec<Mac>,
    /// Whether every other sled gets it too.
    pub any: bool,
}

/// Something worth logging. As JSON (`--json`) each event is one object
/// whose `event` field is the kind in kebab case (`hello`, `read-error`),
/// with the variant's fields beside it ([`Stamped`] adds `t`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The server is up (`bootserver`'s first line, for scripts to wait on).
    Serving {
        link: String,
        mac: Mac,
        sends_with: String,
        /// What it serves, one entry per image.
        images: Vec<ServingImage>,
    },
    Hello {
        mac: Mac,
    },
    Offer {
        mac: Mac,
        image: String,
        #[serde(rename = "bytes")]
        size: u64,
        /// The broadcast cohort the sled is offered with (`--broadcast`).
        #[serde(skip_serializing_if = "Option::is_none")]
        cohort: Option<u64>,
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
        bytes: u64,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        elapsed: Duration,
        /// 10^6 bytes a second.
        mb_per_s: f64,
        /// The broadcast cohort the sled booted in (`--broadcast`).
        #[serde(skip_serializing_if = "Option::is_none")]
        cohort: Option<u64>,
    },
    /// A broadcast cohort formed (`--broadcast`): these sleds were offered
    /// `image` together and get each batch in one broadcast.
    Cohort {
        cohort: u64,
        image: String,
        sleds: usize,
    },
    /// A broadcast cohort ended: every member finished or left. The rate
    /// is the image's bytes over the cohort's time, each sled's rate.
    CohortDone {
        cohort: u64,
        image: String,
        booted: usize,
        left: usize,
        #[serde(rename = "seconds", serialize_with = "seconds")]
        elapsed: Duration,
        mb_per_s: f64,
        /// DATA frames sent broadcast, and unicast (repairs, catching up).
        broadcast: u64,
        unicast: u64,
    },
    /// A broadcast cohort waited longer for its members' repairs than
    /// serving them one by one would take: from now on each member gets
    /// its batches by unicast as soon as it asks (nothing is broadcast).
    CohortUnicast {
        cohort: u64,
        why: String,
    },
    /// A sled said HELLO while a cohort is in transfer (or another image
    /// is gathering): it gets no OFFER yet and joins the next cohort.
    Waiting {
        mac: Mac,
        image: String,
    },
    /// A member left its cohort (silent, or said HELLO again): the others
    /// go on without it.
    Left {
        mac: Mac,
        cohort: u64,
        why: String,
    },
    /// Retransmissions for a sled (lost frames), at most one event a
    /// second: blocks the sled asked for again, and batches the server
    /// resent when the sled's next READ was overdue.
    Retransmit {
        mac: Mac,
        blocks: u64,
        resent: u64,
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
    /// More events of one kind in the last second than the log shows.
    Suppressed {
        kind: String,
        count: u64,
    },
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

impl Event {
    /// A FINISHED event, its rate worked out.
    pub fn finished(mac: Mac, image: String, bytes: u64, elapsed: Duration) -> Event {
        Event::Finished {
            mac,
            image,
            bytes,
            elapsed,
            mb_per_s: mb_per_s(bytes, elapsed),
            cohort: None,
        }
    }

    /// The same event, marked with the broadcast cohort it belongs to
    /// (OFFER and FINISHED; other events unchanged).
    pub fn in_cohort(mut self, c: Option<u64>) -> Event {
        if let Event::Offer { cohort, .. } | Event::Finished { cohort, .. } = &mut self {
            *cohort = c;
        }
        self
    }

    /// The event's kind, as in its JSON `event` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Serving { .. } => "serving",
            Event::Hello { .. } => "hello",
            Event::Offer { .. } => "offer",
            Event::Resumed { .. } => "resumed",
            Event::Finished { .. } => "finished",
            Event::Cohort { .. } => "cohort",
            Event::CohortDone { .. } => "cohort-done",
            Event::CohortUnicast { .. } => "cohort-unicast",
            Event::Waiting { .. } => "waiting",
            Event::Left { .. } => "left",
            Event::Retransmit { .. } => "retransmit",
            Event::Reset { .. } => "reset",
            Event::Refused { .. } => "refused",
            Event::Ignored { .. } => "ignored",
            Event::ReadError { .. } => "read-error",
            Event::Expired { .. } => "expired",
            Event::Reloaded { .. } => "reloaded",
            Event::ImageFailed { .. } => "image-failed",
            Event::Suppressed { .. } => "suppressed",
        }
    }

    /// The event with its time, for JSON output.
    pub fn at(&self, t: Duration) -> Stamped<'_> {
        Stamped {
            event: self,
            t: t.as_secs_f64(),
        }
    }
}

/// An event and `t`, the seconds since the server started: one JSON
/// object (`serde_json::to_string(&event.at(t))`).
#[derive(Serialize)]
pub struct Stamped<'a> {
    #[serde(flatten)]
    pub event: &'a Event,
    pub t: f64,
}

/// One log line per event.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Serving {
                link,
                mac,
                sends_with,
                images,
            } => {
                let count = match images.len() {
                    1 => "1 image".to_owned(),
                    n => format!("{n} images"),
                };
                write!(
                    f,
                    "serving on {link} ({mac}, sending with {sends_with}), {count}:"
                )?;
                for i in images {
                    let mut who: Vec<String> = i.macs.iter().map(Mac::to_string).collect();
                    if i.any {
                        who.push(if who.is_empty() { "any" } else { "any other" }.into());
                    }
                    let who = if who.is_empty() {
                        "no sled".to_owned()
                    } else {
                        who.join(", ")
                    };
                    write!(
                        f,
                        "\n    {}: {} bytes, sha256 {}, for {who}",
                        i.name,
                        i.size,
                        &i.sha256[..i.sha256.len().min(12)]
                    )?;
                }
                Ok(())
            }
            Event::Hello { mac } => write!(f, "HELLO from {mac}"),
            Event::Offer {
                mac,
                image,
                size,
                cohort,
            } => {
                write!(f, "OFFER {image} ({size} bytes) to {mac}")?;
                match cohort {
                    Some(c) => write!(f, " (cohort {c})"),
                    None => Ok(()),
                }
            }
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
                mb_per_s,
                cohort,
            } => {
                write!(
                    f,
                    "FINISHED {mac}: {image}, {bytes} bytes in {:.2} s ({mb_per_s:.1} MB/s)",
                    elapsed.as_secs_f64(),
                )?;
                match cohort {
                    Some(c) => write!(f, " (cohort {c})"),
                    None => Ok(()),
                }
            }
            Event::Cohort {
                cohort,
                image,
                sleds,
            } => write!(
                f,
                "COHORT {cohort}: {image} offered to {sleds} sleds at once"
            ),
            Event::CohortUnicast { cohort, why } => {
                write!(f, "COHORT {cohort} UNICAST: {why}")
            }
            Event::CohortDone {
                cohort,
                image,
                booted,
                left,
                elapsed,
                mb_per_s,
                broadcast,
                unicast,
            } => write!(
                f,
                "COHORT {cohort} DONE: {image}, {booted} sleds booted, {left} left, in {:.2} s \
                 ({mb_per_s:.1} MB/s each); {broadcast} DATA frames broadcast, {unicast} unicast",
                elapsed.as_secs_f64(),
            ),
            Event::Waiting { mac, image } => write!(
                f,
                "WAITING {mac}: {image} after the cohort in transfer (no OFFER yet)"
            ),
            Event::Left { mac, cohort, why } => write!(f, "LEFT cohort {cohort}: {mac}: {why}"),
            Event::Retransmit {
                mac,
                blocks,
                resent,
            } => write!(
                f,
                "RETRANSMIT {mac}: {blocks} blocks asked for again, {resent} batches resent"
            ),
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
            Event::Suppressed { kind, count } => {
                write!(
                    f,
                    "({count} more {kind} events in the last second not shown)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);

    fn one_of_each() -> Vec<Event> {
        let s = |x: &str| x.to_string();
        vec![
            Event::Serving {
                link: s("eth0"),
                mac: MAC,
                sends_with: s("AF_XDP"),
                images: vec![ServingImage {
                    name: s("demo"),
                    path: Some(s("demo.img")),
                    size: 1 << 20,
                    sha256: s("ab").repeat(32),
                    macs: vec![MAC],
                    any: true,
                }],
            },
            Event::Hello { mac: MAC },
            Event::Offer {
                mac: MAC,
                image: s("demo"),
                size: 1 << 20,
                cohort: None,
            },
            Event::Resumed {
                mac: MAC,
                image: s("demo"),
            },
            Event::finished(MAC, s("demo"), 2_000_000, Duration::from_secs(2)),
            Event::Retransmit {
                mac: MAC,
                blocks: 3,
                resent: 1,
            },
            Event::Reset {
                mac: MAC,
                reason: s("r"),
            },
            Event::Refused { mac: MAC },
            Event::Ignored {
                mac: MAC,
                why: s("w"),
            },
            Event::ReadError {
                mac: MAC,
                image: s("demo"),
                error: s("e"),
            },
            Event::Expired {
                mac: MAC,
                image: s("demo"),
            },
            Event::Reloaded { image: s("demo") },
            Event::ImageFailed {
                image: s("demo"),
                error: s("e"),
            },
            Event::Suppressed {
                kind: s("hello"),
                count: 7,
            },
            Event::Cohort {
                cohort: 2,
                image: s("demo"),
                sleds: 32,
            },
            Event::CohortDone {
                cohort: 2,
                image: s("demo"),
                booted: 31,
                left: 1,
                elapsed: Duration::from_secs(2),
                mb_per_s: 1.0,
                broadcast: 2048,
                unicast: 5,
            },
            Event::Waiting {
                mac: MAC,
                image: s("demo"),
            },
            Event::Left {
                mac: MAC,
                cohort: 2,
                why: s("silent"),
            },
            Event::finished(MAC, s("demo"), 2_000_000, Duration::from_secs(2)).in_cohort(Some(2)),
            Event::CohortUnicast {
                cohort: 2,
                why: s("w"),
            },
        ]
    }

    /// The JSON schema scripts read: every event's fields, pinned.
    #[test]
    fn every_events_json_fields_are_pinned() {
        let expected: &[(&str, &[&str])] = &[
            ("serving", &["link", "mac", "sends_with", "images"]),
            ("hello", &["mac"]),
            ("offer", &["mac", "image", "bytes"]),
            ("resumed", &["mac", "image"]),
            (
                "finished",
                &["mac", "image", "bytes", "seconds", "mb_per_s"],
            ),
            ("retransmit", &["mac", "blocks", "resent"]),
            ("reset", &["mac", "reason"]),
            ("refused", &["mac"]),
            ("ignored", &["mac", "why"]),
            ("read-error", &["mac", "image", "error"]),
            ("expired", &["mac", "image"]),
            ("reloaded", &["image"]),
            ("image-failed", &["image", "error"]),
            ("suppressed", &["kind", "count"]),
            ("cohort", &["cohort", "image", "sleds"]),
            (
                "cohort-done",
                &[
                    "cohort",
                    "image",
                    "booted",
                    "left",
                    "seconds",
                    "mb_per_s",
                    "broadcast",
                    "unicast",
                ],
            ),
            ("waiting", &["mac", "image"]),
            ("left", &["mac", "cohort", "why"]),
            (
                "finished",
                &["mac", "image", "bytes", "seconds", "mb_per_s", "cohort"],
            ),
            ("cohort-unicast", &["cohort", "why"]),
        ];
        let events = one_of_each();
        assert_eq!(events.len(), expected.len());
        for (e, (kind, fields)) in events.iter().zip(expected) {
            let text = serde_json::to_string(&e.at(Duration::from_millis(1500))).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let obj = v.as_object().unwrap();
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut want: Vec<&str> = fields.iter().copied().chain(["event", "t"]).collect();
            want.sort_unstable();
            assert_eq!(keys, want, "{text}");
            assert_eq!(v["event"], *kind, "{text}");
            assert_eq!(e.kind(), *kind);
            assert_eq!(v["t"], 1.5);
            if let Some(m) = v.get("mac") {
                assert_eq!(m, "02:00:00:00:00:01");
            }
        }
        let fin = serde_json::to_value(&events[4]).unwrap();
        assert_eq!(fin["seconds"], 2.0);
        assert_eq!(fin["mb_per_s"], 1.0);
        assert_eq!(fin["bytes"], 2_000_000);
    }

    #[test]
    fn log_lines() {
        let lines: Vec<String> = one_of_each().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines[0],
            "serving on eth0 (02:00:00:00:00:01, sending with AF_XDP), 1 image:\n    \
             demo: 1048576 bytes, sha256 abababababab, for 02:00:00:00:00:01, any other"
        );
        assert_eq!(
            lines[4],
            "FINISHED 02:00:00:00:00:01: demo, 2000000 bytes in 2.00 s (1.0 MB/s)"
        );
        assert_eq!(
            lines[13],
            "(7 more hello events in the last second not shown)"
        );
        assert_eq!(
            lines[15],
            "COHORT 2 DONE: demo, 31 sleds booted, 1 left, in 2.00 s (1.0 MB/s each); \
             2048 DATA frames broadcast, 5 unicast"
        );
        assert_eq!(
            lines[18],
            "FINISHED 02:00:00:00:00:01: demo, 2000000 bytes in 2.00 s (1.0 MB/s) (cohort 2)"
        );
        assert_eq!(lines[19], "COHORT 2 UNICAST: w");
    }
}
