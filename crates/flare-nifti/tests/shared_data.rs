//! Real CT and label files from `../shared/data` read as nibabel reads them, and label maps
//! written like them placed exactly on them. Skips (with a printed reason) when the shared data
//! or Python with nibabel is missing.

use std::path::PathBuf;

use flare_nifti::{read_image, read_label_map, write_label_map_like};
use flare_testkit::{TempDir, python_with, run_python, shared_dir};
use flare_volume::Affine;

const SUMMARY: &str = r#"
import sys, json, numpy as np, nibabel as nib
out = []
for path in sys.argv[1:]:
    img = nib.load(path)
    d = np.asanyarray(img.dataobj).astype(np.float64)
    out.append({"affine": img.affine.tolist(), "shape": list(img.shape), "sum": float(d.sum()),
                "min": float(d.min()), "max": float(d.max()),
                "counts": np.bincount(d.astype(np.int64).ravel() - int(d.min())).tolist()
                          if np.array_equal(d, np.round(d)) and d.max() - d.min() < 10 else None})
print(json.dumps(out))
"#;

const SAME_PLACE: &str = r#"
import sys, numpy as np, nibabel as nib
a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
ok = np.array_equal(a.affine, b.affine)
ok &= all(np.array_equal(x, y) if x is not None else y is None
          for x, y in zip(a.get_qform(coded=True), b.get_qform(coded=True)))
ok &= all(np.array_equal(x, y) if x is not None else y is None
          for x, y in zip(a.get_sform(coded=True), b.get_sform(coded=True)))
ok &= np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
print("OK" if ok else "FAIL")
"#;

#[test]
fn shared_scans_read_like_nibabel() {
    let Some(shared) = shared_dir("shared_scans_read_like_nibabel") else {
        return;
    };
    let Some(py) = python_with("shared_scans_read_like_nibabel", &["numpy", "nibabel"]) else {
        return;
    };
    let data = shared.join("data");
    let mut files: Vec<PathBuf> = Vec::new();
    for (dir, case) in [
        ("btcv", "btcv_0005"),
        ("btcv", "btcv_0006"),
        ("totalseg-example", "totalseg_example"),
    ] {
        for suffix in ["_0000.nii.gz", ".nii.gz"] {
            let p = data.join(dir).join(format!("{case}{suffix}"));
            if p.exists() {
                files.push(p);
            }
        }
    }
    if files.is_empty() {
        eprintln!(
            "SKIP shared_scans_read_like_nibabel: no expected cases in {}",
            data.display()
        );
        return;
    }
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let report: Vec<serde_json::Value> =
        serde_json::from_str(run_python(&py, SUMMARY, &refs).trim()).expect("json");
    let tmp = TempDir::new("nifti-shared");
    for (path, want) in files.iter().zip(&report) {
        let name = path.display();
        let img = read_image(path).unwrap_or_else(|e| panic!("{e}"));
        let mut m = [[0.0; 4]; 4];
        for (r, row) in want["affine"].as_array().expect("rows").iter().enumerate() {
            for (c, v) in row.as_array().expect("row").iter().enumerate() {
                m[r][c] = v.as_f64().expect("num");
            }
        }
        let a = img.header.best_affine().expect("affine");
        assert!(a.max_abs_diff(&Affine { m }) <= 1e-9, "{name}: affine {a}");
        assert!(
            img.volume.geometry().affine().max_abs_diff(&Affine { m }) <= 1e-5,
            "{name}"
        );
        let shape: Vec<usize> = img.volume.shape().to_vec();
        assert_eq!(serde_json::json!(shape), want["shape"], "{name}");
        let sum: f64 = img.volume.data().iter().map(|&v| v as f64).sum();
        assert_eq!(sum, want["sum"].as_f64().expect("sum"), "{name}: voxel sum");
        let lo = img
            .volume
            .data()
            .iter()
            .fold(f32::INFINITY, |a, &b| a.min(b));
        assert_eq!(lo as f64, want["min"].as_f64().expect("min"), "{name}");
        if let Some(counts) = want["counts"].as_array().filter(|_| want["min"] == 0.0) {
            // A label map: read it as labels and count each value.
            let labels = read_label_map(path).unwrap_or_else(|e| panic!("{e}"));
            let mut got = vec![0u64; counts.len()];
            for &l in labels.volume.data() {
                got[l as usize] += 1;
            }
            let want: Vec<u64> = counts.iter().map(|c| c.as_u64().expect("count")).collect();
            assert_eq!(got, want, "{name}: label counts");
            // Written like the label file itself, it is the same file to nibabel.
            let out = tmp.join("like.nii.gz");
            write_label_map_like(&out, &labels.volume, &labels.header).expect("write");
            let same = run_python(
                &py,
                SAME_PLACE,
                &[&path.display().to_string(), &out.display().to_string()],
            );
            assert_eq!(same.trim(), "OK", "{name}");
        }
    }
}
