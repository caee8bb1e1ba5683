//! The image manifest: a TOML file describing one boot image.
//!
//! ```toml
//! name = "demo"                  # image name in the header
//! dataset = "rpool/ROOT/ramdisk" # optional, this is the default
//! target-size = "64MiB"          # optional, default 4 GiB
//! compress = true                # optional, default false
//! level = 9                      # optional zlib level, 1..9
//!
//! [source]
//! directory = "demo"             # packed as a newc cpio archive ...
//! min-size = "1MiB"              # ... padded with zeros to at least this
//! # file = "rootfs.img"          # or: a raw image, used as it is
//! ```
//!
//! Paths are relative to the manifest's directory.

use std::path::{Path, PathBuf};

use bootimage::header::{DEFAULT_DATASET, DEFAULT_TARGET_SIZE};
use bootimage::{parse_size, ImageSpec};
use serde::Deserialize;

use crate::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    name: String,
    dataset: Option<String>,
    target_size: Option<SizeValue>,
    compress: Option<bool>,
    level: Option<u32>,
    source: RawSource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    file: Option<PathBuf>,
    directory: Option<PathBuf>,
    min_size: Option<SizeValue>,
}

/// A size written as a number of bytes or as a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Where the raw image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A raw image file, used as it is.
    File(PathBuf),
    /// A directory, packed as a newc cpio archive and padded with zeros to
    /// at least `min_size` bytes.
    Directory { path: PathBuf, min_size: u64 },
}

/// A loaded, validated manifest with its paths resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The file stem: names the outputs (`STEM.img`) and the build-script
    /// variables.
    pub stem: String,
    pub spec: ImageSpec,
    pub source: Source,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            op: "read",
            source,
        })?;
        Manifest::parse(path, &text)
    }

    /// Parses `text` as the manifest at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, Error> {
        let raw: Raw = toml::from_str(text).map_err(|e| Error::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let field = |key: &'static str, message: String| Error::Field {
            path: path.to_owned(),
            key,
            message,
        };
        let size = |key, v: SizeValue| match v {
            SizeValue::Bytes(n) => Ok(n),
            SizeValue::Text(s) => parse_size(&s).map_err(|e| field(key, e.to_string())),
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| field("name", "the manifest's file name has no stem".into()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };

        let level = match (raw.compress.unwrap_or(false), raw.level) {
            (true, None) => Some(bootimage::DEFAULT_LEVEL),
            (true, Some(l)) if (1..=9).contains(&l) => Some(l),
            (true, Some(l)) => return Err(field("level", format!("{l} is out of range (1 to 9)"))),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(field("level", "is set but compress is not true".into()))
            }
        };
        let target_size = match raw.target_size {
            Some(v) => size("target-size", v)?,
            None => DEFAULT_TARGET_SIZE,
        };
        let dataset = raw.dataset.as_deref().unwrap_or(DEFAULT_DATASET);
        let spec = ImageSpec {
            target_size,
            compression: level,
            ..ImageSpec::default()
        };
        let spec = spec.with_names(dataset, &raw.name).map_err(|e| match &e {
            bootimage::Error::Name {
                field: "dataset", ..
            } => field("dataset", e.to_string()),
            _ => field("name", e.to_string()),
        })?;

        let s = raw.source;
        let source = match (s.file, s.directory) {
            (Some(file), None) => {
                if s.min_size.is_some() {
                    return Err(field(
                        "source.min-size",
                        "applies only to a directory source".into(),
                    ));
                }
                Source::File(dir.join(file))
            }
            (None, Some(d)) => Source::Directory {
                path: dir.join(d),
                min_size: match s.min_size {
                    Some(v) => size("source.min-size", v)?,
                    None => 0,
                },
            },
            _ => {
                return Err(field(
                    "source",
                    "give exactly one of `file` or `directory`".into(),
                ))
            }
        };
        Ok(Manifest {
            path: path.to_owned(),
            stem,
            spec,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("cfg/img.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn full_manifest() {
        let m = parse(
            r#"
            name = "recovery-1"
            dataset = "rpool/ROOT/x"
            target-size = "64MiB"
            compress = true
            level = 3
            [source]
            directory = "root"
            min-size = 1048576
            "#,
        )
        .unwrap();
        assert_eq!(m.stem, "img");
        assert_eq!(m.spec.image_name.as_str(), "recovery-1");
        assert_eq!(m.spec.dataset.as_str(), "rpool/ROOT/x");
        assert_eq!(m.spec.target_size, 64 << 20);
        assert_eq!(m.spec.compression, Some(3));
        assert_eq!(
            m.source,
            Source::Directory {
                path: "cfg/root".into(),
                min_size: 1 << 20
            }
        );
    }

    #[test]
    fn defaults() {
        let m = parse("name = \"x\"\n[source]\nfile = \"a.raw\"\n").unwrap();
        assert_eq!(m.spec.dataset.as_str(), "rpool/ROOT/ramdisk");
        assert_eq!(m.spec.target_size, 4 << 30);
        assert_eq!(m.spec.compression, None);
        assert_eq!(m.source, Source::File("cfg/a.raw".into()));
        let m = parse("name = \"x\"\ncompress = true\n[source]\nfile = \"a\"\n").unwrap();
        assert_eq!(m.spec.compression, Some(bootimage::DEFAULT_LEVEL));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = parse("name = \"x\"\ncolour = 1\n[source]\nfile = \"a\"\n").unwrap_err();
        assert!(e.starts_with("cfg/img.toml: "), "{e}");
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = parse("name = \"x\"\n[source]\nfile = \"a\"\nfiel = 2\n").unwrap_err();
        assert!(e.contains("unknown field `fiel`"), "{e}");
        assert_eq!(
            parse("name = \"x\"\ntarget-size = \"4 parsecs\"\n[source]\nfile = \"a\"\n")
                .unwrap_err(),
            "cfg/img.toml: target-size: invalid size \"4 parsecs\": unknown unit (examples: 4GiB, 512MiB, 64M, 1048576)"
        );
        assert_eq!(
            parse("name = \"x\"\ncompress = true\nlevel = 0\n[source]\nfile = \"a\"\n")
                .unwrap_err(),
            "cfg/img.toml: level: 0 is out of range (1 to 9)"
        );
        assert_eq!(
            parse("name = \"x\"\nlevel = 4\n[source]\nfile = \"a\"\n").unwrap_err(),
            "cfg/img.toml: level: is set but compress is not true"
        );
        assert_eq!(
            parse("name = \"x\"\n[source]\n").unwrap_err(),
            "cfg/img.toml: source: give exactly one of `file` or `directory`"
        );
        assert_eq!(
            parse("name = \"x\"\n[source]\nfile = \"a\"\nmin-size = 5\n").unwrap_err(),
            "cfg/img.toml: source.min-size: applies only to a directory source"
        );
        let long = "n".repeat(128);
        assert_eq!(
            parse(&format!("name = \"{long}\"\n[source]\nfile = \"a\"\n")).unwrap_err(),
            format!("cfg/img.toml: name: image name \"{long}\" is 128 bytes long; at most 127 fit")
        );
        assert_eq!(
            parse(&format!(
                "name = \"x\"\ndataset = \"{long}\"\n[source]\nfile = \"a\"\n"
            ))
            .unwrap_err(),
            format!(
                "cfg/img.toml: dataset: dataset name \"{long}\" is 128 bytes long; at most 127 fit"
            )
        );
        let e = parse("[source]\nfile = \"a\"\n").unwrap_err();
        assert!(e.contains("missing field `name`"), "{e}");
    }
}
