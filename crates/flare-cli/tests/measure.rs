//! `flare measure` end to end: wall time of `sleep 1`, peak RSS of a 500 MiB allocation, exit
//! codes passed through, JSON report and summary, bad input.

mod common;

use common::{flare, text};

use flare_testkit::{TempDir, python_with};
use serde_json::Value;

#[test]
fn sleep_one_second_reports_about_one_second() {
    let dir = TempDir::new("measure-sleep");
    let json = dir.join("r.json");
    let out = flare(&[
        "measure",
        "--out",
        json.to_str().unwrap(),
        "--",
        "sleep",
        "1",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let wall = r["wall_s"].as_f64().unwrap();
    // `sleep 1` cannot take less than 1 s; on a loaded machine starting it can add a few
    // hundred milliseconds, which is not the monitor's error.
    assert!((0.99..1.6).contains(&wall), "wall {wall} s");
    assert_eq!(r["command"], serde_json::json!(["sleep", "1"]));
    assert_eq!(r["exit_code"], 0);
    assert!(r["cpu_s"].as_f64().unwrap() < 0.3);
    let samples = r["samples"].as_array().unwrap();
    assert!(
        (8..=12).contains(&samples.len()),
        "{} samples",
        samples.len()
    );
    // Right after exec a process has faulted in no page yet, so a sample taken then truly
    // reads RSS 0; `sleep` is resident for the rest of its second.
    let resident = samples
        .iter()
        .filter(|s| s["rss_bytes"].as_u64().unwrap() > 0)
        .count();
    assert!(resident + 2 >= samples.len(), "{samples:?}");
    // The human summary; the GPU line says why it is missing when there is no GPU.
    assert!(stderr.contains("wall time: 1."), "{stderr}");
    match r["gpu"]["status"].as_str().unwrap() {
        "unavailable" => assert!(stderr.contains("GPU:       not measured"), "{stderr}"),
        "sampled" => assert!(r["gpu"]["robust_max_mb"].is_u64(), "{r}"),
        other => panic!("gpu status {other}"),
    }
}

#[test]
fn peak_rss_of_500_mib_is_within_5_percent() {
    let Some(python) = python_with("peak_rss_of_500_mib_is_within_5_percent", &[]) else {
        return;
    };
    let script = "import time\nb = b'\\x01' * (500 * 1024 * 1024)\ntime.sleep(0.5)";
    // Without --out the report is printed on stdout after the command.
    let out = flare(&["measure", "--", python.to_str().unwrap(), "-c", script]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let want = 500.0 * 1024.0 * 1024.0;
    let peak = r["peak_rss_bytes"].as_f64().unwrap();
    assert!(
        (peak - want).abs() <= 0.05 * want,
        "peak {:.1} MiB",
        peak / 1048576.0
    );
    assert!(
        text(&out.stderr).contains("peak RSS:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exit_code_is_the_commands() {
    let dir = TempDir::new("measure-exit");
    let json = dir.join("r.json");
    let out = flare(&[
        "measure",
        "--interval",
        "0.05",
        "--out",
        json.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["exit_code"], 7);
    assert_eq!(r["interval_s"], 0.05);
    // Killed by a signal: 128 + 9, as a shell reports it.
    let out = flare(&[
        "measure",
        "--out",
        json.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn bad_input_is_explained() {
    let out = flare(&["measure", "--", "/nonexistent/tool", "--flag"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot start") && stderr.contains("/nonexistent/tool"),
        "{stderr}"
    );
    let out = flare(&["measure", "--interval", "0", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("interval"),
        "{}",
        text(&out.stderr)
    );
    let out = flare(&["measure"]);
    assert_eq!(out.status.code(), Some(2), "a command is required");
}
