//! One augmented training sample from one cached case, on a fixed network grid.
//!
//! # Geometry: one resampling pass
//! Every output voxel `o = (i, j, k)` is carried to a continuous source index by one map:
//! `p = A (o + d(o)) + b`, where `d` is the elastic displacement (output voxels, a cubic
//! B-spline through a coarse grid of random control vectors) and `A`, `b` compose, from the
//! output side: the field of view (output grid to a box around a centre, in mm), the
//! per-axis scaling, the rotation (in mm, so anisotropic voxels rotate correctly), and mm to
//! source index. The image is then sampled trilinearly and the labels by nearest neighbour,
//! in parallel over output slices. Outside the source's field of view (the same rule as
//! `flare_imgproc`: `[-0.5, n - 0.5]` per axis, edge voxels repeated within it) the image is
//! 0 (the bottom of the HU window) and the label background.
//!
//! With the scale 1, no rotation and no elastic field, a whole-scan sample is exactly
//! `flare_imgproc::resample_linear` onto `Geometry::resized` (see the tests).
//!
//! # Intensity, after the geometry
//! Simulated low resolution (trilinear down, then up), Gaussian blur, gamma, contrast and
//! brightness, Gaussian noise; then `[0, 1]` is mapped to [`SampleConfig::intensity_range`].
//! There are no left-right flips: liver and spleen are not symmetric.
//!
//! # Randomness
//! Everything is drawn from the [`ChaCha8Rng`] passed in, in a fixed order, with this crate's
//! own draws (never `rand`'s distributions, whose algorithms may change between versions);
//! noise uses one stream per output slice derived from one draw, so the result does not
//! depend on the thread count.

use flare_imgproc::interp::{Tap, lerp};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    cache::{CachedCase, INTENSITY_SCALE},
    dataset::below,
    error::{Result, TrainError},
};

/// Tries at finding a voxel of an organ inside its bounding box before taking the box centre.
const ORGAN_TRIES: usize = 256;

/// Which part of the scan a sample shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Crop {
    /// The whole scan on the output grid whatever its size (stage 1), except along `k`
    /// (superior): a window of a random fraction of the scan's z extent, drawn from
    /// `z_fraction`, placed at random (on an organ with the foreground probability). Centres
    /// differ in z coverage; this makes the apparent organ size vary as it does across them.
    /// A fraction above 1 shows the whole scan with empty margins.
    WholeScan {
        /// Range of the z window as a fraction of the scan's extent, e.g. `[0.6, 1.0]`.
        z_fraction: [f64; 2],
    },
    /// A box around the union of the organs' bounding boxes (stage 2): grown by `margin` of its
    /// size on each side, shrunk to `fraction` of that size (1: the whole region, as at
    /// inference; below 1: a patch, centred on an organ voxel with the foreground probability,
    /// else anywhere in the region), and its centre moved by up to `jitter` of its size.
    Roi {
        /// Margin on each side, as a fraction of the organs' box size.
        margin: f64,
        /// Box size relative to the region (0 < fraction <= 1).
        fraction: f64,
        /// Largest centre shift per axis, as a fraction of the box size.
        jitter: f64,
        /// The organs (label values) whose union box is the region; empty (older plans): all
        /// of them. `[4]` makes a pancreas refinement stage.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        organs: Vec<u8>,
    },
}

/// Ranges and probabilities of the random transforms. A range `[a, a]` fixes the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Probability of rotating.
    pub p_rotate: f64,
    /// Rotation range in degrees about array axes `i`, `j` and `k` (axial is `k`).
    pub rotate_deg: [[f64; 2]; 3],
    /// Probability of scaling.
    pub p_scale: f64,
    /// Scale range per axis `(i, j, k)`, drawn independently (anisotropic); above 1 the
    /// anatomy looks larger.
    pub scale: [[f64; 2]; 3],
    /// Probability of an elastic deformation.
    pub p_elastic: f64,
    /// Control points per axis of the elastic grid (at least 2).
    pub elastic_points: usize,
    /// Standard deviation of each control displacement, in output voxels.
    pub elastic_sigma: f64,
    /// Probability of simulated low resolution.
    pub p_low_res: f64,
    /// Down-sampling factor range (1 = none).
    pub low_res: [f64; 2],
    /// Probability of a Gaussian blur.
    pub p_blur: f64,
    /// Blur sigma range in output voxels.
    pub blur_sigma: [f64; 2],
    /// Probability of a gamma change.
    pub p_gamma: f64,
    /// Gamma range (applied to the `[0, 1]` intensity).
    pub gamma: [f64; 2],
    /// Probability of a contrast and brightness change.
    pub p_contrast: f64,
    /// Contrast factor range (about the sample's mean).
    pub contrast: [f64; 2],
    /// Brightness shift range (in `[0, 1]` units).
    pub brightness: [f64; 2],
    /// Probability of Gaussian noise.
    pub p_noise: f64,
    /// Noise sigma range (in `[0, 1]` units).
    pub noise_sigma: [f64; 2],
    /// Probability of a truncated field of view (region crops, stage 2): the scan is cut at an
    /// axial plane through the organs, below or above them, as scans of the chest or pelvis
    /// cut the kidneys or the liver. What lies beyond the cut is outside the scan (padded,
    /// background) and the region is the kept organs' box, as stage 1 finds it at inference.
    /// Stage 1's z window already cuts scans this way. Older plans lack it: 0.
    #[serde(default)]
    pub p_cut_z: f64,
    /// Fraction of the organs' z extent the cut keeps.
    #[serde(default = "default_cut_keep")]
    pub cut_keep: [f64; 2],
    /// Probability of shifting each organ's intensity on its own (contrast phase: BTCV is
    /// portal venous, where kidneys are ~150 HU brighter than without contrast and the other
    /// organs 50-80 HU; other centres scan native or arterial). Older plans lack it: 0.
    #[serde(default)]
    pub p_organ_shift: f64,
    /// Range of each organ's shift in `[0, 1]` window units (with the default 400 HU window,
    /// `[-0.375, 0.125]` is -150..+50 HU), drawn per organ, softened over a voxel at the edges.
    #[serde(default = "default_organ_shift")]
    pub organ_shift: [f64; 2],
    /// Probability of mirroring the sample along each axis `[i, j, k]` of the network grid
    /// (nnU-Net mirrors all three): what a model needs before test-time mirroring (the
    /// pipeline plan's `mirror_axes`) can average it with itself. Older plans lack it: none.
    /// Drawn only for axes with a probability above 0, so older plans keep their random
    /// stream (and their runs resume exactly).
    #[serde(default)]
    pub p_mirror: [f64; 3],
}

fn default_organ_shift() -> [f64; 2] {
    [-0.375, 0.125]
}

fn default_cut_keep() -> [f64; 2] {
    [0.5, 0.9]
}

impl AugmentConfig {
    /// No augmentation at all: the sample is a plain resampling of the crop.
    pub fn none() -> Self {
        AugmentConfig {
            p_rotate: 0.0,
            rotate_deg: [[0.0; 2]; 3],
            p_scale: 0.0,
            scale: [[1.0; 2]; 3],
            p_elastic: 0.0,
            elastic_points: 4,
            elastic_sigma: 0.0,
            p_low_res: 0.0,
            low_res: [1.0; 2],
            p_blur: 0.0,
            blur_sigma: [0.0; 2],
            p_gamma: 0.0,
            gamma: [1.0; 2],
            p_contrast: 0.0,
            contrast: [1.0; 2],
            brightness: [0.0; 2],
            p_noise: 0.0,
            noise_sigma: [0.0; 2],
            p_cut_z: 0.0,
            cut_keep: default_cut_keep(),
            p_organ_shift: 0.0,
            organ_shift: [0.0; 2],
            p_mirror: [0.0; 3],
        }
    }

    fn validate(&self) -> Result<()> {
        let probs = [
            self.p_rotate,
            self.p_scale,
            self.p_elastic,
            self.p_low_res,
            self.p_blur,
            self.p_gamma,
            self.p_contrast,
            self.p_noise,
            self.p_cut_z,
            self.p_organ_shift,
            self.p_mirror[0],
            self.p_mirror[1],
            self.p_mirror[2],
        ];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(TrainError::Config("probabilities must lie in 0..=1".into()));
        }
        let ranges = self.rotate_deg.iter().chain(&self.scale).chain([
            &self.low_res,
            &self.blur_sigma,
            &self.gamma,
            &self.contrast,
            &self.brightness,
            &self.noise_sigma,
            &self.cut_keep,
            &self.organ_shift,
        ]);
        for r in ranges {
            if !(r[0].is_finite() && r[1].is_finite() && r[0] <= r[1]) {
                return Err(TrainError::Config(format!("bad range {r:?}")));
            }
        }
        let positive = self.scale.iter().all(|s| s[0] > 0.0)
            && self.low_res[0] >= 1.0
            && self.blur_sigma[0] >= 0.0
            && self.gamma[0] > 0.0
            && self.noise_sigma[0] >= 0.0
            && self.elastic_sigma >= 0.0
            && self.elastic_points >= 2
            && self.cut_keep[0] > 0.0
            && self.cut_keep[1] <= 1.0;
        if !positive {
            return Err(TrainError::Config(
                "scale and gamma must be positive, low-res factor at least 1, sigmas not \
                 negative, at least 2 elastic points, cut_keep within (0, 1]"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for AugmentConfig {
    /// The recipe: rotation +-15 degrees axially and +-5 about the other axes, scale
    /// 0.7..1.4 per axis, a mild elastic field, the intensity transforms at moderate rates, and
    /// (region crops) a field of view cut through the organs one sample in five; organ
    /// intensities shifted on their own (contrast phase) in three samples of ten.
    fn default() -> Self {
        AugmentConfig {
            p_rotate: 0.8,
            rotate_deg: [[-5.0, 5.0], [-5.0, 5.0], [-15.0, 15.0]],
            p_scale: 0.8,
            scale: [[0.7, 1.4]; 3],
            p_elastic: 0.3,
            elastic_points: 5,
            elastic_sigma: 1.5,
            p_low_res: 0.15,
            low_res: [1.0, 2.0],
            p_blur: 0.15,
            blur_sigma: [0.5, 1.0],
            p_gamma: 0.3,
            gamma: [0.7, 1.5],
            p_contrast: 0.3,
            contrast: [0.75, 1.25],
            brightness: [-0.1, 0.1],
            p_noise: 0.15,
            noise_sigma: [0.0, 0.03],
            p_cut_z: 0.2,
            cut_keep: default_cut_keep(),
            p_organ_shift: 0.3,
            organ_shift: default_organ_shift(),
            p_mirror: [0.0; 3],
        }
    }
}

/// What a sample looks like: grid, crop, augmentation and sampling bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleConfig {
    /// Output grid `[D, H, W]` (`D` along array axis `k`, `H` along `j`, `W` along `i`), the
    /// order of the batch buffers.
    pub grid_dhw: [usize; 3],
    /// Which part of the scan is shown.
    pub crop: Crop,
    /// The random transforms.
    pub augment: AugmentConfig,
    /// Probability of centring the crop on a random voxel of a random organ (organs drawn
    /// uniformly, whatever their size, so small ones are seen as often as the liver).
    pub foreground_p: f64,
    /// What the window's `[0, 1]` becomes in the output (e.g. `[0, 1]` or `[-1, 1]`).
    pub intensity_range: [f32; 2],
}

impl SampleConfig {
    /// A whole-scan sample (stage 1) on `grid_dhw` with the default augmentation.
    pub fn whole_scan(grid_dhw: [usize; 3]) -> Self {
        SampleConfig {
            grid_dhw,
            crop: Crop::WholeScan {
                z_fraction: [0.6, 1.0],
            },
            augment: AugmentConfig::default(),
            foreground_p: 0.5,
            intensity_range: [0.0, 1.0],
        }
    }

    /// A region-of-interest sample (stage 2) on `grid_dhw` with the default augmentation.
    pub fn roi(grid_dhw: [usize; 3]) -> Self {
        SampleConfig {
            grid_dhw,
            crop: Crop::Roi {
                margin: 0.1,
                fraction: 1.0,
                jitter: 0.1,
                organs: Vec::new(),
            },
            augment: AugmentConfig::default(),
            foreground_p: 0.5,
            intensity_range: [0.0, 1.0],
        }
    }

    /// Checks every range.
    pub fn validate(&self) -> Result<()> {
        if self.grid_dhw.contains(&0) {
            return Err(TrainError::Config("empty output grid".into()));
        }
        if !self.intensity_range.iter().all(|v| v.is_finite()) {
            return Err(TrainError::Config("intensity_range must be finite".into()));
        }
        if !(0.0..=1.0).contains(&self.foreground_p) {
            return Err(TrainError::Config("foreground_p must lie in 0..=1".into()));
        }
        match self.crop {
            Crop::WholeScan { z_fraction: [a, b] } if !(a > 0.0 && a <= b && b.is_finite()) => {
                return Err(TrainError::Config(format!("bad z_fraction [{a}, {b}]")));
            }
            Crop::Roi {
                margin,
                fraction,
                jitter,
                ref organs,
            } if !(organs.iter().all(|o| (1..=4).contains(o))
                && margin >= 0.0
                && margin.is_finite()
                && fraction > 0.0
                && fraction <= 1.0
                && jitter >= 0.0
                && jitter.is_finite()) =>
            {
                return Err(TrainError::Config(
                    "ROI margin and jitter must not be negative, fraction in (0, 1], organs in 1..=4"
                        .into(),
                ));
            }
            _ => {}
        }
        self.augment.validate()
    }

    /// Output shape in array order `(i, j, k)`.
    pub fn shape_ijk(&self) -> [usize; 3] {
        let [d, h, w] = self.grid_dhw;
        [w, h, d]
    }
}

/// Uniform in `[0, 1)` from 53 random bits.
pub(crate) fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn uniform(rng: &mut impl RngCore, r: [f64; 2]) -> f64 {
    r[0] + (r[1] - r[0]) * unit(rng)
}

fn chance(rng: &mut impl RngCore, p: f64) -> bool {
    unit(rng) < p
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl RngCore) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]: ln never sees 0
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A random voxel (as a continuous index) of a random organ present in the case, or `None`
/// when it has no organ. Organs are drawn uniformly.
pub(crate) fn organ_voxel(case: &CachedCase, rng: &mut impl RngCore) -> Option<[f64; 3]> {
    let present: Vec<usize> = (0..4)
        .filter(|&o| case.meta().organ_boxes[o].is_some())
        .collect();
    if present.is_empty() {
        return None;
    }
    let organ = present[below(rng, present.len())];
    let [lo, hi] = case.meta().organ_boxes[organ]?;
    let s = case.shape();
    let labels = case.labels();
    // Rejection inside the bounding box: organs fill a fair part of their box, so this ends
    // quickly, and it needs no per-organ voxel lists in memory.
    for _ in 0..ORGAN_TRIES {
        let v = [0, 1, 2].map(|a| lo[a] + below(rng, hi[a] - lo[a]));
        if labels[v[0] + s[0] * (v[1] + s[1] * v[2])] as usize == organ + 1 {
            return Some(v.map(|x| x as f64));
        }
    }
    Some([0, 1, 2].map(|a| (lo[a] + hi[a] - 1) as f64 / 2.0))
}

/// The affine part of the output-to-source map and the elastic field.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// `p = a (o + d) + b`.
    a: [[f64; 3]; 3],
    b: [f64; 3],
    elastic: Option<Elastic>,
    /// Source slices along `k` inside the (possibly truncated) scan, inclusive.
    k_range: [usize; 2],
}

#[derive(Debug, Clone)]
struct Elastic {
    g: usize,
    /// Control vectors (output voxels), `ci + g * (cj + g * ck)`.
    ctrl: Vec<[f32; 3]>,
    /// Per output axis, per output index: four control indices and cubic B-spline weights.
    taps: [Vec<([usize; 4], [f32; 4])>; 3],
}

/// Cubic B-spline weights of `g` control points spread evenly over `n` output voxels.
fn bspline_taps(n: usize, g: usize) -> Vec<([usize; 4], [f32; 4])> {
    (0..n)
        .map(|o| {
            let t = if n > 1 {
                o as f64 / (n - 1) as f64 * (g - 1) as f64
            } else {
                0.0
            };
            let c = t.floor();
            let f = t - c;
            let w = [
                (1.0 - f).powi(3) / 6.0,
                (3.0 * f.powi(3) - 6.0 * f * f + 4.0) / 6.0,
                (-3.0 * f.powi(3) + 3.0 * f * f + 3.0 * f + 1.0) / 6.0,
                f.powi(3) / 6.0,
            ];
            let c = c as i64;
            let idx = [-1, 0, 1, 2].map(|d| (c + d).clamp(0, g as i64 - 1) as usize);
            (idx, w.map(|x| x as f32))
        })
        .collect()
}

/// 3x3 rotation about array axis `axis` by `deg` degrees.
fn rotation(axis: usize, deg: f64) -> [[f64; 3]; 3] {
    let (s, c) = deg.to_radians().sin_cos();
    let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
    let mut r = [[0.0; 3]; 3];
    r[axis][axis] = 1.0;
    r[u][u] = c;
    r[u][v] = -s;
    r[v][u] = s;
    r[v][v] = c;
    r
}

fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = (0..3).map(|q| a[r][q] * b[q][c]).sum();
        }
    }
    m
}

/// Draws the crop and the geometric transform of one sample.
pub(crate) fn draw_mapping(
    case: &CachedCase,
    cfg: &SampleConfig,
    rng: &mut impl RngCore,
) -> Mapping {
    let n_src = case.shape().map(|n| n as f64);
    let sp = case.meta().spacing_mm;
    let out = cfg.shape_ijk();
    let aug = &cfg.augment;
    // Field of view: centre and half extent in source index units.
    let whole_centre = n_src.map(|n| (n - 1.0) / 2.0);
    let whole_half = n_src.map(|n| n / 2.0);
    let mut k_range = [0, case.shape()[2] - 1];
    let (centre, half) = match cfg.crop {
        Crop::WholeScan { z_fraction } => {
            let f = uniform(rng, z_fraction);
            let hz = whole_half[2] * f;
            // Centres that keep the window inside the scan (or the scan inside the window).
            let (a, b) = (hz - 0.5, n_src[2] - 0.5 - hz);
            let (lo, hi) = (a.min(b), a.max(b));
            let fg = chance(rng, cfg.foreground_p);
            let cz = match fg.then(|| organ_voxel(case, rng)).flatten() {
                Some(v) => v[2].clamp(lo, hi),
                None => uniform(rng, [lo, hi]),
            };
            let mut c = whole_centre;
            c[2] = cz;
            (c, [whole_half[0], whole_half[1], hz])
        }
        Crop::Roi {
            margin,
            fraction,
            jitter,
            ref organs,
        } => match case.meta().region_box(organs) {
            None => (whole_centre, whole_half),
            Some([mut s, mut e]) => {
                // Drawn only when enabled, so that plans without it keep their random stream.
                if aug.p_cut_z > 0.0 && chance(rng, aug.p_cut_z) && e[2] > s[2] + 1 {
                    let extent = (e[2] - s[2]) as f64;
                    let keep = ((uniform(rng, aug.cut_keep) * extent).round() as usize)
                        .clamp(1, e[2] - s[2]);
                    if chance(rng, 0.5) {
                        // Cut below: the scan starts at the first kept slice.
                        s[2] = e[2] - keep;
                        k_range[0] = s[2];
                    } else {
                        e[2] = s[2] + keep;
                        k_range[1] = e[2] - 1;
                    }
                }
                let size = [0, 1, 2].map(|a| (e[a] - s[a]) as f64);
                let region_c = [0, 1, 2].map(|a| (s[a] + e[a]) as f64 / 2.0 - 0.5);
                let half = [0, 1, 2].map(|a| size[a] * (0.5 + margin) * fraction);
                let mut c = region_c;
                if fraction < 1.0 {
                    let fg = chance(rng, cfg.foreground_p);
                    c = match fg.then(|| organ_voxel(case, rng)).flatten() {
                        Some(v) => v,
                        None => {
                            [0, 1, 2].map(|a| uniform(rng, [s[a] as f64 - 0.5, e[a] as f64 - 0.5]))
                        }
                    };
                }
                for a in 0..3 {
                    c[a] += uniform(rng, [-jitter, jitter]) * 2.0 * half[a];
                }
                (c, half)
            }
        },
    };
    let scale = if chance(rng, aug.p_scale) {
        aug.scale.map(|r| uniform(rng, r))
    } else {
        [1.0; 3]
    };
    let rot = if chance(rng, aug.p_rotate) {
        let deg = aug.rotate_deg.map(|r| uniform(rng, r));
        // Axial last, so it is the outermost (largest) rotation.
        matmul(
            &rotation(2, deg[2]),
            &matmul(&rotation(1, deg[1]), &rotation(0, deg[0])),
        )
    } else {
        rotation(2, 0.0)
    };
    let elastic = if chance(rng, aug.p_elastic) && aug.elastic_sigma > 0.0 {
        let g = aug.elastic_points;
        let ctrl = (0..g * g * g)
            .map(|_| [0, 1, 2].map(|_| (normal(rng) * aug.elastic_sigma) as f32))
            .collect();
        Some(Elastic {
            g,
            ctrl,
            taps: [0, 1, 2].map(|a| bspline_taps(out[a], g)),
        })
    } else {
        None
    };
    // A mirrored axis walks its output voxels the other way (h < 0 below).
    let mirror = aug.p_mirror.map(|p| p > 0.0 && chance(rng, p));
    // Output voxel o -> mm offset from the centre, before rotation: v = (o + 0.5 - n/2) * h,
    // h = 2 * half_mm / (scale * n) (negated on a mirrored axis). Source index
    // p = centre + diag(1/sp) R v.
    let h = [0, 1, 2].map(|a| {
        let step = 2.0 * half[a] * sp[a] / (scale[a] * out[a] as f64);
        if mirror[a] { -step } else { step }
    });
    let mut a = [[0.0; 3]; 3];
    let mut b = centre;
    for r in 0..3 {
        for c in 0..3 {
            a[r][c] = rot[r][c] * h[c] / sp[r];
            b[r] += a[r][c] * (0.5 - out[c] as f64 / 2.0);
        }
    }
    Mapping {
        a,
        b,
        elastic,
        k_range,
    }
}

/// Resamples `case` through `m` into `img` (`[0, 1]` units) and `lab`, shape `out` `(i, j, k)`.
pub(crate) fn resample(
    case: &CachedCase,
    m: &Mapping,
    out: [usize; 3],
    img: &mut [f32],
    lab: &mut [u8],
) {
    let [sx, sy, _] = case.shape();
    let (x_range, y_range) = ([0, sx - 1], [0, sy - 1]);
    let (src, labels) = (case.image(), case.labels());
    let [nx, ny, _] = out;
    img.par_chunks_mut(nx * ny)
        .zip(lab.par_chunks_mut(nx * ny))
        .enumerate()
        .for_each(|(k, (islab, lslab))| {
            // The elastic field, reduced to this slice's plane of control vectors.
            let plane: Option<(Vec<[f32; 3]>, &Elastic)> = m.elastic.as_ref().map(|e| {
                let g = e.g;
                let (ks, kw) = e.taps[2][k];
                let mut p = vec![[0.0f32; 3]; g * g];
                for (&t, &w) in ks.iter().zip(&kw) {
                    for (q, c) in p.iter_mut().zip(&e.ctrl[t * g * g..][..g * g]) {
                        for d in 0..3 {
                            q[d] += w * c[d];
                        }
                    }
                }
                (p, e)
            });
            let mut row_ctrl = Vec::new();
            for j in 0..ny {
                if let Some((p, e)) = &plane {
                    let g = e.g;
                    let (js, jw) = e.taps[1][j];
                    row_ctrl.clear();
                    row_ctrl.resize(g, [0.0f32; 3]);
                    for (&t, &w) in js.iter().zip(&jw) {
                        for (q, c) in row_ctrl.iter_mut().zip(&p[t * g..][..g]) {
                            for d in 0..3 {
                                q[d] += w * c[d];
                            }
                        }
                    }
                }
                let irow = &mut islab[j * nx..][..nx];
                let lrow = &mut lslab[j * nx..][..nx];
                let row0 = [0, 1, 2].map(|r| m.a[r][1] * j as f64 + m.a[r][2] * k as f64 + m.b[r]);
                let step = [m.a[0][0], m.a[1][0], m.a[2][0]];
                for (i, (iv, lv)) in irow.iter_mut().zip(lrow.iter_mut()).enumerate() {
                    let fi = i as f64;
                    let mut p = [0, 1, 2].map(|r| row0[r] + step[r] * fi);
                    if let Some((_, e)) = &plane {
                        let (is, iw) = e.taps[0][i];
                        let mut d = [0.0f32; 3];
                        for (&t, &w) in is.iter().zip(&iw) {
                            for (dd, c) in d.iter_mut().zip(row_ctrl[t]) {
                                *dd += w * c;
                            }
                        }
                        for (r, pr) in p.iter_mut().enumerate() {
                            *pr += m.a[r][0] * d[0] as f64
                                + m.a[r][1] * d[1] as f64
                                + m.a[r][2] * d[2] as f64;
                        }
                    }
                    // The scan's voxels along x and y, and its (possibly cut) slices along z.
                    let (x, y, z) = (
                        Tap::within(p[0], x_range),
                        Tap::within(p[1], y_range),
                        Tap::within(p[2], m.k_range),
                    );
                    if !(x.inside && y.inside && z.inside) {
                        *iv = 0.0;
                        *lv = 0;
                        continue;
                    }
                    // Corner (x0, y0, z0) and the strides to the other seven corners.
                    let base = x.i0 + sx * (y.i0 + sy * z.i0);
                    let (dx, dy, dz) = (x.i1 - x.i0, (y.i1 - y.i0) * sx, (z.i1 - z.i0) * sx * sy);
                    let at = |o: usize| src[base + o] as f32;
                    let c00 = lerp(at(0), at(dx), x.w);
                    let c10 = lerp(at(dy), at(dy + dx), x.w);
                    let c01 = lerp(at(dz), at(dz + dx), x.w);
                    let c11 = lerp(at(dz + dy), at(dz + dy + dx), x.w);
                    *iv = lerp(lerp(c00, c10, y.w), lerp(c01, c11, y.w), z.w) * INTENSITY_SCALE;
                    *lv = labels[x.near + sx * (y.near + sy * z.near)];
                }
            }
        });
}

/// Per output index along one axis: the source indices and weights it blends.
type AxisTaps = Vec<Vec<(usize, f32)>>;

/// Linear resize taps from `n` to `m` voxels over the same extent (outer edges aligned).
fn resize_taps(n: usize, m: usize) -> AxisTaps {
    let ratio = n as f64 / m as f64;
    (0..m)
        .map(|o| {
            // Always inside: the centres of `m` voxels over the extent of `n`.
            let t = Tap::new((o as f64 + 0.5) * ratio - 0.5, n);
            vec![(t.i0, 1.0 - t.w), (t.i1, t.w)]
        })
        .collect()
}

/// Normalised Gaussian taps of `sigma` voxels, edges clamped.
fn gauss_taps(n: usize, sigma: f64) -> AxisTaps {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let w: Vec<f64> = (-r..=r)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    (0..n as i64)
        .map(|o| {
            (-r..=r)
                .zip(&w)
                .map(|(d, &w)| ((o + d).clamp(0, n as i64 - 1) as usize, (w / sum) as f32))
                .collect()
        })
        .collect()
}

/// Applies `taps` along `axis` of `data` (shape `(i, j, k)`), giving the new data and shape.
fn axis_pass(
    data: &[f32],
    shape: [usize; 3],
    axis: usize,
    taps: &AxisTaps,
) -> (Vec<f32>, [usize; 3]) {
    let mut new = shape;
    new[axis] = taps.len();
    let [nx, ny, _] = new;
    let [sx, sy, _] = shape;
    let mut out = vec![0.0f32; new.iter().product()];
    out.par_chunks_mut(nx * ny)
        .enumerate()
        .for_each(|(k, slab)| {
            for j in 0..ny {
                let row = &mut slab[j * nx..][..nx];
                match axis {
                    0 => {
                        let src = &data[sx * (j + sy * k)..][..sx];
                        for (o, t) in row.iter_mut().zip(taps) {
                            *o = t.iter().map(|&(s, w)| src[s] * w).sum();
                        }
                    }
                    1 => {
                        for &(s, w) in &taps[j] {
                            let src = &data[sx * (s + sy * k)..][..sx];
                            for (o, v) in row.iter_mut().zip(src) {
                                *o += v * w;
                            }
                        }
                    }
                    _ => {
                        for &(s, w) in &taps[k] {
                            let src = &data[sx * (j + sy * s)..][..sx];
                            for (o, v) in row.iter_mut().zip(src) {
                                *o += v * w;
                            }
                        }
                    }
                }
            }
        });
    (out, new)
}

fn separable(data: &mut Vec<f32>, shape: [usize; 3], taps: [AxisTaps; 3]) -> [usize; 3] {
    let mut s = shape;
    for (axis, t) in taps.iter().enumerate() {
        let (d, ns) = axis_pass(data, s, axis, t);
        *data = d;
        s = ns;
    }
    s
}

/// The intensity transforms, in place on a `[0, 1]` image of shape `shape`, then the output
/// range mapping.
pub(crate) fn intensity(
    cfg: &SampleConfig,
    shape: [usize; 3],
    img: &mut [f32],
    lab: &[u8],
    rng: &mut impl RngCore,
) {
    let aug = &cfg.augment;
    // Drawn only when enabled, so that plans without it keep their random stream.
    if aug.p_organ_shift > 0.0 && chance(rng, aug.p_organ_shift) {
        let shift: [f32; 5] = [0, 1, 2, 3, 4].map(|l| {
            if l == 0 {
                0.0
            } else {
                uniform(rng, aug.organ_shift) as f32
            }
        });
        // One field, blurred once (blurring is linear), so an organ's edge is as soft as a
        // real one instead of a step exactly on the label's boundary.
        let mut field: Vec<f32> = lab
            .iter()
            .map(|&l| shift.get(l as usize).copied().unwrap_or(0.0))
            .collect();
        separable(
            &mut field,
            shape,
            [0, 1, 2].map(|a| gauss_taps(shape[a], 1.0)),
        );
        // Clipped as the scanner's values are by the window.
        img.par_iter_mut()
            .zip(&field)
            .for_each(|(v, d)| *v = (*v + d).clamp(0.0, 1.0));
    }
    if chance(rng, aug.p_low_res) {
        let f = uniform(rng, aug.low_res);
        let coarse = shape.map(|n| ((n as f64 / f).round() as usize).max(1));
        let mut data = img.to_vec();
        let down = separable(
            &mut data,
            shape,
            [0, 1, 2].map(|a| resize_taps(shape[a], coarse[a])),
        );
        separable(
            &mut data,
            down,
            [0, 1, 2].map(|a| resize_taps(coarse[a], shape[a])),
        );
        img.copy_from_slice(&data);
    }
    if chance(rng, aug.p_blur) {
        let sigma = uniform(rng, aug.blur_sigma);
        if sigma > 0.0 {
            let mut data = img.to_vec();
            separable(
                &mut data,
                shape,
                [0, 1, 2].map(|a| gauss_taps(shape[a], sigma)),
            );
            img.copy_from_slice(&data);
        }
    }
    if chance(rng, aug.p_gamma) {
        let g = uniform(rng, aug.gamma);
        // A table with linear interpolation instead of `powf` per voxel (several times
        // faster). The first interval, where `x^g` is steepest, is computed exactly; elsewhere
        // the error is below 1e-4 for gammas from 0.7 up (the default range).
        const N: usize = 4096;
        let lut: Vec<f32> = (0..=N)
            .map(|n| (n as f64 / N as f64).powf(g) as f32)
            .collect();
        img.par_iter_mut().for_each(|v| {
            let x = v.clamp(0.0, 1.0) * N as f32;
            let i = (x as i32 as usize).min(N - 1);
            *v = if i == 0 && x > 0.0 {
                v.clamp(0.0, 1.0).powf(g as f32)
            } else {
                lerp(lut[i], lut[i + 1], x - i as f32)
            };
        });
    }
    if chance(rng, aug.p_contrast) {
        let c = uniform(rng, aug.contrast) as f32;
        let b = uniform(rng, aug.brightness) as f32;
        let mean =
            (img.par_iter().map(|&v| v as f64).sum::<f64>() / img.len().max(1) as f64) as f32;
        img.par_iter_mut()
            .for_each(|v| *v = (*v - mean) * c + mean + b);
    }
    if chance(rng, aug.p_noise) {
        let sigma = uniform(rng, aug.noise_sigma);
        let base = rng.next_u64();
        let slab = shape[0] * shape[1];
        img.par_chunks_mut(slab).enumerate().for_each(|(k, s)| {
            let mut r = ChaCha8Rng::seed_from_u64(base);
            r.set_stream(k as u64);
            // Box-Muller gives two independent normals per draw; use both.
            for pair in s.chunks_mut(2) {
                let u1 = 1.0 - unit(&mut r);
                let (sin, cos) = (std::f64::consts::TAU * unit(&mut r)).sin_cos();
                let rad = (-2.0 * u1.ln()).sqrt() * sigma;
                for (v, z) in pair.iter_mut().zip([cos, sin]) {
                    *v += (rad * z) as f32;
                }
            }
        });
    }
    let [lo, hi] = cfg.intensity_range;
    if lo != 0.0 || hi != 1.0 {
        img.par_iter_mut().for_each(|v| *v = lo + (hi - lo) * *v);
    }
}

/// Draws one sample of `case` into `img` and `lab` (each the size of the output grid, layout
/// `[D, H, W]`), with all randomness from `rng`.
pub fn sample_into(
    case: &CachedCase,
    cfg: &SampleConfig,
    rng: &mut ChaCha8Rng,
    img: &mut [f32],
    lab: &mut [u8],
) -> Result<()> {
    cfg.validate()?;
    let shape = cfg.shape_ijk();
    let n: usize = shape.iter().product();
    if img.len() != n || lab.len() != n {
        return Err(TrainError::Config(format!(
            "sample buffers hold {} and {} voxels, the grid {n}",
            img.len(),
            lab.len()
        )));
    }
    let m = draw_mapping(case, cfg, rng);
    resample(case, &m, shape, img, lab);
    intensity(cfg, shape, img, lab, rng);
    Ok(())
}
