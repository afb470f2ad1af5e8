//! Runs a command and samples its resource use until it exits.

use std::{
    ffi::OsString,
    process::{Command, ExitStatus},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{
    MeasureError,
    nvml::Gpu,
    proc_tree::{ProcReader, TreeSample},
    report::{GpuReport, Report, Sample},
    stats,
    wait::{ChildUsage, wait_child},
};

/// How to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Time between samples (FLARE: 0.1 s).
    pub interval: Duration,
    /// The NVIDIA GPU whose memory to sample (index as `nvidia-smi` lists them).
    pub gpu_index: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: Duration::from_millis(100),
            gpu_index: 0,
        }
    }
}

impl Options {
    /// Options with an interval given in seconds (at least 1 ms, and finite: each sample reads
    /// all of `/proc`, so a shorter interval would only measure the monitor itself).
    pub fn with_interval_s(interval_s: f64, gpu_index: u32) -> Result<Options, MeasureError> {
        if !(interval_s.is_finite() && interval_s >= 0.001) {
            return Err(MeasureError::BadInterval(interval_s));
        }
        let interval = Duration::try_from_secs_f64(interval_s)
            .map_err(|_| MeasureError::BadInterval(interval_s))?;
        Ok(Options {
            interval,
            gpu_index,
        })
    }
}

/// Runs `command` (program and arguments; standard streams inherited) and measures it.
///
/// Samples every `options.interval`: the resident memory and CPU time of the command's whole
/// process tree from `/proc`, and the used memory of the GPU when NVML is available. When the
/// command exits, the kernel's own totals for it and its waited-for descendants (user and system
/// CPU time, largest resident set) complete the report. The command's failure is not an error
/// here: its exit status is in the report.
pub fn measure(command: &[OsString], options: &Options) -> Result<Report, MeasureError> {
    let (program, args) = command.split_first().ok_or(MeasureError::NoCommand)?;
    let shown = program.to_string_lossy().into_owned();
    let gpu = Gpu::open(options.gpu_index);
    let reader = ProcReader::new();
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .spawn()
        .map_err(|source| MeasureError::Spawn {
            command: shown.clone(),
            source,
        })?;
    let pid = child.id();
    // A waiter thread notes the exit as it happens, so that wall time is not rounded up to the
    // next sample and the sampling loop wakes at once.
    // `child` is dropped without waiting (std never reaps on drop); `wait_child` reaps it.
    drop(child);
    let (tx, rx) = mpsc::channel::<(std::io::Result<ChildUsage>, Instant)>();
    let waiter = std::thread::spawn(move || {
        let usage = wait_child(pid);
        let _ = tx.send((usage, Instant::now()));
    });

    let mut samples: Vec<Sample> = Vec::new();
    let mut gpu_mb: Vec<u64> = Vec::new();
    let mut gpu_error: Option<String> = None;
    let mut prev: Option<(f64, f64)> = None; // (t, tree cpu seconds)
    let mut peak_tree = 0u64;
    let mut peak_hwm = 0u64;
    let mut tick = 0u32;
    let (usage, end) = loop {
        let t = start.elapsed().as_secs_f64();
        let tree: TreeSample = reader.sample(pid);
        let gpu_now = match &gpu {
            Ok(g) => match g.used_bytes() {
                Ok(b) => Some(b >> 20),
                Err(e) => {
                    gpu_error.get_or_insert(e.to_string());
                    None
                }
            },
            Err(_) => None,
        };
        // A sample taken after the command ended sees no process; it describes nothing.
        if tree.processes > 0 {
            let cpu_percent = prev.and_then(|(pt, pc)| {
                let dt = t - pt;
                (dt > 0.0).then(|| ((tree.cpu_s - pc) / dt * 100.0).max(0.0))
            });
            prev = Some((t, tree.cpu_s));
            peak_tree = peak_tree.max(tree.rss_bytes);
            peak_hwm = peak_hwm.max(tree.max_hwm_bytes);
            if let Some(m) = gpu_now {
                gpu_mb.push(m);
            }
            samples.push(Sample {
                t_s: t,
                processes: tree.processes,
                rss_bytes: tree.rss_bytes,
                cpu_percent,
                gpu_used_mb: gpu_now,
            });
        }
        tick += 1;
        let next = start + options.interval * tick;
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(done) => break done,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The waiter ended without reporting: it can only have panicked.
                return Err(MeasureError::Wait {
                    command: shown,
                    source: std::io::Error::other("the waiting thread stopped"),
                });
            }
        }
    };
    let _ = waiter.join();
    let usage = usage.map_err(|source| MeasureError::Wait {
        command: shown.clone(),
        source,
    })?;
    let status = usage.status;
    let wall_s = end.duration_since(start).as_secs_f64();
    let (user_s, system_s) = (usage.user_s, usage.system_s);
    // The kernel's maximum is that of the largest single process; a short peak that fell
    // between samples shows there, several processes at once show in the sampled sums.
    let kernel_peak = usage.max_rss_bytes.max(peak_hwm);
    let interval_s = options.interval.as_secs_f64();
    let gpu_report = match gpu {
        Ok(g) => GpuReport::Sampled {
            index: g.index,
            name: g.name.clone(),
            total_mb: g.total_bytes >> 20,
            robust_max_mb: stats::robust_max(&gpu_mb, stats::ROBUST_MAX_FRACTION),
            max_mb: gpu_mb.iter().copied().max(),
            area_mb_s: stats::area_mb_s(&gpu_mb, interval_s),
            area_above_2048_mb_s: stats::area_above_mb_s(&gpu_mb, stats::AREA_FREE_MB, interval_s),
            error: gpu_error,
        },
        Err(e) => GpuReport::Unavailable { reason: e.0 },
    };
    Ok(Report {
        command: command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exit_code: status.code(),
        signal: signal_of(&status),
        wall_s,
        cpu_user_s: user_s,
        cpu_system_s: system_s,
        cpu_s: user_s + system_s,
        peak_rss_bytes: peak_tree.max(kernel_peak),
        peak_rss_sampled_bytes: peak_tree,
        peak_rss_kernel_bytes: kernel_peak,
        interval_s,
        samples,
        gpu: gpu_report,
    })
}

/// The signal that ended the command, if one did.
fn signal_of(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}
