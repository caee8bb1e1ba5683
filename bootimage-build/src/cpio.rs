//! A deterministic cpio writer in the "newc" format (what Linux initramfs
//! images use): entries sorted by path, inode numbers assigned in order,
//! uid/gid 0, one fixed mtime, and modes normalised to 0755/0644 so that a
//! checkout's umask does not change the bytes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const MAGIC: &str = "070701";
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
    #[error("{}: {size} bytes is too large for a newc cpio entry (at most 4 GiB - 1)", path.display())]
    TooLarge { path: PathBuf, size: u64 },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> CpioError + 'a {
    move |source| CpioError::Io {
        path: path.to_owned(),
        op,
        source,
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
    let out_name = Path::new("<archive>");
    let mut w = Counting {
        inner: out,
        count: 0,
    };
    let paths = walk(root)?;
    let mut buf = vec![0u8; 1 << 16];
    for (i, rel) in paths.iter().enumerate() {
        let path = root.join(rel);
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path, "stat"))?;
        let ino = i as u32 + 1;
        let ty = meta.file_type();
        let exec = meta.permissions().mode() & 0o111 != 0;
        let (mode, nlink, size) = if ty.is_dir() {
            (S_IFDIR | 0o755, 2, 0)
        } else if ty.is_file() {
            let size = meta.len();
            if size > u32::MAX as u64 {
                return Err(CpioError::TooLarge { path, size });
            }
            (S_IFREG | if exec { 0o755 } else { 0o644 }, 1, size)
        } else if ty.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path, "read link"))?;
            (S_IFLNK | 0o777, 1, target.as_os_str().len() as u64)
        } else {
            return Err(CpioError::Unsupported { path });
        };
        let name = rel.as_os_str().as_bytes();
        write_header(&mut w, ino, mode, nlink, mtime, size as u32, name)
            .map_err(io_err(out_name, "write"))?;
        if ty.is_file() {
            let mut f = File::open(&path).map_err(io_err(&path, "open"))?;
            let mut left = size;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = f.read(&mut buf[..want]).map_err(io_err(&path, "read"))?;
                if n == 0 {
                    return Err(CpioError::Changed {
                        path,
                        expected: size,
                    });
                }
                w.write_all(&buf[..n]).map_err(io_err(out_name, "write"))?;
                left -= n as u64;
            }
            if f.read(&mut buf[..1]).map_err(io_err(&path, "read"))? != 0 {
                return Err(CpioError::Changed {
                    path,
                    expected: size,
                });
            }
        } else if ty.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path, "read link"))?;
            w.write_all(target.as_os_str().as_bytes())
                .map_err(io_err(out_name, "write"))?;
        }
        pad4(&mut w).map_err(io_err(out_name, "write"))?;
    }
    write_header(&mut w, 0, 0, 1, 0, 0, TRAILER.as_bytes()).map_err(io_err(out_name, "write"))?;
    let zeros = [0u8; 4096];
    while w.count < min_size {
        let n = (min_size - w.count).min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n])
            .map_err(io_err(out_name, "write"))?;
    }
    Ok(w.count)
}

fn write_header(
    w: &mut Counting<impl Write>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    name: &[u8],
) -> io::Result<()> {
    let namesize = name.len() as u32 + 1;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
    // rdevminor namesize check
    let fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, 0];
    let mut h = String::with_capacity(110);
    h.push_str(MAGIC);
    for f in fields {
        h.push_str(&format!("{f:08X}"));
    }
    w.write_all(h.as_bytes())?;
    w.write_all(name)?;
    w.write_all(&[0])?;
    pad4(w)
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
    fn literal_bytes_of_a_small_archive() {
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
    fn pads_to_the_minimum_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        assert_eq!(write_newc(dir.path(), 0, 10_000, &mut out).unwrap(), 10_000);
        assert_eq!(out.len(), 10_000);
        assert!(out[200..].iter().all(|&b| b == 0));
    }
}
