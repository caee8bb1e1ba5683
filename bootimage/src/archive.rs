//! Inspecting the OS build's archives: the image archive (`NAME.tar.gz`,
//! read as a stream, never unpacked to disk) and the boot archive (a cpio
//! archive holding `boot_image_csum`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::consumers::{is_metadata, Compression, BOOT_IMAGE_CSUM};
use crate::header::{hex, Header, MAGIC};
use crate::{read_header, report, verify_payload_serial, Error, Image, InspectOptions};

/// What kind of file a path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    /// `NAME.tar.gz` with `oxide.json` and `image/zfs.img`.
    ImageArchive,
    /// A cpio archive (odc or newc): plain, one zlib stream (`cpio.z`, as
    /// phbl reads it) or gzip.
    BootArchive {
        compression: Compression,
    },
}

const CPIO_MAGICS: [&[u8]; 2] = [b"070707", b"070701"];

/// A reader that inflates `r` as `compression` says.
fn decoder<'a, R: Read + 'a>(r: R, compression: Compression) -> Box<dyn Read + 'a> {
    match compression {
        Compression::None => Box::new(r),
        Compression::Zlib => Box::new(flate2::read::ZlibDecoder::new(r)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
    }
}

/// Tells an image, an image archive and a boot archive apart by their
/// first bytes (and, for zlib and gzip, by the first bytes they inflate
/// to). A compressed file holding neither tar nor cpio, and a tar archive
/// that is not gzipped, are named for what they are; anything else is taken
/// for an image (whose header check then says what is wrong).
pub fn detect(path: &Path) -> Result<Kind, Error> {
    let not = |what: &str| Error::NotABootFile {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let mut head = [0u8; 512];
    let mut f = File::open(path).map_err(Error::io(path, "open"))?;
    let n = crate::verify::read_full(&mut f, &mut head).map_err(Error::io(path, "read"))?;
    let head = &head[..n];
    if head.len() >= 4 && head[..4] == MAGIC.to_le_bytes() {
        return Ok(Kind::Image);
    }
    if CPIO_MAGICS.iter().any(|m| head.starts_with(m)) {
        return Ok(Kind::BootArchive {
            compression: Compression::None,
        });
    }
    let compression = Compression::sniff(head);
    if compression != Compression::None {
        let mut inner = [0u8; 512];
        let f = File::open(path).map_err(Error::io(path, "open"))?;
        let mut z = decoder(BufReader::new(f), compression);
        let n = crate::verify::read_full(&mut z, &mut inner).unwrap_or(0);
        let inner = &inner[..n];
        if CPIO_MAGICS.iter().any(|m| inner.starts_with(m)) {
            return Ok(Kind::BootArchive { compression });
        }
        if compression == Compression::Gzip && is_tar(inner) {
            return Ok(Kind::ImageArchive);
        }
        return Err(not(&format!(
            "{}, holding neither tar nor cpio: not an image, image archive or boot archive",
            compression.as_str()
        )));
    }
    if is_tar(head) {
        return Err(not(
            "tar archive, not gzipped: an image archive is a gzipped tar (NAME.tar.gz)",
        ));
    }
    Ok(Kind::Image)
}

/// What [`find_member`] found: the member's contents, if any.
type FoundMember = Result<Option<Vec<u8>>, String>;

/// A POSIX (ustar) or GNU tar header.
fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// An error about a member of an archive.
fn member_error(path: &Path, member: &str, what: String) -> Error {
    Error::Archive {
        path: path.to_owned(),
        member: member.to_owned(),
        message: what,
    }
}

/// Prints an image archive's metadata and members and verifies
/// `image/zfs.img` against its header and against `oxide.json`, streaming.
pub fn inspect_image_archive(
    path: &Path,
    opts: InspectOptions,
    out: &mut dyn Write,
    progress: &dyn Fn(u64, u64),
) -> Result<(), Error> {
    let f = File::open(path).map_err(Error::io(path, "open"))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::with_capacity(
        1 << 20,
        f,
    )));
    let read_err = |e: io::Error| Error::Io {
        path: path.to_owned(),
        op: "read",
        source: e,
    };
    let mut metadata: Option<(serde_json::Value, String, String)> = None;
    let mut members = Vec::new();
    let mut image: Option<Header> = None;
    let mut verify_result = None;
    // image/cpio.z: its compression and what it holds as boot_image_csum.
    let mut boot: Option<(Compression, FoundMember)> = None;
    // .txt members the update system's packager never reads (after the
    // first image/ member that is not .txt).
    let mut unread_metadata = Vec::new();
    let mut past_metadata = false;
    for (i, entry) in tar.entries().map_err(read_err)?.enumerate() {
        let mut entry = entry.map_err(read_err)?;
        let name = entry
            .path()
            .map_err(read_err)?
            .to_string_lossy()
            .into_owned();
        let size = entry.header().size().map_err(read_err)?;
        if members.iter().any(|(n, _)| *n == name) {
            return Err(member_error(
                path,
                &name,
                "appears twice in the archive".into(),
            ));
        }
        members.push((name.clone(), size));
        if i == 0 {
            if name != "oxide.json" {
                return Err(member_error(
                    path,
                    &name,
                    "the first member must be oxide.json".into(),
                ));
            }
            if size > 1 << 20 {
                return Err(member_error(
                    path,
                    &name,
                    format!("{size} bytes is too large"),
                ));
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(read_err)?;
            metadata = Some(parse_oxide_json(path, &text)?);
            continue;
        }
        if let Some(file) = name.strip_prefix("image/").filter(|f| !f.contains('/')) {
            if entry.header().entry_type() == tar::EntryType::Regular {
                if !is_metadata(file) {
                    past_metadata = true;
                } else if past_metadata {
                    unread_metadata.push(name.clone());
                }
            }
        }
        if name == "image/cpio.z" {
            let mut r = BufReader::new(&mut entry);
            let head = r.fill_buf().map_err(read_err)?;
            let compression = Compression::sniff(head);
            let csum = find_member(&mut decoder(r, compression), BOOT_IMAGE_CSUM.as_bytes());
            boot = Some((compression, csum));
        }
        if name == "image/zfs.img" {
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(member_error(path, &name, "is not a regular file".into()));
            }
            let member = format!("{}:image/zfs.img", path.display());
            let member = Path::new(&member);
            let header = read_header(&mut entry, member)?;
            if !opts.skip_verify {
                let total = header.image_size;
                verify_result = Some(
                    verify_payload_serial(&header, &mut entry, member, &|done| {
                        progress(done, total)
                    })
                    .and_then(|()| {
                        let (_, _, sum) = metadata.as_ref().expect("oxide.json came first");
                        if *sum != header.sha256_hex() {
                            return Err(member_error(
                                path,
                                "image/zfs.img",
                                format!(
                                    "checksum {} does not match oxide.json's {sum}",
                                    header.sha256_hex()
                                ),
                            ));
                        }
                        Ok(())
                    }),
                );
            }
            image = Some(header);
        }
    }
    let Some((json, name, sum)) = metadata else {
        return Err(member_error(
            path,
            "oxide.json",
            "the archive is empty".into(),
        ));
    };
    let result = match (&image, verify_result) {
        (None, _) => Err(member_error(path, "image/zfs.img", "missing".into())),
        (Some(_), Some(r)) => r,
        (Some(_), None) => Ok(()),
    };
    // phbl boots only the image whose checksum its cpio.z carries.
    let boot_result = match (&boot, &image) {
        (Some((compression, csum)), Some(h)) if !opts.skip_verify => {
            let bad = |why: String| Err(member_error(path, "image/cpio.z", why));
            match csum {
                _ if *compression != Compression::Zlib => bad(format!(
                    "is {}, not one zlib stream: the host boot loader (phbl) cannot read it",
                    compression.as_str()
                )),
                Err(m) => bad(m.clone()),
                Ok(None) => bad(format!("holds no {BOOT_IMAGE_CSUM}")),
                Ok(Some(c)) if c[..] != h.sha256[..] => bad(format!(
                    "{BOOT_IMAGE_CSUM} {} does not match image/zfs.img's checksum {}",
                    hex(c),
                    h.sha256_hex()
                )),
                Ok(Some(_)) => Ok(()),
            }
        }
        _ => Ok(()),
    };
    let result = result.and(boot_result);
    let boot_csum = boot.as_ref().and_then(|(_, c)| match c {
        Ok(Some(c)) => Some(hex(c)),
        _ => None,
    });
    let stdout_err = |e| Error::Io {
        path: "<stdout>".into(),
        op: "write",
        source: e,
    };
    if opts.json {
        let mut v = serde_json::json!({
            "kind": "image-archive",
            "metadata": json,
            "members": members.iter().map(|(n, s)| serde_json::json!({"name": n, "size": s})).collect::<Vec<_>>(),
            "image": image.as_ref().map(|h| report::header_json(h, None)),
            "verified": (!opts.skip_verify).then_some(result.is_ok()),
            "boot_archive": boot.as_ref().map(|(c, _)| serde_json::json!({
                "member": "image/cpio.z",
                "compression": c.as_str(),
                "boot_image_csum": boot_csum,
            })),
            "unread_metadata": unread_metadata,
        });
        if let Err(e) = &result {
            v["error"] = e.to_string().into();
        }
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else {
        let mut text = format!("oxide.json = {json}\nname = {name}\nchecksum = {sum}\nmembers:\n");
        for (n, s) in &members {
            text.push_str(&format!("    {n} ({s} bytes)\n"));
        }
        if let Some(h) = &image {
            text.push_str("image/zfs.img:\n");
            for line in report::header_lines(h).lines() {
                text.push_str(&format!("    {line}\n"));
            }
            if let Some(line) = report::ratio_line(h) {
                text.push_str(&format!("    {line}"));
            }
        }
        if let Some((c, _)) = &boot {
            text.push_str(&format!(
                "image/cpio.z: compression = {}, {BOOT_IMAGE_CSUM} = {}\n",
                c.as_str(),
                boot_csum.as_deref().unwrap_or("(absent)")
            ));
        }
        for m in &unread_metadata {
            text.push_str(&format!(
                "note: {m} comes after a member that is not .txt: the update system's packager (tufaceous) reads .txt metadata only before it\n"
            ));
        }
        if !opts.skip_verify && result.is_ok() {
            text.push_str("verified: image/zfs.img matches its header and oxide.json\n");
            if boot.is_some() {
                text.push_str(
                    "verified: image/cpio.z is one zlib stream holding image/zfs.img's checksum\n",
                );
            }
        }
        out.write_all(text.as_bytes()).map_err(stdout_err)?;
    }
    result
}

/// Checks `oxide.json`: `v` "1", `t` "os", `i.name` a string, `i.checksum`
/// 64 hex digits. Returns the value, the name and the checksum.
fn parse_oxide_json(path: &Path, text: &str) -> Result<(serde_json::Value, String, String), Error> {
    let bad = |why: String| member_error(path, "oxide.json", why);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v["v"] != "1" {
        return Err(bad(format!("\"v\" is {}, expected \"1\"", v["v"])));
    }
    if v["t"] != "os" {
        return Err(bad(format!("\"t\" is {}, expected \"os\"", v["t"])));
    }
    let name = v["i"]["name"]
        .as_str()
        .ok_or_else(|| bad("\"i\".\"name\" is missing".into()))?
        .to_owned();
    let sum = v["i"]["checksum"]
        .as_str()
        .ok_or_else(|| bad("\"i\".\"checksum\" is missing".into()))?
        .to_owned();
    if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "\"i\".\"checksum\" {sum:?} is not 64 hex digits"
        )));
    }
    Ok((v, name, sum.to_ascii_lowercase()))
}

/// Prints whether a boot archive holds `boot_image_csum`, and with
/// `image`, whether it matches that image's checksum.
pub fn inspect_boot_archive(
    path: &Path,
    compression: Compression,
    image: Option<&Path>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let f = File::open(path).map_err(Error::io(path, "open"))?;
    let mut reader = decoder(BufReader::new(f), compression);
    let csum = find_member(&mut reader, b"boot_image_csum")
        .map_err(|m| member_error(path, "boot_image_csum", m))?;
    let expected = match image {
        Some(p) => Some((p.to_owned(), Image::open(p)?.header().sha256)),
        None => None,
    };
    let result = match (&csum, &expected) {
        (None, _) => Err(Error::NotABootFile {
            path: path.to_owned(),
            what: format!(
                "{}cpio archive without boot_image_csum: not a boot archive",
                match compression {
                    Compression::None => "",
                    Compression::Zlib => "zlib-compressed ",
                    Compression::Gzip => "gzipped ",
                }
            ),
        }),
        (Some(c), _) if c.len() != 32 => Err(member_error(
            path,
            "boot_image_csum",
            format!("is {} bytes, expected the 32 raw digest bytes", c.len()),
        )),
        (Some(c), Some((p, sum))) if c[..] != sum[..] => Err(member_error(
            path,
            "boot_image_csum",
            format!(
                "{} does not match {}'s checksum {}",
                hex(c),
                p.display(),
                hex(sum)
            ),
        )),
        _ => Ok(()),
    };
    let stdout_err = |e| Error::Io {
        path: "<stdout>".into(),
        op: "write",
        source: e,
    };
    if json {
        let mut v = serde_json::json!({
            "kind": "boot-archive",
            "compression": compression.as_str(),
            "gzip": compression == Compression::Gzip,
            "boot_image_csum": csum.as_ref().map(|c| hex(c)),
            "image": expected.as_ref().map(|(p, _)| p.display().to_string()),
            "matches": expected.as_ref().map(|_| result.is_ok()),
        });
        if let Err(e) = &result {
            v["error"] = e.to_string().into();
        }
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else {
        let mut text = format!("compression = {}\n", compression.as_str());
        match &csum {
            Some(c) => text.push_str(&format!("boot_image_csum = {}\n", hex(c))),
            None => text.push_str("boot_image_csum = (absent)\n"),
        }
        if let (Some((p, _)), Ok(())) = (&expected, &result) {
            text.push_str(&format!("matches {}\n", p.display()));
        }
        out.write_all(text.as_bytes()).map_err(stdout_err)?;
    }
    result
}

/// Finds the file `name` in an archive (newc or odc) and returns its
/// contents; for inspecting boot archives. Reads entries in order and stops
/// at the trailer; never reads past what the headers say.
pub fn find_member(archive: &mut impl Read, name: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut magic = [0u8; 6];
    let mut at = 0u64;
    loop {
        archive
            .read_exact(&mut magic)
            .map_err(|e| format!("byte {at}: {e}"))?;
        let (newc, head_len) = match &magic {
            b"070701" => (true, 110),
            b"070707" => (false, 76),
            _ => return Err(format!("byte {at}: not a cpio header (magic {magic:?})")),
        };
        let mut rest = vec![0u8; head_len - 6];
        archive
            .read_exact(&mut rest)
            .map_err(|e| format!("byte {at}: {e}"))?;
        let field = |range: std::ops::Range<usize>, radix| {
            std::str::from_utf8(&rest[range.start - 6..range.end - 6])
                .ok()
                .and_then(|s| u64::from_str_radix(s, radix).ok())
                .ok_or_else(|| format!("byte {at}: bad header field"))
        };
        let (namesize, filesize) = if newc {
            (field(94..102, 16)?, field(54..62, 16)?)
        } else {
            (field(59..65, 8)?, field(65..76, 8)?)
        };
        if namesize == 0 || namesize > 4096 {
            return Err(format!("byte {at}: bad name size {namesize}"));
        }
        let mut n = vec![0u8; namesize as usize];
        archive
            .read_exact(&mut n)
            .map_err(|e| format!("byte {at}: {e}"))?;
        let mut consumed = head_len as u64 + namesize;
        let align = |x: u64| if newc { (4 - x % 4) % 4 } else { 0 };
        let pad = align(at + consumed);
        io::copy(&mut archive.by_ref().take(pad), &mut io::sink()).map_err(|e| e.to_string())?;
        consumed += pad;
        let entry_name = &n[..n.len() - 1];
        if entry_name == b"TRAILER!!!" {
            return Ok(None);
        }
        let mut data = Vec::new();
        if entry_name == name {
            if filesize > 1 << 20 {
                return Err(format!(
                    "{}: {filesize} bytes is too large",
                    String::from_utf8_lossy(name)
                ));
            }
            archive
                .by_ref()
                .take(filesize)
                .read_to_end(&mut data)
                .map_err(|e| e.to_string())?;
            return Ok(Some(data));
        }
        io::copy(&mut archive.by_ref().take(filesize), &mut io::sink())
            .map_err(|e| e.to_string())?;
        consumed += filesize;
        let pad = align(at + consumed);
        io::copy(&mut archive.by_ref().take(pad), &mut io::sink()).map_err(|e| e.to_string())?;
        at += consumed + pad;
    }
}
