//! `flare evaluate` end to end: its CSV against the transcribed FLARE21 evaluation
//! (`scripts/fixtures/metrics_flare_eval.py`, surface-distance) on NIfTI files with anisotropic
//! spacings, empty organs, border organs, out-of-range labels and a missing prediction; and its
//! answers to bad input.

mod common;

use common::{flare, text};

use std::{path::Path, process::Command};

use flare_testkit::{TempDir, python_with, run_python, workspace_root};
use flare_volume::{Geometry, Volume};

/// Parses a CSV of `Name,v,v,...` rows into (header, [(name, values)]).
fn read_csv(path: &Path) -> (String, Vec<(String, Vec<f64>)>) {
    let t = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = t.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| {
            let mut f = l.split(',');
            let name = f.next().unwrap().to_string();
            (name, f.map(|v| v.parse::<f64>().unwrap()).collect())
        })
        .collect();
    (header, rows)
}

/// Writes four cases with nibabel: anisotropic grids, empty and border organs, int16 and
/// float32 predictions holding values outside 0..4, and one missing prediction.
const MAKE_CASES: &str = r#"
import sys, os
import numpy as np, nibabel as nb
from scipy import ndimage
root = sys.argv[1]
gt_dir, pred_dir = os.path.join(root, "gt"), os.path.join(root, "pred")
os.makedirs(gt_dir); os.makedirs(pred_dir)
rng = np.random.RandomState(7)

def blobs(shape, spacing, jitter):
    x, y, z = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    ext = [n * s for n, s in zip(shape, spacing)]
    gt = np.zeros(shape, np.int16); pred = np.zeros(shape, np.int16)
    for organ in range(1, 5):
        c = [e * (0.25 + 0.5 * rng.rand()) for e in ext]
        r = [e * (0.1 + 0.12 * rng.rand()) for e in ext]
        g = sum(((a - m) / q) ** 2 for a, m, q in zip((x, y, z), c, r)) <= 1
        c2 = [m + jitter * rng.randn() for m in c]
        p = sum(((a - m) / q) ** 2 for a, m, q in zip((x, y, z), c2, r)) <= 1
        shell = ndimage.binary_dilation(p) & ~ndimage.binary_erosion(p)
        p ^= shell & (rng.rand(*shape) < 0.3)
        gt[g] = organ; pred[p] = organ
    return gt, pred

def save(data, spacing, path, dtype, origin=(10.0, -20.0, 30.0)):
    aff = np.diag([-spacing[0], spacing[1], spacing[2], 1.0]); aff[:3, 3] = origin
    img = nb.Nifti1Image(data.astype(dtype), aff)
    img.set_qform(aff, 1); img.set_sform(aff, 1)
    nb.save(img, path)

sp = (0.7, 0.9, 5.0)
gt, pred = blobs((40, 36, 12), sp, 1.5)
save(gt, sp, os.path.join(gt_dir, "case_a.nii.gz"), np.uint8)
save(pred, sp, os.path.join(pred_dir, "case_a.nii.gz"), np.uint8)

sp = (0.8, 0.8, 2.5)
shape = (26, 22, 9)
gt = np.zeros(shape, np.int16); pred = np.zeros(shape, np.int16)
gt[0:10, 0:12, 0:5] = 1; pred[0:11, 0:11, 0:4] = 1      # liver on three faces
pred[16:26, 10:22, 4:9] = 2                              # kidney predicted, not in gt
gt[:, 0:3, :] = 3                                        # spleen missed entirely
pred[5:9, 15:20, 2:6] = 7; pred[20:24, 2:5, 6:8] = -3; pred[0, 21, 8] = 255
save(gt, sp, os.path.join(gt_dir, "case_b.nii.gz"), np.uint8)
save(pred, sp, os.path.join(pred_dir, "case_b.nii.gz"), np.int16)

sp = (1.5, 1.5, 3.0)
gt, pred = blobs((30, 28, 10), sp, 2.0)
save(gt, sp, os.path.join(gt_dir, "case_c.nii.gz"), np.uint8)   # its prediction is missing

sp = (3.0, 0.6, 0.75)
gt, pred = blobs((16, 30, 24), sp, 1.0)
predf = pred.astype(np.float32); predf[0, 0, 0] = 1.5
save(gt, sp, os.path.join(gt_dir, "case_d.nii.gz"), np.uint8)
save(predf, sp, os.path.join(pred_dir, "case_d.nii.gz"), np.float32)

save(gt, sp, os.path.join(pred_dir, "extra_no_gt.nii.gz"), np.uint8)
"#;

#[test]
fn csv_matches_the_official_evaluation_to_1e_9() {
    let test = "csv_matches_the_official_evaluation_to_1e_9";
    let Some(python) = python_with(test, &["numpy", "scipy", "nibabel", "surface_distance"]) else {
        return;
    };
    let dir = TempDir::new("evaluate-oracle");
    let root = dir.path().to_str().unwrap();
    run_python(&python, MAKE_CASES, &[root]);
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    let oracle_csv = dir.join("oracle.csv");
    let script = workspace_root().join("scripts/fixtures/metrics_flare_eval.py");
    let st = Command::new(&python)
        .arg(&script)
        .args([
            "--gt",
            gt.to_str().unwrap(),
            "--pred",
            pred.to_str().unwrap(),
        ])
        .args(["--out", oracle_csv.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());

    let ours_csv = dir.join("ours.csv");
    let out = flare(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--out",
        ours_csv.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // A prediction is missing: reported by name, scored as empty, exit code 1.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("case_c.nii.gz") && stderr.contains("missing"),
        "{stderr}"
    );
    // Out-of-range labels are reported with examples, per file.
    assert!(
        stderr.contains("labels outside 0..4") && stderr.contains("-3"),
        "{stderr}"
    );
    assert!(stderr.contains("1.5"), "{stderr}");
    assert!(stdout.contains("case mean"), "{stdout}");

    let (h_ours, rows_ours) = read_csv(&ours_csv);
    let (h_oracle, rows_oracle) = read_csv(&oracle_csv);
    assert_eq!(
        h_ours,
        "Name,DSC_1,NSD-1mm_1,DSC_2,NSD-1mm_2,DSC_3,NSD-1mm_3,DSC_4,NSD-1mm_4"
    );
    assert_eq!(h_ours, h_oracle);
    assert_eq!(rows_ours.len(), 4);
    for ((n1, v1), (n2, v2)) in rows_ours.iter().zip(&rows_oracle) {
        assert_eq!(n1, n2);
        for (c, (a, b)) in v1.iter().zip(v2).enumerate() {
            assert!(
                (a - b).abs() <= 1e-9,
                "{n1} column {}: {a} vs oracle {b}",
                c + 1
            );
        }
    }
    // The missing case scores 0 for every organ its ground truth has.
    let c = &rows_ours
        .iter()
        .find(|(n, _)| n == "case_c.nii.gz")
        .unwrap()
        .1;
    assert!(c.iter().all(|&v| v == 0.0 || v == 1.0), "{c:?}");
    // Full precision: values are not rounded to a few decimals.
    let raw = std::fs::read_to_string(&ours_csv).unwrap();
    assert!(
        raw.lines().nth(1).unwrap().split(',').any(|v| v.len() > 12),
        "{raw}"
    );
}

#[test]
fn per_label_tolerances_name_the_columns_and_match_the_oracle() {
    let test = "per_label_tolerances_name_the_columns";
    let Some(python) = python_with(test, &["numpy", "scipy", "nibabel", "surface_distance"]) else {
        return;
    };
    let dir = TempDir::new("evaluate-tolerances");
    run_python(&python, MAKE_CASES, &[dir.path().to_str().unwrap()]);
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    let (ours, oracle) = (dir.join("ours.csv"), dir.join("oracle.csv"));
    let script = workspace_root().join("scripts/fixtures/metrics_flare_eval.py");
    let st = Command::new(&python)
        .arg(&script)
        .args([
            "--gt",
            gt.to_str().unwrap(),
            "--pred",
            pred.to_str().unwrap(),
        ])
        .args([
            "--out",
            oracle.to_str().unwrap(),
            "--tolerances",
            "1=5,2=3,4=2.5",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    flare(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--out",
        ours.to_str().unwrap(),
        "--tolerances",
        "1=5,2=3,4=2.5",
    ]);
    let (h, rows) = read_csv(&ours);
    assert_eq!(
        h,
        "Name,DSC_1,NSD-5mm_1,DSC_2,NSD-3mm_2,DSC_3,NSD-1mm_3,DSC_4,NSD-2.5mm_4"
    );
    let (h2, rows2) = read_csv(&oracle);
    assert_eq!(h, h2);
    for ((n, a), (_, b)) in rows.iter().zip(&rows2) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-9, "{n}: {x} vs {y}");
        }
    }
}

/// A label map on an axis-aligned grid, written with flare's own writer (no Python needed).
fn write_labels(
    path: &Path,
    shape: [usize; 3],
    spacing: [f64; 3],
    fill: impl Fn([usize; 3]) -> u8,
) {
    let g = Geometry::axis_aligned(shape, spacing, [0.0; 3]).unwrap();
    let mut data = Vec::new();
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                data.push(fill([i, j, k]));
            }
        }
    }
    flare_nifti::write_label_map(path, &Volume::new(g, data).unwrap()).unwrap();
}

fn cube(lo: usize, hi: usize, label: u8) -> impl Fn([usize; 3]) -> u8 {
    move |p| {
        if p.iter().all(|&c| (lo..hi).contains(&c)) {
            label
        } else {
            0
        }
    }
}

#[test]
fn grid_mismatch_is_an_error_for_that_case_showing_both_grids() {
    let dir = TempDir::new("evaluate-grid");
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    // (name, prediction shape, prediction spacing); the ground truth is always 12x12x8 at 0.8x0.8x2.
    for (name, shape, spacing) in [
        ("good.nii.gz", [12, 12, 8], [0.8, 0.8, 2.0]),
        ("shape.nii.gz", [12, 12, 9], [0.8, 0.8, 2.0]),
        ("spacing.nii.gz", [12, 12, 8], [0.8, 0.8, 2.5]),
    ] {
        write_labels(&gt.join(name), [12, 12, 8], [0.8, 0.8, 2.0], cube(2, 7, 1));
        write_labels(&pred.join(name), shape, spacing, cube(2, 7, 1));
    }
    let csv = dir.join("s.csv");
    let out = flare(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shape.nii.gz") && stderr.contains("shapes differ"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[12, 12, 8]") && stderr.contains("[12, 12, 9]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spacing.nii.gz") && stderr.contains("affines differ"),
        "{stderr}"
    );
    // Both affines are printed: the ground truth's 2 mm and the prediction's 2.5 mm slices.
    assert!(
        stderr.contains("2.00000") && stderr.contains("2.50000"),
        "{stderr}"
    );
    let (_, rows) = read_csv(&csv);
    assert_eq!(rows.len(), 1, "only the good case is scored");
    assert_eq!(rows[0].0, "good.nii.gz");
    assert_eq!(rows[0].1, vec![1.0; 8]);
}

#[test]
fn no_matching_prediction_names_is_a_clear_error() {
    let dir = TempDir::new("evaluate-names");
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    write_labels(
        &gt.join("train_000.nii.gz"),
        [6, 6, 4],
        [1.0; 3],
        cube(1, 3, 1),
    );
    // Named like the input image, not like the ground truth.
    write_labels(
        &pred.join("train_000_0000.nii.gz"),
        [6, 6, 4],
        [1.0; 3],
        cube(1, 3, 1),
    );
    let out = flare(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no prediction matches"), "{stderr}");
    assert!(
        stderr.contains("train_000_0000.nii.gz") && stderr.contains("_0000"),
        "{stderr}"
    );

    // An empty ground-truth folder, and a folder that does not exist.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = flare(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no ground-truth files"),
        "{}",
        text(&out.stderr)
    );
    let nowhere = dir.join("nowhere");
    let out = flare(&[
        "evaluate",
        "--pred",
        nowhere.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nowhere"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unreadable_prediction_is_an_error_naming_the_file() {
    let dir = TempDir::new("evaluate-unreadable");
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    write_labels(&gt.join("a.nii.gz"), [6, 6, 4], [1.0; 3], cube(1, 3, 2));
    write_labels(&pred.join("a.nii.gz"), [6, 6, 4], [1.0; 3], cube(1, 4, 2));
    write_labels(&gt.join("b.nii.gz"), [6, 6, 4], [1.0; 3], cube(1, 3, 2));
    std::fs::write(pred.join("b.nii.gz"), b"this is not a NIfTI file at all").unwrap();
    let out = flare(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("b.nii.gz"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("error") && line.contains(&pred.join("b.nii.gz").display().to_string()),
        "{line}"
    );
    // The readable case is still scored: DSC of a 2^3 cube inside a 3^3 cube is 16/35.
    let stdout = text(&out.stdout);
    let a = stdout
        .lines()
        .find(|l| l.starts_with("a.nii.gz"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(a.contains(&format!("{:.4}/", 16.0 / 35.0)), "{a}");
}

#[test]
fn bad_tolerances_are_rejected() {
    for bad in [
        vec!["--tolerance=-1"],
        vec!["--tolerances", "7=2"],
        vec!["--tolerances", "1=x"],
    ] {
        let mut args = vec!["evaluate", "--pred", ".", "--gt", "."];
        args.extend(bad.iter().copied());
        let out = flare(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            text(&out.stderr).contains("tolerance"),
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
    let out = flare(&[
        "evaluate",
        "--pred",
        ".",
        "--gt",
        ".",
        "--tolerance",
        "2",
        "--tolerances",
        "1=2",
    ]);
    assert_eq!(out.status.code(), Some(2), "the two options conflict");
}

#[test]
fn crops_that_cannot_fit_in_memory_are_refused_politely() {
    let dir = TempDir::new("evaluate-memory");
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    // A 64 x 64 x 16 organ: about 1.5 MB of working memory for its NSD, the files a few KB.
    write_labels(&gt.join("big.nii.gz"), [64, 64, 16], [1.0; 3], |_| 1);
    write_labels(
        &pred.join("big.nii.gz"),
        [64, 64, 16],
        [1.0; 3],
        cube(0, 15, 1),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flare"))
        .args([
            "evaluate",
            "--pred",
            pred.to_str().unwrap(),
            "--gt",
            gt.to_str().unwrap(),
        ])
        .env("FLARE_MEMORY_LIMIT_MB", "1")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("big.nii.gz") && stderr.contains("MB of memory is available"),
        "{stderr}"
    );
}
