//! The OS build's other artefacts: the boot archive (odc cpio holding
//! `boot_image_csum`, plain or one zlib stream as phbl reads it), and the
//! image archive (`NAME.tar.gz`, in the OS build's member order: see
//! [`bootimage::consumers`]). Both are byte-for-byte reproducible: sorted
//! entries, uid/gid 0, fixed modes and mtimes, a gzip header with no
//! timestamp or name, and zlib streams whose bytes depend only on the
//! input.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bootimage::consumers::{
    member_rank, ARCHIVE_DIR_MODE, ARCHIVE_FILE_MODE, BOOT_IMAGE_CSUM, LEGACY_ROM,
    LEGACY_ROM_BOARD, PHBL_RAMDISK_LEN,
};
use bootimage::header::hex;
use bootimage::Header;

use crate::cpio::{self, Content, Entries, Format};
use crate::manifest::{BootArchive, ImageArchive};
use crate::{io_err, write_staged, Error, Manifest};

/// A gzip encoder whose header holds no timestamp and no file name, so the
/// bytes depend only on the contents.
fn gzip<W: Write>(w: W) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(w, flate2::Compression::new(9))
}

/// Compresses the file `src` into `dst` as one zlib stream (RFC 1950), as
/// pinprick does for the OS build's `cpio.z` and `unix.z`; the parallel
/// encoder's bytes depend only on the input, never on `threads`.
pub fn zlib_file(src: &Path, dst: &Path, threads: usize) -> Result<(), Error> {
    let mut input = File::open(src).map_err(io_err(src, "open"))?;
    write_staged(dst, |w| {
        let fill = |buf: &mut [u8]| {
            let mut n = 0;
            while n < buf.len() {
                match input.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(n)
        };
        bootimage::zlib::compress(bootimage::DEFAULT_LEVEL, threads, fill, w).map_err(
            |e| match e {
                bootimage::zlib::Failed::Input(e) => io_err(src, "read")(e),
                bootimage::zlib::Failed::Output(e) => io_err(dst, "write")(e),
            },
        )?;
        Ok(())
    })
}

/// Writes the boot archive as a plain odc cpio archive to `out`, and checks
/// that it fits phbl's ramdisk region once inflated.
pub fn write_boot_archive(
    m: &Manifest,
    b: &BootArchive,
    header: &Header,
    mtime: u32,
    out: &Path,
) -> Result<(), Error> {
    let input_err = |source| Error::Input {
        path: m.path.clone(),
        key: "boot-archive",
        source,
    };
    let mut entries = Entries::new();
    if let Some(root) = &b.root {
        entries.add_tree(root).map_err(input_err)?;
    }
    for (name, path) in &b.files {
        let exec = std::fs::metadata(path)
            .map(|md| md.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        entries
            .add(name.as_bytes(), Content::File(path.clone()), exec)
            .map_err(input_err)?;
    }
    entries
        .add(
            BOOT_IMAGE_CSUM.as_bytes(),
            Content::Bytes(header.sha256.to_vec()),
            false,
        )
        .map_err(input_err)?;
    let names: Vec<Vec<u8>> = entries.names().map(<[u8]>::to_vec).collect();
    for n in names {
        entries.add_parents(&n);
    }
    write_staged(out, |w| {
        cpio::write(&entries, Format::Odc, mtime, 0, w).map_err(input_err)?;
        Ok(())
    })?;
    let size = std::fs::metadata(out).map_err(io_err(out, "stat"))?.len();
    if size > PHBL_RAMDISK_LEN {
        return Err(Error::Field {
            path: m.path.clone(),
            key: "boot-archive".into(),
            message: format!(
                "the archive is {size} bytes; the host boot loader (phbl) inflates it into a {PHBL_RAMDISK_LEN}-byte (128 MiB) region"
            ),
        });
    }
    Ok(())
}

/// The files of the image archive (names under `image/`) in the OS build's
/// order ([`member_rank`]): metadata `.txt` extras, `zfs.img`, `unix.z`,
/// `cpio.z`, the board ROMs and `rom` (gimlet's again), other extras.
pub fn image_members(
    a: &ImageArchive,
    image: &Path,
    unix_z: Option<&Path>,
    cpio_z: Option<&Path>,
) -> Vec<(String, PathBuf)> {
    let mut members = vec![("zfs.img".to_string(), image.to_owned())];
    members.extend(unix_z.map(|p| ("unix.z".to_string(), p.to_owned())));
    members.extend(cpio_z.map(|p| ("cpio.z".to_string(), p.to_owned())));
    for rom in &a.roms {
        members.push((format!("{}.rom", rom.board), rom.path.clone()));
        if rom.board == LEGACY_ROM_BOARD {
            members.push((LEGACY_ROM.to_string(), rom.path.clone()));
        }
    }
    members.extend(a.extra.iter().cloned());
    members.sort_by(|(a, _), (b, _)| (member_rank(a), a).cmp(&(member_rank(b), b)));
    members
}

/// `oxide.json`: `{"v":"1","t":"os","i":{...}}` with the image's name and
/// checksum and any extra entries, in sorted key order.
pub fn oxide_json(a: &ImageArchive, header: &Header) -> String {
    let mut i: BTreeMap<&str, &str> = a
        .info
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sum = hex(&header.sha256);
    i.insert("name", &a.name);
    i.insert("checksum", &sum);
    let i = serde_json::to_string(&i).expect("a map of strings serialises");
    format!(r#"{{"v":"1","t":"os","i":{i}}}"#)
}

pub fn write_image_archive(
    m: &Manifest,
    a: &ImageArchive,
    header: &Header,
    members: &[(String, PathBuf)],
    mtime: u32,
    out: &Path,
) -> Result<(), Error> {
    let json = oxide_json(a, header);
    write_staged(out, |w| {
        let mut tar = tar::Builder::new(gzip(w));
        let head = |path: &str, size: u64, dir: bool| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(if dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(if dir {
                ARCHIVE_DIR_MODE
            } else {
                ARCHIVE_FILE_MODE
            });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime as u64);
            h.set_size(size);
            let _ = h.set_username("root");
            let _ = h.set_groupname("root");
            h.set_path(path).map(|_| h)
        };
        let werr = |e| io_err(out, "write")(e);
        let mut h = head("oxide.json", json.len() as u64, false).map_err(&werr)?;
        h.set_cksum();
        tar.append(&h, json.as_bytes()).map_err(&werr)?;
        let mut h = head("image/", 0, true).map_err(&werr)?;
        h.set_cksum();
        tar.append(&h, io::empty()).map_err(&werr)?;
        for (name, path) in members {
            let f = File::open(path).map_err(io_err(path, "open"))?;
            let size = f.metadata().map_err(io_err(path, "stat"))?.len();
            let mut h = head(&format!("image/{name}"), size, false).map_err(&werr)?;
            h.set_cksum();
            // Exactly `size` bytes: a file that changes meanwhile is an
            // error, not a corrupt archive.
            let mut limited = io::Read::take(f, size);
            tar.append(&h, &mut limited).map_err(|e| Error::Field {
                path: m.path.clone(),
                key: "image-archive".into(),
                message: format!("{}: {e}", path.display()),
            })?;
        }
        let z = tar.into_inner().map_err(&werr)?;
        z.finish().map_err(&werr)?;
        Ok(())
    })
}
