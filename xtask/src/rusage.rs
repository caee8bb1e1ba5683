//! FFI: what `std` does not report: a child's own peak memory and CPU
//! time (`wait4`), and the calling thread's CPU time.

use std::io;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// What one run of a child cost.
pub struct Usage {
    pub status: ExitStatus,
    pub wall: Duration,
    /// Peak resident set size, in bytes.
    pub max_rss: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Runs `cmd` to completion and returns its exit status, wall time, peak
/// memory and CPU time.
pub fn run(cmd: &mut Command) -> io::Result<Usage> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    wait(child, start)
}

/// Waits for `child` (started at `start`) and returns what it cost.
pub fn wait(child: std::process::Child, start: Instant) -> io::Result<Usage> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; `status` and `ru` are
        // valid, writable and live for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let wall = start.elapsed();
    // The child is reaped; `Child` does not wait on drop.
    drop(child);
    Ok(Usage {
        status: ExitStatus::from_raw(status),
        wall,
        max_rss: ru.ru_maxrss as u64 * 1024,
        cpu: duration(ru.ru_utime) + duration(ru.ru_stime),
    })
}

fn duration(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// User plus system CPU time of the calling thread so far.
pub fn thread_cpu() -> io::Result<Duration> {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(duration(ru.ru_utime) + duration(ru.ru_stime))
}
