//! [`retain_freed_memory`]: after it, a large buffer freed and allocated again is reused
//! without page faults. Its own test binary without the test harness: the policy is
//! process-wide, and only the main thread's allocations are sure to come from the main heap
//! (the harness runs each test on a thread whose arena exists before the policy is set).

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::a_freed_large_buffer_is_reused_without_faults();
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    println!("skipped: retain_freed_memory only acts with glibc");
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use flare_engine::retain_freed_memory;

    /// Minor page faults of this process so far.
    fn minor_faults() -> i64 {
        // SAFETY: getrusage writes one plain struct that we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        assert_eq!(rc, 0, "getrusage failed");
        usage.ru_minflt
    }

    /// Faults taken while allocating, writing every page of, and freeing `bytes`.
    fn faults_of_one_buffer(bytes: usize) -> i64 {
        let before = minor_faults();
        let mut v = vec![0u8; bytes];
        v.fill(1);
        std::hint::black_box(&mut v);
        drop(v);
        minor_faults() - before
    }

    pub fn a_freed_large_buffer_is_reused_without_faults() {
        const BYTES: usize = 64 << 20;
        let pages = (BYTES / 4096) as i64;
        // Control, before the policy: glibc maps and unmaps a 64 MiB block, so every page
        // faults each time (unless the kernel backs it with huge pages: THP "always").
        faults_of_one_buffer(BYTES);
        let control = faults_of_one_buffer(BYTES);
        assert!(retain_freed_memory(), "mallopt refused the policy");
        faults_of_one_buffer(BYTES); // grows the heap once
        let reused = faults_of_one_buffer(BYTES);
        assert!(
            reused < pages / 100,
            "{reused} faults for a reused {BYTES}-byte buffer ({pages} pages)"
        );
        if control < pages / 2 {
            println!(
                "note: the control took only {control} faults for {pages} pages (huge pages?), \
                 so it does not show the difference on this machine"
            );
        } else {
            println!("faults per 64 MiB buffer: {control} before the policy, {reused} after");
        }
        println!("test a_freed_large_buffer_is_reused_without_faults ... ok");
    }
}
