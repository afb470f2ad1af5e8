//! Refusing allocations that cannot fit, before making them.
//!
//! Linux overcommits memory, so a huge `Vec` allocation "succeeds" and the process is killed later
//! by the OOM killer. Readers check a volume's size against the memory actually available first.

/// Bytes of memory this process can still expect to use: `MemAvailable` from `/proc/meminfo`,
/// further limited by the cgroup (container) limit where one is set. `None` where unknown.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut avail = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)?;
    let cgroup = |limit: &str, usage: &str| -> Option<u64> {
        let lim = std::fs::read_to_string(limit)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
        let used = std::fs::read_to_string(usage)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(lim.saturating_sub(used))
    };
    if let Some(c) = cgroup("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current") {
        avail = avail.min(c);
    }
    Some(avail)
}

/// The error of [`ensure_fits`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("needs {needed_mb} MB but only {available_mb} MB of memory is available")]
pub struct InsufficientMemory {
    /// Megabytes the allocation needs.
    pub needed_mb: u64,
    /// Megabytes available.
    pub available_mb: u64,
}

/// Checks that `bytes` can be allocated. The environment variable `FLARE_MEMORY_LIMIT_MB`
/// lowers the limit (for tests, and for sharing a machine).
pub fn ensure_fits(bytes: u64) -> Result<(), InsufficientMemory> {
    let env_limit = std::env::var("FLARE_MEMORY_LIMIT_MB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|mb| mb.saturating_mul(1 << 20));
    let limit = match (available_bytes(), env_limit) {
        (Some(a), Some(e)) => a.min(e),
        (Some(a), None) => a,
        (None, Some(e)) => e,
        (None, None) => return Ok(()),
    };
    if bytes > limit {
        return Err(InsufficientMemory {
            needed_mb: bytes.div_ceil(1 << 20),
            available_mb: limit >> 20,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused() {
        assert!(ensure_fits(u64::MAX / 2).is_err());
        assert!(ensure_fits(1024).is_ok());
    }
}
