//! Accuracy on synthetic phantoms with the phantom-trained model committed in
//! `tests/fixtures/` (see its README): each organ's Dice against the phantom's exact labels and
//! its centroid in the world, for a RAS, an LPS and an oblique array of an unseen seed. The
//! labels must land where the organs are in the world whatever the array layout. Skips with a
//! printed reason if the fixtures are absent.

use std::path::PathBuf;

use flare_engine::Ctx;
use flare_pipeline::{Model, PipelinePlan, SegmentOptions, segment};
use flare_testkit::phantom::{PhantomSpec, centroid_mm, phantom, phantom_on};
use flare_volume::{Geometry, LabelMap};

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

/// `g` rotated by `deg` degrees about the world z axis through the world origin.
fn rotated_about_z(g: &Geometry, deg: f64) -> Geometry {
    let (s, c) = deg.to_radians().sin_cos();
    let r = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
    let d = g.direction();
    let o = g.origin_mm();
    let mut dir = [[0.0; 3]; 3];
    let mut origin = [0.0; 3];
    for i in 0..3 {
        origin[i] = (0..3).map(|t| r[i][t] * o[t]).sum();
        for j in 0..3 {
            dir[i][j] = (0..3).map(|t| r[i][t] * d[t][j]).sum();
        }
    }
    Geometry::new(g.shape(), g.spacing_mm(), origin, dir).unwrap()
}

#[test]
fn phantom_organs_are_found_where_they_are() {
    let (s1, s2) = (
        fixture("phantom-stage1.safetensors"),
        fixture("phantom-stage2.safetensors"),
    );
    if !(s1.is_file() && s2.is_file()) {
        eprintln!(
            "skipped: the phantom-trained model ({}) is not there",
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
    // Inside the phantom model's training range; seed 1000 was not trained on.
    let spec = PhantomSpec::new([80, 72, 44], [2.5, 2.5, 4.0], 1000);
    let oblique = rotated_about_z(&spec.geometry().unwrap(), 15.0);
    let cases = [
        ("RAS", phantom(&spec).unwrap()),
        ("LPS", phantom(&spec.lps()).unwrap()),
        (
            "oblique",
            phantom_on(&oblique, &spec.anatomy(), spec.noise_hu),
        ),
    ];
    for (name, (ct, truth)) in cases {
        let seg = segment(&ctx, &model, &ct, &SegmentOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(seg.labels.geometry(), ct.geometry(), "{name}");
        for (label, organ) in [(1, "liver"), (2, "kidney"), (3, "spleen"), (4, "pancreas")] {
            let d = dice(&truth, &seg.labels, label);
            eprintln!("{name}: {organ} DSC {d:.3}");
            assert!(
                d >= 0.8,
                "{name}: {organ} DSC {d:.3} < 0.8 ({:?})",
                seg.notes
            );
            let (want, got) = (
                centroid_mm(&truth, label).unwrap(),
                centroid_mm(&seg.labels, label).unwrap(),
            );
            let err = (0..3)
                .map(|a| (want[a] - got[a]).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                err < 5.0,
                "{name}: {organ} centroid {err:.1} mm from the truth"
            );
        }
    }
}
