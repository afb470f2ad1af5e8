//! The Slurm recipe on a real Slurm: Debian's slurm-wlm and munge (installed with apt-get when
//! missing; the test skips, saying why, where that cannot be done: not root, no apt-get, no
//! network), a one-node cluster started for the test (scripts/cluster/slurm-local.sh), and
//! scripts/cluster/slurm-array.sbatch submitted as a 4-task array over 8 phantom cases. Checks:
//! every case segmented exactly once by the part sha256sum names, `flare gather` complete; then
//! a task cancelled with scancel mid-run, resubmitted alone, finishes only what it had left
//! without rewriting a finished label map (same inode, same mtime).

mod cluster_common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use cluster_common::*;
use flare_testkit::{TempDir, workspace_root};

const TEST: &str = "a_slurm_array_segments_each_case_once_and_a_cancelled_task_resumes";

fn script() -> PathBuf {
    workspace_root().join("scripts/cluster/slurm-local.sh")
}

/// The cluster of this test; stopped (daemons killed by the pids it started) when dropped,
/// also when an assertion fails.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// Runs a Slurm client command against this cluster.
    fn run(&self, tool: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(tool);
        c.args(args).env("SLURM_CONF", self.conf());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// Submits the sbatch recipe as `--array=ARRAY`; returns the job id.
    fn submit(
        &self,
        array: &str,
        logs: &Path,
        input: &Path,
        out: &Path,
        env: &[(&str, &str)],
    ) -> String {
        let recipe = workspace_root().join("scripts/cluster/slurm-array.sbatch");
        let o = self.run(
            "sbatch",
            &[
                "--parsable",
                &format!("--array={array}"),
                "--cpus-per-task=1",
                "--mem=1G",
                &format!("--output={}/flare-%A_%a.out", p(logs)),
                p(&recipe),
                p(input),
                p(out),
            ],
            env,
        );
        assert!(o.status.success(), "sbatch: {}", text(&o.stderr));
        text(&o.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    /// Waits until the job has left the queue.
    fn wait(&self, job: &str) {
        let start = Instant::now();
        loop {
            let o = self.run("squeue", &["-h", "-j", job], &[]);
            if text(&o.stdout).trim().is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(150),
                "job {job} still queued after 150 s:\n{}",
                text(&o.stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ArrayTaskId -> JobState` of a job's tasks (as `scontrol show job` keeps them a while).
    fn states(&self, job: &str) -> BTreeMap<String, String> {
        let o = self.run("scontrol", &["-o", "show", "job", job], &[]);
        let field = |line: &str, key: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .unwrap_or("?")
                .to_string()
        };
        text(&o.stdout)
            .lines()
            .map(|l| (field(l, "ArrayTaskId="), field(l, "JobState=")))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// Installs (if needed) and starts the cluster, or says why the test skips.
fn cluster() -> Option<Cluster> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        eprintln!("SKIP {TEST}: not root (a one-node Slurm runs its daemons as root)");
        return None;
    }
    let o = Command::new("bash")
        .arg(script())
        .arg("install")
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!("SKIP {TEST}: {}", text(&o.stderr).trim());
        return None;
    }
    // A short path: munge's socket must fit a Unix socket name (108 bytes).
    let dir = tempfile::Builder::new()
        .prefix("flare-slurm-")
        .tempdir_in("/tmp")
        .unwrap();
    let cluster = Cluster { dir };
    let o = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(cluster.dir.path())
        .output()
        .unwrap();
    // Installed but not startable is a failure, not a skip.
    assert!(
        o.status.success(),
        "slurm-local.sh start: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    Some(cluster)
}

/// Each task's log, by array index.
fn logs(dir: &Path, job: &str) -> BTreeMap<u32, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let task = name
                .strip_prefix(&format!("flare-{job}_"))?
                .strip_suffix(".out")?
                .parse()
                .ok()?;
            Some((task, std::fs::read_to_string(dir.join(&name)).unwrap()))
        })
        .collect()
}

#[test]
fn a_slurm_array_segments_each_case_once_and_a_cancelled_task_resumes() {
    let Some(cluster) = cluster() else {
        return;
    };
    let model = phantom_model();
    let t = TempDir::new("slurm");
    let input = t.join("in");
    let log_dir = t.join("logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    // 16 cases, 12 of them in part 0 (the one cancelled later), one or two in each other part.
    // Part 0 needs many: with 4, a loaded CI machine once finished them all between the first
    // file appearing and `scancel` taking effect (2026-12-07), and the cancel proved nothing.
    let names = names_with_parts("s", &[12, 2, 1, 1]);
    let truths = make_cases(&input, &names);
    let env = [("FLARE_BIN", flare_bin()), ("FLARE_MODEL", p(&model))];

    // The whole array.
    let out = t.join("out");
    let job = cluster.submit("0-3", &log_dir, &input, &out, &env);
    cluster.wait(&job);
    let states = cluster.states(&job);
    assert_eq!(
        states.values().filter(|s| *s == "COMPLETED").count(),
        4,
        "{states:?}"
    );
    let task_logs = logs(&log_dir, &job);
    assert_eq!(task_logs.len(), 4, "{task_logs:?}");
    let mut done: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (task, log) in &task_logs {
        assert!(
            log.contains(&format!("part {task} of 4: ")),
            "task {task}:\n{log}"
        );
        for c in wrote(log) {
            done.entry(c).or_default().push(*task);
        }
    }
    let expect: BTreeMap<String, Vec<u32>> = names
        .iter()
        .map(|n| (n.clone(), vec![sha_part(n, 4)]))
        .collect();
    assert_eq!(done, expect, "each case once, by its part");
    let csv = t.join("volumes.csv");
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
    check_outputs(&out, &csv, &truths);

    // Again into a fresh folder; task 0 cancelled once its first case is written.
    let out = t.join("out2");
    let part0: Vec<String> = names
        .iter()
        .filter(|n| sha_part(n, 4) == 0)
        .cloned()
        .collect();
    let job = cluster.submit("0-3", &log_dir, &input, &out, &env);
    let start = Instant::now();
    while !part0
        .iter()
        .any(|n| out.join(format!("{n}.nii.gz")).exists())
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task 0 wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = cluster.run("scancel", &[&format!("{job}_0")], &[]);
    assert!(o.status.success(), "scancel: {}", text(&o.stderr));
    cluster.wait(&job);
    let states = cluster.states(&job);
    assert_eq!(
        states.get("0").map(String::as_str),
        Some("CANCELLED"),
        "{states:?}"
    );
    let left: Vec<String> = part0
        .iter()
        .filter(|n| !out.join(format!("{n}.nii.gz")).exists())
        .cloned()
        .collect();
    assert!(
        !left.is_empty() && left.len() < part0.len(),
        "task 0 should have stopped half-way: left {left:?} of {part0:?}"
    );
    eprintln!(
        "slurm test: task 0 of job {job} cancelled with {} of its {} cases written; left {left:?}",
        part0.len() - left.len(),
        part0.len()
    );
    // Whatever is under a final name is a whole label map.
    let mut before = BTreeMap::new();
    for f in label_maps(&out) {
        flare_nifti::read_label_map(out.join(&f))
            .unwrap_or_else(|e| panic!("{f} is not whole after scancel: {e}"));
        before.insert(f.clone(), stamp(&out.join(&f)));
    }
    assert_eq!(before.len(), names.len() - left.len());
    let g = flare_env(&["gather", "-i", p(&input), "-o", p(&out)], &[]);
    assert_eq!(g.status.code(), Some(1));
    let missing: Vec<String> = text(&g.stdout)
        .lines()
        .map(|l| {
            let rest = l.strip_prefix("missing: ").unwrap_or_else(|| panic!("{l}"));
            assert!(rest.contains(" (part 0 of 4): "), "{l}");
            rest.split(' ').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(missing, left);

    // Task 0 resubmitted alone: it does what was left and leaves the rest as it was.
    let mut env2 = env.to_vec();
    env2.push(("FLARE_NUM_PARTS", "4"));
    let rerun = cluster.submit("0", &log_dir, &input, &out, &env2);
    cluster.wait(&rerun);
    let log = logs(&log_dir, &rerun).remove(&0).expect("the rerun's log");
    assert_eq!(wrote(&log), left, "{log}");
    for (f, s) in &before {
        assert_eq!(stamp(&out.join(f)), *s, "{f} was rewritten");
    }
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
    assert_eq!(
        g.status.code(),
        Some(0),
        "{}{}",
        text(&g.stdout),
        text(&g.stderr)
    );
    check_outputs(&out, &csv, &truths);
    drop(cluster);
}
