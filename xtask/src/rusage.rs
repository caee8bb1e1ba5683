//! FFI: what `std` does not report: a child's own peak memory and CPU
//! time (`wait4`), and the calling thread's CPU time.
//!
//! Linux and illumos both have these, under names of their own: the `libc`
//! crate offers `wait4` and `RUSAGE_THREAD` for Linux only, so for illumos
//! they are declared here (`wait4` from `<sys/wait.h>`, `RUSAGE_LWP` from
//! `<sys/resource.h>`). What illumos cannot give: a peak resident set size
//! (its kernel never fills in `ru_maxrss`: see `getrusage_chld` and
//! `getrusage_lwp` in illumos-gate's `uts/common/syscall/rusagesys.c`), so
//! [`Usage::max_rss`] is `None` there and the benchmark tables say n/a.

#[cfg(target_os = "linux")]
use libc::{wait4, RUSAGE_THREAD};

#[cfg(target_os = "illumos")]
extern "C" {
    /// illumos `<sys/wait.h>`: `pid_t wait4(pid_t, int *, int, struct
    /// rusage *)`, in libc.
    fn wait4(
        pid: libc::pid_t,
        status: *mut libc::c_int,
        options: libc::c_int,
        rusage: *mut libc::rusage,
    ) -> libc::pid_t;
}

/// illumos `<sys/resource.h>`: `#define RUSAGE_LWP 1`, the calling
/// thread (LWP), which Linux calls `RUSAGE_THREAD`.
#[cfg(target_os = "illumos")]
const RUSAGE_THREAD: libc::c_int = 1;

use std::io;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// What one run of a child cost.
pub struct Usage {
    pub status: ExitStatus,
    pub wall: Duration,
    /// Peak resident set size, in bytes; `None` where the system does not
    /// report it (illumos).
    pub max_rss: Option<u64>,
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
        let r = unsafe { wait4(pid, &mut status, 0, &mut ru) };
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
        // Linux reports KiB; illumos leaves the field at zero.
        max_rss: (cfg!(target_os = "linux") && ru.ru_maxrss > 0)
            .then(|| ru.ru_maxrss as u64 * 1024),
        cpu: duration(ru.ru_utime) + duration(ru.ru_stime),
    })
}

fn duration(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// User plus system CPU time of the calling thread so far. (Only `bench
/// netboot`, which needs Linux, asks for it.)
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn thread_cpu() -> io::Result<Duration> {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid and writable for the call.
    if unsafe { libc::getrusage(RUSAGE_THREAD, &mut ru) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(duration(ru.ru_utime) + duration(ru.ru_stime))
}
