//! Resampling: analytic cases, round trips through `Geometry::resized`, SciPy fixtures and a
//! live SimpleITK comparison.

use std::collections::HashMap;

use flare_imgproc::{ImgprocError, LabelInterp, resample_labels, resample_linear};
use flare_testkit::{TempDir, python_with, run_python};
use flare_volume::{Affine, Geometry, LabelMap, Volume};

fn oblique(shape: [usize; 3], spacing: [f64; 3], origin: [f64; 3], angle: f64) -> Geometry {
    let (c, s) = (angle.cos(), angle.sin());
    let (c2, s2) = ((0.7 * angle).cos(), (0.7 * angle).sin());
    // A rotation about z followed by one about x.
    let dir = [[c, -s * c2, s * s2], [s, c * c2, -c * s2], [0.0, s2, c2]];
    Geometry::new(shape, spacing, origin, dir).unwrap()
}

fn from_fn(g: Geometry, f: impl Fn([usize; 3]) -> f32) -> Volume<f32> {
    let [nx, ny, nz] = g.shape();
    let mut data = Vec::with_capacity(g.n_voxels());
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                data.push(f([i, j, k]));
            }
        }
    }
    Volume::new(g, data).unwrap()
}

fn voxels(g: &Geometry) -> impl Iterator<Item = [usize; 3]> + use<> {
    let [nx, ny, nz] = g.shape();
    (0..nz).flat_map(move |k| (0..ny).flat_map(move |j| (0..nx).map(move |i| [i, j, k])))
}

fn idx(ijk: [usize; 3]) -> [f64; 3] {
    ijk.map(|v| v as f64)
}

#[test]
fn identity_grid_returns_the_input() {
    let g = oblique([9, 8, 7], [0.7, 0.9, 2.5], [3.0, -4.0, 5.0], 0.4);
    let v = from_fn(g, |[i, j, k]| {
        ((i * 31 + j * 17 + k * 7) % 23) as f32 - 11.5
    });
    assert_eq!(resample_linear(&v, &g, -1.0).unwrap(), v);
    let labels = v.map(|x| (x.abs() as u8) % 5);
    for mode in [LabelInterp::Nearest, LabelInterp::Linear] {
        assert_eq!(resample_labels(&labels, &g, mode).unwrap(), labels);
    }
}

#[test]
fn linear_ramp_is_reproduced_on_an_oblique_grid() {
    let src = oblique([20, 18, 12], [0.8, 0.9, 2.0], [0.0; 3], 0.3);
    let ramp = |p: [f64; 3]| 2.0 * p[0] - 3.0 * p[1] + 0.5 * p[2] + 7.0;
    let v = from_fn(src, |ijk| ramp(idx(ijk)) as f32);
    let dst = oblique([15, 14, 16], [1.1, 0.6, 0.9], [2.0, 1.0, 3.0], -0.5);
    let out = resample_linear(&v, &dst, f32::NAN).unwrap();
    let (mut inside, mut outside) = (0, 0);
    for t in voxels(&dst) {
        let p = src.world_to_index(dst.index_to_world(idx(t)));
        let got = *out.get(t).unwrap();
        let hull = (0..3).all(|a| p[a] >= 0.0 && p[a] <= (src.shape()[a] - 1) as f64);
        let fov = (0..3).all(|a| p[a] >= -0.5 && p[a] <= src.shape()[a] as f64 - 0.5);
        if hull {
            inside += 1;
            assert!(
                (got as f64 - ramp(p)).abs() < 1e-4,
                "{t:?}: {got} vs {}",
                ramp(p)
            );
        } else if !fov {
            outside += 1;
            assert!(got.is_nan(), "{t:?} lies outside the source but got {got}");
        }
    }
    assert!(
        inside > 500 && outside > 100,
        "{inside} inside, {outside} outside"
    );
}

#[test]
fn oblique_target_samples_a_linear_world_function_exactly() {
    // Values are a linear function of world position; any target grid must sample it there.
    let g = |w: [f64; 3]| 0.3 * w[0] - 0.2 * w[1] + 0.05 * w[2] + 1.0;
    let src = oblique([16, 16, 10], [1.0, 1.2, 2.5], [-5.0, 4.0, 2.0], 0.9);
    let v = from_fn(src, |ijk| g(src.index_to_world(idx(ijk))) as f32);
    let dst = oblique([12, 12, 12], [1.0, 1.0, 1.0], [0.0, 5.0, 8.0], -0.2);
    let out = resample_linear(&v, &dst, 0.0).unwrap();
    let mut checked = 0;
    for t in voxels(&dst) {
        let w = dst.index_to_world(idx(t));
        let p = src.world_to_index(w);
        if (0..3).all(|a| p[a] >= 0.0 && p[a] <= (src.shape()[a] - 1) as f64) {
            checked += 1;
            let got = *out.get(t).unwrap() as f64;
            assert!((got - g(w)).abs() < 1e-5, "{t:?}: {got} vs {}", g(w));
        }
    }
    assert!(checked > 300, "only {checked} target voxels inside");
}

#[test]
fn half_voxel_shift_averages_neighbours() {
    let src = Geometry::new(
        [6, 5, 4],
        [0.8, 1.0, 3.0],
        [1.0, 2.0, 3.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
    .unwrap();
    let v = from_fn(src, |[i, j, k]| ((i * 7 + j * 3 + k * 11) % 13) as f32);
    // Origin moved half a voxel along axis 0 (which points to -x).
    let o = src.origin_mm();
    let dst = Geometry::new(
        src.shape(),
        src.spacing_mm(),
        [o[0] - 0.4, o[1], o[2]],
        src.direction(),
    )
    .unwrap();
    let out = resample_linear(&v, &dst, -1.0).unwrap();
    for t in voxels(&dst) {
        let [i, j, k] = t;
        let a = *v.get(t).unwrap();
        // The last target centre sits on the source's outer face: the edge value holds.
        let b = *v.get([(i + 1).min(5), j, k]).unwrap();
        assert_eq!(*out.get(t).unwrap(), 0.5 * a + 0.5 * b, "{t:?}");
    }
}

#[test]
fn a_single_slice_resamples_in_plane() {
    // One slice: along k every target centre within the slice's thickness takes its values.
    let src = Geometry::axis_aligned([6, 4, 1], [1.0, 1.0, 3.0], [0.0; 3]).unwrap();
    let v = from_fn(src, |[i, j, _]| (i + 10 * j) as f32);
    let dst = src.resized([12, 8, 3]).unwrap();
    let out = resample_linear(&v, &dst, f32::NAN).unwrap();
    assert!(out.data().iter().all(|x| x.is_finite()));
    for t in voxels(&dst) {
        let p = src.world_to_index(dst.index_to_world(idx(t)));
        let want = p[0].clamp(0.0, 5.0) + 10.0 * p[1].clamp(0.0, 3.0);
        let got = *out.get(t).unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{t:?}: {got} vs {want}");
    }
    let labels = v.map(|&x| (x as u8) % 3);
    let up = resample_labels(&labels, &dst, LabelInterp::Linear).unwrap();
    // Each source centre maps to the upsampled voxel whose own weight is 0.75 x 0.75 on it.
    let back = resample_labels(&up, &src, LabelInterp::Nearest).unwrap();
    assert_eq!(back, labels);
}

#[test]
fn outside_the_source_is_fill_or_background() {
    let src = Geometry::axis_aligned([4, 4, 4], [1.0; 3], [0.0; 3]).unwrap();
    let far = Geometry::axis_aligned([3, 3, 3], [1.0; 3], [10.0, 0.0, 0.0]).unwrap();
    let out = resample_linear(&Volume::filled(src, 5.0), &far, -3.0).unwrap();
    assert!(out.data().iter().all(|&x| x == -3.0));
    let labels = resample_labels(&Volume::filled(src, 2u8), &far, LabelInterp::Linear).unwrap();
    assert!(labels.data().iter().all(|&x| x == 0));
}

#[test]
fn a_target_too_large_for_memory_is_refused() {
    let src = Geometry::axis_aligned([4, 4, 4], [1.0; 3], [0.0; 3]).unwrap();
    let huge = Geometry::axis_aligned([1 << 20, 1 << 20, 1 << 10], [1.0; 3], [0.0; 3]).unwrap();
    let err = resample_linear(&Volume::filled(src, 0.0), &huge, 0.0).unwrap_err();
    assert!(matches!(err, ImgprocError::OutOfMemory { .. }), "{err}");
    assert!(err.to_string().contains("resampled image"), "{err}");
}

fn smooth(p: [f64; 3]) -> f32 {
    (50.0 * (p[0] / 9.0).sin() + 30.0 * (p[1] / 7.0).cos() + 2.0 * p[2]) as f32
}

#[test]
fn resized_round_trip_keeps_smooth_images() {
    let fine = oblique([64, 60, 30], [0.8, 0.8, 2.5], [-20.0, 10.0, 0.0], 0.2);
    let v = from_fn(fine, |ijk| smooth(idx(ijk)));
    let coarse = fine.resized([32, 30, 20]).unwrap();
    let down = resample_linear(&v, &coarse, f32::NAN).unwrap();
    assert!(
        down.data().iter().all(|x| x.is_finite()),
        "fov must be covered"
    );
    let back = resample_linear(&down, &fine, f32::NAN).unwrap();
    assert!(back.geometry().same_grid(&fine, 1e-9));
    let (mut sq, mut max) = (0.0f64, 0.0f64);
    for (a, b) in back.data().iter().zip(v.data()) {
        let d = (*a - *b) as f64;
        sq += d * d;
        max = max.max(d.abs());
    }
    let rms = (sq / v.data().len() as f64).sqrt();
    // Values span about +-80; sampling at half the resolution loses little of this signal.
    assert!(rms < 1.5 && max < 8.0, "rms {rms}, max {max}");

    // A linear ramp survives the round trip exactly where the coarse grid brackets the voxel.
    let ramp = |p: [f64; 3]| (1.5 * p[0] - 0.5 * p[1] + 2.0 * p[2]) as f32;
    let r = from_fn(fine, |ijk| ramp(idx(ijk)));
    let back = resample_linear(&resample_linear(&r, &coarse, 0.0).unwrap(), &fine, 0.0).unwrap();
    for t in voxels(&fine) {
        let p = coarse.world_to_index(fine.index_to_world(idx(t)));
        if (0..3).all(|a| p[a] >= 0.0 && p[a] <= (coarse.shape()[a] - 1) as f64) {
            let (got, want) = (*back.get(t).unwrap(), ramp(idx(t)));
            assert!((got - want).abs() < 1e-3, "{t:?}: {got} vs {want}");
        }
    }
}

fn sphere_labels(g: Geometry, centre: [f64; 3], r: f64) -> LabelMap {
    let [nx, ny, nz] = g.shape();
    let mut data = Vec::with_capacity(g.n_voxels());
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let w = g.index_to_world([i as f64, j as f64, k as f64]);
                let d = (0..3)
                    .map(|a| (w[a] - centre[a]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                data.push(if d < r * 0.6 {
                    2
                } else if d < r {
                    1
                } else {
                    0
                });
            }
        }
    }
    Volume::new(g, data).unwrap()
}

fn dice(a: &LabelMap, b: &LabelMap, label: u8) -> f64 {
    let (mut both, mut na, mut nb) = (0usize, 0usize, 0usize);
    for (&x, &y) in a.data().iter().zip(b.data()) {
        na += usize::from(x == label);
        nb += usize::from(y == label);
        both += usize::from(x == label && y == label);
    }
    2.0 * both as f64 / (na + nb) as f64
}

#[test]
fn resized_round_trip_keeps_label_maps() {
    let fine = oblique([60, 56, 40], [0.8, 0.8, 1.5], [0.0; 3], 0.1);
    let centre = fine.index_to_world([30.0, 28.0, 20.0]);
    let labels = sphere_labels(fine, centre, 15.0);
    let coarse = fine.resized([24, 24, 20]).unwrap();
    // Coarse voxels of 2 x 1.9 x 3 mm, a 6 mm thick shell (1) round a 9 mm ball (2): measured
    // Dice about 0.89 (nearest) and 0.93 (linear).
    for (mode, min_dice) in [(LabelInterp::Nearest, 0.87), (LabelInterp::Linear, 0.91)] {
        let down = resample_labels(&labels, &coarse, mode).unwrap();
        let back = resample_labels(&down, &fine, mode).unwrap();
        for label in [1, 2] {
            let d = dice(&labels, &back, label);
            assert!(d > min_dice, "{mode:?} label {label}: Dice {d}");
        }
    }
}

#[test]
fn linear_label_upsampling_follows_the_true_boundary_better_than_nearest() {
    let coarse = oblique([20, 20, 12], [2.4, 2.4, 4.0], [0.0; 3], 0.3);
    let centre = coarse.index_to_world([9.7, 10.2, 5.6]);
    let fine = coarse.resized([60, 60, 48]).unwrap();
    let truth = sphere_labels(fine, centre, 16.0);
    let low = sphere_labels(coarse, centre, 16.0);
    let near = resample_labels(&low, &fine, LabelInterp::Nearest).unwrap();
    let lin = resample_labels(&low, &fine, LabelInterp::Linear).unwrap();
    for label in [1, 2] {
        let (dn, dl) = (dice(&truth, &near, label), dice(&truth, &lin, label));
        assert!(
            dl > dn && dl > 0.9,
            "label {label}: linear {dl}, nearest {dn}"
        );
    }
}

struct Case {
    name: String,
    f: HashMap<String, Vec<String>>,
}

impl Case {
    fn nums<T: std::str::FromStr>(&self, key: &str) -> Vec<T>
    where
        T::Err: std::fmt::Debug,
    {
        self.f[key].iter().map(|v| v.parse().unwrap()).collect()
    }
    fn geometry(&self, prefix: &str) -> Geometry {
        let s: Vec<usize> = self.nums(&format!("{prefix}_shape"));
        let a: Vec<f64> = self.nums(&format!("{prefix}_affine"));
        let rows = [0, 1, 2].map(|r| [a[4 * r], a[4 * r + 1], a[4 * r + 2], a[4 * r + 3]]);
        Geometry::from_affine([s[0], s[1], s[2]], &Affine::from_rows(rows)).unwrap()
    }
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap().to_string();
        let rest: Vec<String> = words.map(str::to_string).collect();
        if key == "case" {
            cases.push(Case {
                name: rest[0].clone(),
                f: HashMap::new(),
            });
        } else {
            cases.last_mut().unwrap().f.insert(key, rest);
        }
    }
    cases
}

#[test]
fn matches_scipy_fixtures() {
    let cases = parse(include_str!("fixtures/resample.txt"));
    assert_eq!(cases.len(), 5);
    for c in &cases {
        let (sg, dg) = (c.geometry("src"), c.geometry("dst"));
        let img = Volume::new(sg, c.nums::<f32>("src_image")).unwrap();
        let labels = Volume::new(sg, c.nums::<u8>("src_labels")).unwrap();
        let fill: f32 = c.nums::<f32>("fill")[0];
        let out = resample_linear(&img, &dg, fill).unwrap();
        let want: Vec<f64> = c.nums("want_linear");
        for (v, (&g, &w)) in out.data().iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 + 1e-6 * w.abs(),
                "{}: voxel {v}: {g} vs {w}",
                c.name
            );
        }
        let margin: Vec<f64> = c.nums("near_margin");
        let near = resample_labels(&labels, &dg, LabelInterp::Nearest).unwrap();
        for (v, (&g, &w)) in near
            .data()
            .iter()
            .zip(&c.nums::<u8>("want_nearest"))
            .enumerate()
        {
            assert!(
                g == w || margin[v] < 1e-6,
                "{}: nearest voxel {v}: {g} vs {w}",
                c.name
            );
        }
        let margin: Vec<f64> = c.nums("margin");
        let lin = resample_labels(&labels, &dg, LabelInterp::Linear).unwrap();
        let want: Vec<u8> = c.nums("want_label_linear");
        let mut differ = 0;
        for (v, (&g, &w)) in lin.data().iter().zip(&want).enumerate() {
            if g != w {
                differ += 1;
                assert!(margin[v] < 1e-4, "{}: linear voxel {v}: {g} vs {w}", c.name);
            }
        }
        assert!(
            differ * 50 < want.len(),
            "{}: {differ} near-ties differ",
            c.name
        );
    }
}

/// SimpleITK's `Resample` (linear, default value = fill) on an oblique pair of grids.
#[test]
fn matches_simpleitk_resample() {
    let Some(py) = python_with("matches_simpleitk_resample", &["numpy", "SimpleITK"]) else {
        return;
    };
    let src = oblique([23, 19, 14], [0.9, 0.8, 2.5], [5.0, -3.0, 2.0], 0.35);
    let v = from_fn(src, |ijk| {
        smooth(idx(ijk)) + ((ijk[0] * 7 + ijk[1] * 13) % 5) as f32
    });
    let dst = oblique([21, 25, 18], [1.1, 0.9, 1.4], [4.0, -1.0, 0.0], -0.25);
    let dir = TempDir::new("resample-sitk");
    let raw: Vec<u8> = v.data().iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.join("src.f32"), raw).unwrap();
    let geo = |g: &Geometry| {
        let d = g.direction();
        let mut s = format!("{:?};{:?};{:?};", g.shape(), g.spacing_mm(), g.origin_mm());
        s += &format!("{:?}", [d[0], d[1], d[2]].concat());
        s.replace(['[', ']'], "")
    };
    let script = r#"
import sys, numpy as np, SimpleITK as sitk
d, src_g, dst_g = sys.argv[1], sys.argv[2], sys.argv[3]
def parse(s):
    shape, sp, org, dr = [list(map(float, p.split(','))) for p in s.split(';')]
    return [int(v) for v in shape], sp, org, dr
shape, sp, org, dr = parse(src_g)
arr = np.fromfile(d + '/src.f32', dtype='<f4').reshape(shape[::-1])
img = sitk.GetImageFromArray(arr)
img.SetSpacing(sp); img.SetOrigin(org); img.SetDirection(dr)
shape2, sp2, org2, dr2 = parse(dst_g)
ref = sitk.Image(shape2, sitk.sitkFloat32)
ref.SetSpacing(sp2); ref.SetOrigin(org2); ref.SetDirection(dr2)
out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
sitk.GetArrayFromImage(out).astype('<f4').tofile(d + '/out.f32')
"#;
    run_python(
        &py,
        script,
        &[dir.path().to_str().unwrap(), &geo(&src), &geo(&dst)],
    );
    let want: Vec<f32> = std::fs::read(dir.join("out.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let out = resample_linear(&v, &dst, -1000.0).unwrap();
    let (mut inside, mut compared) = (0, 0);
    for (n, t) in voxels(&dst).enumerate() {
        let p = src.world_to_index(dst.index_to_world(idx(t)));
        // ITK's field-of-view test is [-0.5, n - 0.5) in its own arithmetic: skip voxels right
        // on that boundary, where either rounding may decide.
        let s = src.shape();
        if (0..3).any(|a| (p[a] + 0.5).abs() < 1e-6 || (p[a] - s[a] as f64 + 0.5).abs() < 1e-6) {
            continue;
        }
        compared += 1;
        let (g, w) = (out.data()[n], want[n]);
        inside += usize::from(w != -1000.0);
        assert!(
            (g - w).abs() <= 1e-3,
            "{t:?} (source index {p:?}): {g} vs ITK {w}"
        );
    }
    assert!(
        inside > 1000 && compared > inside,
        "{inside} of {compared} inside"
    );
}
