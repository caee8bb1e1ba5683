//! Output files that appear complete and durable, or not at all, even on
//! Ctrl-C, `kill -9` or power loss.
//!
//! - [`AtomicFile`]: on Linux an unnamed file (`O_TMPFILE`) in the
//!   destination's directory, so a killed process leaves nothing; elsewhere
//!   (or on a file system without `O_TMPFILE`) a hidden file named
//!   `.NAME.PID-RANDOM.tmp`. `commit` syncs the file, gives it that
//!   temporary name (`linkat`), renames it over the destination and syncs
//!   the directory: after a power cut the destination is the old file or
//!   the complete new one.
//! - [`StagingDir`]: a hidden directory `.STEM.PID-RANDOM.staging` for
//!   outputs that must appear together.
//! - [`clean_up_on_signals`]: SIGINT, SIGTERM and SIGHUP remove every
//!   temporary name this process holds, then end it as the signal would
//!   (a signal ignored at start, as `nohup` ignores SIGHUP, stays ignored).
//! - Names left by a process that no longer runs (`kill -9` mid-commit, a
//!   power cut, a platform without `O_TMPFILE`) are removed, with a note on
//!   standard error, the next time a file or staging directory is made in
//!   that directory.
//! - [`check_output`]: refuses an output path that cannot be written,
//!   before any work starts.
//!
//! Why not a crate: `tempfile` names files randomly (no owner to check a
//! leftover against) and neither it nor `atomic-write-file` syncs the
//! directory *and* removes its names on a signal; what we need on top of
//! them is most of the code below. `rustix` (already built for `tempfile`)
//! gives safe `O_TMPFILE`, `linkat` and `kill(pid, 0)`; `signal-hook` runs
//! the clean-up on an ordinary thread (so it may take locks and touch the
//! file system) and then re-raises the signal, so the exit status is the
//! signal's, as if unhandled.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::Error;

/// What the signal handler removes, and whether it has started: once it
/// has, no new name may appear. Held while a name is created, committed
/// (linked and renamed) or removed, so a signal never interrupts those
/// half-way.
struct Registry {
    dying: bool,
    next: u64,
    names: Vec<(u64, PathBuf)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    dying: false,
    next: 0,
    names: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Refuses new names once a signal is being handled.
    fn check_alive(&self, path: &Path) -> Result<(), Error> {
        if self.dying {
            return Err(Error::io(path, "create")(io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted by a signal",
            )));
        }
        Ok(())
    }

    fn add(&mut self, path: PathBuf) -> u64 {
        self.next += 1;
        self.names.push((self.next, path));
        self.next
    }

    fn forget(&mut self, id: u64) {
        self.names.retain(|(i, _)| *i != id);
    }
}

/// Removes `path`, a file or a directory tree.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove every temporary file and staging
/// directory this process has made and not yet committed or dropped, then
/// end the process as the signal would have (the exit status says which).
/// Commits in progress finish first; none starts afterwards. Call it once
/// from `main` (or a build script); later calls do nothing.
pub fn clean_up_on_signals() -> Result<(), Error> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            // A signal the process was started ignoring (`nohup` ignores
            // SIGHUP) stays ignored.
            let ignored = ignored_signals();
            let wanted = [SIGINT, SIGTERM, SIGHUP]
                .into_iter()
                .filter(|&s| ignored & (1 << (s - 1)) == 0);
            let mut signals =
                signal_hook::iterator::Signals::new(wanted).map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("clean-up-on-signal".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        let mut r = registry();
                        r.dying = true;
                        for (_, path) in r.names.drain(..) {
                            remove(&path);
                        }
                        // Keep the lock: nothing may make a new name now.
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                        // SIGINT, SIGTERM and SIGHUP end a process by
                        // default; should one have been ignored, end anyway.
                        std::process::exit(128 + signal);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .clone()
        .map_err(|e| {
            Error::io(Path::new("<signals>"), "install signal handler")(io::Error::other(e))
        })
}

/// The signals this process ignores, as a mask (bit N-1 for signal N),
/// from `/proc/self/status`; none where that cannot be read.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Runs `f` while holding off the signal clean-up, for steps that must not
/// be cut in two (such as renaming several staged outputs into place).
/// Fails, without running `f`, once a signal is being handled.
pub fn uninterrupted<T>(path: &Path, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let r = registry();
    r.check_alive(path)?;
    let result = f();
    drop(r);
    result
}

/// The directory a path is in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Checks, before any work, that `path` can be written as an output: it is
/// not a directory, and its directory exists, is a directory and is
/// writable. The error says which.
pub fn check_output(path: &Path) -> Result<(), Error> {
    let bad = |reason: String| Error::Output {
        path: path.to_owned(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(bad("the output path is empty".into()));
    }
    if let Ok(m) = std::fs::metadata(path) {
        if m.is_dir() {
            return Err(bad("is a directory; give a file name".into()));
        }
    }
    let dir = parent_of(path);
    match dir_problem(dir) {
        None => Ok(()),
        Some(reason) if reason == NOT_A_DIRECTORY => {
            Err(bad(format!("{} {reason}", dir.display())))
        }
        Some(reason) => Err(bad(format!("directory {} {reason}", dir.display()))),
    }
}

/// Checks, before any work, that outputs can be made in `dir`: it exists,
/// is a directory and is writable. The error says which.
pub fn check_output_dir(dir: &Path) -> Result<(), Error> {
    match dir_problem(dir) {
        None => Ok(()),
        Some(reason) => Err(Error::Output {
            path: dir.to_owned(),
            reason: format!("the output directory {reason}"),
        }),
    }
}

const NOT_A_DIRECTORY: &str = "is not a directory";

/// What keeps this process from making files in `dir`, if anything.
fn dir_problem(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some("does not exist".into()),
        Err(e) => return Some(format!("cannot be read: {e}")),
        Ok(m) if !m.is_dir() => return Some(NOT_A_DIRECTORY.into()),
        Ok(_) => {}
    }
    check_writable_dir(dir).err()
}

/// Whether this process may create files in `dir`, as the kernel would
/// decide it (permissions, a read-only mount).
fn check_writable_dir(dir: &Path) -> Result<(), String> {
    use rustix::fs::{access, Access};
    match access(dir, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::ROFS) => Err("is on a read-only file system".into()),
        Err(rustix::io::Errno::ACCESS) | Err(rustix::io::Errno::PERM) => {
            Err("is not writable by this user".into())
        }
        Err(e) => Err(format!("cannot be written: {}", io::Error::from(e))),
    }
}

/// `.NAME.PID-RANDOM.SUFFIX`: hidden, and naming the process that owns it.
fn owned_name(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32;
    dir.join(format!(
        ".{name}.{}-{random:08x}.{suffix}",
        std::process::id()
    ))
}

/// The process that owns a name made by [`owned_name`] with `suffix`, if
/// it is one.
fn owner_of(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let rest = rest
        .strip_suffix(".tmp")
        .or_else(|| rest.strip_suffix(".staging"))?;
    let (_, tag) = rest.rsplit_once('.')?;
    let (pid, random) = tag.split_once('-')?;
    let hex = random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then(|| pid.parse().ok()).flatten()
}

/// Whether process `pid` exists (possibly another user's).
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Removes, once per directory and process, the temporary files and
/// staging directories in `dir` whose owner no longer runs, saying so on
/// standard error. Returns what it removed.
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    static DONE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    {
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if !done.get_or_insert_with(HashSet::new).insert(key) {
            return Vec::new();
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_of) else {
            continue;
        };
        if pid == me || process_exists(pid) {
            continue;
        }
        let path = entry.path();
        remove(&path);
        if std::fs::symlink_metadata(&path).is_err() {
            eprintln!(
                "note: removed {}, left by an interrupted run (process {pid} is gone)",
                path.display()
            );
            removed.push(path);
        }
    }
    removed
}

/// Fsyncs a directory, so that a rename or link in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir, "sync directory"))
}

/// A file that becomes `path` on [`commit`], synced, or never appears.
/// Dropped uncommitted (or on a signal, see [`clean_up_on_signals`]), it
/// leaves nothing.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    path: PathBuf,
    file: File,
    /// The hidden name the file has (named files), or will have for an
    /// instant during `commit` (unnamed ones), and its registry entry.
    tmp: PathBuf,
    id: Option<u64>,
    unnamed: bool,
}

impl AtomicFile {
    /// Makes the file in `path`'s directory, after checking that `path`
    /// can be written there ([`check_output`]).
    pub fn create(path: &Path) -> Result<AtomicFile, Error> {
        check_output(path)?;
        let dir = parent_of(path);
        remove_leftovers(dir);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(file) = open_unnamed(dir).map_err(Error::io(path, "create temporary file"))? {
            return Ok(AtomicFile {
                path: path.to_owned(),
                file,
                tmp: owned_name(dir, &name, "tmp"),
                id: None,
                unnamed: true,
            });
        }
        loop {
            let tmp = owned_name(dir, &name, "tmp");
            let mut r = registry();
            r.check_alive(path)?;
            // The umask applies, as for any newly created file.
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&tmp)
            {
                Ok(file) => {
                    let id = Some(r.add(tmp.clone()));
                    return Ok(AtomicFile {
                        path: path.to_owned(),
                        file,
                        tmp,
                        id,
                        unnamed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&tmp, "create temporary file")(e)),
            }
        }
    }

    /// The same as [`AtomicFile::create`].
    pub fn new(path: &Path) -> Result<AtomicFile, Error> {
        AtomicFile::create(path)
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The final path (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file `path`: syncs its contents, links it under its
    /// hidden name (unnamed files), renames that over `path` and syncs the
    /// directory. A signal arriving meanwhile waits until this is done.
    pub fn commit(mut self) -> Result<(), Error> {
        let path = self.path.clone();
        self.file.sync_all().map_err(Error::io(&path, "sync"))?;
        let mut r = registry();
        r.check_alive(&path)?;
        if self.unnamed {
            link_unnamed(&self.file, &self.tmp).map_err(Error::io(&path, "link into place"))?;
            self.id = Some(r.add(self.tmp.clone()));
        }
        let renamed = std::fs::rename(&self.tmp, &path);
        if let Err(e) = renamed {
            remove(&self.tmp);
            if let Some(id) = self.id.take() {
                r.forget(id);
            }
            return Err(Error::io(&path, "rename into place")(e));
        }
        if let Some(id) = self.id.take() {
            r.forget(id);
        }
        drop(r);
        sync_dir(parent_of(&path))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut r = registry();
            remove(&self.tmp);
            r.forget(id);
        }
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), or `None` where the system or
/// file system has none, `/proc` is missing (needed to link it), or
/// `BOOTIMAGE_NAMED_TEMPORARY` is set (to test the named files, or to avoid
/// a file system whose `O_TMPFILE` misbehaves).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_unnamed(dir: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    if !Path::new("/proc/self/fd").is_dir()
        || std::env::var_os("BOOTIMAGE_NAMED_TEMPORARY").is_some()
    {
        return Ok(None);
    }
    match openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // Not supported by the file system (EOPNOTSUPP), or by the kernel
        // (which then sees O_DIRECTORY|O_RDWR: EISDIR, or EINVAL).
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_unnamed(_dir: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

/// Gives an unnamed file the name `to` (`linkat` through `/proc`, which
/// needs no privilege, unlike `AT_EMPTY_PATH`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    linkat(CWD, proc_path.as_str(), CWD, to, AtFlags::SYMLINK_FOLLOW)?;
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn link_unnamed(_file: &File, _to: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// A hidden directory, `.STEM.PID-RANDOM.staging`, in which outputs that
/// must appear together are made; removed on drop and on a signal.
pub struct StagingDir {
    path: PathBuf,
    id: u64,
}

impl StagingDir {
    /// Makes the directory in `dir` (first removing what killed runs left
    /// there).
    pub fn create(dir: &Path, stem: &str) -> Result<StagingDir, Error> {
        remove_leftovers(dir);
        loop {
            let path = owned_name(dir, stem, "staging");
            let mut r = registry();
            r.check_alive(&path)?;
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let id = r.add(path.clone());
                    return Ok(StagingDir { path, id });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(dir, "create staging directory")(e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let mut r = registry();
        remove(&self.path);
        r.forget(self.id);
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = AtomicFile::create(path)?;
    f.file()
        .write_all(bytes)
        .map_err(Error::io(path, "write"))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_names_round_trip_and_others_are_not_taken() {
        let p = owned_name(Path::new("d"), "k.img", "tmp");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(owner_of(name), Some(std::process::id()));
        let s = owned_name(Path::new("d"), "demo", "staging");
        assert_eq!(
            owner_of(s.file_name().unwrap().to_str().unwrap()),
            Some(std::process::id())
        );
        for other in [
            "k.img",
            ".k.img.tmp",
            ".k.img.GwWYBQ.tmp",
            ".k.img.12-zzzzzzzz.tmp",
            ".k.img.-0123abcd.tmp",
            ".k.img.12-0123abcd.txt",
            ".big.staging.7YNFnm",
        ] {
            assert_eq!(owner_of(other), None, "{other}");
        }
        assert_eq!(owner_of(".k.img.12-0123abcd.tmp"), Some(12));
    }

    #[test]
    fn leftovers_of_a_gone_process_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its pid is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let dead = dir.path().join(format!(".x.img.{gone}-0123abcd.tmp"));
        let dead_dir = dir.path().join(format!(".x.{gone}-0123abcd.staging"));
        let live = dir
            .path()
            .join(format!(".x.img.{}-0123abcd.tmp", std::process::id()));
        let other = dir.path().join(".x.img.GwWYBQ.tmp");
        for f in [&dead, &live, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("x.img"), b"x").unwrap();
        let mut removed = remove_leftovers(dir.path());
        removed.sort();
        assert_eq!(removed, vec![dead_dir.clone(), dead.clone()]);
        assert!(live.exists() && other.exists());
        assert!(!dead.exists() && !dead_dir.exists());
    }
}
