//! The monitor on real commands: wall time of `sleep`, peak memory of a known allocation.

use std::{ffi::OsString, time::Duration};

use flare_measure::{GpuReport, MeasureError, Options, measure};

fn cmd(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

#[test]
fn sleep_one_second_takes_one_second() {
    let r = measure(&cmd(&["sleep", "1"]), &Options::default()).unwrap();
    // `sleep 1` cannot take less than 1 s; on a loaded machine starting it can add a few
    // hundred milliseconds, which is not the monitor's error.
    assert!((0.99..1.6).contains(&r.wall_s), "wall {} s", r.wall_s);
    assert_eq!(r.exit_code, Some(0));
    // sleep does not compute.
    assert!(r.cpu_s < 0.3, "cpu {} s", r.cpu_s);
    // About one sample per 0.1 s, at the start and then on every tick.
    assert!(
        (8..=12).contains(&r.samples.len()),
        "{} samples",
        r.samples.len()
    );
    assert!(r.samples.windows(2).all(|w| w[0].t_s < w[1].t_s));
    if let GpuReport::Unavailable { reason } = &r.gpu {
        assert!(!reason.is_empty());
    }
}

#[test]
fn peak_rss_of_a_500_mb_allocation_is_within_5_percent() {
    let Some(python) = flare_testkit::python_with("peak_rss_of_a_500_mb_allocation", &[]) else {
        return;
    };
    let python = python.to_string_lossy().into_owned();
    // Fill (not just reserve) 500 MiB, hold it for half a second, free it.
    let script =
        "import time\nb = b'\\x01' * (500 * 1024 * 1024)\ntime.sleep(0.5)\ndel b\ntime.sleep(0.2)";
    let r = measure(&cmd(&[&python, "-c", script]), &Options::default()).unwrap();
    assert_eq!(r.exit_code, Some(0));
    let want = 500.0 * 1024.0 * 1024.0;
    let got = r.peak_rss_bytes as f64;
    assert!(
        (got - want).abs() <= 0.05 * want,
        "peak RSS {:.1} MiB",
        got / 1048576.0
    );
    // Both views see it: the samples (held 0.5 s) and the kernel's high-water mark.
    assert!((r.peak_rss_sampled_bytes as f64 - want).abs() <= 0.05 * want);
    assert!((r.peak_rss_kernel_bytes as f64 - want).abs() <= 0.05 * want);
    // The samples show the memory being released at the end.
    let last = r.samples.last().unwrap().rss_bytes as f64;
    assert!(last < 0.5 * want, "last sample {last}");
}

#[test]
fn whole_tree_is_counted_and_exit_code_kept() {
    // A shell whose two children each hold 100 MiB at the same time: the tree holds 200 MiB,
    // more than any single process, which only the sampled sum can see.
    let Some(python) = flare_testkit::python_with("whole_tree_is_counted", &[]) else {
        return;
    };
    let py = python.to_string_lossy();
    let child = format!("{py} -c \"import time; b = b'x' * (100 << 20); time.sleep(0.8)\"");
    let script = format!("{child} & {child} & wait; exit 3");
    let r = measure(&cmd(&["sh", "-c", &script]), &Options::default()).unwrap();
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.passthrough_exit_code(), 3);
    let mib = (r.peak_rss_sampled_bytes >> 20) as i64;
    assert!((195..=240).contains(&mib), "tree peak {mib} MiB");
    assert!(r.samples.iter().any(|s| s.processes >= 3));
}

#[test]
fn bad_commands_and_intervals_are_errors() {
    let e = measure(&cmd(&["/nonexistent/program"]), &Options::default()).unwrap_err();
    assert!(matches!(e, MeasureError::Spawn { .. }));
    assert!(e.to_string().contains("/nonexistent/program"), "{e}");
    assert!(matches!(
        measure(&[], &Options::default()),
        Err(MeasureError::NoCommand)
    ));
    for bad in [0.0, -1.0, 1e-6, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            Options::with_interval_s(bad, 0),
            Err(MeasureError::BadInterval(_))
        ));
    }
    let o = Options::with_interval_s(0.25, 1).unwrap();
    assert_eq!(o.interval, Duration::from_millis(250));
}
