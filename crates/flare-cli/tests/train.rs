//! `flare train` end to end on a tiny synthetic dataset, through the real binary: the loss
//! falls, a checkpoint + resume repeats an uninterrupted run bit for bit, and every bad
//! dataset is refused, named, before any training starts.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use flare_nifti::{DataType, write_label_map, write_volume};
use flare_testkit::TempDir;
use flare_volume::{Affine, Geometry, LabelMap, Volume};

fn flare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flare"))
}

/// Case shape `(i, j, k)`: 24 x 24 x 16 voxels.
const SHAPE: [usize; 3] = [24, 24, 16];

fn grid(shape: [usize; 3]) -> Geometry {
    let a = Affine::from_rows([
        [-1.6, 0.0, 0.0, 20.0],
        [0.0, -1.6, 0.0, 15.0],
        [0.0, 0.0, 3.0, -40.0],
    ]);
    Geometry::from_affine(shape, &a).unwrap()
}

/// A phantom: an elliptic soft-tissue body (0 HU) in air holding ellipsoid organs at CT-like
/// HU, plus deterministic noise; organ positions shift a little with `case`.
fn phantom(case: usize, shape: [usize; 3]) -> (Volume<f32>, LabelMap) {
    let g = grid(shape);
    let mut img = Volume::filled(g, -1000.0f32);
    let mut lab = Volume::filled(g, 0u8);
    let shift = case as f64 * 0.02;
    // (label, centre as fractions of the shape, radii in voxels, HU)
    let organs: [(u8, [f64; 3], [f64; 3], f32); 5] = [
        (1, [0.33 + shift, 0.45, 0.55], [6.0, 5.0, 4.0], 60.0),
        (2, [0.72, 0.62, 0.4 + shift], [2.5, 2.5, 2.0], 160.0),
        (2, [0.25, 0.62, 0.4], [2.5, 2.5, 2.0], 160.0),
        (3, [0.72 - shift, 0.35, 0.6], [3.0, 2.5, 2.0], 100.0),
        (4, [0.5, 0.3 + shift, 0.35], [3.5, 1.5, 1.5], 30.0),
    ];
    let mut noise = 0x1234_5678u32 ^ case as u32;
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let idx = g.linear_index([i, j, k]);
                let f = [i, j, k].map(|v| v as f64);
                let body = ((f[0] - shape[0] as f64 / 2.0) / (0.46 * shape[0] as f64)).powi(2)
                    + ((f[1] - shape[1] as f64 / 2.0) / (0.46 * shape[1] as f64)).powi(2);
                noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let n = ((noise >> 8) as f32 / (1u32 << 24) as f32 * 30.0 - 15.0).round();
                if body > 1.0 {
                    img.data_mut()[idx] = -1000.0 + n;
                    continue;
                }
                img.data_mut()[idx] = n - 20.0;
                for (l, c, r, hu) in organs {
                    let d: f64 = (0..3)
                        .map(|a| ((f[a] - c[a] * shape[a] as f64) / r[a]).powi(2))
                        .sum();
                    if d <= 1.0 {
                        img.data_mut()[idx] = hu + n;
                        lab.data_mut()[idx] = l;
                    }
                }
            }
        }
    }
    (img, lab)
}

fn write_pair(dir: &Path, name: &str, img: &Volume<f32>, lab: &LabelMap) {
    write_volume(
        dir.join(format!("{name}_0000.nii.gz")),
        img,
        Some(DataType::Int16),
    )
    .unwrap();
    write_label_map(dir.join(format!("{name}.nii.gz")), lab).unwrap();
}

/// Four phantom cases in `dir/data`.
fn dataset(dir: &TempDir) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for c in 0..4 {
        let (img, lab) = phantom(c, SHAPE);
        write_pair(&data, &format!("case_{c:02}"), &img, &lab);
    }
    data
}

/// A tiny 3-level U-Net (widths 4-8-8) with deep supervision.
fn plan(dir: &TempDir) -> PathBuf {
    let p = dir.join("plan.json");
    let json = serde_json::json!({
        "architecture": {
            "in_channels": 1, "num_classes": 5, "widths": [4, 8, 8],
            "kernels": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "convs_per_block": 2, "deep_supervision": true,
            "norm": {"type": "instance_affine", "eps": 1e-5},
            "activation": {"type": "leaky_relu", "negative_slope": 0.01}
        }
    });
    std::fs::write(&p, json.to_string()).unwrap();
    p
}

fn train(dir: &TempDir, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--val-cases", "1"];
    args.extend_from_slice(extra);
    train_with(dir, data, out, &args)
}

fn train_with(dir: &TempDir, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let plan = plan(dir);
    let mut cmd = flare();
    cmd.args(["--threads", "2", "train", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(&plan)
        .arg("--cache")
        .arg(dir.join("cache"))
        .args(["--batch", "2", "--lr", "0.01", "--warmup", "2"])
        .args(["--val-every", "4", "--seed", "7"])
        .args(extra);
    if !extra.contains(&"--grid") {
        cmd.args(["--grid", "8x16x16"]);
    }
    cmd.output().unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "flare train failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The CSV's rows without the wall-time column (samples/s), which no run can reproduce.
fn log_without_timing(csv: &Path) -> Vec<String> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(3);
            f.join(",")
        })
        .collect()
}

fn losses(csv: &Path) -> Vec<f64> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn loss_decreases_and_every_output_is_written() {
    let dir = TempDir::new("train_loss");
    let data = dataset(&dir);
    let out = dir.join("m.safetensors");
    let o = train(&dir, &data, &out, &["--steps", "40"]);
    ok(&o);
    let l = losses(&dir.join("m.log.csv"));
    assert_eq!(l.len(), 40);
    let first: f64 = l[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = l[35..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.8 * first,
        "loss did not fall enough: first 5 average {first}, last 5 {last}"
    );
    // The model files load as flare models, with the run recorded in the card.
    let (_, card) = flare_model::file::load(&out).unwrap();
    assert_eq!(card.training.steps, 40);
    assert_eq!(card.training.validation.len(), 1);
    assert!(card.training.metrics.contains_key("val_dice_liver"));
    assert!(flare_model::file::load(&dir.join("m.best.safetensors")).is_ok());
    // Validation ran every 4 steps: 10 rows carry Dice.
    let csv = std::fs::read_to_string(dir.join("m.log.csv")).unwrap();
    let with_val = csv.lines().skip(1).filter(|l| !l.ends_with(",,,,")).count();
    assert_eq!(with_val, 10);
    let png = std::fs::read(dir.join("m.curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn checkpoint_and_resume_repeat_the_uninterrupted_run_bit_for_bit() {
    resume_repeats_the_uninterrupted_run("train_resume", &[]);
}

/// Issue 11: a bf16 run records its precision in the checkpoint, resumes bit for bit in bf16,
/// and really trains in bf16 (its weights differ from the fp32 run's).
#[test]
fn bf16_checkpoint_records_its_precision_and_resumes_bit_for_bit() {
    if flare_engine::Bf16Kernel::native().is_none() {
        eprintln!("skipped: this CPU lacks avx512_bf16, so flare train --precision bf16 refuses");
        return;
    }
    let dir = resume_repeats_the_uninterrupted_run("train_resume_bf16", &["--precision", "bf16"]);
    let ck = flare_train::checkpoint::load(&dir.join("whole.ckpt")).unwrap();
    assert_eq!(ck.state.config.precision, flare_engine::Precision::Bf16);
    let data = dir.join("data");
    let fp32 = dir.join("fp32.safetensors");
    ok(&train(&dir, &data, &fp32, &["--steps", "8"]));
    let (a, _) = flare_model::file::load(&fp32).unwrap();
    let (b, _) = flare_model::file::load(&dir.join("whole.safetensors")).unwrap();
    assert!(
        a.slots() != b.slots(),
        "the bf16 run's weights equal the fp32 run's"
    );
    let ck = flare_train::checkpoint::load(&dir.join("fp32.ckpt")).unwrap();
    assert_eq!(ck.state.config.precision, flare_engine::Precision::Fp32);
}

/// Trains 8 steps in one go and as 4 + resume (`extra` added to both), and checks the two end
/// alike: weights, model cards, logs, checkpoints. Returns the run folder.
fn resume_repeats_the_uninterrupted_run(name: &str, extra: &[&str]) -> TempDir {
    let dir = TempDir::new(name);
    let data = dataset(&dir);
    let whole = dir.join("whole.safetensors");
    ok(&train(
        &dir,
        &data,
        &whole,
        &[&["--steps", "8"], extra].concat(),
    ));
    let split = dir.join("split.safetensors");
    ok(&train(
        &dir,
        &data,
        &split,
        &[&["--steps", "8", "--stop-at", "4"], extra].concat(),
    ));
    let half = std::fs::read(&split).unwrap();
    assert!(
        half != std::fs::read(&whole).unwrap(),
        "4 steps equal 8 steps"
    );
    let ckpt = dir.join("split.ckpt");
    ok(&train(
        &dir,
        &data,
        &split,
        &["--resume", ckpt.to_str().unwrap()],
    ));
    for (a, b) in [
        (split.clone(), whole.clone()),
        (
            dir.join("split.best.safetensors"),
            dir.join("whole.best.safetensors"),
        ),
    ] {
        let (na, ca) = flare_model::file::load(&a).unwrap();
        let (nb, cb) = flare_model::file::load(&b).unwrap();
        assert!(
            na.slots() == nb.slots(),
            "{}: the resumed run's weights differ from the uninterrupted run's",
            a.display()
        );
        // Not the files' bytes: the safetensors header's metadata map is written in hash
        // order, which differs between processes.
        assert_eq!(ca, cb);
    }
    assert_eq!(
        log_without_timing(&dir.join("split.log.csv")),
        log_without_timing(&dir.join("whole.log.csv"))
    );
    // The checkpoints, optimiser moments and run state included, are the same too.
    let a = flare_train::checkpoint::load(&ckpt).unwrap();
    let b = flare_train::checkpoint::load(&dir.join("whole.ckpt")).unwrap();
    assert!(a.net.slots() == b.net.slots());
    assert!(a.opt == b.opt); // AdamW's update count and moments
    assert_eq!(a.state.step, 8);
    assert_eq!(a.state.sampler, b.state.sampler);
    dir
}

#[test]
fn both_stages_train_with_a_separate_validation_folder() {
    let dir = TempDir::new("train_both");
    let data = dataset(&dir);
    let val = dir.join("val");
    std::fs::create_dir_all(&val).unwrap();
    let (img, lab) = phantom(5, SHAPE);
    write_pair(&val, "held_out", &img, &lab);
    let out = dir.join("two.safetensors");
    let o = train_with(
        &dir,
        &data,
        &out,
        &[
            "--stage",
            "both",
            "--steps",
            "4",
            "--val",
            val.to_str().unwrap(),
        ],
    );
    ok(&o);
    for (stage, region) in [("stage1", "whole scan"), ("stage2", "union box")] {
        let (_, card) =
            flare_model::file::load(&dir.join(&format!("two.{stage}.safetensors"))).unwrap();
        assert_eq!(card.training.steps, 4);
        assert_eq!(card.training.data.len(), 4);
        assert_eq!(card.training.validation, vec!["held_out".to_string()]);
        assert!(
            card.training.notes.contains(region),
            "{}",
            card.training.notes
        );
        assert_eq!(losses(&dir.join(&format!("two.{stage}.log.csv"))).len(), 4);
    }
}

#[test]
fn fine_tuning_starts_from_the_given_weights_at_a_new_grid() {
    let dir = TempDir::new("train_init");
    let data = dataset(&dir);
    let base = dir.join("base.safetensors");
    ok(&train(&dir, &data, &base, &["--steps", "40"]));
    // The same short run from random weights and from the trained ones, on a larger grid.
    let fresh = dir.join("fresh.safetensors");
    ok(&train(
        &dir,
        &data,
        &fresh,
        &["--steps", "3", "--grid", "8x24x24"],
    ));
    let tuned = dir.join("tuned.safetensors");
    let o = train(
        &dir,
        &data,
        &tuned,
        &[
            "--steps",
            "3",
            "--grid",
            "8x24x24",
            "--init",
            base.to_str().unwrap(),
        ],
    );
    ok(&o);
    let (f, t) = (
        losses(&dir.join("fresh.log.csv")),
        losses(&dir.join("tuned.log.csv")),
    );
    assert!(
        t[0] < 0.7 * f[0],
        "the fine-tuned run's first loss {} is not below the fresh run's {}",
        t[0],
        f[0]
    );
    let (_, card) = flare_model::file::load(&tuned).unwrap();
    assert_eq!(card.training.steps, 3);
    assert!(
        card.training.notes.contains("fine-tuned from")
            && card.training.notes.contains("base.safetensors"),
        "{}",
        card.training.notes
    );
    // One stage's weights cannot start both stages; a file that is no model is named.
    let o = train(
        &dir,
        &data,
        &dir.join("x.safetensors"),
        &["--stage", "both", "--init", base.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("single stage"), "{err}");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let o = train(
        &dir,
        &data,
        &dir.join("y.safetensors"),
        &["--init", junk.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("junk.safetensors"),
        "{err}"
    );
    assert!(!dir.join("x.safetensors").exists() && !dir.join("y.safetensors").exists());

    // `flare average`: the element-wise mean of the two runs' weights, with a card that says so.
    let avg = dir.join("avg.safetensors");
    let run_avg = |extra: &[&std::path::Path]| {
        let mut c = flare();
        c.arg("average")
            .arg(&base)
            .arg(&tuned)
            .args(extra)
            .arg("--out")
            .arg(&avg);
        c.output().unwrap()
    };
    ok(&run_avg(&[]));
    let (a, card) = flare_model::file::load(&avg).unwrap();
    let (b, _) = flare_model::file::load(&base).unwrap();
    let (t, _) = flare_model::file::load(&tuned).unwrap();
    for ((sa, sb), st) in a.slots().iter().zip(b.slots()).zip(t.slots()) {
        for ((&x, &y), &z) in sa.iter().zip(sb).zip(st) {
            assert!((x - (y + z) / 2.0).abs() <= 1e-6 * x.abs().max(1.0));
        }
    }
    assert!(
        card.training.notes.contains("averaged over 2"),
        "{}",
        card.training.notes
    );
    assert!(card.training.metrics.is_empty());
    // OUT exists: refused without --overwrite; a file that is no model is named.
    assert!(!run_avg(&[]).status.success());
    std::fs::remove_file(&avg).unwrap();
    let o = run_avg(&[junk.as_path()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("junk.safetensors"),
        "{err}"
    );
}

/// Runs `flare train` on a bad dataset: exit code 2, `expect` in stderr, and nothing
/// written (training never started).
fn assert_refused(dir: &TempDir, data: &Path, expect: &[&str]) {
    let out = dir.join("out").join("m.safetensors");
    let o = train(dir, data, &out, &["--steps", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    for e in expect {
        assert!(err.contains(e), "stderr lacks {e:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists() && !dir.join("out").join("m.ckpt").exists());
}

#[test]
fn bad_datasets_are_refused_before_training() {
    let dir = TempDir::new("train_bad");
    // Empty folder.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_refused(&dir, &empty, &["no .nii or .nii.gz files"]);

    // An image without its label.
    let unmatched = dir.join("unmatched");
    std::fs::create_dir_all(&unmatched).unwrap();
    let (img, lab) = phantom(0, SHAPE);
    write_pair(&unmatched, "good", &img, &lab);
    write_volume(
        unmatched.join("lonely_0000.nii.gz"),
        &img,
        Some(DataType::Int16),
    )
    .unwrap();
    assert_refused(&dir, &unmatched, &["lonely"]);

    // Labels outside 0..4.
    let values = dir.join("values");
    std::fs::create_dir_all(&values).unwrap();
    write_pair(&values, "good", &img, &lab);
    let mut bad = lab.clone();
    bad.data_mut()[5] = 9;
    write_pair(&values, "nine", &img, &bad);
    assert_refused(&dir, &values, &["nine", "9"]);

    // Image and label on different grids.
    let grids = dir.join("grids");
    std::fs::create_dir_all(&grids).unwrap();
    write_pair(&grids, "good", &img, &lab);
    let (_, small) = phantom(1, [24, 24, 12]);
    write_pair(&grids, "shifted", &img, &small);
    assert_refused(&dir, &grids, &["shifted"]);
}
