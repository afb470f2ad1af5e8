//! `flare segment` end to end with a model trained on synthetic phantoms (not random weights:
//! it really finds the phantom organs, so these tests can assert where they are).
//!
//! The phantom model's two stages are committed in crates/flare-pipeline/tests/fixtures (see
//! the README there for how they were trained); each test bundles them with `flare bundle`.

mod common;

use common::{flare, p, phantom_model, text};

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use flare_nifti::DataType;
use flare_testkit::{
    TempDir,
    phantom::{Anatomy, PhantomSpec, phantom, phantom_on},
    python_with, run_python, workspace_root,
};
use flare_volume::{Geometry, LabelMap, Volume};

/// A phantom CT written as int16 NIfTI, with its true labels.
fn write_phantom(path: &Path, ct: &Volume<f32>) {
    flare_nifti::write_volume(path, ct, Some(DataType::Int16)).unwrap();
}

fn dice(a: &LabelMap, b: &LabelMap, label: u8) -> f64 {
    let (mut inter, mut na, mut nb) = (0usize, 0usize, 0usize);
    for (&x, &y) in a.data().iter().zip(b.data()) {
        na += (x == label) as usize;
        nb += (y == label) as usize;
        inter += (x == label && y == label) as usize;
    }
    2.0 * inter as f64 / (na + nb).max(1) as f64
}

/// Every organ found where the phantom has it (Dice against the phantom's own labels).
fn assert_organs_found(pred: &LabelMap, truth: &LabelMap, what: &str) {
    assert_eq!(pred.geometry().shape(), truth.geometry().shape(), "{what}");
    for (label, name) in [(1, "liver"), (2, "kidney"), (3, "spleen"), (4, "pancreas")] {
        let d = dice(pred, truth, label);
        assert!(d >= 0.75, "{what}: {name} Dice {d:.3}");
    }
}

/// An oblique grid (rotated 20 degrees about z and 10 about x) over the phantom's field of view.
fn oblique_grid(shape: [usize; 3], spacing: [f64; 3]) -> Geometry {
    let (a, b) = (20f64.to_radians(), 10f64.to_radians());
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
    let mut d = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            d[r][c] = (0..3).map(|k| rz[r][k] * rx[k][c]).sum();
        }
    }
    // Centre the grid on the origin (where the phantom's body is).
    let mut origin = [0.0; 3];
    for r in 0..3 {
        origin[r] = -(0..3)
            .map(|c| d[r][c] * spacing[c] * (shape[c] as f64 - 1.0) / 2.0)
            .sum::<f64>();
    }
    Geometry::new(shape, spacing, origin, d).unwrap()
}

#[test]
fn ras_lps_and_oblique_inputs_give_maps_on_their_own_grids_with_the_organs_in_place() {
    let model = phantom_model();
    let dir = TempDir::new("segment-geometry");
    let spec = PhantomSpec::new([80, 72, 44], [2.2, 2.4, 4.0], 9001);
    let (ras_ct, ras_truth) = phantom(&spec).unwrap();
    let (lps_ct, lps_truth) = phantom(&spec.lps()).unwrap();
    let anatomy = Anatomy::new(9001, [80.0 * 2.2, 72.0 * 2.4, 44.0 * 4.0]);
    let (obl_ct, obl_truth) =
        phantom_on(&oblique_grid([80, 72, 44], [2.2, 2.4, 4.0]), &anatomy, 10.0);
    let mut pairs = Vec::new();
    for (name, ct, truth) in [
        ("ras", &ras_ct, &ras_truth),
        ("lps", &lps_ct, &lps_truth),
        ("oblique", &obl_ct, &obl_truth),
    ] {
        let input = dir.join(&format!("{name}_0000.nii.gz"));
        let output = dir.join(&format!("{name}_pred.nii.gz"));
        write_phantom(&input, ct);
        let before = std::fs::read(&input).unwrap();
        let o = flare(&[
            "segment",
            "-i",
            p(&input),
            "-o",
            p(&output),
            "--model",
            p(&model),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o.stderr));
        let line = text(&o.stdout);
        assert!(line.starts_with(&format!("{name}: wrote ")), "{line}");
        assert!(
            line.contains("peak RSS") && line.contains("liver"),
            "{line}"
        );
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "{name}: input changed"
        );
        let pred = flare_nifti::read_label_map(&output).unwrap();
        assert!(
            pred.volume.geometry().same_grid(ct.geometry(), 1e-4),
            "{name}"
        );
        assert_organs_found(&pred.volume, truth, name);
        pairs.push((input, output));
    }
    // An independent reader puts the label map exactly on the input: nibabel's affine, qform,
    // sform and their codes are identical, and the voxels are uint8.
    let Some(python) = python_with(
        "ras_lps_and_oblique_inputs_give_maps_on_their_own_grids (nibabel part)",
        &["nibabel", "numpy"],
    ) else {
        return;
    };
    let script = r#"
import sys, nibabel as nib, numpy as np
for i in range(1, len(sys.argv), 2):
    a, b = nib.load(sys.argv[i]), nib.load(sys.argv[i + 1])
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.array_equal(a.affine, b.affine), (a.affine, b.affine)
    qa, ca = a.header.get_qform(coded=True); qb, cb = b.header.get_qform(coded=True)
    sa, da = a.header.get_sform(coded=True); sb, db = b.header.get_sform(coded=True)
    assert ca == cb and da == db, (ca, cb, da, db)
    assert np.array_equal(qa, qb) and np.array_equal(sa, sb)
    assert b.get_data_dtype() == np.uint8, b.get_data_dtype()
    assert set(np.unique(np.asanyarray(b.dataobj))) <= {0, 1, 2, 3, 4}
    print(nib.aff2axcodes(b.affine))
"#;
    let mut args: Vec<&str> = Vec::new();
    for (i, o) in &pairs {
        args.push(p(i));
        args.push(p(o));
    }
    let out = run_python(&python, script, &args);
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn input_with_different_qform_and_sform_keeps_both() {
    // A nibabel-written fixture whose qform and sform differ: the label map must carry both.
    let Some(python) = python_with(
        "input_with_different_qform_and_sform_keeps_both",
        &["nibabel", "numpy"],
    ) else {
        return;
    };
    let model = phantom_model();
    let dir = TempDir::new("segment-qform");
    let input = dir.join("scan.nii.gz");
    run_python(
        &python,
        r#"
import sys, nibabel as nib, numpy as np
rng = np.random.default_rng(0)
data = rng.integers(-200, 200, size=(40, 36, 20)).astype(np.int16)
s = np.array([[-2.0, 0, 0, 40], [0, -2.2, 0, 30], [0, 0, 4, -40], [0, 0, 0, 1]])
q = s.copy(); q[:3, 3] += [0.5, -0.25, 1.0]
img = nib.Nifti1Image(data, s)
img.set_sform(s, code=2); img.set_qform(q, code=1)
nib.save(img, sys.argv[1])
"#,
        &[p(&input)],
    );
    let output = dir.join("labels.nii.gz");
    let o = flare(&[
        "segment",
        "-i",
        p(&input),
        "-o",
        p(&output),
        "--model",
        p(&model),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = run_python(
        &python,
        r#"
import sys, nibabel as nib, numpy as np
a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
for f in ("get_qform", "get_sform"):
    (ma, ca), (mb, cb) = getattr(a.header, f)(coded=True), getattr(b.header, f)(coded=True)
    assert ca == cb and np.array_equal(ma, mb), (f, ma, mb, ca, cb)
print("codes", int(b.header["qform_code"]), int(b.header["sform_code"]))
"#,
        &[p(&input), p(&output)],
    );
    assert_eq!(out.trim(), "codes 1 2");
}

/// A FLARE input folder: three good cases, a corrupt one, a second channel and a stray file.
fn flare_folder(dir: &Path) -> Vec<(String, LabelMap)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut truths = Vec::new();
    for (n, seed) in [("case_a", 11u64), ("case_b", 12), ("case_c", 13)] {
        let spec = PhantomSpec::new([64, 64, 40], [2.5, 2.5, 4.5], seed);
        let (ct, truth) = phantom(&spec).unwrap();
        write_phantom(&dir.join(format!("{n}_0000.nii.gz")), &ct);
        truths.push((n.to_string(), truth));
    }
    // Truncated gzip: the first half of a good file.
    let good = std::fs::read(dir.join("case_a_0000.nii.gz")).unwrap();
    std::fs::write(dir.join("case_bad_0000.nii.gz"), &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.join("case_a_0001.nii.gz"), &good).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a scan").unwrap();
    truths
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_flare_batch_goes_on_past_a_corrupt_case_and_names_outputs_the_flare_way() {
    let model = phantom_model();
    let t = TempDir::new("segment-batch");
    let inputs = t.join("inputs");
    let outputs = t.join("outputs");
    let report = t.join("report");
    let volumes = t.join("volumes.csv");
    let truths = flare_folder(&inputs);
    let listing = files_in(&inputs);
    let o = flare(&[
        "segment",
        "-i",
        p(&inputs),
        "-o",
        p(&outputs),
        "--model",
        p(&model),
        "--report",
        p(&report),
        "--volumes",
        p(&volumes),
    ]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "one case failed: {stderr}");
    assert!(
        stderr.contains("case_bad") && stderr.contains("case_bad_0000.nii.gz"),
        "{stderr}"
    );
    assert!(stderr.contains("case_a_0001.nii.gz: ignored"), "{stderr}");
    assert!(
        stderr.contains("3 segmented, 0 skipped, 1 failed"),
        "{stderr}"
    );
    // `<case>_0000.nii.gz` -> `<case>.nii.gz`; nothing for the bad case, no temporary files;
    // the per-case records that `flare gather` reads (tests/cluster.rs).
    assert_eq!(
        files_in(&outputs),
        [
            ".flare-records",
            "case_a.nii.gz",
            "case_b.nii.gz",
            "case_c.nii.gz"
        ]
    );
    assert_eq!(files_in(&inputs), listing, "inputs untouched");
    for (name, truth) in &truths {
        let pred = flare_nifti::read_label_map(outputs.join(format!("{name}.nii.gz"))).unwrap();
        assert_organs_found(&pred.volume, truth, name);
    }
    // One stdout line per good case.
    let stdout = text(&o.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    // Volumes: one row per segmented case, liver volume near the truth.
    let csv = std::fs::read_to_string(&volumes).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("case,liver_ml,kidney_ml,spleen_ml,pancreas_ml,warnings")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for ((name, truth), row) in truths.iter().zip(&rows) {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[0], name);
        let liver: f64 = f[1].parse().unwrap();
        let ml = truth.geometry().voxel_volume_ml();
        let want = truth.data().iter().filter(|&&v| v == 1).count() as f64 * ml;
        assert!(
            (liver - want).abs() <= 0.2 * want,
            "{name}: liver {liver} mL vs {want}"
        );
    }
    // The report: a picture per good case and an index naming all four.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for n in ["case_a", "case_b", "case_c", "case_bad"] {
        assert!(html.contains(n), "{n} not in the report");
    }
    for n in ["case_a", "case_b", "case_c"] {
        let png = std::fs::read(report.join(format!("{n}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[test]
fn existing_outputs_are_skipped_unless_overwrite() {
    let model = phantom_model();
    let t = TempDir::new("segment-overwrite");
    let spec = PhantomSpec::new([64, 64, 40], [2.5, 2.5, 4.5], 21);
    let (ct, _) = phantom(&spec).unwrap();
    let input = t.join("scan_0000.nii.gz");
    write_phantom(&input, &ct);
    let out_dir = t.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A folder as OUTPUT for one file: `<case>.nii.gz` inside it.
    let output = out_dir.join("scan.nii.gz");
    std::fs::write(&output, b"placeholder from an earlier run").unwrap();
    let args = [
        "segment",
        "-i",
        p(&input),
        "-o",
        p(&out_dir),
        "--model",
        p(&model),
    ];
    let o = flare(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("skipped"), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read(&output).unwrap(),
        b"placeholder from an earlier run"
    );
    let mut with = args.to_vec();
    with.push("--overwrite");
    let o = flare(&with);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pred = flare_nifti::read_label_map(&output).unwrap();
    assert!(pred.volume.geometry().same_grid(ct.geometry(), 1e-4));
    assert_eq!(files_in(&out_dir), ["scan.nii.gz"]);
}

#[test]
fn a_dicom_series_is_segmented_on_the_grid_flare_convert_writes() {
    let model = phantom_model();
    let t = TempDir::new("segment-dicom");
    let series = workspace_root().join("crates/flare-dicom/tests/fixtures/shuffled");
    let converted = t.join("converted.nii.gz");
    let o = flare(&["convert", p(&series), p(&converted)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let output = t.join("labels.nii.gz");
    let o = flare(&[
        "segment",
        "-i",
        p(&series),
        "-o",
        p(&output),
        "--model",
        p(&model),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let ct = flare_nifti::read_header(&converted).unwrap();
    let labels = flare_nifti::read_header(&output).unwrap();
    assert_eq!(
        ct.geometry().unwrap().shape(),
        labels.geometry().unwrap().shape()
    );
    assert!(
        ct.geometry()
            .unwrap()
            .same_grid(&labels.geometry().unwrap(), 1e-4)
    );
}

#[test]
fn bad_arguments_are_refused_before_any_work() {
    let model = phantom_model();
    let t = TempDir::new("segment-refusals");
    let spec = PhantomSpec::new([64, 64, 40], [2.5, 2.5, 4.5], 31);
    let (ct, _) = phantom(&spec).unwrap();
    let input = t.join("scan.nii.gz");
    write_phantom(&input, &ct);
    // OUTPUT = INPUT.
    let o = flare(&[
        "segment",
        "-i",
        p(&input),
        "-o",
        p(&input),
        "--model",
        p(&model),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("input"), "{}", text(&o.stderr));
    // A folder of cases into a single file.
    let o = flare(&[
        "segment",
        "-i",
        p(t.path()),
        "-o",
        p(&t.join("x.nii.gz")),
        "--model",
        p(&model),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("must be a folder"),
        "{}",
        text(&o.stderr)
    );
    // A model file that is not one.
    let o = flare(&[
        "segment",
        "-i",
        p(&input),
        "-o",
        p(&t.join("y.nii.gz")),
        "--model",
        p(&input),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("scan.nii.gz"),
        "{}",
        text(&o.stderr)
    );
    // A missing input.
    let o = flare(&[
        "segment",
        "-i",
        p(&t.join("nope.nii.gz")),
        "-o",
        p(&t.join("z.nii.gz")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("nope.nii.gz"),
        "{}",
        text(&o.stderr)
    );
    assert!(!t.join("y.nii.gz").exists() && !t.join("z.nii.gz").exists());
}

#[test]
fn predict_sh_segments_a_folder_with_environment_overrides() {
    let model = phantom_model();
    let t = TempDir::new("segment-predict-sh");
    let inputs = t.join("in");
    let outputs = t.join("out");
    std::fs::create_dir_all(&inputs).unwrap();
    let (ct, truth) = phantom(&PhantomSpec::new([64, 64, 40], [2.5, 2.5, 4.5], 41)).unwrap();
    write_phantom(&inputs.join("FLARE21_001_0000.nii.gz"), &ct);
    let o = Command::new("sh")
        .arg(workspace_root().join("predict.sh"))
        .env("FLARE_INPUTS", &inputs)
        .env("FLARE_OUTPUTS", &outputs)
        .env("FLARE_BIN", env!("CARGO_BIN_EXE_flare"))
        .env("FLARE_MODEL", &model)
        .env("FLARE_THREADS", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pred = flare_nifti::read_label_map(outputs.join("FLARE21_001.nii.gz")).unwrap();
    assert_organs_found(&pred.volume, &truth, "predict.sh");

    // MONAI Deploy's folders, when no FLARE folder is set.
    let monai_out = t.join("monai-out");
    let o = Command::new("sh")
        .arg(workspace_root().join("predict.sh"))
        .env_remove("FLARE_INPUTS")
        .env_remove("FLARE_OUTPUTS")
        .env_remove("MERCURE_IN_DIR")
        .env_remove("MERCURE_OUT_DIR")
        .env("MONAI_INPUTPATH", &inputs)
        .env("MONAI_OUTPUTPATH", &monai_out)
        .env("FLARE_BIN", env!("CARGO_BIN_EXE_flare"))
        .env("FLARE_MODEL", &model)
        .env("FLARE_THREADS", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pred = flare_nifti::read_label_map(monai_out.join("FLARE21_001.nii.gz")).unwrap();
    assert_organs_found(&pred.volume, &truth, "predict.sh, MONAI folders");

    // mercure's folders (they win over MONAI's): a DICOM series beside mercure's task.json.
    let series = workspace_root().join("crates/flare-dicom/tests/fixtures/shuffled");
    let mercure_in = t.join("mercure-in");
    std::fs::create_dir_all(&mercure_in).unwrap();
    for f in std::fs::read_dir(&series).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), mercure_in.join(f.file_name())).unwrap();
    }
    std::fs::write(mercure_in.join("task.json"), b"{\"id\": \"test\"}").unwrap();
    let mercure_out = t.join("mercure-out");
    std::fs::create_dir_all(&mercure_out).unwrap();
    let o = Command::new("sh")
        .arg(workspace_root().join("predict.sh"))
        .env_remove("FLARE_INPUTS")
        .env_remove("FLARE_OUTPUTS")
        .env("MERCURE_IN_DIR", &mercure_in)
        .env("MERCURE_OUT_DIR", &mercure_out)
        .env("MONAI_INPUTPATH", t.join("not-this"))
        .env("MONAI_OUTPUTPATH", t.join("nor-this"))
        .env("FLARE_BIN", env!("CARGO_BIN_EXE_flare"))
        .env("FLARE_MODEL", &model)
        .env("FLARE_THREADS", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let converted = t.join("mercure-converted.nii.gz");
    let c = flare(&["convert", p(&series), p(&converted)]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c.stderr));
    let labels = flare_nifti::read_header(mercure_out.join("mercure-in.nii.gz")).unwrap();
    let ct = flare_nifti::read_header(&converted).unwrap();
    assert!(
        ct.geometry()
            .unwrap()
            .same_grid(&labels.geometry().unwrap(), 1e-4)
    );
    assert!(!t.join("nor-this").exists());
}

#[test]
fn info_shows_a_models_networks_and_training_record() {
    let model = phantom_model();
    let fixtures = workspace_root().join("crates/flare-pipeline/tests/fixtures");
    let o = flare(&["info", p(&model)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    // The bundle's name, both networks with the stage files' grids and validation cases.
    for want in [
        "two-stage model phantom",
        "network 1:",
        "network 2:",
        "32 x 48 x 48",
        "phantom_022, phantom_023",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let o = flare(&["info", p(&fixtures.join("phantom-stage1.safetensors"))]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("one network") && !out.contains("network 2:"),
        "{out}"
    );
    let o = flare(&["info", "builtin"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("flare-default"));
    let t = TempDir::new("info-model");
    let junk = t.join("junk.safetensors");
    std::fs::write(&junk, b"no model").unwrap();
    let o = flare(&["info", p(&junk)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("junk.safetensors"),
        "{}",
        text(&o.stderr)
    );
}

/// Stage `n` (1 or 2) of the phantom-trained model, as the single-stage file it was trained to.
fn phantom_stage_file(n: u8) -> PathBuf {
    workspace_root().join(format!(
        "crates/flare-pipeline/tests/fixtures/phantom-stage{n}.safetensors"
    ))
}

/// `flare bundle` of the phantom model's two stages with `extra` options, written to `out`.
fn bundle_phantom(extra: &[&str], out: &Path) -> std::process::Output {
    let (s1, s2) = (phantom_stage_file(1), phantom_stage_file(2));
    let mut args = vec!["bundle", "--stage1", p(&s1), "--stage2", p(&s2)];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", p(out)]);
    flare(&args)
}

/// `bundle_phantom(extra, out)` succeeds, and what it prints and what `flare info`
/// prints of the file contain the given phrases.
fn bundle_phantom_shown(extra: &[&str], out: &Path, bundle_says: &str, info_says: &[&str]) {
    let o = bundle_phantom(extra, out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(bundle_says), "{}", text(&o.stdout));
    let o = flare(&["info", p(out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let info = text(&o.stdout);
    for phrase in info_says {
        assert!(info.contains(phrase), "{phrase:?} not in {info}");
    }
}

/// The label map `flare segment --model M` writes for `input`, for each model in turn.
fn labels_by_model(t: &TempDir, input: &Path, models: &[PathBuf]) -> Vec<LabelMap> {
    let mut maps = Vec::new();
    for (k, model) in models.iter().enumerate() {
        let out = t.join(&format!("by-model-{k}.nii.gz"));
        let o = flare(&[
            "segment",
            "-i",
            p(input),
            "-o",
            p(&out),
            "--model",
            p(model),
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}",
            model.display(),
            text(&o.stderr)
        );
        maps.push(flare_nifti::read_label_map(&out).unwrap().volume);
    }
    maps
}

/// `flare bundle --stage2-member` makes stage 2 an ensemble: the bundle says so, a member that
/// cannot be read is named, and an ensemble of stage 2 with itself averages two
/// equal probability maps, so it labels the phantom as the single network does (up to the
/// rounding of the log-probabilities it hands the export).
#[test]
fn a_stage2_ensemble_is_bundled_shown_and_segments() {
    let t = TempDir::new("segment-ensemble");
    let ens = t.join("ensemble.safetensors");
    let s2 = phantom_stage_file(2);
    let bundle = |member: &Path, out: &Path| bundle_phantom(&["--stage2-member", p(member)], out);
    bundle_phantom_shown(
        &["--stage2-member", p(&s2)],
        &ens,
        "(stage 2 an ensemble of 2 networks)",
        &["network 2:", "network 2, member 2:"],
    );
    // A member that cannot be read: one line naming it, and nothing written.
    let (missing, bad) = (t.join("missing.safetensors"), t.join("bad.safetensors"));
    let o = bundle(&missing, &bad);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("missing.safetensors"),
        "{}",
        text(&o.stderr)
    );
    assert!(!bad.exists());

    let spec = PhantomSpec::new([80, 72, 44], [2.2, 2.4, 4.0], 9002);
    let (ct, truth) = phantom(&spec).unwrap();
    let input = t.join("case_0000.nii.gz");
    write_phantom(&input, &ct);
    let maps = labels_by_model(&t, &input, &[phantom_model(), ens]);
    assert_organs_found(&maps[1], &truth, "ensemble");
    let (a, b) = (maps[0].data(), maps[1].data());
    let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert!(
        differ * 100_000 <= a.len(),
        "{differ} of {} voxels differ",
        a.len()
    );
}

/// `flare bundle --stage3 --refine-region stage2-region`: stored and shown (by `bundle` and
/// `info`); a stage 3 that is stage 2's own network, refining the liver and spleen on stage
/// 2's region, decides them exactly as stage 2 did, so the label map is the two-stage one
/// voxel for voxel; a margin with stage 2's region is one line and no file.
#[test]
fn a_stage2_region_refinement_is_bundled_shown_and_segments() {
    let t = TempDir::new("segment-refine-region");
    let s2 = phantom_stage_file(2);
    let refined = t.join("refined.safetensors");
    let args = [
        "--stage3",
        p(&s2),
        "--refine-label",
        "1,3",
        "--refine-region",
        "stage2-region",
    ];
    bundle_phantom_shown(
        &args,
        &refined,
        "(refines labels 1, 3 on stage 2's region)",
        &[
            "network 3:",
            "stage 3:    refines labels 1, 3 on stage 2's region",
        ],
    );
    let bad = t.join("bad.safetensors");
    let mut with_margin = args.to_vec();
    with_margin.extend_from_slice(&["--refine-margin", "0.25"]);
    let o = bundle_phantom(&with_margin, &bad);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("--refine-margin applies to --refine-region organ-box only"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!bad.exists());

    let spec = PhantomSpec::new([80, 72, 44], [2.2, 2.4, 4.0], 9004);
    let (ct, truth) = phantom(&spec).unwrap();
    let input = t.join("case_0000.nii.gz");
    write_phantom(&input, &ct);
    let maps = labels_by_model(&t, &input, &[phantom_model(), refined]);
    assert_organs_found(&maps[1], &truth, "refined");
    assert!(
        maps[0].data() == maps[1].data(),
        "stage 3 changed the labels"
    );
}

/// `flare bundle --class-offsets`: stored and shown (by `bundle` and `info`); a negative
/// pancreas offset large enough to forbid it leaves no pancreas voxel in `flare segment`'s
/// output; a wrong count is one line and no file.
#[test]
fn class_offsets_are_bundled_shown_and_applied() {
    let t = TempDir::new("segment-offsets");
    let bundle = |offsets: &str, out: &Path| bundle_phantom(&["--class-offsets", offsets], out);
    let no_pancreas = t.join("no-pancreas.safetensors");
    bundle_phantom_shown(
        &["--class-offsets", "0,0,0,0,-10"],
        &no_pancreas,
        "(stage-2 class offsets [0.0, 0.0, 0.0, 0.0, -10.0])",
        &["(margin 0.1, stage-2 class offsets [0.0, 0.0, 0.0, 0.0, -10.0])"],
    );
    let bad = t.join("bad.safetensors");
    let o = bundle("0,0,1", &bad);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("3 values for stage 2's 5 classes"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!bad.exists());

    let spec = PhantomSpec::new([80, 72, 44], [2.2, 2.4, 4.0], 9003);
    let (ct, _) = phantom(&spec).unwrap();
    let input = t.join("case_0000.nii.gz");
    write_phantom(&input, &ct);
    let pancreas: Vec<usize> = labels_by_model(&t, &input, &[phantom_model(), no_pancreas])
        .iter()
        .map(|l| l.data().iter().filter(|&&v| v == 4).count())
        .collect();
    assert!(pancreas[0] > 100, "the phantom model finds the pancreas");
    assert_eq!(pancreas[1], 0);
}
