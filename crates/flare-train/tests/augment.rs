//! Augmentation and sampling: equality with plain resampling, the geometry of known
//! transforms, label values, organ-balanced centres and determinism.

mod common;

use std::sync::Arc;

use common::phantom;
use flare_imgproc::{LabelInterp, resample_labels, resample_linear};
use flare_train::{
    AugmentConfig, Cache, CachedCase, Crop, Dataset, PreprocessConfig, SampleConfig, Sampler,
    preprocess_volumes, sample_into,
};
use flare_volume::{Geometry, Volume};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn case(shape: [usize; 3], spacing: [f64; 3]) -> CachedCase {
    let g = Geometry::axis_aligned(shape, spacing, [3.0, -7.0, 11.0]).unwrap();
    let (img, lab) = phantom(g);
    preprocess_volumes("p", img, lab, &PreprocessConfig::default()).unwrap()
}

fn plain(grid_dhw: [usize; 3], crop: Crop) -> SampleConfig {
    SampleConfig {
        grid_dhw,
        crop,
        augment: AugmentConfig::none(),
        foreground_p: 0.0,
        intensity_range: [0.0, 1.0],
    }
}

/// A region crop with no jitter: `margin` per side, `fraction` of the region.
fn roi(margin: f64, fraction: f64) -> Crop {
    Crop::Roi {
        margin,
        fraction,
        jitter: 0.0,
        organs: Vec::new(),
    }
}

fn draw(c: &CachedCase, cfg: &SampleConfig, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let n: usize = cfg.grid_dhw.iter().product();
    let (mut img, mut lab) = (vec![0.0; n], vec![0; n]);
    sample_into(
        c,
        cfg,
        &mut ChaCha8Rng::seed_from_u64(seed),
        &mut img,
        &mut lab,
    )
    .unwrap();
    (img, lab)
}

#[test]
fn no_augmentation_equals_plain_resampling() {
    let c = case([20, 17, 11], [1.6, 1.6, 3.0]);
    // Output (i, j, k) = (12, 10, 7): ratios 5/3, 17/10, 11/7 put no target centre on a
    // half-way point, where nearest neighbour would be a tie.
    let cfg = plain(
        [7, 10, 12],
        Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
    );
    let (img, lab) = draw(&c, &cfg, 1);
    let target = c.meta().geometry().unwrap().resized([12, 10, 7]).unwrap();
    let want_img = resample_linear(&c.image_volume().unwrap(), &target, 0.0).unwrap();
    let want_lab =
        resample_labels(&c.label_volume().unwrap(), &target, LabelInterp::Nearest).unwrap();
    let max_diff = img
        .iter()
        .zip(want_img.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-5, "max diff {max_diff}");
    assert_eq!(lab, want_lab.data());
    assert!(lab.contains(&4), "pancreas survives the resampling");
}

fn centroid(lab: &[u8], shape: [usize; 3], label: u8) -> [f64; 3] {
    let (mut s, mut n) = ([0.0; 3], 0.0);
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                if lab[i + shape[0] * (j + shape[1] * k)] == label {
                    for (a, v) in [i, j, k].into_iter().enumerate() {
                        s[a] += v as f64;
                    }
                    n += 1.0;
                }
            }
        }
    }
    assert!(n > 0.0, "label {label} absent");
    s.map(|x| x / n)
}

#[test]
fn known_rotation_and_scaling_move_the_centroid_as_computed() {
    // Isotropic voxels, output grid = source grid, one sphere.
    let n = 40;
    let g = Geometry::axis_aligned([n; 3], [1.0; 3], [0.0; 3]).unwrap();
    let ball = [26.0, 14.0, 22.0];
    let img = Volume::filled(g, 0.0f32);
    let mut lab = Volume::filled(g, 0u8);
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                let d2: f64 = [i, j, k]
                    .iter()
                    .zip(ball)
                    .map(|(&v, c)| (v as f64 - c).powi(2))
                    .sum();
                if d2 <= 16.0 {
                    lab.data_mut()[g.linear_index([i, j, k])] = 1;
                }
            }
        }
    }
    let c = preprocess_volumes("ball", img, lab, &PreprocessConfig::default()).unwrap();
    let theta: f64 = 12.0;
    let scale = [1.2, 0.8, 1.0];
    let mut cfg = plain(
        [n; 3],
        Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
    );
    cfg.augment.p_rotate = 1.0;
    cfg.augment.rotate_deg = [[0.0; 2], [0.0; 2], [theta, theta]];
    cfg.augment.p_scale = 1.0;
    cfg.augment.scale = scale.map(|s| [s, s]);
    let (_, out) = draw(&c, &cfg, 3);
    // The map takes an output offset u (from the grid centre) to the source offset
    // R(theta) diag(1/scale) u, R rotating i toward j. So a source offset q appears at
    // u = diag(scale) R(theta)^T q.
    let mid = (n as f64 - 1.0) / 2.0;
    let q = ball.map(|b| b - mid);
    let (s, co) = theta.to_radians().sin_cos();
    let rt_q = [co * q[0] + s * q[1], -s * q[0] + co * q[1], q[2]];
    let want = [0, 1, 2].map(|a| mid + scale[a] * rt_q[a]);
    let got = centroid(&out, [n; 3], 1);
    for a in 0..3 {
        assert!(
            (got[a] - want[a]).abs() < 0.25,
            "axis {a}: {got:?} vs {want:?}"
        );
    }
    // The ball's volume scales with the product of the scales (1.2 * 0.8 = 0.96).
    let before = c.labels().iter().filter(|&&l| l == 1).count() as f64;
    let after = out.iter().filter(|&&l| l == 1).count() as f64;
    assert!((after / before - 0.96).abs() < 0.08, "{after} / {before}");
}

#[test]
fn rotation_acts_in_millimetres() {
    // 2 mm slices: a 90 degree rotation about i swaps j and k extents in mm, not in voxels.
    let g = Geometry::axis_aligned([10, 40, 20], [1.0, 1.0, 2.0], [0.0; 3]).unwrap();
    let img = Volume::filled(g, 0.0f32);
    let mut lab = Volume::filled(g, 0u8);
    // A voxel line along j at 10 mm from the centre of j, in the middle slice.
    for j in 0..40 {
        lab.data_mut()[g.linear_index([5, j, 10])] = if j == 29 { 2 } else { 1 };
    }
    let c = preprocess_volumes("line", img, lab, &PreprocessConfig::default()).unwrap();
    let mut cfg = plain(
        [20, 40, 10],
        Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
    );
    cfg.augment.p_rotate = 1.0;
    cfg.augment.rotate_deg = [[90.0, 90.0], [0.0; 2], [0.0; 2]];
    let (_, out) = draw(&c, &cfg, 0);
    // Source offset (j, k) in mm = R(90) (j, k) output offset in mm: j_src = -k_out, k_src = j_out.
    // The marked voxel (j offset 9.5 mm, k offset 0.5 mm) appears at j_out offset 0.5 mm and
    // k_out offset -9.5 mm, i.e. j_out = 19.5 + 0.5 = 20 and k_out = 9.5 - 4.75 = 4.75.
    let got = centroid(&out, [10, 40, 20], 2);
    assert!(
        (got[1] - 20.0).abs() < 0.6 && (got[2] - 4.75).abs() < 0.6,
        "{got:?}"
    );
}

#[test]
fn heavy_augmentation_keeps_labels_and_values_sane() {
    let c = case([24, 22, 14], [1.6, 1.6, 3.0]);
    let mut cfg = SampleConfig::whole_scan([8, 16, 16]);
    let a = &mut cfg.augment;
    (a.p_rotate, a.p_scale, a.p_elastic, a.p_low_res) = (1.0, 1.0, 1.0, 1.0);
    (a.p_blur, a.p_gamma, a.p_contrast, a.p_noise) = (1.0, 1.0, 1.0, 1.0);
    a.elastic_sigma = 3.0;
    let plain_cfg = SampleConfig {
        augment: AugmentConfig::none(),
        ..cfg.clone()
    };
    let mut changed = 0;
    for seed in 0..10 {
        let (img, lab) = draw(&c, &cfg, seed);
        assert!(lab.iter().all(|&l| l <= 4));
        assert!(
            img.iter()
                .all(|v| v.is_finite() && (-1.0..=2.0).contains(v))
        );
        let (pimg, _) = draw(&c, &plain_cfg, seed);
        changed += usize::from(pimg != img);
    }
    assert_eq!(changed, 10);
    // Intensity range mapping: [0, 1] onto [-1, 1].
    let mut cfg = plain(
        [8, 16, 16],
        Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
    );
    let (u, _) = draw(&c, &cfg, 0);
    cfg.intensity_range = [-1.0, 1.0];
    let (v, _) = draw(&c, &cfg, 0);
    assert!(
        u.iter()
            .zip(&v)
            .all(|(a, b)| (2.0 * a - 1.0 - b).abs() < 1e-6)
    );
}

#[test]
fn elastic_field_is_smooth_and_small() {
    // A ramp along i: the elastic field moves values by at most a few output voxels' worth,
    // and neighbouring voxels move together (no tearing).
    let g = Geometry::axis_aligned([32, 32, 32], [1.0; 3], [0.0; 3]).unwrap();
    let img = Volume::new(
        g,
        (0..32 * 32 * 32)
            .map(|n| -125.0 + 12.5 * (n % 32) as f32)
            .collect(),
    )
    .unwrap();
    let lab = Volume::filled(g, 0u8);
    let c = preprocess_volumes("ramp", img, lab, &PreprocessConfig::default()).unwrap();
    let mut cfg = plain(
        [32, 32, 32],
        Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
    );
    cfg.augment.p_elastic = 1.0;
    cfg.augment.elastic_sigma = 1.0;
    let (out, _) = draw(&c, &cfg, 11);
    let step = 12.5 / 400.0; // one voxel of the ramp, in [0, 1] units
    let mut moved = 0.0f32;
    // Away from the borders, where the field may pull in the (empty) outside.
    for k in 5..27 {
        for j in 5..27 {
            for i in 5..26 {
                let v = out[i + 32 * (j + 32 * k)];
                moved = moved.max(((v / step) - i as f32).abs());
                let d = out[i + 1 + 32 * (j + 32 * k)] - v;
                assert!(
                    d > 0.3 * step && d < 2.0 * step,
                    "gradient {d} at {i},{j},{k}"
                );
            }
        }
    }
    assert!(
        moved > 0.2 && moved < 5.0,
        "largest displacement {moved} voxels"
    );
}

#[test]
fn organ_centred_patches_see_every_organ_alike() {
    let c = case([40, 36, 24], [1.6, 1.6, 3.0]);
    let mut cfg = plain([9, 9, 9], roi(0.0, 0.3));
    cfg.foreground_p = 1.0;
    let mut seen = [0usize; 5];
    for seed in 0..200 {
        let (_, lab) = draw(&c, &cfg, seed);
        // The odd grid's centre voxel maps exactly to the chosen organ voxel.
        seen[lab[4 + 9 * (4 + 9 * 4)] as usize] += 1;
    }
    assert_eq!(seen[0], 0, "{seen:?}");
    // Organs are drawn uniformly, not by size (the liver is about 15x the pancreas here).
    for (o, &s) in seen.iter().enumerate().skip(1) {
        assert!((30..=70).contains(&s), "organ {o}: {seen:?}");
    }
}

#[test]
fn whole_scan_z_window_shows_part_of_the_scan() {
    // Label = slice index bucket, so the slices a sample shows are readable from its labels.
    let g = Geometry::axis_aligned([8, 8, 40], [1.0; 3], [0.0; 3]).unwrap();
    let img = Volume::filled(g, 0.0f32);
    let lab = Volume::new(
        g,
        (0..8 * 8 * 40).map(|n| ((n / 64) / 10 + 1) as u8).collect(),
    )
    .unwrap();
    let c = preprocess_volumes("z", img, lab, &PreprocessConfig::default()).unwrap();
    let cfg = plain(
        [20, 8, 8],
        Crop::WholeScan {
            z_fraction: [0.5, 0.5],
        },
    );
    let mut firsts = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let (_, out) = draw(&c, &cfg, seed);
        let labels: std::collections::BTreeSet<u8> = out.iter().copied().collect();
        // Half the scan (20 of 40 slices) spans 2 or 3 of the 4 buckets, never all 4.
        assert!((2..=3).contains(&labels.len()), "{labels:?}");
        firsts.insert(out[0]);
    }
    assert!(firsts.len() >= 2, "the window never moved: {firsts:?}");
}

#[test]
fn cut_field_of_view_pads_beyond_a_plane_through_the_organs() {
    // Soft tissue everywhere; organ 1 fills slices 10..30 of 40 (the middle 4 x 4 in-plane, so
    // that the margin reaches exactly the scan's sides). The region crop (margin 0.5)
    // on 20 output slices shows one source slice per output slice once the cut keeps half of
    // the organ: 5 padded slices (zero image, background) on the cut side, directly against
    // the organ, and 5 slices of tissue beyond its other end.
    let g = Geometry::axis_aligned([8, 8, 40], [1.0; 3], [0.0; 3]).unwrap();
    let img = Volume::filled(g, 100.0f32);
    let lab = Volume::new(
        g,
        (0..8 * 8 * 40)
            .map(|n| {
                let (i, j, k) = (n % 8, n / 8 % 8, n / 64);
                u8::from((10..30).contains(&k) && (2..6).contains(&i) && (2..6).contains(&j))
            })
            .collect(),
    )
    .unwrap();
    let c = preprocess_volumes("cut", img, lab, &PreprocessConfig::default()).unwrap();
    let mut cfg = plain([20, 8, 8], roi(0.5, 1.0));
    // Without the cut: the whole 40 slices, no padding.
    let (out, _) = draw(&c, &cfg, 0);
    let low = out.iter().copied().fold(f32::MAX, f32::min);
    assert!(low > 0.5, "padding without a cut: {low} {:?}", &out[..8]);
    cfg.augment.p_cut_z = 1.0;
    cfg.augment.cut_keep = [0.5, 0.5];
    let mut sides = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let (img, lab) = draw(&c, &cfg, seed);
        let slice = |d: usize| (&img[d * 64..][..64], &lab[d * 64..][..64]);
        let kind = |d: usize| {
            let (i, l) = slice(d);
            if i.iter().all(|&v| v == 0.0) && l.iter().all(|&v| v == 0) {
                'P' // padded: beyond the cut
            } else if i.iter().all(|&v| v > 0.5) && l.contains(&1) {
                'O'
            } else if i.iter().all(|&v| v > 0.5) && l.iter().all(|&v| v == 0) {
                'T'
            } else {
                '?'
            }
        };
        let seen: String = (0..20).map(kind).collect();
        assert!(
            seen == "PPPPPOOOOOOOOOOTTTTT" || seen == "TTTTTOOOOOOOOOOPPPPP",
            "seed {seed}: {seen}"
        );
        sides.insert(seen);
    }
    assert_eq!(sides.len(), 2, "the cut was always on the same side");
}

#[test]
fn organ_shift_moves_an_organ_alone_with_a_soft_edge() {
    // Soft tissue (100 HU) everywhere, a kidney cube of 12^3 in the middle of 24^3: the region
    // crop (margin 0.5) shows the scan one voxel per voxel.
    let n = 24;
    let g = Geometry::axis_aligned([n, n, n], [1.0; 3], [0.0; 3]).unwrap();
    let inside = |v: usize| (6..18).contains(&v);
    let lab = Volume::new(
        g,
        (0..n * n * n)
            .map(|v| 2 * u8::from(inside(v % n) && inside(v / n % n) && inside(v / (n * n))))
            .collect(),
    )
    .unwrap();
    let img = Volume::filled(g, 100.0f32);
    let c = preprocess_volumes("shift", img, lab.clone(), &PreprocessConfig::default()).unwrap();
    let mut cfg = plain([n, n, n], roi(0.5, 1.0));
    let (plain_img, plain_lab) = draw(&c, &cfg, 3);
    assert_eq!(plain_lab, lab.data());
    cfg.augment.p_organ_shift = 1.0;
    cfg.augment.organ_shift = [-0.25, -0.25];
    let (img, out_lab) = draw(&c, &cfg, 3);
    assert_eq!(out_lab, plain_lab, "the labels moved");
    let v0 = (100.0 + 125.0) / 400.0;
    // Distance (in voxels, per axis) from the cube's boundary: > 3 inside or outside is
    // beyond the blur's reach.
    let depth = |v: usize| -> i64 {
        [v % n, v / n % n, v / (n * n)]
            .iter()
            .map(|&x| {
                let x = x as i64;
                (x - 6).min(17 - x)
            })
            .min()
            .unwrap()
    };
    for (v, (&a, &b)) in img.iter().zip(&plain_img).enumerate() {
        assert!((b - v0).abs() < 1e-3, "plain sample at {v}: {b}");
        let d = depth(v);
        if d >= 3 {
            assert!((a - (v0 - 0.25)).abs() < 1e-3, "organ interior at {v}: {a}");
        } else if d <= -4 {
            assert!((a - v0).abs() < 1e-3, "far background at {v}: {a}");
        } else {
            assert!(a > v0 - 0.25 - 1e-3 && a < v0 + 1e-3, "edge at {v}: {a}");
        }
    }
}

#[test]
fn batches_are_pure_functions_of_seed_and_step() {
    let t = flare_testkit::TempDir::new("train-sampler");
    for n in ["a", "b", "c"] {
        common::write_case(t.path(), n, [24, 20, 12]);
    }
    let d = Dataset::open(t.path()).unwrap();
    let (cache, _) = Cache::build(&d, &PreprocessConfig::default(), t.join("cache")).unwrap();
    let cache = Arc::new(cache);
    let cfg = SampleConfig::whole_scan([8, 12, 12]);
    let mut s = Sampler::new(cache.clone(), cfg.clone(), 3, 42).unwrap();
    let b0 = s.next_batch().unwrap();
    let b1 = s.next_batch().unwrap();
    assert_eq!((b0.step, b1.step), (0, 1));
    assert_eq!(b0.image.len(), 3 * 8 * 12 * 12);
    assert_eq!(b0.labels.len(), 3 * 8 * 12 * 12);
    assert_ne!(b0.image, b1.image);
    // Same seed and step: identical bytes, whatever came before and whatever the threads.
    let fresh = Sampler::new(cache.clone(), cfg.clone(), 3, 42).unwrap();
    let again = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| fresh.batch(1).unwrap());
    assert_eq!(again, b1);
    let bits = |b: &flare_train::Batch| b.image.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&again), bits(&b1));
    // Resume from a saved state continues exactly.
    let state = s.state();
    let json = serde_json::to_string(&state).unwrap();
    let b2 = s.next_batch().unwrap();
    let mut resumed = Sampler::new(cache.clone(), cfg.clone(), 3, 0).unwrap();
    resumed.restore(serde_json::from_str(&json).unwrap());
    assert_eq!(resumed.next_batch().unwrap(), b2);
    // Another seed: different samples.
    let other = Sampler::new(cache, cfg, 3, 43).unwrap();
    assert_ne!(other.batch(1).unwrap().image, b1.image);
}

#[test]
fn bad_configs_are_refused() {
    let c = case([8, 8, 6], [1.0; 3]);
    let mut cfg = SampleConfig::whole_scan([4, 4, 4]);
    cfg.augment.elastic_points = 1;
    let (mut img, mut lab) = (vec![0.0; 64], vec![0; 64]);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(sample_into(&c, &cfg, &mut rng, &mut img, &mut lab).is_err());
    let cfg = SampleConfig::whole_scan([4, 4, 4]);
    assert!(sample_into(&c, &cfg, &mut rng, &mut img[..63], &mut lab).is_err());
    let mut cfg = SampleConfig::roi([4, 4, 4]);
    cfg.augment.scale[1] = [1.2, 0.9];
    assert!(sample_into(&c, &cfg, &mut rng, &mut img, &mut lab).is_err());
}

#[test]
fn btcv_case_gives_organ_samples_when_present() {
    let Some(shared) = flare_testkit::shared_dir("btcv_case_gives_organ_samples_when_present")
    else {
        return;
    };
    let d = Dataset::open(shared.join("data/btcv")).unwrap();
    let one = d.subset(&[d.cases()[0].name.clone()]).unwrap();
    let t = flare_testkit::TempDir::new("train-btcv");
    let cfg = PreprocessConfig {
        max_shape: Some([128, 128, 128]),
        ..PreprocessConfig::default()
    };
    let (cache, _) = Cache::build(&one, &cfg, t.path()).unwrap();
    let c = &cache.cases()[0];
    // BTCV has all four organs in every case.
    assert!(c.meta().organ_boxes.iter().all(Option::is_some));
    let mut s = Sampler::new(
        Arc::new(cache.clone()),
        SampleConfig::roi([16, 32, 32]),
        2,
        1,
    )
    .unwrap();
    let b = s.next_batch().unwrap();
    for organ in 1..=4u8 {
        assert!(
            b.labels.contains(&organ),
            "organ {organ} missing from the ROI batch"
        );
    }
}

#[test]
fn gamma_and_noise_follow_their_formulas() {
    // Values from 0 to 1, dense near 0 where x^gamma is steepest.
    let g = Geometry::axis_aligned([16, 16, 8], [1.0; 3], [0.0; 3]).unwrap();
    let ramp = (0..2048)
        .map(|n| -125.0 + 400.0 * (n as f32 / 2047.0).powi(3))
        .collect();
    let img = Volume::new(g, ramp).unwrap();
    let c = preprocess_volumes(
        "ramp",
        img,
        Volume::filled(g, 0u8),
        &PreprocessConfig::default(),
    )
    .unwrap();
    let base = plain(
        [8, 16, 16],
        Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
    );
    let (u, _) = draw(&c, &base, 0);
    assert!(u.iter().filter(|&&x| x > 0.0 && x < 1.0 / 4096.0).count() > 50);
    let mut g = base.clone();
    g.augment.p_gamma = 1.0;
    g.augment.gamma = [0.7, 0.7];
    let (v, _) = draw(&c, &g, 0);
    let worst = u
        .iter()
        .zip(&v)
        .map(|(a, b)| (a.clamp(0.0, 1.0).powf(0.7) - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "gamma error {worst}");
    let mut n = base.clone();
    n.augment.p_noise = 1.0;
    n.augment.noise_sigma = [0.05, 0.05];
    let (w, _) = draw(&c, &n, 0);
    let d: Vec<f64> = u.iter().zip(&w).map(|(a, b)| (b - a) as f64).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
    // 2048 draws: the mean within 4 standard errors, the spread within 8%.
    assert!(
        mean.abs() < 4.0 * 0.05 / (d.len() as f64).sqrt(),
        "noise mean {mean}"
    );
    assert!((sd / 0.05 - 1.0).abs() < 0.08, "noise sd {sd}");
}

/// A region crop of one organ (a refinement stage's region, `organs: [4]`) with no margin is
/// that organ's bounding box: the organ reaches every face of the sample, and the region of
/// all organs is larger (the pancreas then misses faces).
#[test]
fn organ_region_crop_is_that_organs_box() {
    let c = case([40, 36, 24], [1.6, 1.6, 3.0]);
    let b = c.meta().region_box(&[4]).unwrap();
    assert_eq!(Some(b), c.meta().organ_boxes[3]);
    assert_eq!(c.meta().region_box(&[]), c.meta().union_box());
    let faces_with_pancreas = |organs: Vec<u8>| {
        let crop = Crop::Roi {
            margin: 0.0,
            fraction: 1.0,
            jitter: 0.0,
            organs,
        };
        let cfg = plain([8, 8, 8], crop);
        let (_, lab) = draw(&c, &cfg, 0);
        let at = |i: usize, j: usize, k: usize| lab[i + 8 * (j + 8 * k)] == 4;
        let mut faces = 0;
        for axis in 0..3 {
            for side in [0, 7] {
                let mut hit = false;
                for u in 0..8 {
                    for v in 0..8 {
                        let p = match axis {
                            0 => [side, u, v],
                            1 => [u, side, v],
                            _ => [u, v, side],
                        };
                        hit |= at(p[0], p[1], p[2]);
                    }
                }
                faces += hit as usize;
            }
        }
        faces
    };
    assert_eq!(faces_with_pancreas(vec![4]), 6);
    assert!(faces_with_pancreas(vec![]) < 6);
    // Label values outside 1..=4 are refused.
    let mut cfg = plain([8, 8, 8], roi(0.1, 1.0));
    cfg.crop = Crop::Roi {
        margin: 0.1,
        fraction: 1.0,
        jitter: 0.0,
        organs: vec![5],
    };
    assert!(cfg.validate().is_err());
}

#[test]
fn mirroring_an_axis_reverses_the_sample_along_it() {
    let c = case([20, 17, 11], [1.6, 1.6, 3.0]);
    let whole = Crop::WholeScan {
        z_fraction: [1.0, 1.0],
    };
    let cfg = plain([7, 10, 12], whole);
    let (nx, ny, nz) = (12, 10, 7);
    let (img, lab) = draw(&c, &cfg, 1);
    for axis in 0..3 {
        let mut m = cfg.clone();
        m.augment.p_mirror[axis] = 1.0;
        let (mimg, mlab) = draw(&c, &m, 1);
        let mut worst = 0.0f32;
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let mut src = [i, j, k];
                    src[axis] = [nx, ny, nz][axis] - 1 - src[axis];
                    let at = |[i, j, k]: [usize; 3]| (k * ny + j) * nx + i;
                    worst = worst.max((mimg[at([i, j, k])] - img[at(src)]).abs());
                    assert_eq!(mlab[at([i, j, k])], lab[at(src)], "axis {axis}");
                }
            }
        }
        assert!(worst < 1e-5, "axis {axis}: image differs by {worst}");
        assert_ne!(
            mlab, lab,
            "axis {axis}: the phantom is not symmetric, so labels move"
        );
    }
}
