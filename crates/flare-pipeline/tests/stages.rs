//! The pieces `segment` and training's validation share: intensity mapping, region boxes and
//! the network grids built from them.

use flare_model::{ModelCard, UNetConfig, card::Normalisation};
use flare_pipeline::stages::{
    IndexBox, Intensity, network_input, ras_canonical, region_grid, whole_scan_grid,
};
use flare_volume::{Geometry, Roi, Volume};

fn lps() -> Geometry {
    Geometry::new(
        [20, 16, 10],
        [0.8, 0.9, 3.0],
        [30.0, 20.0, -10.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
    .unwrap()
}

fn close(a: [f64; 3], b: [f64; 3]) -> bool {
    (0..3).all(|d| (a[d] - b[d]).abs() < 1e-9)
}

#[test]
fn intensity_follows_the_card() {
    let mut card = ModelCard::untrained(UNetConfig::standard(1, 5, &[4, 8]));
    let i = Intensity::from_card(&card, 1).unwrap();
    assert_eq!(i.apply(-125.0), 0.0);
    assert_eq!(i.apply(275.0), 1.0);
    assert_eq!(i.apply(-1000.0), 0.0);
    assert_eq!(i.apply(3000.0), 1.0);
    assert!((i.apply(75.0) - 0.5).abs() < 1e-6);
    assert_eq!(
        i.apply(f32::NAN),
        0.0,
        "NaN reads as the bottom of the window"
    );
    assert_eq!(i.fill(), 0.0);
    card.preprocessing.normalisation = Normalisation::ZScore {
        mean: 50.0,
        std: 100.0,
    };
    let z = Intensity::from_card(&card, 1).unwrap();
    assert!((z.apply(150.0) - 1.0).abs() < 1e-6);
    assert!(
        (z.apply(-500.0) - -1.75).abs() < 1e-6,
        "clipped to -125 first"
    );
    let r = Intensity::unit_to_range([-1.0, 1.0]);
    assert_eq!((r.apply(0.0), r.apply(0.5), r.apply(1.0)), (-1.0, 0.0, 1.0));
}

#[test]
fn boxes_map_to_voxels_and_grow_by_their_size() {
    let b = IndexBox::of_voxels([2, 3, 1], [6, 9, 4]);
    assert_eq!(
        b.voxels([20, 16, 10]),
        Some(Roi::new([2, 3, 1], [6, 9, 4]).unwrap())
    );
    let g = b.grown(0.25);
    assert_eq!(g.lo, [0.5, 1.0, -0.25]);
    assert_eq!(g.hi, [6.5, 10.0, 4.25]);
    // Centres inside the grown box, clamped to the grid.
    assert_eq!(
        g.voxels([6, 16, 10]),
        Some(Roi::new([1, 1, 0], [6, 11, 5]).unwrap())
    );
    assert_eq!(
        IndexBox::of_voxels([30, 0, 0], [32, 1, 1]).voxels([20, 16, 10]),
        None
    );
    // Through another grid of the same voxels (reoriented): the same world box.
    let src = lps();
    let ras = ras_canonical(&src).unwrap();
    assert_eq!(ras.orientation().to_string(), "RAS");
    let m = b.mapped(&src, &ras);
    let back = m.mapped(&ras, &src);
    assert!(close(back.lo, b.lo) && close(back.hi, b.hi), "{back:?}");
}

#[test]
fn network_grids_are_ras_and_cover_their_region_exactly() {
    let scan = lps();
    let whole = whole_scan_grid(&scan, [5, 8, 10]).unwrap();
    assert_eq!(whole.shape(), [10, 8, 5]);
    assert_eq!(whole.orientation().to_string(), "RAS");
    // The whole-scan grid's outer faces are the scan's.
    let region = IndexBox::of_voxels([0; 3], scan.shape());
    let g = region_grid(&scan, &region, [5, 8, 10]).unwrap();
    assert!(g.same_grid(&whole, 1e-9), "{g:?} vs {whole:?}");
    // A region partly outside the scan: the grid's outer faces are the box's corners.
    let b = IndexBox::of_voxels([4, 2, 3], [12, 15, 10]).grown(0.2);
    let g = region_grid(&scan, &b, [4, 6, 8]).unwrap();
    let face_lo = g.index_to_world([-0.5; 3]);
    let face_hi = g.index_to_world([7.5, 5.5, 3.5]);
    let corner = |p: [f64; 3]| scan.index_to_world(p);
    // RAS x runs against the LPS scan's i, y against j; z along k.
    assert!(
        close(face_lo, corner([b.hi[0], b.hi[1], b.lo[2]])),
        "{face_lo:?}"
    );
    assert!(
        close(face_hi, corner([b.lo[0], b.lo[1], b.hi[2]])),
        "{face_hi:?}"
    );
}

#[test]
fn input_is_windowed_before_it_is_interpolated() {
    // Two voxels, 0 HU and 3000 HU; the network grid puts a sample half way between them.
    let g = Geometry::axis_aligned([2, 1, 1], [1.0; 3], [0.0; 3]).unwrap();
    let img = Volume::new(g, vec![0.0, 3000.0]).unwrap();
    let mid = Geometry::axis_aligned([1, 1, 1], [1.0; 3], [0.5, 0.0, 0.0]).unwrap();
    let card = ModelCard::untrained(UNetConfig::standard(1, 5, &[4, 8]));
    let i = Intensity::from_card(&card, 1).unwrap();
    let x = network_input(&img, &mid, &i).unwrap();
    // Window first: (0.3125 + 1) / 2. Interpolating first would give the window's top, 1.
    assert!((x.data()[0] - 0.65625).abs() < 1e-6, "{}", x.data()[0]);
    // Outside the scan: the bottom of the window.
    let out = Geometry::axis_aligned([1, 1, 1], [1.0; 3], [5.0, 0.0, 0.0]).unwrap();
    assert_eq!(network_input(&img, &out, &i).unwrap().data(), &[0.0]);
}

/// Test-time mirroring over all three axes makes the output mirror-equivariant (a mirrored
/// input gives the mirrored output), which a single pass of a random network is not; no axes
/// is the plain pass; outputs are log-probabilities.
#[test]
fn mirrored_inference_is_equivariant_and_averages_probabilities() {
    use flare_engine::{Ctx, Shape5, Tensor, flip_spatial};
    use flare_model::UNet;
    use flare_pipeline::stages::infer_averaged;
    let ctx = Ctx::new();
    let net = UNet::init(&UNetConfig::standard(1, 5, &[4, 8]), 7).unwrap();
    let s = Shape5::new(1, 4, 6, 8, 1);
    let x = Tensor::from_vec(
        s,
        (0..s.len())
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect(),
    )
    .unwrap();
    let plain = net.infer(&ctx, x.clone()).unwrap().0;
    assert_eq!(
        infer_averaged(&ctx, &net, &[], x.clone(), &[]).unwrap(),
        plain
    );

    let max_diff = |a: &Tensor, b: &Tensor| {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    for axes in [[true, false, false], [false, true, true]] {
        let flipped_in = flip_spatial(&ctx, &x, axes).unwrap();
        // One pass: not equivariant (the test below could fail).
        let one =
            flip_spatial(&ctx, &net.infer(&ctx, flipped_in.clone()).unwrap().0, axes).unwrap();
        assert!(max_diff(&one, &plain) > 1e-3);
        // Mirrored over all axes: equivariant up to the order of the sum.
        let tta = infer_averaged(&ctx, &net, &[], x.clone(), &[0, 1, 2]).unwrap();
        let tta_flipped = flip_spatial(
            &ctx,
            &infer_averaged(&ctx, &net, &[], flipped_in, &[0, 1, 2]).unwrap(),
            axes,
        )
        .unwrap();
        assert!(max_diff(&tta, &tta_flipped) < 1e-5, "axes {axes:?}");
        // Log-probabilities: each voxel's exponentials sum to 1.
        for v in tta.data().chunks_exact(5) {
            let total: f32 = v.iter().map(|l| l.exp()).sum();
            assert!((total - 1.0).abs() < 1e-5, "{total}");
        }
    }
}

/// A stage-2 ensemble returns the log of the mean of its networks' probabilities, computed
/// here independently (softmax in f64 of each network's plain logits); member order does not
/// matter beyond rounding, and with mirroring each network contributes all its passes.
#[test]
fn an_ensemble_averages_its_networks_probabilities() {
    use flare_engine::{Ctx, Shape5, Tensor};
    use flare_model::UNet;
    use flare_pipeline::stages::infer_averaged;
    let ctx = Ctx::new();
    let a = UNet::init(&UNetConfig::standard(1, 5, &[4, 8]), 7).unwrap();
    let b = UNet::init(&UNetConfig::standard(1, 5, &[6, 12]), 8).unwrap();
    let s = Shape5::new(1, 4, 6, 8, 1);
    let x = Tensor::from_vec(
        s,
        (0..s.len())
            .map(|i| ((i * 53) % 97) as f32 / 97.0)
            .collect(),
    )
    .unwrap();
    let softmax = |logits: &[f32]| -> Vec<f64> {
        logits
            .chunks_exact(5)
            .flat_map(|v| {
                let m = v.iter().fold(f32::MIN, |m, &q| m.max(q)) as f64;
                let e: Vec<f64> = v.iter().map(|&q| (q as f64 - m).exp()).collect();
                let t: f64 = e.iter().sum();
                e.into_iter().map(move |q| q / t)
            })
            .collect()
    };
    let pa = softmax(a.infer(&ctx, x.clone()).unwrap().0.data());
    let pb = softmax(b.infer(&ctx, x.clone()).unwrap().0.data());
    let ab = infer_averaged(&ctx, &a, &[&b], x.clone(), &[]).unwrap();
    let ba = infer_averaged(&ctx, &b, &[&a], x.clone(), &[]).unwrap();
    for ((&got, &other), (p, q)) in ab.data().iter().zip(ba.data()).zip(pa.iter().zip(&pb)) {
        let want = (p + q) / 2.0;
        assert!(
            ((got as f64).exp() - want).abs() < 1e-5,
            "{got} vs ln {want}"
        );
        assert!((got - other).abs() < 1e-5);
    }
    assert!(
        pa.iter().zip(&pb).any(|(p, q)| (p - q).abs() > 1e-2),
        "the nets differ"
    );
    // With mirroring: the mean of both networks' mirrored means (each 2 passes on one axis).
    let am = infer_averaged(&ctx, &a, &[], x.clone(), &[1]).unwrap();
    let bm = infer_averaged(&ctx, &b, &[], x.clone(), &[1]).unwrap();
    let both = infer_averaged(&ctx, &a, &[&b], x, &[1]).unwrap();
    for ((&g, &p), &q) in both.data().iter().zip(am.data()).zip(bm.data()) {
        let want = (p.exp() + q.exp()) / 2.0;
        assert!((g.exp() - want).abs() < 1e-5, "{g} vs ln {want}");
    }
}
