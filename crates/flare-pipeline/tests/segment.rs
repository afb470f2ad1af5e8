//! `segment` end to end with tiny *randomly initialised* networks: these find no real organs,
//! so the tests check geometry and control flow (grids, regions, steps, notes), not accuracy.

mod common;

use common::{edit_tensor, plan, tiny_model, tiny_stage};
use flare_engine::Ctx;
use flare_pipeline::{Model, SegmentOptions, Step, organ_volumes_ml, segment};
use flare_volume::{Affine, Geometry, Volume};

/// A CT-like volume on `g`: a bright ellipsoid in soft tissue in air, in HU.
fn phantom_hu(g: &Geometry) -> Volume<f32> {
    let [nx, ny, nz] = g.shape();
    let c = g.index_to_world([
        (nx - 1) as f64 / 2.0,
        (ny - 1) as f64 / 2.0,
        (nz - 1) as f64 / 2.0,
    ]);
    let mut data = Vec::with_capacity(g.n_voxels());
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let p = g.index_to_world([i as f64, j as f64, k as f64]);
                let r = ((p[0] - c[0]) / 30.0).powi(2)
                    + ((p[1] - c[1]) / 20.0).powi(2)
                    + ((p[2] - c[2]) / 25.0).powi(2);
                let body = ((p[0] - c[0]) / 45.0).powi(2) + ((p[1] - c[1]) / 35.0).powi(2);
                data.push(if r < 1.0 {
                    150.0
                } else if body < 1.0 {
                    40.0 + (p[0] - c[0]) as f32
                } else {
                    -1000.0
                });
            }
        }
    }
    Volume::new(*g, data).unwrap()
}

fn grids() -> Vec<(&'static str, Geometry)> {
    let ras = Geometry::axis_aligned([40, 36, 20], [2.4, 2.6, 5.0], [-48.0, -40.0, -50.0]).unwrap();
    let lps = Geometry::new(
        [40, 36, 20],
        [2.4, 2.6, 5.0],
        [48.0, 40.0, -50.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
    .unwrap();
    // Oblique, sheared a little, axes permuted (array axis 0 mostly superior).
    let oblique = Geometry::from_affine(
        [20, 40, 36],
        &Affine::from_rows([
            [0.3, 2.3, 0.4, -45.0],
            [0.5, -0.6, 2.5, -42.0],
            [4.9, 0.2, -0.3, -48.0],
        ]),
    )
    .unwrap();
    vec![("RAS", ras), ("LPS", lps), ("oblique", oblique)]
}

#[test]
fn labels_lie_on_the_input_grid_whatever_its_orientation() {
    let ctx = Ctx::new();
    let model = tiny_model();
    for (name, g) in grids() {
        let img = phantom_hu(&g);
        let mut steps = Vec::new();
        let seg = segment(&ctx, &model, &img, &SegmentOptions::default(), &mut |s| {
            steps.push(s)
        })
        .unwrap();
        assert_eq!(seg.labels.geometry(), &g, "{name}: output grid");
        assert!(seg.labels.data().iter().all(|&l| l <= 4), "{name}");
        let roi = seg
            .roi
            .unwrap_or_else(|| panic!("{name}: random stage 1 found nothing"));
        assert!(
            (0..3).all(|a| roi.end()[a] <= g.shape()[a]),
            "{name}: {roi:?}"
        );
        // Nothing is written outside the region.
        let [nx, ny, nz] = g.shape();
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    if !roi.contains([i, j, k]) {
                        assert_eq!(seg.labels.get([i, j, k]), Some(&0), "{name}");
                    }
                }
            }
        }
        assert_eq!(
            steps,
            [
                Step::Preprocess,
                Step::Stage1,
                Step::Stage2,
                Step::Export,
                Step::PostProcess
            ],
            "{name}"
        );
        let t = seg.timings;
        assert!(
            [
                t.preprocess_s,
                t.stage1_s,
                t.stage2_s,
                t.export_s,
                t.postprocess_s
            ]
            .iter()
            .all(|s| s.is_finite() && *s >= 0.0)
        );
    }
}

#[test]
fn the_same_scan_stored_in_another_orientation_gives_the_same_labels() {
    // The networks see RAS-ordered arrays whatever the storage order, so an LPS copy of a
    // scan (same voxels in the world) must get the same labels, voxel for voxel in the world.
    let ctx = Ctx::new();
    let model = tiny_model();
    let g = grids()[0].1;
    let img = phantom_hu(&g);
    let flipped = img.reorient([1, 0, 2], [true, true, false]).unwrap();
    let opts = SegmentOptions::default();
    let a = segment(&ctx, &model, &img, &opts, &mut |_| {})
        .unwrap()
        .labels;
    let b = segment(&ctx, &model, &flipped, &opts, &mut |_| {})
        .unwrap()
        .labels;
    let a_in_b = a.reorient([1, 0, 2], [true, true, false]).unwrap();
    assert_eq!(a_in_b.geometry(), b.geometry());
    let differ = a_in_b
        .data()
        .iter()
        .zip(b.data())
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        a.data().iter().any(|&l| l > 0),
        "a test with no label proves nothing"
    );
    // Rounding in the two grids' affines may flip an exact tie, no more.
    assert!(differ * 1000 <= a.data().len(), "{differ} voxels differ");
}

#[test]
fn no_organ_from_stage_1_gives_an_empty_map_and_a_note() {
    // Stage 1's head biased hard towards background.
    let s1 = edit_tensor(tiny_stage(1, [8, 16, 16]), "head.bias", |b| b[0] = 1e4);
    let model = Model::from_parts(s1, tiny_stage(2, [8, 12, 16]), plan()).unwrap();
    let g = grids()[1].1;
    let img = phantom_hu(&g);
    let mut steps = Vec::new();
    let seg = segment(
        &Ctx::new(),
        &model,
        &img,
        &SegmentOptions::default(),
        &mut |s| steps.push(s),
    )
    .unwrap();
    assert_eq!(seg.labels.geometry(), &g);
    assert!(seg.labels.data().iter().all(|&l| l == 0));
    assert_eq!(seg.roi, None);
    assert!(
        seg.notes
            .iter()
            .any(|n| n.contains("stage 1 found no organ")),
        "{:?}",
        seg.notes
    );
    assert_eq!(steps, [Step::Preprocess, Step::Stage1]);
}

#[test]
fn stage_2_everywhere_liver_fills_the_region_exactly() {
    // Stage 2's head biased to liver: every voxel of the region (and only those) is liver, so
    // the region is where the export put it, and post-processing keeps the one block.
    let s2 = edit_tensor(tiny_stage(2, [8, 12, 16]), "head.bias", |b| b[1] = 1e4);
    let model = Model::from_parts(tiny_stage(1, [8, 16, 16]), s2, plan()).unwrap();
    for (name, g) in grids() {
        let img = phantom_hu(&g);
        let seg = segment(
            &Ctx::new(),
            &model,
            &img,
            &SegmentOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        let roi = seg.roi.unwrap();
        let liver = seg.labels.data().iter().filter(|&&l| l == 1).count();
        let [a, b, c] = roi.shape();
        assert_eq!(liver, a * b * c, "{name}: {roi:?}");
        let ml = organ_volumes_ml(&seg.labels, &flare_labels::LabelSet::flare21());
        let want = (a * b * c) as f64 * g.voxel_volume_ml();
        assert!(
            (ml[0] - want).abs() < 1e-9 && ml[1..] == [0.0; 3],
            "{name}: {ml:?}"
        );
    }
}

#[test]
fn organ_volumes_in_millilitres() {
    let g = Geometry::axis_aligned([10, 10, 4], [0.5, 0.8, 2.5], [0.0; 3]).unwrap();
    let mut labels = Volume::filled(g, 0u8);
    // 1 mL voxels would be 1000 mm^3; here a voxel is 1 mm^3 = 0.001 mL.
    for (n, l) in labels.data_mut().iter_mut().enumerate() {
        *l = match n % 10 {
            0..=3 => 1,
            4 => 2,
            5 | 6 => 3,
            7 => 4,
            _ => 0,
        };
    }
    let v = organ_volumes_ml(&labels, &flare_labels::LabelSet::flare21());
    let expect = [160.0, 40.0, 80.0, 40.0].map(|n| n * 0.001);
    for o in 0..4 {
        assert!((v[o] - expect[o]).abs() < 1e-12, "{v:?}");
    }
}
