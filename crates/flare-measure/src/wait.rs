//! Waiting for one child and collecting the kernel's account of it (`wait4`).
//!
//! `getrusage(RUSAGE_CHILDREN)` sums every child the process ever waited for, which mixes runs
//! when several commands are measured at once; `wait4` returns the usage of exactly the child
//! it reaps (with its own waited-for descendants). Neither std nor nix wraps `wait4`, so this
//! module calls libc; it is the crate's second and last use of `unsafe`.

#![allow(unsafe_code)]

use std::{io, os::unix::process::ExitStatusExt, process::ExitStatus};

/// What the kernel recorded for a reaped child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildUsage {
    /// How it ended.
    pub status: ExitStatus,
    /// User CPU seconds (its waited-for descendants included).
    pub user_s: f64,
    /// System CPU seconds (its waited-for descendants included).
    pub system_s: f64,
    /// Largest resident set of it or any waited-for descendant, bytes.
    pub max_rss_bytes: u64,
}

/// Blocks until process `pid` (a child of this process) exits, and reaps it.
pub(crate) fn wait_child(pid: u32) -> io::Result<ChildUsage> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the types wait4 expects.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Ok(ChildUsage {
        status: ExitStatus::from_raw(status),
        user_s: secs(usage.ru_utime),
        system_s: secs(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    })
}
