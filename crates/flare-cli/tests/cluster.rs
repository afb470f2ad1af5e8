//! One batch split into parts (`flare segment --num-parts/--part-id/--part-from-env`), each
//! case's record, `flare gather`, reruns of a stopped part, and the Kubernetes recipe's command
//! run as its Indexed Job would run it. The real-Slurm test is slurm.rs.

mod cluster_common;

use std::collections::{BTreeMap, BTreeSet};

use cluster_common::*;
use flare_testkit::{TempDir, python_with, run_python, workspace_root};

fn record(out: &std::path::Path, case: &str) -> serde_json::Value {
    let path = out.join(format!(".flare-records/{case}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn parts_do_each_case_once_and_a_rerun_does_only_what_is_missing() {
    let model = phantom_model();
    let t = TempDir::new("cluster-parts");
    let (input, out, pictures) = (t.join("in"), t.join("out"), t.join("report"));
    let names = names_with_parts("c", &[3, 2, 2]);
    let truths = make_cases(&input, &names);
    // A corrupt case: half of a good file.
    let good = std::fs::read(input.join(format!("{}_0000.nii.gz", names[0]))).unwrap();
    std::fs::write(input.join("bad_0000.nii.gz"), &good[..good.len() / 2]).unwrap();
    let bad_part = sha_part("bad", 3);

    let mut done_by: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for k in 0..3u32 {
        let o = flare_env(
            &[
                "--threads",
                "1",
                "segment",
                "-i",
                p(&input),
                "-o",
                p(&out),
                "--model",
                p(&model),
                "--report",
                p(&pictures),
                "--num-parts",
                "3",
                "--part-id",
                &k.to_string(),
            ],
            &[],
        );
        let stderr = text(&o.stderr);
        let want_code = if k == bad_part { 1 } else { 0 };
        assert_eq!(o.status.code(), Some(want_code), "part {k}: {stderr}");
        assert!(stderr.contains(&format!("part {k} of 3: ")), "{stderr}");
        // A part's report has its pictures but no index of its own.
        assert!(
            stderr.contains("`flare gather` writes the index"),
            "{stderr}"
        );
        for case in wrote(&text(&o.stdout)) {
            done_by.entry(case).or_default().push(k);
        }
    }
    assert!(!pictures.join("index.html").exists());
    // Every good case written exactly once, by the part coreutils' sha256sum names.
    let expect: BTreeMap<String, Vec<u32>> = names
        .iter()
        .map(|n| (n.clone(), vec![sha_part(n, 3)]))
        .collect();
    assert_eq!(done_by, expect);
    for n in &names {
        let r = record(&out, n);
        assert_eq!(r["status"], "done", "{r}");
        assert_eq!(r["part"]["index"], sha_part(n, 3), "{r}");
        assert_eq!(r["part"]["count"], 3, "{r}");
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 10.0, "{r}");
        assert!(r["volumes_ml"]["liver_ml"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["model"].as_str().unwrap().contains("phantom"), "{r}");
    }
    let r = record(&out, "bad");
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"].as_str().unwrap().contains("bad_0000.nii.gz"),
        "{r}"
    );

    // Gather: the failed case named with its part; the CSV and index cover the good ones.
    let (csv, report) = (t.join("volumes.csv"), t.join("report"));
    let g = flare_env(
        &[
            "gather",
            "-i",
            p(&input),
            "-o",
            p(&out),
            "--volumes",
            p(&csv),
            "--report",
            p(&report),
        ],
        &[],
    );
    let stdout = text(&g.stdout);
    assert_eq!(g.status.code(), Some(1), "{}", text(&g.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!("failed: bad (part {bad_part} of 3): ")),
        "{stdout}"
    );
    assert!(
        text(&g.stderr).contains("8 cases: 7 complete, 1 failed, 0 missing"),
        "{}",
        text(&g.stderr)
    );
    check_outputs(&out, &csv, &truths);
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for n in &names {
        assert!(html.contains(&format!("src=\"{n}.png\"")), "{n}");
    }
    assert!(html.contains("bad_0000.nii.gz"));

    // A part stopped half-way: one case never written, another written but not recorded.
    let part1: Vec<&String> = names.iter().filter(|n| sha_part(n, 3) == 1).collect();
    let (lost, unrecorded) = (part1[0], part1[1]);
    std::fs::remove_file(out.join(format!("{lost}.nii.gz"))).unwrap();
    std::fs::remove_file(out.join(format!(".flare-records/{lost}.json"))).unwrap();
    std::fs::remove_file(out.join(format!(".flare-records/{unrecorded}.json"))).unwrap();
    let g = flare_env(&["gather", "-i", p(&input), "-o", p(&out)], &[]);
    assert_eq!(g.status.code(), Some(1));
    let stdout = text(&g.stdout);
    assert!(
        stdout.contains(&format!(
            "missing: {lost} (part 1 of 3): no label map and no record"
        )),
        "{stdout}"
    );
    let before: BTreeMap<String, (u64, i64)> = label_maps(&out)
        .into_iter()
        .map(|f| {
            let s = stamp(&out.join(&f));
            (f, s)
        })
        .collect();
    let kept_record = names
        .iter()
        .find(|n| *n != lost && *n != unrecorded)
        .unwrap();
    let kept_record_stamp = stamp(&out.join(format!(".flare-records/{kept_record}.json")));
    for k in 0..3u32 {
        let o = flare_env(
            &[
                "--threads",
                "1",
                "segment",
                "-i",
                p(&input),
                "-o",
                p(&out),
                "--model",
                p(&model),
                "--num-parts",
                "3",
                "--part-id",
                &k.to_string(),
            ],
            &[],
        );
        // Only the lost case is segmented again (the bad one fails again in its part).
        let want: Vec<String> = if k == 1 { vec![lost.clone()] } else { vec![] };
        assert_eq!(wrote(&text(&o.stdout)), want, "{}", text(&o.stderr));
    }
    for (f, s) in &before {
        assert_eq!(stamp(&out.join(f)), *s, "{f} was rewritten");
    }
    assert_eq!(
        stamp(&out.join(format!(".flare-records/{kept_record}.json"))),
        kept_record_stamp,
        "a complete case's record was rewritten"
    );
    assert_eq!(record(&out, unrecorded)["status"], "existing");
    assert_eq!(record(&out, lost)["status"], "done");
    // The corrupt input removed from the batch: everything complete, its record now stray.
    std::fs::remove_file(input.join("bad_0000.nii.gz")).unwrap();
    let g = flare_env(
        &[
            "gather",
            "-i",
            p(&input),
            "-o",
            p(&out),
            "--volumes",
            p(&csv),
        ],
        &[],
    );
    assert_eq!(g.status.code(), Some(0), "{}", text(&g.stderr));
    assert_eq!(text(&g.stdout), "");
    assert!(
        text(&g.stderr).contains("a record of bad"),
        "{}",
        text(&g.stderr)
    );
    check_outputs(&out, &csv, &truths);
    // No temporary files anywhere: every write was completed and renamed.
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn the_part_comes_from_the_engine_or_the_command_fails_saying_why() {
    let model = phantom_model();
    let t = TempDir::new("cluster-env");
    let input = t.join("in");
    let names = names_with_parts("e", &[1, 1]);
    make_cases(&input, &names);
    let out = t.join("out");
    let seg = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "--threads",
            "1",
            "segment",
            "-i",
            p(&input),
            "-o",
            p(&out),
            "--model",
            p(&model),
        ];
        args.extend_from_slice(extra);
        flare_env(&args, env)
    };
    for (extra, env, want) in [
        (
            &["--part-from-env", "slurm"][..],
            &[][..],
            "SLURM_ARRAY_TASK_ID is not set",
        ),
        (
            &["--part-from-env", "slurm"],
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "1"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "1"),
            ],
            "FLARE_NUM_PARTS",
        ),
        (
            &["--part-from-env", "slurm", "--num-parts", "2"],
            &[("SLURM_ARRAY_TASK_ID", "one")],
            "SLURM_ARRAY_TASK_ID=\"one\"",
        ),
        (
            &["--part-from-env", "k8s"],
            &[("JOB_COMPLETION_INDEX", "0")],
            "spec.completions",
        ),
        (
            &["--part-from-env", "k8s", "--num-parts", "2"],
            &[],
            "JOB_COMPLETION_INDEX is not set",
        ),
        (&["--num-parts", "2"], &[], "--part-id K or --part-from-env"),
        (&["--num-parts", "2", "--part-id", "2"], &[], "part 2 of 2"),
        (&["--part-id", "0"], &[], "--num-parts"),
    ] {
        let o = seg(extra, env);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{extra:?}: want {want:?} in {stderr}"
        );
        assert!(!out.exists(), "{extra:?} wrote something");
    }
    // One case into one file cannot be split.
    let one = input.join(format!("{}_0000.nii.gz", names[0]));
    let o = flare_env(
        &[
            "segment",
            "-i",
            p(&one),
            "-o",
            p(&t.join("one.nii.gz")),
            "--model",
            p(&model),
            "--num-parts",
            "2",
            "--part-id",
            "0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("INPUT is one case"),
        "{}",
        text(&o.stderr)
    );

    // A whole Slurm array (0-1) and a resubmitted task told the count: each does its own case.
    for (id, env_count, count_flag) in [("0", Some("2"), None), ("1", None, Some("2"))] {
        let mut env = vec![("SLURM_ARRAY_TASK_ID", id), ("SLURM_ARRAY_JOB_ID", "77")];
        let mut extra = vec!["--part-from-env", "slurm"];
        match (env_count, count_flag) {
            (Some(n), _) => {
                env.extend([
                    ("SLURM_ARRAY_TASK_COUNT", n),
                    ("SLURM_ARRAY_TASK_MIN", "0"),
                    ("SLURM_ARRAY_TASK_MAX", "1"),
                ]);
            }
            (None, Some(n)) => {
                env.extend([
                    ("SLURM_ARRAY_TASK_COUNT", "1"),
                    ("SLURM_ARRAY_TASK_MIN", id),
                    ("SLURM_ARRAY_TASK_MAX", id),
                ]);
                extra.extend(["--num-parts", n]);
            }
            _ => unreachable!(),
        }
        let o = seg(&extra, &env);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let k: u32 = id.parse().unwrap();
        let want: Vec<String> = names
            .iter()
            .filter(|n| sha_part(n, 2) == k)
            .cloned()
            .collect();
        assert_eq!(wrote(&text(&o.stdout)), want);
        let r = record(&out, &want[0]);
        assert_eq!(r["job"], format!("slurm job 77_{id}"));
    }
    let g = flare_env(&["gather", "-i", p(&input), "-o", p(&out)], &[]);
    assert_eq!(g.status.code(), Some(0), "{}", text(&g.stderr));
}

#[test]
fn the_kubernetes_recipe_runs_as_its_indexed_job_would() {
    // PyYAML reads the manifest (an independent parser); Kubernetes itself cannot run here, so
    // the test does what the Job controller does: one pod per index with JOB_COMPLETION_INDEX
    // set and `$(VAR)` in the command expanded from the container's env.
    let Some(python) = python_with(
        "the_kubernetes_recipe_runs_as_its_indexed_job_would",
        &["yaml"],
    ) else {
        return;
    };
    let manifest = workspace_root().join("scripts/cluster/k8s-indexed-job.yaml");
    let json = run_python(
        &python,
        "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        &[p(&manifest)],
    );
    let job: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    let completions = spec["completions"].as_u64().unwrap();
    let container = &spec["template"]["spec"]["containers"][0];
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        env["FLARE_NUM_PARTS"],
        completions.to_string(),
        "FLARE_NUM_PARTS must equal completions"
    );
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();

    let model = phantom_model();
    let t = TempDir::new("cluster-k8s");
    let names = names_with_parts("k", &[1, 1, 2, 1]);
    let truths = make_cases(&t.join("inputs"), &names);
    let mut done = BTreeSet::new();
    let mut runs = 0;
    for index in 0..completions {
        let command: Vec<String> = container["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let mut a = a.as_str().unwrap().to_string();
                for (k, v) in &env {
                    a = a.replace(&format!("$({k})"), v);
                }
                a.replace(mount, p(t.path()))
            })
            .collect();
        assert_eq!(command[0], "flare");
        let mut args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        args.extend(["--model", p(&model)]);
        let o = flare_env(&args, &[("JOB_COMPLETION_INDEX", &index.to_string())]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        for c in wrote(&text(&o.stdout)) {
            assert!(done.insert(c.clone()), "{c} done twice");
            assert_eq!(u64::from(sha_part(&c, completions as u32)), index);
        }
        runs += 1;
    }
    assert_eq!(runs, 4);
    assert_eq!(done.into_iter().collect::<Vec<_>>(), names);
    let csv = t.join("volumes.csv");
    let g = flare_env(
        &[
            "gather",
            "-i",
            p(&t.join("inputs")),
            "-o",
            p(&t.join("outputs")),
            "--volumes",
            p(&csv),
        ],
        &[],
    );
    assert_eq!(g.status.code(), Some(0), "{}", text(&g.stderr));
    check_outputs(&t.join("outputs"), &csv, &truths);
}
