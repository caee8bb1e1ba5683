//! Output files that appear complete or not at all.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::Error;

/// A temporary file beside `path` that becomes `path` on [`commit`]; dropped
/// uncommitted, it is removed.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    path: PathBuf,
    tmp: NamedTempFile,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, Error> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let stem = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{stem}."))
            .suffix(".tmp")
            // The umask applies, as for any newly created file.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(Error::io(path, "create temporary file"))?;
        Ok(AtomicFile {
            path: path.to_owned(),
            tmp,
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The final path (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file is until it is committed.
    pub fn temporary_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the file into place.
    pub fn commit(self) -> Result<(), Error> {
        let AtomicFile { path, tmp } = self;
        tmp.persist(&path)
            .map_err(|e| Error::io(&path, "rename into place")(e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = AtomicFile::create(path)?;
    f.file()
        .write_all(bytes)
        .map_err(Error::io(path, "write"))?;
    f.commit()
}
