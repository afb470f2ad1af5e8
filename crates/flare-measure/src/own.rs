//! This process's own peak memory, for per-case figures inside a batch.
//!
//! `flare segment` reports the peak resident memory of each case. The kernel keeps one
//! high-water mark per process (`VmHWM`); writing `5` to `/proc/self/clear_refs` (Linux 4.0+)
//! resets it to the current resident size, so reading it after a case gives that case's peak.

use std::fs;

/// Peak resident memory of this process since it started or since the last
/// [`reset_own_peak_rss`], bytes; `None` where `/proc` is not available.
pub fn own_peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    crate::proc_tree::parse_kib_field(&status, "VmHWM:")
}

/// Current resident memory of this process, bytes; `None` where `/proc` is not available.
pub fn own_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    crate::proc_tree::parse_kib_field(&status, "VmRSS:")
}

/// Resets the high-water mark to the current resident size. Returns false where the kernel
/// does not allow it (then [`own_peak_rss_bytes`] keeps the peak since start).
pub fn reset_own_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_follows_a_large_allocation_and_resets() {
        if own_peak_rss_bytes().is_none() {
            eprintln!("SKIP peak_follows_a_large_allocation_and_resets: no /proc");
            return;
        }
        const MIB: u64 = 1 << 20;
        let before = own_rss_bytes().unwrap();
        let big = vec![1u8; 300 * MIB as usize];
        // Touched pages are resident: the peak is at least the buffer.
        assert!(own_peak_rss_bytes().unwrap() >= before + 290 * MIB);
        drop(std::hint::black_box(big));
        if !reset_own_peak_rss() {
            eprintln!("SKIP the reset part: /proc/self/clear_refs is not writable here");
            return;
        }
        let after = own_peak_rss_bytes().unwrap();
        assert!(
            after < before + 100 * MIB,
            "peak after reset {} MiB",
            after / MIB
        );
    }
}
