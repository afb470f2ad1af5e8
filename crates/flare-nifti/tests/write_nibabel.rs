//! What flare writes, nibabel reads back: label maps "like" every fixture keep the input's
//! affine, qform and sform exactly; volumes written from a geometry alone land where the
//! geometry says. Skips (with a printed reason) when Python with nibabel is missing.

use std::path::{Path, PathBuf};

use flare_nifti::{
    DataType, read_header, read_image, write_label_map, write_label_map_like, write_volume,
};
use flare_testkit::{TempDir, python_with, run_python};
use flare_volume::{Affine, Geometry, LabelMap, Volume};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The label pattern both sides compute independently: (i + 2j + 3k) mod 6.
fn pattern(shape: [usize; 3]) -> Vec<u8> {
    let mut v = Vec::with_capacity(shape.iter().product());
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                v.push(((i + 2 * j + 3 * k) % 6) as u8);
            }
        }
    }
    v
}

const CHECK_LIKE: &str = r#"
import sys, numpy as np, nibabel as nib
bad = 0
pairs = sys.argv[1:]
for src, out in zip(pairs[::2], pairs[1::2]):
    a, b = nib.load(src), nib.load(out)
    problems = []
    if not np.array_equal(a.affine, b.affine): problems.append("affine")
    qa, qca = a.get_qform(coded=True); qb, qcb = b.get_qform(coded=True)
    if qca != qcb or (qa is None) != (qb is None) or (qa is not None and not np.array_equal(qa, qb)):
        problems.append("qform")
    sa, sca = a.get_sform(coded=True); sb, scb = b.get_sform(coded=True)
    if sca != scb or (sa is None) != (sb is None) or (sa is not None and not np.array_equal(sa, sb)):
        problems.append("sform")
    if not np.array_equal(a.header.get_zooms()[:3], b.header.get_zooms()[:3]): problems.append("zooms")
    if a.header["xyzt_units"] != b.header["xyzt_units"]: problems.append("xyzt_units")
    if b.get_data_dtype() != np.uint8: problems.append("dtype %s" % b.get_data_dtype())
    data = np.asanyarray(b.dataobj)
    shape = a.shape[:3]
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    want = ((i + 2 * j + 3 * k) % 6).astype(np.uint8)
    if data.shape != shape or not np.array_equal(data, want): problems.append("voxels")
    if b.header["cal_max"] != want.max(): problems.append("cal_max")
    print(out, "OK" if not problems else "FAIL " + ",".join(problems))
    bad += bool(problems)
sys.exit(1 if bad else 0)
"#;

#[test]
fn label_maps_written_like_each_fixture_sit_exactly_on_it() {
    let Some(py) = python_with(
        "label_maps_written_like_each_fixture",
        &["numpy", "nibabel"],
    ) else {
        return;
    };
    let tmp = TempDir::new("nifti-like");
    let mut args: Vec<String> = Vec::new();
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
            continue;
        }
        let img = read_image(&path).unwrap_or_else(|e| panic!("{e}"));
        let labels =
            LabelMap::new(*img.volume.geometry(), pattern(img.volume.shape())).expect("labels");
        // Alternate compressed and plain outputs.
        let ext = if n % 2 == 0 { "nii.gz" } else { "nii" };
        let out = tmp.join(&format!("{name}.labels.{ext}"));
        write_label_map_like(&out, &labels, &img.header).unwrap_or_else(|e| panic!("{e}"));
        // flare reads its own output back with the same grid and labels.
        let back = flare_nifti::read_label_map(&out).expect("read back");
        assert_eq!(back.volume.data(), labels.data(), "{name}");
        assert_eq!(back.header.qform_code, img.header.qform_code, "{name}");
        assert_eq!(back.header.sform_code, img.header.sform_code, "{name}");
        assert_eq!(back.header.version, img.header.version, "{name}");
        assert!(
            back.volume.geometry().same_grid(img.volume.geometry(), 0.0),
            "{name}"
        );
        args.push(path.display().to_string());
        args.push(out.display().to_string());
        n += 1;
    }
    assert!(n >= 40, "only {n} fixtures");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = run_python(&py, CHECK_LIKE, &refs);
    assert_eq!(
        report.lines().filter(|l| l.ends_with(" OK")).count(),
        n,
        "{report}"
    );
    // No temporary files are left next to the outputs.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

const CHECK_GEOMETRY: &str = r#"
import sys, json, numpy as np, nibabel as nib
out = []
for spec in json.load(open(sys.argv[1])):
    img = nib.load(spec["path"])
    want = np.array(spec["affine"])
    q, qc = img.get_qform(coded=True)
    s, sc = img.get_sform(coded=True)
    data = np.asanyarray(img.dataobj)
    vals = np.array(spec["values"], dtype=data.dtype)
    last = [n - 1 for n in img.shape] + [1]
    out.append({
        "affine_err": float(np.abs(img.affine - want).max()),
        "qform_err": float(np.abs(q - want).max()),
        "sform_err": float(np.abs(s - want).max()),
        "codes": [int(qc), int(sc)],
        "dtype": str(img.get_data_dtype()),
        "values_equal": bool(np.array_equal(data.reshape(-1, order="F"), vals)),
        "world_of_last": (img.affine @ last)[:3].tolist(),
    })
print(json.dumps(out))
"#;

/// A file flare wrote and what nibabel must find in it.
struct Written {
    path: PathBuf,
    geometry: Geometry,
    dtype: &'static str,
    values: Vec<f64>,
}

/// Checks every written file with one Python run.
fn check_written(py: &Path, tmp: &TempDir, written: &[Written]) {
    let specs: Vec<serde_json::Value> = written
        .iter()
        .map(|w| {
            serde_json::json!({
                "path": w.path.display().to_string(),
                "affine": w.geometry.affine().m,
                "values": w.values,
            })
        })
        .collect();
    let spec_path = tmp.join("specs.json");
    std::fs::write(&spec_path, serde_json::to_string(&specs).expect("json")).expect("write");
    let report = run_python(py, CHECK_GEOMETRY, &[&spec_path.display().to_string()]);
    let results: Vec<serde_json::Value> = serde_json::from_str(report.trim()).expect("report");
    assert_eq!(results.len(), written.len());
    for (w, r) in written.iter().zip(&results) {
        let name = w.path.display();
        // float32 storage of the affine: errors of a few 1e-5 mm at 400 mm offsets.
        for key in ["affine_err", "qform_err", "sform_err"] {
            let err = r[key].as_f64().expect("err");
            assert!(err <= 5e-5, "{name}: {key} = {err}");
        }
        assert_eq!(r["codes"], serde_json::json!([1, 1]), "{name}");
        assert_eq!(r["dtype"], w.dtype, "{name}");
        assert_eq!(r["values_equal"], true, "{name}");
        // Cross-check against flare's own geometry: the last voxel's world position.
        let s = w.geometry.shape();
        let last = [(s[0] - 1) as f64, (s[1] - 1) as f64, (s[2] - 1) as f64];
        let want = w.geometry.index_to_world(last);
        for (d, x) in want.iter().enumerate() {
            let got = r["world_of_last"][d].as_f64().expect("coord");
            assert!((got - x).abs() <= 1e-4, "{name}: world {d}: {got} vs {x}");
        }
    }
}

fn oblique(left_handed: bool) -> Geometry {
    // A rotation about an oblique axis, with distinct spacings.
    let (s, c) = (0.6f64.sin(), 0.6f64.cos());
    let u = [0.48f64, 0.6, 0.64];
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let k = [[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]];
            r[i][j] = if i == j { c } else { 0.0 } + (1.0 - c) * u[i] * u[j] + s * k[i][j];
        }
    }
    if left_handed {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    Geometry::new([6, 5, 4], [0.78, 0.91, 2.5], [-120.5, 33.25, 410.0], r).expect("geometry")
}

#[test]
fn volumes_written_from_a_geometry_land_where_it_says() {
    let Some(py) = python_with("volumes_written_from_a_geometry", &["numpy", "nibabel"]) else {
        return;
    };
    let tmp = TempDir::new("nifti-geometry");
    let lps = Geometry::new(
        [5, 4, 3],
        [0.7, 0.7, 3.0],
        [120.0, 95.5, -210.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
    .expect("lps");
    let mut written = Vec::new();
    for (gname, g) in [
        ("oblique", oblique(false)),
        ("oblique_lh", oblique(true)),
        ("lps", lps),
    ] {
        let n = g.n_voxels();
        // CT-like integral values: stored as int16 automatically.
        let ct: Vec<f32> = (0..n).map(|i| ((i * 37) % 3000) as f32 - 1024.0).collect();
        let vol = Volume::new(g, ct.clone()).expect("vol");
        let out = tmp.join(&format!("{gname}_ct.nii.gz"));
        write_volume(&out, &vol, None).expect("write");
        let vals: Vec<f64> = ct.iter().map(|&v| v as f64).collect();
        written.push(Written {
            path: out.clone(),
            geometry: g,
            dtype: "int16",
            values: vals,
        });
        let back = read_image(&out).expect("read back");
        assert_eq!(back.volume.data(), vol.data());
        assert!(back.volume.geometry().same_grid(&g, 5e-5), "{gname}");
        assert_eq!(
            read_header(&out).expect("hdr").data_type(),
            Some(DataType::Int16)
        );

        // Fractional values: float32.
        let f: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 5.0).collect();
        let vol = Volume::new(g, f.clone()).expect("vol");
        let out = tmp.join(&format!("{gname}_f.nii"));
        write_volume(&out, &vol, None).expect("write");
        let vals: Vec<f64> = f.iter().map(|&v| v as f64).collect();
        written.push(Written {
            path: out,
            geometry: g,
            dtype: "float32",
            values: vals.clone(),
        });

        // Explicit datatype.
        let out = tmp.join(&format!("{gname}_f64.nii.gz"));
        write_volume(&out, &vol, Some(DataType::Float64)).expect("write");
        written.push(Written {
            path: out,
            geometry: g,
            dtype: "float64",
            values: vals,
        });

        // A label map on its own geometry.
        let labels = LabelMap::new(g, pattern(g.shape())).expect("labels");
        let out = tmp.join(&format!("{gname}_labels.nii.gz"));
        write_label_map(&out, &labels).expect("write");
        let vals: Vec<f64> = labels.data().iter().map(|&v| v as f64).collect();
        written.push(Written {
            path: out,
            geometry: g,
            dtype: "uint8",
            values: vals,
        });
    }
    check_written(&py, &tmp, &written);
}

#[test]
fn qform_from_geometry_matches_sform() {
    // Independent of Python: the quaternion flare stores reproduces the geometry's rotation.
    let tmp = TempDir::new("nifti-qform");
    for g in [oblique(false), oblique(true)] {
        let vol = Volume::filled(g, 1.0f32);
        let out = tmp.join("q.nii");
        write_volume(&out, &vol, None).expect("write");
        let h = read_header(&out).expect("read");
        let q = h.qform_affine().expect("qform");
        let s: Affine = h.sform_affine();
        assert!(q.max_abs_diff(&s) < 5e-5, "qform\n{q}\nsform\n{s}");
        assert!(s.max_abs_diff(&g.affine()) < 5e-5);
    }
}
