//! `flare segment --dicom-seg --rtstruct` checked by independent readers on synthetic series.
//!
//! Each test samples a phantom (`flare_testkit::phantom`, organs the committed phantom model
//! finds) on the grid a series must have, writes it as NIfTI, and turns it into a DICOM CT series
//! with the committed pydicom script `scripts/fixtures/dicom_out_series.py` (axial, reverse
//! slice order, uneven spacing, oblique, coronal, anonymised UIDs, a study of several series,
//! bad sources). The outputs are then checked by:
//! - `dciodvfy` (Debian dicom3tools): no error on the SEG or the RTSTRUCT;
//! - `crates/flare-cli/tests/dicom_out_oracle.py`: highdicom reads the SEG, and its masks by
//!   source image equal flare's NIfTI voxel for voxel; the RTSTRUCT's contours, filled by
//!   matplotlib paths in each referenced image's own pixel grid, reach Dice >= 0.98 per organ;
//!   references, Frame of Reference, patient module, codes and colours are checked on the way.
//!
//! Without pydicom/nibabel (the series cannot be made) the tests skip with a printed reason;
//! without highdicom or dciodvfy the corresponding checks skip likewise.

mod common;

use common::{flare, p, phantom_model, text};

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use flare_nifti::DataType;
use flare_testkit::{
    TempDir,
    phantom::{Anatomy, phantom_on},
    python_with, run_python, workspace_root,
};
use flare_volume::Geometry;

/// Python able to make the series, or `None` (and a printed reason).
fn series_python(test: &str) -> Option<PathBuf> {
    python_with(test, &["pydicom", "numpy", "nibabel"])
}

/// The phantom's world extent: 80 x 2.2 by 72 x 2.4 by 44 x 4 mm (x, y, z), inside the range
/// the phantom model was trained on.
const EXTENT_MM: [f64; 3] = [176.0, 172.8, 176.0];

/// A grid with the given axis directions (RAS columns) and spacings, centred on the world
/// origin where the phantom's body is.
fn grid(shape: [usize; 3], spacing: [f64; 3], direction: [[f64; 3]; 3]) -> Geometry {
    let mut origin = [0.0; 3];
    for r in 0..3 {
        origin[r] = -(0..3)
            .map(|c| direction[r][c] * spacing[c] * (shape[c] as f64 - 1.0) / 2.0)
            .sum::<f64>();
    }
    Geometry::new(shape, spacing, origin, direction).unwrap()
}

/// Axial, DICOM's usual layout: rows to the patient's left, columns to posterior (LPS).
fn axial() -> Geometry {
    grid(
        [80, 72, 44],
        [2.2, 2.4, 4.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
}

/// Coronal: rows to the left, columns downwards (inferior), slices towards posterior.
fn coronal() -> Geometry {
    grid(
        [80, 44, 72],
        [2.2, 4.0, 2.4],
        [[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]],
    )
}

/// Oblique: the axial LPS grid rotated 15 degrees about z and 8 about x.
fn oblique() -> Geometry {
    let (a, b) = (15f64.to_radians(), 8f64.to_radians());
    let rz = [
        [a.cos(), -a.sin(), 0.0],
        [a.sin(), a.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, b.cos(), -b.sin()],
        [0.0, b.sin(), b.cos()],
    ];
    let lps = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
    let mul = |x: [[f64; 3]; 3], y: [[f64; 3]; 3]| {
        let mut d = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                d[r][c] = (0..3).map(|k| x[r][k] * y[k][c]).sum();
            }
        }
        d
    };
    grid([80, 72, 44], [2.2, 2.4, 4.0], mul(mul(rz, rx), lps))
}

/// Writes the phantom of `seed` on `geometry` as a DICOM series in `dir` with the script's
/// `options`.
fn make_series(
    python: &Path,
    work: &TempDir,
    dir: &Path,
    geometry: &Geometry,
    seed: u64,
    options: &[&str],
) {
    let (ct, _) = phantom_on(geometry, &Anatomy::new(seed, EXTENT_MM), 10.0);
    let nii = work.join(&format!("ct-{seed}-{}.nii.gz", options.join("")));
    flare_nifti::write_volume(&nii, &ct, Some(DataType::Int16)).unwrap();
    let script = workspace_root().join("scripts/fixtures/dicom_out_series.py");
    let seed = seed.to_string();
    let mut args = vec![p(&script), p(&nii), p(dir), "--seed", &seed];
    args.extend_from_slice(options);
    let o = Command::new(python).args(&args).output().unwrap();
    assert!(o.status.success(), "series script: {}", text(&o.stderr));
}

/// `dciodvfy`'s error lines for `file` (warnings allowed), or `None` when it is not installed.
fn dciodvfy_errors(file: &Path) -> Option<Vec<String>> {
    let o = match Command::new("dciodvfy").arg(file).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "SKIP dciodvfy check: cannot run dciodvfy ({e}); apt-get install dicom3tools"
            );
            return None;
        }
    };
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    Some(
        all.lines()
            .filter(|l| l.starts_with("Error"))
            .map(str::to_string)
            .collect(),
    )
}

/// The files of a series folder, sorted.
fn source_files(series: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(series)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// Runs the independent oracle and returns its JSON summary, or `None` when highdicom,
/// matplotlib or skimage are missing.
fn oracle(
    series: &Path,
    labels: &Path,
    seg: Option<&Path>,
    rtstruct: Option<&Path>,
) -> Option<serde_json::Value> {
    let python = python_with(
        "dicom-out oracle",
        &["highdicom", "matplotlib", "skimage", "nibabel"],
    )?;
    let script = std::fs::read_to_string(
        workspace_root().join("crates/flare-cli/tests/dicom_out_oracle.py"),
    )
    .unwrap();
    let colours = serde_json::to_string(&flare_report::ORGAN_COLOURS).unwrap();
    let out = run_python(
        &python,
        &script,
        &[
            p(series),
            p(labels),
            seg.map_or("-", p),
            rtstruct.map_or("-", p),
            &colours,
        ],
    );
    Some(serde_json::from_str(out.trim()).unwrap())
}

/// Asserts the oracle's verdict: SEG equal to the NIfTI, RTSTRUCT Dice >= 0.98, and at least
/// three organs found (the phantom model finds all four on these grids).
fn assert_verdict(v: &serde_json::Value, what: &str) {
    let organs = v["organs_in_nifti"].as_array().unwrap();
    assert!(organs.len() >= 3, "{what}: organs found {organs:?}");
    if let Some(m) = v.get("seg_mismatched_voxels") {
        for (organ, n) in m.as_object().unwrap() {
            assert_eq!(
                n.as_u64(),
                Some(0),
                "{what}: SEG {organ} differs from the NIfTI"
            );
        }
        assert_eq!(
            v["seg_segments"].as_array().unwrap().len(),
            organs.len(),
            "{what}"
        );
    }
    if let Some(d) = v.get("rtstruct_dice") {
        let d = d.as_object().unwrap();
        assert_eq!(d.len(), organs.len(), "{what}: {d:?}");
        for (organ, x) in d {
            let x = x.as_f64().unwrap();
            assert!(x >= 0.98, "{what}: RTSTRUCT {organ} Dice {x:.4}");
        }
    }
}

/// Segments `series` with both DICOM outputs and checks them with dciodvfy and the oracle.
fn segment_and_check(series: &Path, work: &TempDir, what: &str) -> serde_json::Value {
    let labels = work.join(&format!("{what}.nii.gz"));
    let seg = work.join(&format!("{what}_seg.dcm"));
    let rt = work.join(&format!("{what}_rtss.dcm"));
    let o = flare(&[
        "segment",
        "-i",
        p(series),
        "-o",
        p(&labels),
        "--model",
        p(&phantom_model()),
        "--dicom-seg",
        p(&seg),
        "--rtstruct",
        p(&rt),
    ]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{what}: {stderr}");
    assert!(seg.is_file() && rt.is_file() && labels.is_file(), "{what}");
    #[cfg(unix)]
    for f in [&seg, &rt] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o444,
            0o444,
            "{what}: {} is not readable by all",
            f.display()
        );
    }
    for f in [&seg, &rt] {
        if let Some(errors) = dciodvfy_errors(f) {
            assert!(
                errors.is_empty(),
                "{what}: dciodvfy {}: {errors:#?}",
                f.display()
            );
        }
    }
    // Patient, study and frame of reference agree between the source images and the outputs.
    match Command::new("dcentvfy")
        .args(source_files(series).iter().chain([&seg, &rt]))
        .output()
    {
        Ok(o) => {
            let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
            let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("Error")).collect();
            assert!(errors.is_empty(), "{what}: dcentvfy: {errors:#?}");
        }
        Err(e) => eprintln!("SKIP dcentvfy check: cannot run dcentvfy ({e})"),
    }
    let verdict = oracle(series, &labels, Some(&seg), Some(&rt));
    if let Some(v) = &verdict {
        eprintln!("{what}: {v}");
        assert_verdict(v, what);
    }
    verdict.unwrap_or(serde_json::Value::Null)
}

/// Makes the series, segments it and checks the outputs; the oracle's verdict (`Null` when
/// the oracle could not run).
fn variant(name: &str, geometry: Geometry, options: &[&str]) -> serde_json::Value {
    let test = format!("dicom-out {name}");
    let Some(python) = series_python(&test) else {
        return serde_json::Value::Null;
    };
    let work = TempDir::new(&format!("dicom-out-{name}"));
    let series = work.join("series");
    make_series(&python, &work, &series, &geometry, 7001, options);
    segment_and_check(&series, &work, name)
}

#[test]
fn axial_series() {
    variant("axial", axial(), &[]);
}

#[test]
fn series_stored_in_reverse_slice_order() {
    variant("reverse", axial(), &["--reverse"]);
}

#[test]
fn uneven_slice_spacing_within_the_readers_tolerance() {
    // 4 mm slices each moved by up to +-0.015 mm: gaps differ from 4 mm by up to 0.03 mm,
    // under the 0.04 mm (1%) the reader accepts.
    let v = variant("uneven", axial(), &["--jitter", "0.03"]);
    if let Some(spread) = v["slice_gap_spread_mm"].as_f64() {
        assert!(spread > 0.01, "the series is not uneven: {spread} mm");
    }
}

#[test]
fn oblique_series() {
    variant("oblique", oblique(), &[]);
}

#[test]
fn coronal_series() {
    variant("coronal", coronal(), &["--reverse"]);
}

#[test]
fn anonymised_series_with_blank_uids_use_the_file_meta_and_new_study_uid() {
    let Some(python) = series_python("dicom-out anonymised") else {
        return;
    };
    let work = TempDir::new("dicom-out-anonymised");
    let series = work.join("series");
    make_series(&python, &work, &series, &axial(), 7002, &["--anonymised"]);
    let labels = work.join("l.nii.gz");
    let seg = work.join("seg.dcm");
    let o = flare(&[
        "segment",
        "-i",
        p(&series),
        "-o",
        p(&labels),
        "--model",
        p(&phantom_model()),
        "--dicom-seg",
        p(&seg),
    ]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("have no StudyInstanceUID; the DICOM outputs use a new one, 2.25."),
        "{stderr}"
    );
    if let Some(errors) = dciodvfy_errors(&seg) {
        assert!(errors.is_empty(), "{errors:#?}");
    }
    if let Some(v) = oracle(&series, &labels, Some(&seg), None) {
        assert_verdict(&v, "anonymised");
    }

    // Rerun: the case is skipped (its label map exists) and the SEG left alone; without the
    // label map the existing SEG is refused up front; --overwrite replaces both.
    let model = phantom_model();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "segment",
            "-i",
            p(&series),
            "-o",
            p(&labels),
            "--model",
            p(&model),
            "--dicom-seg",
            p(&seg),
        ];
        args.extend_from_slice(extra);
        flare(&args)
    };
    let before = std::fs::read(&seg).unwrap();
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("skipped"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&seg).unwrap(), before);
    std::fs::remove_file(&labels).unwrap();
    let o = run(&[]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("seg.dcm: already exists (use --overwrite to replace it)"),
        "{stderr}"
    );
    assert!(!labels.exists());
    let o = run(&["--overwrite"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(labels.is_file());
    assert_ne!(std::fs::read(&seg).unwrap(), before, "a new SEG (new UIDs)");
}

#[test]
fn nifti_input_is_refused_for_dicom_outputs() {
    let t = TempDir::new("dicom-out-nifti");
    let (ct, _) = phantom_on(&axial(), &Anatomy::new(1, EXTENT_MM), 10.0);
    let nii = t.join("ct.nii.gz");
    flare_nifti::write_volume(&nii, &ct, Some(DataType::Int16)).unwrap();
    let out = t.join("l.nii.gz");
    for flag in ["--dicom-seg", "--rtstruct"] {
        let o = flare(&[
            "segment",
            "-i",
            p(&nii),
            "-o",
            p(&out),
            flag,
            p(&t.join("x.dcm")),
        ]);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("ct.nii.gz: --dicom-seg and --rtstruct need a DICOM series folder"),
            "{stderr}"
        );
        assert!(!out.exists() && !t.join("x.dcm").exists());
    }
}

#[test]
fn bad_sources_get_one_line_exit_2_and_no_file() {
    let Some(python) = series_python("dicom-out bad sources") else {
        return;
    };
    let work = TempDir::new("dicom-out-bad");
    for (option, expected) in [
        ("--bad-uid", "inconsistent UIDs: SOPInstanceUID"),
        ("--bad-duplicate-uid", "inconsistent UIDs: SOPInstanceUID"),
        (
            "--bad-for",
            "mixed frames of reference: FrameOfReferenceUID",
        ),
        ("--bad-multiframe", "multi-frame image (2 frames)"),
    ] {
        let series = work.join(option.trim_start_matches('-'));
        make_series(&python, &work, &series, &axial(), 7003, &[option]);
        let out = work.join("out");
        let o = flare(&[
            "segment",
            "-i",
            p(&series),
            "-o",
            p(&out.join("l.nii.gz")),
            "--model",
            p(&phantom_model()),
            "--dicom-seg",
            p(&out.join("seg.dcm")),
            "--rtstruct",
            p(&out.join("rt.dcm")),
        ]);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{option}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{option}: {stderr}");
        assert!(errors[0].contains(expected), "{option}: {stderr}");
        assert!(
            errors[0].contains(p(&series)),
            "{option}: names the file: {stderr}"
        );
        assert!(!out.exists(), "{option}: something was written");
    }
}

#[test]
fn a_study_folder_is_segmented_series_by_series() {
    let Some(python) = series_python("dicom-out study") else {
        return;
    };
    let work = TempDir::new("dicom-out-study");
    let study = work.join("study");
    // Two good CT series, an MR series (ignored) and a CT series with mixed frames of reference
    // (fails; the others go on). All in one study.
    make_series(
        &python,
        &work,
        &study.join("a"),
        &axial(),
        11,
        &["--study", "9"],
    );
    make_series(
        &python,
        &work,
        &study.join("b"),
        &coronal(),
        12,
        &["--study", "9", "--reverse"],
    );
    make_series(
        &python,
        &work,
        &study.join("c"),
        &axial(),
        13,
        &["--study", "9", "--modality", "MR"],
    );
    make_series(
        &python,
        &work,
        &study.join("d"),
        &axial(),
        14,
        &["--study", "9", "--bad-for"],
    );
    let out = work.join("out");
    let o = flare(&[
        "segment",
        "-i",
        p(&study),
        "-o",
        p(&out),
        "--each-series",
        "--model",
        p(&phantom_model()),
        "--dicom-seg",
        p(&out),
        "--rtstruct",
        p(&out),
    ]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "one series fails: {stderr}");
    assert!(stderr.contains("mixed frames of reference"), "{stderr}");
    assert!(stderr.contains("(not CT)"), "{stderr}");
    assert!(
        stderr.contains("2 segmented, 0 skipped, 1 failed"),
        "{stderr}"
    );
    // The series' UIDs, as the script makes them, name the outputs.
    let uid_of = |dir: &str| {
        run_python(
            &python,
            "import sys, pydicom, os; d = sys.argv[1]; \
             print(pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0])).SeriesInstanceUID)",
            &[p(&study.join(dir))],
        )
        .trim()
        .to_string()
    };
    // Besides the batch's per-case records (`.flare-records`, see tests/cluster.rs).
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".flare-records")
        .collect();
    files.sort();
    let mut expected = Vec::new();
    for dir in ["a", "b"] {
        let uid = uid_of(dir);
        expected.extend([
            format!("{uid}.nii.gz"),
            format!("{uid}_rtstruct.dcm"),
            format!("{uid}_seg.dcm"),
        ]);
    }
    expected.sort();
    assert_eq!(files, expected, "{stderr}");
    // Each output refers to its own series.
    for dir in ["a", "b"] {
        let uid = uid_of(dir);
        let series = study.join(dir);
        if let Some(v) = oracle(
            &series,
            &out.join(format!("{uid}.nii.gz")),
            Some(&out.join(format!("{uid}_seg.dcm"))),
            Some(&out.join(format!("{uid}_rtstruct.dcm"))),
        ) {
            assert_verdict(&v, dir);
        }
    }
}

#[test]
fn real_ct_as_a_dicom_series_with_the_built_in_model() {
    // The totalseg example (real CT, 3 mm, RAS) written as a DICOM series by the same script,
    // segmented by the built-in model.
    let Some(shared) = flare_testkit::shared_dir("dicom-out real series") else {
        return;
    };
    let Some(python) = series_python("dicom-out real series") else {
        return;
    };
    let ct = shared.join("data/totalseg-example/totalseg_example_0000.nii.gz");
    if !ct.is_file() {
        eprintln!("SKIP dicom-out real series: {} missing", ct.display());
        return;
    }
    let work = TempDir::new("dicom-out-real");
    let series = work.join("series");
    let script = workspace_root().join("scripts/fixtures/dicom_out_series.py");
    let o = Command::new(&python)
        .args([p(&script), p(&ct), p(&series), "--seed", "42", "--reverse"])
        .output()
        .unwrap();
    assert!(o.status.success(), "series script: {}", text(&o.stderr));
    let labels = work.join("real.nii.gz");
    let seg = work.join("real_seg.dcm");
    let rt = work.join("real_rtss.dcm");
    let o = flare(&[
        "segment",
        "-i",
        p(&series),
        "-o",
        p(&labels),
        "--dicom-seg",
        p(&seg),
        "--rtstruct",
        p(&rt),
    ]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    for f in [&seg, &rt] {
        if let Some(errors) = dciodvfy_errors(f) {
            assert!(errors.is_empty(), "dciodvfy {}: {errors:#?}", f.display());
        }
    }
    if let Some(v) = oracle(&series, &labels, Some(&seg), Some(&rt)) {
        eprintln!("real series: {v}");
        assert_verdict(&v, "real series");
        assert_eq!(v["organs_in_nifti"].as_array().unwrap().len(), 4, "{v}");
    }
}
