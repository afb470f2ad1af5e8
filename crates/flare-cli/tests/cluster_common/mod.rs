//! Helpers of the cluster tests (cluster.rs, slurm.rs): phantom cases, the phantom model, and
//! independent checks (coreutils' sha256sum for the case-to-part assignment, inodes and
//! modification times for "never rewritten").

#![allow(dead_code)] // each test binary uses its own subset

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Command, Output},
};

use flare_nifti::DataType;
use flare_testkit::phantom::{PhantomSpec, phantom};
use flare_volume::LabelMap;

#[path = "../common/mod.rs"]
mod common;
pub use common::{p, phantom_model, text};

/// The flare binary under test.
pub fn flare_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flare")
}

/// Runs flare with `args` and extra environment variables.
pub fn flare_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(flare_bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    // The engines' variables of the machine running the tests must not leak in.
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_JOB_ID",
        "SLURM_JOB_ID",
        "JOB_COMPLETION_INDEX",
    ] {
        if !env.iter().any(|(e, _)| *e == k) {
            c.env_remove(k);
        }
    }
    c.output().expect("run flare")
}

/// Writes `<name>_0000.nii.gz` phantoms into `dir`; returns each case's true labels.
pub fn make_cases(dir: &Path, names: &[String]) -> BTreeMap<String, LabelMap> {
    std::fs::create_dir_all(dir).unwrap();
    let mut truths = BTreeMap::new();
    for (n, name) in names.iter().enumerate() {
        let spec = PhantomSpec::new([64, 64, 40], [2.5, 2.5, 4.5], 500 + n as u64);
        let (ct, truth) = phantom(&spec).unwrap();
        flare_nifti::write_volume(
            dir.join(format!("{name}_0000.nii.gz")),
            &ct,
            Some(DataType::Int16),
        )
        .unwrap();
        truths.insert(name.clone(), truth);
    }
    truths
}

/// The part of `case` among `n`, computed by coreutils, not by flare: the first 16 hex digits
/// of `sha256sum` of the name, modulo `n`.
pub fn sha_part(case: &str, n: u32) -> u32 {
    let o = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", case])
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "sha256sum: {}", text(&o.stderr));
    let hex = text(&o.stdout);
    (u64::from_str_radix(&hex[..16], 16).unwrap() % u64::from(n)) as u32
}

/// Case names `prefix000`, `prefix001`, ... chosen so that part `k` of `counts.len()` gets
/// `counts[k]` of them (by the coreutils oracle).
pub fn names_with_parts(prefix: &str, counts: &[usize]) -> Vec<String> {
    let n = counts.len() as u32;
    let mut left = counts.to_vec();
    let mut names = Vec::new();
    for i in 0.. {
        if left.iter().all(|&c| c == 0) {
            break;
        }
        let name = format!("{prefix}{i:03}");
        let k = sha_part(&name, n) as usize;
        if left[k] > 0 {
            left[k] -= 1;
            names.push(name);
        }
        assert!(i < 1000, "no names for {counts:?}");
    }
    names.sort();
    names
}

/// The cases a run says it wrote (`<case>: wrote ...` lines on stdout).
pub fn wrote(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(": wrote ").map(|(c, _)| c.to_string()))
        .collect()
}

/// A file's identity and last write: (inode, modification time in ns). A file replaced by a
/// rename gets a new inode; one rewritten in place a new mtime.
pub fn stamp(path: &Path) -> (u64, i64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec())
}

/// Rows of a volumes CSV: case -> liver mL; checks the header.
pub fn csv_livers(path: &Path) -> BTreeMap<String, f64> {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("case,liver_ml,kidney_ml,spleen_ml,pancreas_ml,warnings")
    );
    lines
        .map(|l| {
            // The last column, the plausibility warnings, may hold quoted commas.
            let f: Vec<&str> = l.splitn(6, ',').collect();
            assert_eq!(f.len(), 6, "{l}");
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect()
}

/// The liver volume of a true label map in mL.
pub fn true_liver_ml(truth: &LabelMap) -> f64 {
    truth.data().iter().filter(|&&v| v == 1).count() as f64 * truth.geometry().voxel_volume_ml()
}

/// Every case of `truths` has a label map in `out` with its organs where the phantom has them,
/// and the CSV's liver volume within 20% of the truth.
pub fn check_outputs(out: &Path, csv: &Path, truths: &BTreeMap<String, LabelMap>) {
    let livers = csv_livers(csv);
    assert_eq!(
        livers.keys().collect::<Vec<_>>(),
        truths.keys().collect::<Vec<_>>(),
        "CSV rows"
    );
    for (name, truth) in truths {
        let pred = flare_nifti::read_label_map(out.join(format!("{name}.nii.gz"))).unwrap();
        assert_eq!(pred.volume.geometry().shape(), truth.geometry().shape());
        let want = true_liver_ml(truth);
        let got = livers[name];
        assert!(
            (got - want).abs() <= 0.2 * want,
            "{name}: liver {got} mL, truth {want}"
        );
    }
}

/// The label maps in `out` (the `.nii.gz` files, not hidden ones).
pub fn label_maps(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nii.gz") && !n.starts_with('.'))
        .collect();
    v.sort();
    v
}
