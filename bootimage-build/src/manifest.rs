//! The image manifest: a TOML file describing one boot image.
//!
//! ```toml
//! name = "demo"                  # image name in the header
//! dataset = "rpool/ROOT/ramdisk" # optional, this is the default
//! target-size = "64MiB"          # optional, default 4 GiB
//! pad-to = "128KiB"              # optional: zeros up to a multiple (default 128 KiB; 0 or 1: none)
//! compress = true                # optional, default false
//! level = 9                      # optional zlib level, 1..9
//!
//! checksum-file = "boot_image_csum" # optional: OUT/NAME gets the 32 raw digest bytes
//!
//! [source]
//! directory = "demo"             # packed as a newc cpio archive ...
//! min-size = "1MiB"              # ... padded with zeros to at least this
//! # file = "rootfs.img"          # or: a raw image, used as it is
//!
//! [boot-archive]                 # optional: an odc cpio archive with boot_image_csum
//! output = "cpio.z"              # file name in OUT (default STEM.boot.cpio, or .cpio.z with compress)
//! root = "proto/boot"            # a directory packed whole (optional)
//! files = { "platform/oxide/kernel/amd64/unix" = "proto/unix" }  # archive path = file (optional)
//! compress = true                # one zlib stream, as phbl reads it ("zlib" too; default false)
//!
//! [image-archive]                # optional: the rack's update archive
//! output = "os.tar.gz"           # file name in OUT (default STEM.tar.gz)
//! name = "helios"                # oxide.json "i.name" (default: the image name)
//! roms = { gimlet = "gimlet.rom", cosmo = "cosmo.rom" }  # image/BOARD.rom, 32 MiB each (optional)
//! # rom = "gimlet.rom"           # shorthand for roms.gimlet
//! unix = "proto/unix"            # the kernel, packed as image/unix.z (zlib) (optional)
//! extra = { "build.txt" = "build.txt" }  # more image/ members (optional)
//! info = { version = "1.0.0" }   # more oxide.json "i" entries (optional)
//! ```
//!
//! Paths are relative to the manifest's directory and may not leave it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bootimage::consumers::{LEGACY_ROM, LEGACY_ROM_BOARD, ROM_BOARDS};
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
    pad_to: Option<SizeValue>,
    compress: Option<bool>,
    level: Option<u32>,
    checksum_file: Option<String>,
    source: RawSource,
    boot_archive: Option<RawBootArchive>,
    image_archive: Option<RawImageArchive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBootArchive {
    output: Option<String>,
    root: Option<PathBuf>,
    #[serde(default)]
    files: BTreeMap<String, PathBuf>,
    compress: Option<CompressValue>,
}

/// `[boot-archive] compress`: `true`/`false`, or a name.
#[derive(Deserialize)]
#[serde(untagged)]
enum CompressValue {
    Bool(bool),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImageArchive {
    output: Option<String>,
    name: Option<String>,
    rom: Option<PathBuf>,
    #[serde(default)]
    roms: BTreeMap<String, PathBuf>,
    unix: Option<PathBuf>,
    #[serde(default)]
    extra: BTreeMap<String, PathBuf>,
    #[serde(default)]
    info: BTreeMap<String, String>,
}

/// The boot archive to make: odc cpio with `boot_image_csum` added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootArchive {
    /// File name in the output directory.
    pub output: String,
    pub root: Option<PathBuf>,
    /// (path in the archive, file on disk), sorted.
    pub files: Vec<(String, PathBuf)>,
    /// Write it as one zlib stream (`cpio.z`, as phbl reads it).
    pub zlib: bool,
}

/// A host boot ROM for one board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rom {
    /// `gimlet` or `cosmo`: the member is `image/BOARD.rom`.
    pub board: &'static str,
    pub path: PathBuf,
    /// The manifest key that gave it (`image-archive.roms.gimlet`, or
    /// `image-archive.rom`).
    pub key: String,
}

/// The image archive to make: `oxide.json`, `image/zfs.img` and more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageArchive {
    pub output: String,
    /// `oxide.json`'s `i.name`.
    pub name: String,
    /// The board ROMs, in [`bootimage::consumers::ROM_BOARDS`] order.
    pub roms: Vec<Rom>,
    /// The kernel, packed as `image/unix.z`.
    pub unix: Option<PathBuf>,
    /// (name under `image/`, file on disk), sorted.
    pub extra: Vec<(String, PathBuf)>,
    /// More `i` entries.
    pub info: BTreeMap<String, String>,
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
    /// File name in the output directory for the raw checksum.
    pub checksum_file: Option<String>,
    pub boot_archive: Option<BootArchive>,
    pub image_archive: Option<ImageArchive>,
}

/// Resolves `p` against the manifest's directory `dir`: relative, and not
/// leaving `dir` (lexically, nor through a symbolic link when it exists).
fn inside(manifest: &Path, dir: &Path, key: &str, p: &Path) -> Result<PathBuf, Error> {
    let err = |why: &str| Error::Field {
        path: manifest.to_owned(),
        key: key.to_owned(),
        message: format!("{}: {why}", p.display()),
    };
    if p.is_absolute() {
        return Err(err(
            "absolute paths are not allowed: paths are relative to the manifest's directory",
        ));
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(err("leaves the manifest's directory"));
        }
    }
    let full = dir.join(p);
    if let (Ok(real), Ok(base)) = (full.canonicalize(), dir.canonicalize()) {
        if !real.starts_with(&base) {
            return Err(err(
                "leads out of the manifest's directory (through a symbolic link)",
            ));
        }
    }
    Ok(full)
}

/// An output file name: a plain name, no directories.
fn output_name(manifest: &Path, key: &str, name: &str) -> Result<String, Error> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(Error::Field {
            path: manifest.to_owned(),
            key: key.to_owned(),
            message: format!(
                "{name:?} must be a plain file name (it is written to the output directory)"
            ),
        });
    }
    Ok(name.to_owned())
}

/// A member path inside an archive: relative, no `.` or `..`, no empty
/// components.
fn member_name(manifest: &Path, key: &str, name: &str) -> Result<String, Error> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        return Err(Error::Field {
            path: manifest.to_owned(),
            key: key.to_owned(),
            message: format!(
                "{name:?} is not a relative member path (no leading /, no . or .. components)"
            ),
        });
    }
    Ok(name.to_owned())
}

/// How the build makes `image/NAME` itself, when it does: such names are
/// not extras.
fn made_by_the_build(name: &str) -> Option<&'static str> {
    Some(match name {
        "zfs.img" => "the boot image",
        "unix.z" => "give the kernel as `unix` (packed as one zlib stream)",
        "cpio.z" => "made from [boot-archive] (its zlib form)",
        "gimlet.rom" | "cosmo.rom" | LEGACY_ROM => "give ROMs as `roms` (or `rom` for gimlet's)",
        _ => return None,
    })
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(path).map_err(crate::io_err(path, "read"))?;
        Manifest::parse(path, &text)
    }

    /// Parses `text` as the manifest at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, Error> {
        let raw: Raw = toml::from_str(text).map_err(|e| Error::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let field = |key: &str, message: String| Error::Field {
            path: path.to_owned(),
            key: key.to_owned(),
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
        let pad_to = match raw.pad_to {
            Some(v) => size("pad-to", v)?,
            None => bootimage::NETBOOT_ALIGN,
        };
        let spec = ImageSpec {
            target_size,
            compression: level,
            pad_to,
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
                Source::File(inside(path, &dir, "source.file", &file)?)
            }
            (None, Some(d)) => Source::Directory {
                path: inside(path, &dir, "source.directory", &d)?,
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
        let checksum_file = raw
            .checksum_file
            .map(|n| output_name(path, "checksum-file", &n))
            .transpose()?;
        let boot_archive = match raw.boot_archive {
            None => None,
            Some(b) => {
                let zlib = match b.compress {
                    None | Some(CompressValue::Bool(false)) => false,
                    Some(CompressValue::Bool(true)) => true,
                    Some(CompressValue::Name(n)) if n == "zlib" => true,
                    Some(CompressValue::Name(n)) if n == "gzip" => {
                        return Err(field(
                            "boot-archive.compress",
                            "\"gzip\": no reader of boot archives takes gzip (phbl, the host boot loader, inflates one zlib stream): use true or \"zlib\"".into(),
                        ))
                    }
                    Some(CompressValue::Name(n)) => {
                        return Err(field(
                            "boot-archive.compress",
                            format!("{n:?} is not true, false or \"zlib\""),
                        ))
                    }
                };
                let default = format!("{stem}.boot.cpio{}", if zlib { ".z" } else { "" });
                let root = b
                    .root
                    .map(|r| inside(path, &dir, "boot-archive.root", &r))
                    .transpose()?;
                let mut files = Vec::new();
                for (name, file) in b.files {
                    let key = format!("boot-archive.files.{name:?}");
                    let name = member_name(path, &key, &name)?;
                    files.push((name, inside(path, &dir, &key, &file)?));
                }
                Some(BootArchive {
                    output: output_name(path, "boot-archive.output", &b.output.unwrap_or(default))?,
                    root,
                    files,
                    zlib,
                })
            }
        };
        let image_archive = match raw.image_archive {
            None => None,
            Some(a) => {
                let mut extra = Vec::new();
                for (name, file) in a.extra {
                    let key = format!("image-archive.extra.{name:?}");
                    if let Some(how) = made_by_the_build(&name) {
                        return Err(field(
                            &key,
                            format!("image/{name} is the archive's own: {how}"),
                        ));
                    }
                    if name.contains('/') {
                        return Err(field(
                            &key,
                            format!("image/{name}: extras are plain names under image/ (no directories)"),
                        ));
                    }
                    let name = member_name(path, &key, &name)?;
                    extra.push((name, inside(path, &dir, &key, &file)?));
                }
                let mut given = Vec::new();
                if let Some(r) = a.rom {
                    given.push((
                        LEGACY_ROM_BOARD.to_string(),
                        "image-archive.rom".to_string(),
                        r,
                    ));
                }
                for (board, r) in a.roms {
                    let key = format!("image-archive.roms.{board}");
                    if !ROM_BOARDS.contains(&board.as_str()) {
                        return Err(field(
                            &key,
                            format!(
                                "unknown board {board:?}: the OS build makes ROMs for {}",
                                ROM_BOARDS.join(" and ")
                            ),
                        ));
                    }
                    if board == LEGACY_ROM_BOARD && given.iter().any(|(b, _, _)| *b == board) {
                        return Err(field(
                            &key,
                            "gimlet's ROM is given twice: by `rom` (its shorthand) and by `roms.gimlet`".into(),
                        ));
                    }
                    given.push((board, key, r));
                }
                let mut roms = Vec::new();
                for board in ROM_BOARDS {
                    if let Some((_, key, r)) = given.iter().find(|(b, _, _)| b == board) {
                        roms.push(Rom {
                            board,
                            path: inside(path, &dir, key, r)?,
                            key: key.clone(),
                        });
                    }
                }
                for reserved in ["name", "checksum"] {
                    if a.info.contains_key(reserved) {
                        return Err(field(
                            &format!("image-archive.info.{reserved}"),
                            format!(
                                "\"{reserved}\" is set by the build (duplicate oxide.json entry)"
                            ),
                        ));
                    }
                }
                Some(ImageArchive {
                    output: output_name(
                        path,
                        "image-archive.output",
                        &a.output.unwrap_or_else(|| format!("{stem}.tar.gz")),
                    )?,
                    name: a.name.unwrap_or_else(|| raw.name.clone()),
                    roms,
                    unix: a
                        .unix
                        .map(|u| inside(path, &dir, "image-archive.unix", &u))
                        .transpose()?,
                    extra,
                    info: a.info,
                })
            }
        };
        // Outputs may not overwrite each other.
        let mut outputs = vec![
            ("(the image)".to_string(), format!("{stem}.img")),
            ("(the image's cpio)".to_string(), format!("{stem}.cpio")),
        ];
        if let Some(c) = &checksum_file {
            outputs.push(("checksum-file".into(), c.clone()));
        }
        if let Some(b) = &boot_archive {
            outputs.push(("boot-archive.output".into(), b.output.clone()));
        }
        if let Some(a) = &image_archive {
            outputs.push(("image-archive.output".into(), a.output.clone()));
        }
        for (i, (key, name)) in outputs.iter().enumerate() {
            if let Some((other, _)) = outputs[..i].iter().find(|(_, n)| n == name) {
                return Err(field(key, format!("output {name:?} is also {other}")));
            }
        }
        Ok(Manifest {
            path: path.to_owned(),
            stem,
            spec,
            source,
            checksum_file,
            boot_archive,
            image_archive,
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
        // Padded for the network client by default; 0 or 1 turn it off.
        assert_eq!(m.spec.pad_to, bootimage::NETBOOT_ALIGN);
        for (v, want) in [("0", 0), ("1", 1), ("\"1MiB\"", 1 << 20)] {
            let m = parse(&format!(
                "name = \"x\"\npad-to = {v}\n[source]\nfile = \"a\"\n"
            ))
            .unwrap();
            assert_eq!(m.spec.pad_to, want, "{v}");
        }
        // The boot archive: zlib for true and "zlib", plain by default.
        for (v, zlib, output) in [
            ("", false, "img.boot.cpio"),
            ("compress = false\n", false, "img.boot.cpio"),
            ("compress = true\n", true, "img.boot.cpio.z"),
            ("compress = \"zlib\"\n", true, "img.boot.cpio.z"),
        ] {
            let m = parse(&format!(
                "name = \"x\"\n[source]\nfile = \"a\"\n[boot-archive]\n{v}"
            ))
            .unwrap();
            let b = m.boot_archive.unwrap();
            assert_eq!((b.zlib, b.output.as_str()), (zlib, output), "{v}");
        }
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
