//! The boot server's TOML configuration: which images, which sled gets
//! which, and limits.
//!
//! ```toml
//! link = "eth0"                 # optional; --link overrides
//! default = "demo"              # image for unknown MACs; omit to refuse them
//! max-sessions = 1024           # optional
//! idle-timeout-secs = 60        # optional
//! max-reads-per-sec = 5000      # optional, per sled: new batches
//! max-rereads-per-sec = 64      # optional, per sled: re-requests
//! resend-after-ms = 1           # optional: least resend timeout; 0 turns resending off
//! resend-max-ms = 250           # optional: most resend timeout
//! resend-rounds = 3             # optional
//! rate = "1gbit"                # optional: the server link's rate (default: the interface's speed)
//! sled-rate = "1gbit"           # optional: each sled's rate, or "off"
//! broadcast = false             # optional: broadcast cohorts (only server on the segment!)
//! cohort-window-ms = 4500       # optional: how long a cohort gathers HELLOs
//!
//! [[image]]
//! name = "demo"
//! path = "../target/bootimage/demo.img"   # relative to this file
//!
//! [[sled]]
//! mac = "02:00:00:00:00:01"
//! image = "demo"                # an [[image]] name, or a path to an image
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::image::{Catalog, ImageError};
use crate::pace::Rate;
use crate::server::Limits;
use crate::wire::Mac;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    link: Option<String>,
    default: Option<String>,
    max_sessions: Option<usize>,
    idle_timeout_secs: Option<u64>,
    max_reads_per_sec: Option<u32>,
    max_rereads_per_sec: Option<u32>,
    resend_after_ms: Option<u64>,
    resend_max_ms: Option<u64>,
    resend_rounds: Option<u32>,
    rate: Option<String>,
    sled_rate: Option<String>,
    broadcast: Option<bool>,
    cohort_window_ms: Option<u64>,
    #[serde(default)]
    image: Vec<RawImage>,
    #[serde(default)]
    sled: Vec<RawSled>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: String,
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSled {
    mac: String,
    image: String,
}

/// Errors name the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", path.display())]
    Field {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: {key}: {source}", path.display())]
    Image {
        path: PathBuf,
        key: String,
        source: Box<ImageError>,
    },
}

/// A loaded configuration: the catalog (every image verified) and limits.
pub struct Config {
    pub link: Option<String>,
    pub catalog: Catalog,
    /// `rate`, when the file sets it, is in `limits.rate`; when it does not,
    /// `rate_given` is false and the server may take the interface's speed.
    pub limits: Limits,
    pub rate_given: bool,
}

/// A rate setting: a rate (`1gbit`, `100mbit`) or `off` (no pacing).
pub fn parse_rate_setting(text: &str) -> Result<Option<Rate>, crate::pace::RateError> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses `text` as the configuration at `path`, loading and verifying
    /// every image it names.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let field = |key: String, message: String| ConfigError::Field {
            path: path.to_owned(),
            key,
            message,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut catalog = Catalog::new();
        let load = |catalog: &mut Catalog, key: String, name: &str, p: &Path| {
            catalog
                .add_file(name, &dir.join(p))
                .map_err(|source| ConfigError::Image {
                    path: path.to_owned(),
                    key,
                    source: Box::new(source),
                })
        };
        for (i, img) in raw.image.iter().enumerate() {
            if catalog.index_of(&img.name).is_some() {
                return Err(field(
                    format!("image[{i}].name"),
                    format!("{:?} is used twice", img.name),
                ));
            }
            load(
                &mut catalog,
                format!("image[{i}].path"),
                &img.name,
                &img.path,
            )?;
        }
        // An image given by name, or by path (loaded once per path).
        let resolve = |catalog: &mut Catalog, key: String, image: &str| {
            if let Some(i) = catalog.index_of(image) {
                return Ok(i);
            }
            if image.contains('/') || image.ends_with(".img") {
                return load(catalog, key, image, Path::new(image));
            }
            Err(field(
                key,
                format!("no [[image]] is named {image:?} (give a name or a path)"),
            ))
        };
        for (i, s) in raw.sled.iter().enumerate() {
            let mac: Mac = s.mac.parse().map_err(|e: crate::wire::MacError| {
                field(format!("sled[{i}].mac"), e.to_string())
            })?;
            let index = resolve(&mut catalog, format!("sled[{i}].image"), &s.image)?;
            catalog.assign(mac, index);
        }
        if let Some(d) = raw.default.as_deref().filter(|d| !d.is_empty()) {
            let index = resolve(&mut catalog, "default".into(), d)?;
            catalog.set_default(Some(index));
        }
        let defaults = Limits::default();
        let rate = |key: &str, text: &Option<String>, default: Option<Rate>| match text {
            None => Ok(default),
            Some(t) => parse_rate_setting(t).map_err(|e| field(key.into(), e.to_string())),
        };
        let limits = Limits {
            max_sessions: raw.max_sessions.unwrap_or(defaults.max_sessions),
            idle_timeout: raw
                .idle_timeout_secs
                .map_or(defaults.idle_timeout, Duration::from_secs),
            max_reads_per_sec: raw.max_reads_per_sec.unwrap_or(defaults.max_reads_per_sec),
            max_rereads_per_sec: raw
                .max_rereads_per_sec
                .unwrap_or(defaults.max_rereads_per_sec),
            resend_after: raw
                .resend_after_ms
                .map_or(defaults.resend_after, Duration::from_millis),
            resend_max: raw
                .resend_max_ms
                .map_or(defaults.resend_max, Duration::from_millis),
            resend_rounds: raw.resend_rounds.unwrap_or(defaults.resend_rounds),
            rate: rate("rate", &raw.rate, defaults.rate)?,
            sled_rate: rate("sled-rate", &raw.sled_rate, defaults.sled_rate)?,
            broadcast: raw.broadcast.unwrap_or(defaults.broadcast),
            cohort_window: raw
                .cohort_window_ms
                .map_or(defaults.cohort_window, Duration::from_millis),
        };
        limits.check().map_err(|e| {
            field(
                e.key.into(),
                format!("{} is out of range: {}", e.value, e.range),
            )
        })?;
        Ok(Config {
            link: raw.link,
            catalog,
            limits,
            rate_given: raw.rate.is_some(),
        })
    }
}
