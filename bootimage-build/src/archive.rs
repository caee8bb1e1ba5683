//! The OS build's other artefacts: the boot archive (odc cpio holding
//! `boot_image_csum`) and the image archive (`NAME.tar.gz`: `oxide.json`,
//! `image/`, `image/zfs.img`, `image/rom`, extras). Both are byte-for-byte
//! reproducible: sorted entries, uid/gid 0, fixed modes and mtimes, and a
//! gzip header with no timestamp or name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bootimage::header::hex;
use bootimage::Header;

use crate::cpio::{self, Content, Entries, Format};
use crate::manifest::{BootArchive, ImageArchive};
use crate::{io_err, write_staged, Error, Manifest};

/// The member the OS boot loader reads the image checksum from.
pub const BOOT_IMAGE_CSUM: &str = "boot_image_csum";

/// A gzip encoder whose header holds no timestamp and no file name, so the
/// bytes depend only on the contents.
fn gzip<W: Write>(w: W) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(w, flate2::Compression::new(9))
}

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
        if b.gzip {
            let mut z = gzip(w);
            cpio::write(&entries, Format::Odc, mtime, 0, &mut z).map_err(input_err)?;
            z.finish().map_err(io_err(out, "write"))?;
        } else {
            cpio::write(&entries, Format::Odc, mtime, 0, w).map_err(input_err)?;
        }
        Ok(())
    })
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
    image: &Path,
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
            h.set_mode(if dir { 0o755 } else { 0o644 });
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
        let mut members = vec![("zfs.img".to_string(), image.to_owned())];
        members.extend(a.rom.iter().map(|r| ("rom".to_string(), r.clone())));
        members.extend(a.extra.iter().cloned());
        for (name, path) in members {
            let f = File::open(&path).map_err(io_err(&path, "open"))?;
            let size = f.metadata().map_err(io_err(&path, "stat"))?.len();
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
