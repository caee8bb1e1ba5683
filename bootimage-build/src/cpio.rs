//! Deterministic cpio writers: "newc" (what Linux initramfs images use) and
//! "odc" (what the OS boot loader reads for the boot archive). Entries are
//! sorted by path, inode numbers assigned in that order, uid/gid 0, one
//! fixed mtime, and modes normalised to 0755/0644 (0777 for links) so that
//! a checkout's umask does not change the bytes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Something went wrong reading `path` or writing the archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: unsupported file type (only directories, regular files and symbolic links are packed)", path.display())]
    Unsupported { path: PathBuf },
    #[error("{}: file changed while it was being packed ({expected} bytes expected)", path.display())]
    Changed { path: PathBuf, expected: u64 },
    #[error("{}: {size} bytes is too large for a {format} cpio entry", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        format: &'static str,
    },
    #[error("duplicate member name {name:?} in the archive")]
    Duplicate { name: String },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> CpioError + 'a {
    move |source| CpioError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// The two header formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `070701`: hex fields, 4-byte alignment.
    Newc,
    /// `070707`: octal fields, no alignment (POSIX.1 "portable" format).
    Odc,
}

/// Where an entry's contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Dir,
    /// A regular file on disk, streamed.
    File(PathBuf),
    /// A symbolic link to this target.
    Link(PathBuf),
    /// Bytes given here.
    Bytes(Vec<u8>),
}

/// An archive's entries, by path inside the archive (kept sorted).
#[derive(Clone, Debug, Default)]
pub struct Entries {
    map: BTreeMap<Vec<u8>, (Content, bool)>,
}

impl Entries {
    pub fn new() -> Entries {
        Entries::default()
    }

    /// Adds an entry; a second entry with the same name is an error. The
    /// flag says whether a regular file is executable.
    pub fn add(&mut self, name: &[u8], content: Content, exec: bool) -> Result<(), CpioError> {
        if self.map.insert(name.to_vec(), (content, exec)).is_some() {
            return Err(CpioError::Duplicate {
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        Ok(())
    }

    /// Adds the directories leading to `name` that are not there yet.
    pub fn add_parents(&mut self, name: &[u8]) {
        for (i, &b) in name.iter().enumerate() {
            if b == b'/' && i > 0 {
                self.map
                    .entry(name[..i].to_vec())
                    .or_insert((Content::Dir, false));
            }
        }
    }

    /// Adds everything below `root` (not `root` itself), named by its path
    /// relative to `root`.
    pub fn add_tree(&mut self, root: &Path) -> Result<(), CpioError> {
        for rel in walk(root)? {
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path, "stat"))?;
            let ty = meta.file_type();
            let exec = meta.permissions().mode() & 0o111 != 0;
            let content = if ty.is_dir() {
                Content::Dir
            } else if ty.is_file() {
                Content::File(path)
            } else if ty.is_symlink() {
                Content::Link(fs::read_link(&path).map_err(io_err(&path, "read link"))?)
            } else {
                return Err(CpioError::Unsupported { path });
            };
            self.add(rel.as_os_str().as_bytes(), content, exec)?;
        }
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.map.keys().map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Every directory and file below `root` (not `root` itself), sorted by
/// their path relative to `root`, byte-wise.
pub fn walk(root: &Path) -> Result<Vec<PathBuf>, CpioError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.as_os_str().is_empty() {
            root.to_owned()
        } else {
            root.join(&rel)
        };
        let entries = fs::read_dir(&dir).map_err(io_err(&dir, "read directory"))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&dir, "read directory"))?;
            let rel = rel.join(entry.file_name());
            let ty = entry.file_type().map_err(io_err(&entry.path(), "stat"))?;
            if ty.is_dir() {
                stack.push(rel.clone());
            }
            out.push(rel);
        }
    }
    out.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(out)
}

/// Writes a newc archive of everything below `root` to `out`, with `mtime`
/// on every entry, then pads with zeros to at least `min_size` bytes.
/// Returns the archive's length.
pub fn write_newc(
    root: &Path,
    mtime: u32,
    min_size: u64,
    out: &mut impl Write,
) -> Result<u64, CpioError> {
    let mut entries = Entries::new();
    entries.add_tree(root)?;
    write(&entries, Format::Newc, mtime, min_size, out)
}

/// Writes `entries` in `format` to `out`, then pads with zeros to at least
/// `min_size` bytes. Returns the archive's length.
pub fn write(
    entries: &Entries,
    format: Format,
    mtime: u32,
    min_size: u64,
    out: &mut impl Write,
) -> Result<u64, CpioError> {
    let out_name = Path::new("<archive>");
    let mut w = Counting {
        inner: out,
        count: 0,
    };
    let mut buf = vec![0u8; 1 << 16];
    for (i, (name, (content, exec))) in entries.map.iter().enumerate() {
        let ino = i as u32 + 1;
        let (mode, nlink, size) = match content {
            Content::Dir => (S_IFDIR | 0o755, 2, 0),
            Content::File(path) => {
                let size = fs::metadata(path).map_err(io_err(path, "stat"))?.len();
                (S_IFREG | if *exec { 0o755 } else { 0o644 }, 1, size)
            }
            Content::Bytes(b) => (
                S_IFREG | if *exec { 0o755 } else { 0o644 },
                1,
                b.len() as u64,
            ),
            Content::Link(target) => (S_IFLNK | 0o777, 1, target.as_os_str().len() as u64),
        };
        let (limit, fmt) = match format {
            Format::Newc => (u32::MAX as u64, "newc"),
            Format::Odc => (0o77777777777, "odc"),
        };
        if size > limit {
            let path = match content {
                Content::File(p) => p.clone(),
                _ => PathBuf::from(String::from_utf8_lossy(name).into_owned()),
            };
            return Err(CpioError::TooLarge {
                path,
                size,
                format: fmt,
            });
        }
        let h = Head {
            ino,
            mode,
            nlink,
            mtime,
            size,
        };
        header(&mut w, format, &h, name).map_err(io_err(out_name, "write"))?;
        match content {
            Content::File(path) => copy_exact(path, size, &mut w, &mut buf)?,
            Content::Bytes(b) => w.write_all(b).map_err(io_err(out_name, "write"))?,
            Content::Link(t) => w
                .write_all(t.as_os_str().as_bytes())
                .map_err(io_err(out_name, "write"))?,
            Content::Dir => {}
        }
        if format == Format::Newc {
            pad4(&mut w).map_err(io_err(out_name, "write"))?;
        }
    }
    let trailer = Head {
        ino: 0,
        mode: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
    };
    header(&mut w, format, &trailer, TRAILER.as_bytes()).map_err(io_err(out_name, "write"))?;
    let zeros = [0u8; 4096];
    while w.count < min_size {
        let n = (min_size - w.count).min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n])
            .map_err(io_err(out_name, "write"))?;
    }
    Ok(w.count)
}

/// Streams exactly `size` bytes of `path` (checking it did not change).
fn copy_exact(path: &Path, size: u64, w: &mut impl Write, buf: &mut [u8]) -> Result<(), CpioError> {
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = f.read(&mut buf[..want]).map_err(io_err(path, "read"))?;
        if n == 0 {
            return Err(CpioError::Changed {
                path: path.to_owned(),
                expected: size,
            });
        }
        w.write_all(&buf[..n])
            .map_err(io_err(Path::new("<archive>"), "write"))?;
        left -= n as u64;
    }
    if f.read(&mut buf[..1]).map_err(io_err(path, "read"))? != 0 {
        return Err(CpioError::Changed {
            path: path.to_owned(),
            expected: size,
        });
    }
    Ok(())
}

struct Head {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u64,
}

fn header(w: &mut Counting<impl Write>, format: Format, h: &Head, name: &[u8]) -> io::Result<()> {
    let namesize = name.len() as u64 + 1;
    let text = match format {
        // magic ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check
        Format::Newc => {
            let fields = [
                h.ino,
                h.mode,
                0,
                0,
                h.nlink,
                h.mtime,
                h.size as u32,
                0,
                0,
                0,
                0,
                namesize as u32,
                0,
            ];
            let mut s = String::with_capacity(110);
            s.push_str("070701");
            for f in fields {
                s.push_str(&format!("{f:08X}"));
            }
            s
        }
        // magic dev ino mode uid gid nlink rdev mtime namesize filesize
        Format::Odc => format!(
            "070707{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:011o}{:06o}{:011o}",
            0,
            h.ino & 0o777777,
            h.mode,
            0,
            0,
            h.nlink,
            0,
            h.mtime,
            namesize,
            h.size
        ),
    };
    w.write_all(text.as_bytes())?;
    w.write_all(name)?;
    w.write_all(&[0])?;
    if format == Format::Newc {
        pad4(w)?;
    }
    Ok(())
}

fn pad4(w: &mut Counting<impl Write>) -> io::Result<()> {
    let pad = (4 - (w.count % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..pad])
}

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_bytes_of_a_small_newc_archive() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hi"), b"hello").unwrap();
        let mut out = Vec::new();
        let len = write_newc(dir.path(), 0x10, 0, &mut out).unwrap();
        assert_eq!(len, out.len() as u64);
        let mut want = Vec::new();
        want.extend_from_slice(b"070701");
        want.extend_from_slice(b"00000001000081A4000000000000000000000001");
        want.extend_from_slice(b"0000001000000005000000000000000000000000");
        want.extend_from_slice(b"000000000000000300000000hi\0");
        want.extend_from_slice(b"\0\0\0"); // 110 + 3 = 113, pad to 116
        want.extend_from_slice(b"hello\0\0\0");
        want.extend_from_slice(b"070701");
        want.extend_from_slice(b"00000000000000000000000000000000000000010000000000000000");
        want.extend_from_slice(b"00000000000000000000000000000000");
        want.extend_from_slice(b"0000000B00000000TRAILER!!!\0");
        want.extend_from_slice(b"\0\0\0");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn literal_bytes_of_a_small_odc_archive() {
        let mut e = Entries::new();
        e.add(b"boot_image_csum", Content::Bytes(vec![0xab; 2]), false)
            .unwrap();
        let mut out = Vec::new();
        write(&e, Format::Odc, 8, 0, &mut out).unwrap();
        let mut want = Vec::new();
        // magic dev ino mode uid gid nlink rdev mtime namesize filesize
        for f in [
            "070707",
            "000000",
            "000001",
            "100644",
            "000000",
            "000000",
            "000001",
            "000000",
            "00000000010",
            "000020",
            "00000000002",
        ] {
            want.extend_from_slice(f.as_bytes());
        }
        want.extend_from_slice(b"boot_image_csum\0");
        want.extend_from_slice(&[0xab, 0xab]);
        for f in [
            "070707",
            "000000",
            "000000",
            "000000",
            "000000",
            "000000",
            "000001",
            "000000",
            "00000000000",
            "000013",
            "00000000000",
        ] {
            want.extend_from_slice(f.as_bytes());
        }
        want.extend_from_slice(b"TRAILER!!!\0");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn pads_to_the_minimum_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        assert_eq!(write_newc(dir.path(), 0, 10_000, &mut out).unwrap(), 10_000);
        assert_eq!(out.len(), 10_000);
        assert!(out[200..].iter().all(|&b| b == 0));
    }

    #[test]
    fn duplicates_are_refused_and_parents_added() {
        let mut e = Entries::new();
        e.add(b"a/b/c", Content::Bytes(vec![]), false).unwrap();
        assert_eq!(
            e.add(b"a/b/c", Content::Dir, false)
                .unwrap_err()
                .to_string(),
            "duplicate member name \"a/b/c\" in the archive"
        );
        e.add_parents(b"a/b/c");
        let names: Vec<&[u8]> = e.names().collect();
        assert_eq!(names, [&b"a"[..], b"a/b", b"a/b/c"]);
    }
}
