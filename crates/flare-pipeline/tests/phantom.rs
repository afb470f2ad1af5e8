//! Accuracy on synthetic phantoms with a model trained on phantoms (committed by the phantom
//! model's author as `tests/fixtures/phantom-stage{1,2}.safetensors`): each organ's Dice
//! against the phantom's exact labels, for a RAS and an LPS array of an unseen seed. Skips
//! with a printed reason while those fixtures are absent.

use std::path::PathBuf;

use flare_engine::Ctx;
use flare_pipeline::{Model, PipelinePlan, SegmentOptions, segment};
use flare_testkit::phantom::{PhantomSpec, phantom};
use flare_volume::LabelMap;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn dice(gt: &LabelMap, pred: &LabelMap, label: u8) -> f64 {
    let (mut a, mut b, mut both) = (0u64, 0u64, 0u64);
    for (&g, &p) in gt.data().iter().zip(pred.data()) {
        a += (g == label) as u64;
        b += (p == label) as u64;
        both += (g == label && p == label) as u64;
    }
    2.0 * both as f64 / (a + b).max(1) as f64
}

#[test]
fn phantom_organs_are_found_where_they_are() {
    let (s1, s2) = (
        fixture("phantom-stage1.safetensors"),
        fixture("phantom-stage2.safetensors"),
    );
    if !(s1.is_file() && s2.is_file()) {
        eprintln!(
            "skipped: the phantom-trained model ({}) is not committed yet",
            s1.display()
        );
        return;
    }
    let plan = PipelinePlan {
        roi_margin: 0.1,
        name: "phantom".into(),
        notes: "trained on flare_testkit phantoms, for tests".into(),
    };
    let model = Model::from_stage_files(&s1, &s2, plan).unwrap();
    let ctx = Ctx::new();
    let spec = PhantomSpec::new([96, 80, 48], [4.0, 4.0, 6.0], 9001);
    for spec in [spec, spec.lps()] {
        let (ct, truth) = phantom(&spec).unwrap();
        let seg = segment(&ctx, &model, &ct, &SegmentOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(seg.labels.geometry(), ct.geometry());
        for (label, name) in [(1, "liver"), (2, "kidney"), (3, "spleen"), (4, "pancreas")] {
            let d = dice(&truth, &seg.labels, label);
            assert!(
                d >= 0.8,
                "{:?}: {name} DSC {d:.3} < 0.8 ({:?})",
                spec.orientation,
                seg.notes
            );
        }
    }
}
