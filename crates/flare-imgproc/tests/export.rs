//! The lean export against a naive reference: every class resampled to the full target grid
//! with `resample_linear`, then the argmax. They must agree on every voxel except where the
//! reference's two best classes are within rounding of each other (the fast path blends the
//! axes in another order, so a near tie may flip).

use flare_imgproc::{argmax_on_grid, resample_linear};
use flare_volume::{Affine, Geometry, LabelMap, Roi, Volume};

/// A small deterministic generator (no dependency for a test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() * (hi - lo) as f64) as usize
    }
}

/// Smooth-ish random scores: a few blobs per class plus noise, so that the argmax has regions
/// and boundaries like a network's output.
fn scores(g: &Geometry, classes: usize, rng: &mut Lcg) -> Vec<f32> {
    let [nx, ny, nz] = g.shape();
    let centres: Vec<[f64; 3]> = (0..classes)
        .map(|_| [nx, ny, nz].map(|n| rng.range(0.0, n as f64)))
        .collect();
    let mut out = Vec::with_capacity(g.n_voxels() * classes);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                for c in centres.iter() {
                    let d2: f64 = [i, j, k]
                        .iter()
                        .zip(c)
                        .zip([nx, ny, nz])
                        .map(|((&p, &q), n)| ((p as f64 - q) / n as f64).powi(2))
                        .sum();
                    out.push((-4.0 * d2).exp() as f32 + 0.05 * rng.next() as f32);
                }
            }
        }
    }
    out
}

/// Per class `resample_linear` to the full target, argmax, background outside `roi`, and the
/// gap between the two best classes per voxel (infinite where the label is fixed).
fn naive(
    s: &[f32],
    classes: usize,
    source: &Geometry,
    target: &Geometry,
    roi: &Roi,
) -> (LabelMap, Vec<f32>) {
    let per_class: Vec<Volume<f32>> = (0..classes)
        .map(|c| {
            let v = Volume::new(
                *source,
                s.iter().skip(c).step_by(classes).copied().collect(),
            )
            .unwrap();
            // NaN fill marks "outside the source".
            resample_linear(&v, target, f32::NAN).unwrap()
        })
        .collect();
    let mut labels = Volume::filled(*target, 0u8);
    let mut gap = vec![f32::INFINITY; target.n_voxels()];
    let [nx, ny, nz] = target.shape();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if !roi.contains([i, j, k]) {
                    continue;
                }
                let n = target.linear_index([i, j, k]);
                let v: Vec<f32> = per_class.iter().map(|p| p.data()[n]).collect();
                if v[0].is_nan() {
                    continue;
                }
                let mut best = 0;
                for c in 1..classes {
                    if v[c] > v[best] {
                        best = c;
                    }
                }
                let second = (0..classes)
                    .filter(|&c| c != best)
                    .map(|c| v[c])
                    .fold(f32::NEG_INFINITY, f32::max);
                labels.data_mut()[n] = best as u8;
                gap[n] = v[best] - second;
            }
        }
    }
    (labels, gap)
}

fn random_rotation(rng: &mut Lcg, max_rad: f64) -> [[f64; 3]; 3] {
    let (a, b, c) = (
        rng.range(-max_rad, max_rad),
        rng.range(-max_rad, max_rad),
        rng.range(-max_rad, max_rad),
    );
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, a.cos(), -a.sin()],
        [0.0, a.sin(), a.cos()],
    ];
    let ry = [
        [b.cos(), 0.0, b.sin()],
        [0.0, 1.0, 0.0],
        [-b.sin(), 0.0, b.cos()],
    ];
    let rz = [
        [c.cos(), -c.sin(), 0.0],
        [c.sin(), c.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
        let mut m = [[0.0; 3]; 3];
        for r in 0..3 {
            for s in 0..3 {
                m[r][s] = (0..3).map(|t| p[r][t] * q[t][s]).sum();
            }
        }
        m
    };
    mul(rz, mul(ry, rx))
}

fn check(case: &str, source: &Geometry, target: &Geometry, roi: &Roi, rng: &mut Lcg) {
    let classes = 5;
    let s = scores(source, classes, rng);
    let lean = argmax_on_grid(&s, classes, source, target, roi).unwrap();
    assert_eq!(lean.geometry(), target, "{case}: output grid");
    let (reference, gap) = naive(&s, classes, source, target, roi);
    let mut differ = 0;
    for (n, (&a, &b)) in lean.data().iter().zip(reference.data()).enumerate() {
        if a != b {
            assert!(
                gap[n] < 1e-5,
                "{case}: voxel {n}: lean {a}, reference {b}, gap {}",
                gap[n]
            );
            differ += 1;
        }
    }
    let foreground = reference.data().iter().filter(|&&l| l > 0).count();
    assert!(
        foreground > 0,
        "{case}: a test with no foreground proves nothing"
    );
    assert!(
        differ <= target.n_voxels() / 1000,
        "{case}: {differ} near-tie flips"
    );
}

#[test]
fn agrees_with_per_class_resampling_on_random_grids() {
    let mut rng = Lcg(7);
    for trial in 0..12 {
        // A scan-like target with anisotropic voxels in a random orientation (oblique or not).
        let shape = [rng.int(20, 40), rng.int(18, 36), rng.int(8, 20)];
        let spacing = [
            rng.range(0.5, 1.2),
            rng.range(0.5, 1.2),
            rng.range(1.5, 4.0),
        ];
        let dir = random_rotation(&mut rng, if trial % 2 == 0 { 0.0 } else { 0.6 });
        let target = Geometry::new(shape, spacing, [10.0, -30.0, 55.0], dir).unwrap();
        let (axes, flips) = target.orientation().to_ras();
        // As the pipeline builds it: RAS-canonical, cropped to a region, resized (fast path).
        let roi = Roi::new(
            [rng.int(0, 6), rng.int(0, 6), rng.int(0, 3)],
            [
                shape[0] - rng.int(0, 6),
                shape[1] - rng.int(0, 6),
                shape[2] - rng.int(0, 3),
            ],
        )
        .unwrap();
        let small = [rng.int(6, 14), rng.int(6, 14), rng.int(5, 10)];
        let pipeline = target
            .crop(&roi)
            .unwrap()
            .reorient(axes, flips)
            .unwrap()
            .resized(small)
            .unwrap();
        check(
            &format!("trial {trial} (axes)"),
            &pipeline,
            &target,
            &roi,
            &mut rng,
        );
        // Any other source grid: rotated against the target, partly outside it (general path).
        let rot = random_rotation(&mut rng, 0.5);
        let mut lin = [[0.0; 4]; 3];
        for r in 0..3 {
            for c in 0..3 {
                lin[r][c] = (0..3).map(|t| rot[r][t] * dir[t][c]).sum::<f64>()
                    * spacing[c]
                    * rng.range(1.5, 3.0);
            }
            lin[r][3] = [10.0, -30.0, 55.0][r] + rng.range(-5.0, 5.0);
        }
        let oblique = Geometry::from_affine(small, &Affine::from_rows(lin)).unwrap();
        check(
            &format!("trial {trial} (oblique)"),
            &oblique,
            &target,
            &Roi::full(shape),
            &mut rng,
        );
    }
}

#[test]
fn outside_the_region_is_background_and_bad_input_is_refused() {
    let target = Geometry::axis_aligned([12, 10, 6], [1.0; 3], [0.0; 3]).unwrap();
    let source = target.resized([4, 4, 3]).unwrap();
    // Class 2 wins everywhere.
    let s: Vec<f32> = (0..source.n_voxels() * 3)
        .map(|n| if n % 3 == 2 { 1.0 } else { 0.0 })
        .collect();
    let roi = Roi::new([2, 3, 1], [5, 7, 4]).unwrap();
    let out = argmax_on_grid(&s, 3, &source, &target, &roi).unwrap();
    for k in 0..6 {
        for j in 0..10 {
            for i in 0..12 {
                let want = if roi.contains([i, j, k]) { 2 } else { 0 };
                assert_eq!(out.get([i, j, k]), Some(&want), "voxel {i} {j} {k}");
            }
        }
    }
    assert!(argmax_on_grid(&s[1..], 3, &source, &target, &roi).is_err());
    assert!(argmax_on_grid(&s, 0, &source, &target, &roi).is_err());
    let too_big = Roi::new([0, 0, 0], [13, 10, 6]).unwrap();
    assert!(argmax_on_grid(&s, 3, &source, &target, &too_big).is_err());
}
