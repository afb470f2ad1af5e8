//! Resident memory and CPU time of a whole process tree, read from Linux's `/proc`.
//!
//! A command often forks (a shell running a script, a Python launcher spawning workers), so its
//! cost is that of all its descendants together. Every sample scans `/proc/*/stat` for parent
//! links, collects the tree below the root, and sums the resident set sizes and CPU times of its
//! members. Processes may exit while being read; they are simply skipped.

use std::{collections::HashMap, fs, path::Path};

/// One look at the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeSample {
    /// Processes in the tree (the root included, while it lives).
    pub processes: usize,
    /// Sum of the resident set sizes, bytes.
    pub rss_bytes: u64,
    /// Sum of user + system CPU time of the living members, seconds.
    pub cpu_s: f64,
    /// Largest per-process resident high-water mark (`VmHWM`) among the members, bytes.
    pub max_hwm_bytes: u64,
}

/// What `/proc/<pid>/stat` tells about one process.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: u32,
    cpu_ticks: u64,
    rss_pages: u64,
    /// State `Z`: the process has exited and waits to be reaped; its memory is already gone.
    zombie: bool,
}

/// Reads `/proc` with the system's page size and clock-tick rate.
#[derive(Debug, Clone, Copy)]
pub struct ProcReader {
    page_bytes: u64,
    ticks_per_s: f64,
}

impl ProcReader {
    /// A reader using `sysconf` for the page size and `USER_HZ` (4096 and 100 if unknown).
    pub fn new() -> ProcReader {
        use nix::unistd::{SysconfVar, sysconf};
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
        ProcReader {
            page_bytes: u64::try_from(page).unwrap_or(4096).max(1),
            ticks_per_s: (hz.max(1)) as f64,
        }
    }

    /// Whether `/proc` is there to read (Linux).
    pub fn available() -> bool {
        Path::new("/proc/self/stat").exists()
    }

    /// Samples the tree rooted at `root` (all processes whose parent chain reaches it).
    pub fn sample(&self, root: u32) -> TreeSample {
        let stats = all_stats();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (&pid, s) in &stats {
            children.entry(s.ppid).or_default().push(pid);
        }
        let mut out = TreeSample::default();
        if !stats.contains_key(&root) {
            return out;
        }
        let mut stack = vec![root];
        let mut ticks = 0u64;
        while let Some(pid) = stack.pop() {
            let Some(s) = stats.get(&pid) else { continue };
            if s.zombie {
                // An exited process still listed until its parent reaps it: it reports RSS 0
                // and is not running, so it is not a member a sample should describe.
                continue;
            }
            out.processes += 1;
            out.rss_bytes += s.rss_pages * self.page_bytes;
            ticks += s.cpu_ticks;
            out.max_hwm_bytes = out.max_hwm_bytes.max(read_hwm_bytes(pid).unwrap_or(0));
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids.iter().copied().filter(|&k| k != pid));
            }
        }
        out.cpu_s = ticks as f64 / self.ticks_per_s;
        out
    }
}

impl Default for ProcReader {
    fn default() -> Self {
        ProcReader::new()
    }
}

/// Every process's parent, CPU ticks and RSS; unreadable entries are skipped.
fn all_stats() -> HashMap<u32, Stat> {
    let mut out = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(stat) = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            out.insert(pid, stat);
        }
    }
    out
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold spaces
/// or parentheses itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15) ... rss(24), 1-based overall.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)? + field(15)?,
        rss_pages: field(24)?,
        zombie: f.first() == Some(&"Z"),
    })
}

/// The process's resident high-water mark (`VmHWM` in `/proc/<pid>/status`), bytes.
fn read_hwm_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib_field(&text, "VmHWM:")
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_kib_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name_parses() {
        let line = "4242 (my (weird) cmd) S 17 4242 17 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 3 0 \
                    12345 1000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.ppid, 17);
        assert_eq!(s.cpu_ticks, 290);
        assert_eq!(s.rss_pages, 2560);
        assert!(!s.zombie);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn an_exited_unreaped_child_is_not_a_member() {
        if !ProcReader::available() {
            eprintln!("SKIP an_exited_unreaped_child_is_not_a_member: no /proc");
            return;
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: it stays listed, in state Z, until `wait`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            if parse_stat(&stat).unwrap().zombie {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = ProcReader::new().sample(pid);
        assert_eq!(s.processes, 0, "{s:?}");
        assert_eq!(s.rss_bytes, 0);
        child.wait().unwrap();
    }

    #[test]
    fn status_kib_fields_parse() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM:"), Some(1234 * 1024));
        assert_eq!(parse_kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn own_process_is_sampled() {
        if !ProcReader::available() {
            eprintln!("SKIP own_process_is_sampled: no /proc");
            return;
        }
        let r = ProcReader::new();
        let s = r.sample(std::process::id());
        assert!(s.processes >= 1);
        // A test binary is at least a megabyte resident, and its high-water mark covers it.
        assert!(s.rss_bytes > 1 << 20, "{s:?}");
        assert!(s.max_hwm_bytes >= s.rss_bytes / 2, "{s:?}");
        assert_eq!(r.sample(u32::MAX).processes, 0);
    }
}
