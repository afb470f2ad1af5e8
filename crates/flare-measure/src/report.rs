//! What a measurement found: JSON for tools, a short summary for people.

use std::fmt;

use serde::Serialize;

/// One sample of the command's process tree (and of the GPU).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the command started.
    pub t_s: f64,
    /// Processes in the tree.
    pub processes: usize,
    /// Resident memory of the whole tree, bytes.
    pub rss_bytes: u64,
    /// CPU use of the tree since the previous sample, percent of one core (absent at the first).
    pub cpu_percent: Option<f64>,
    /// Used memory of the whole GPU (total - free), MB (2^20 bytes, as `nvidia-smi` and FLARE).
    pub gpu_used_mb: Option<u64>,
}

/// The GPU part of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GpuReport {
    /// GPU memory was sampled.
    Sampled {
        /// Device index.
        index: u32,
        /// Device name.
        name: String,
        /// Device memory, MB.
        total_mb: u64,
        /// FLARE's robust maximum: the largest value seen in more than 2% of the samples, MB.
        robust_max_mb: Option<u64>,
        /// The plain maximum, MB.
        max_mb: Option<u64>,
        /// Area under the memory-time curve, MB·s (sum of samples times the interval).
        area_mb_s: f64,
        /// Area of the curve above 2048 MB, MB·s (FLARE22 onward).
        area_above_2048_mb_s: f64,
        /// The first sampling error, if some samples failed.
        error: Option<String>,
    },
    /// No GPU memory could be sampled.
    Unavailable {
        /// Why (no driver, no such device).
        reason: String,
    },
}

/// Everything measured about one run of a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The command's exit code (absent when a signal ended it).
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if any.
    pub signal: Option<i32>,
    /// Wall-clock time from start to exit, seconds.
    pub wall_s: f64,
    /// User CPU time of the command and its waited-for descendants, seconds.
    pub cpu_user_s: f64,
    /// System CPU time of the command and its waited-for descendants, seconds.
    pub cpu_system_s: f64,
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
    /// Peak resident memory: the larger of the sampled tree peak and the kernel's high-water
    /// marks, bytes.
    pub peak_rss_bytes: u64,
    /// Largest sum of resident memory over the tree among the samples, bytes.
    pub peak_rss_sampled_bytes: u64,
    /// The kernel's view: the largest single-process resident high-water mark, bytes.
    pub peak_rss_kernel_bytes: u64,
    /// Seconds between samples.
    pub interval_s: f64,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
    /// GPU memory figures, or why there are none.
    pub gpu: GpuReport,
}

impl Report {
    /// The exit code to pass on: the command's, or 128 + signal as shells report it.
    pub fn passthrough_exit_code(&self) -> u8 {
        match (self.exit_code, self.signal) {
            (Some(c), _) => u8::try_from(c.rem_euclid(256)).unwrap_or(1),
            (None, Some(s)) => u8::try_from((128 + s).clamp(0, 255)).unwrap_or(255),
            (None, None) => 1,
        }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers and strings cannot fail; an empty object is never reached.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Mean of the CPU-utilisation samples, percent of one core.
    pub fn mean_cpu_percent(&self) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(|s| s.cpu_percent).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl fmt::Display for Report {
    /// A few lines for people; the JSON holds everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.exit_code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown exit status".into(),
        };
        writeln!(f, "command:   {} ({status})", self.command.join(" "))?;
        writeln!(f, "wall time: {:.3} s", self.wall_s)?;
        write!(
            f,
            "CPU time:  {:.3} s (user {:.3} s, system {:.3} s)",
            self.cpu_s, self.cpu_user_s, self.cpu_system_s
        )?;
        if let Some(c) = self.mean_cpu_percent() {
            write!(f, ", mean {c:.0}% of a core")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "peak RSS:  {:.1} MB (process tree sampled every {} s: {:.1} MB; kernel high-water mark: {:.1} MB)",
            self.peak_rss_bytes as f64 / MIB,
            self.interval_s,
            self.peak_rss_sampled_bytes as f64 / MIB,
            self.peak_rss_kernel_bytes as f64 / MIB
        )?;
        match &self.gpu {
            GpuReport::Sampled {
                index,
                name,
                robust_max_mb,
                max_mb,
                area_mb_s,
                area_above_2048_mb_s,
                error,
                ..
            } => {
                let show = |v: &Option<u64>| v.map_or("n/a".to_string(), |m| format!("{m} MB"));
                write!(
                    f,
                    "GPU {index} ({name}): robust max {} (max {}), area {area_mb_s:.1} MB·s, above 2048 MB {area_above_2048_mb_s:.1} MB·s",
                    show(robust_max_mb),
                    show(max_mb)
                )?;
                if let Some(e) = error {
                    write!(f, " (some samples failed: {e})")?;
                }
                Ok(())
            }
            GpuReport::Unavailable { reason } => write!(f, "GPU:       not measured: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(exit_code: Option<i32>, signal: Option<i32>) -> Report {
        Report {
            command: vec!["x".into()],
            exit_code,
            signal,
            wall_s: 1.0,
            cpu_user_s: 0.5,
            cpu_system_s: 0.25,
            cpu_s: 0.75,
            peak_rss_bytes: 3 << 20,
            peak_rss_sampled_bytes: 2 << 20,
            peak_rss_kernel_bytes: 3 << 20,
            interval_s: 0.1,
            samples: vec![],
            gpu: GpuReport::Unavailable {
                reason: "no NVIDIA driver".into(),
            },
        }
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(report(Some(0), None).passthrough_exit_code(), 0);
        assert_eq!(report(Some(3), None).passthrough_exit_code(), 3);
        assert_eq!(report(None, Some(9)).passthrough_exit_code(), 137);
    }

    #[test]
    fn json_and_summary_say_what_is_missing() {
        let r = report(Some(0), None);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["gpu"]["status"], "unavailable");
        assert_eq!(v["peak_rss_bytes"], 3 << 20);
        let text = r.to_string();
        assert!(text.contains("not measured: no NVIDIA driver"), "{text}");
        assert!(text.contains("peak RSS:  3.0 MB"), "{text}");
    }
}
