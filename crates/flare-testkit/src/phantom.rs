//! Synthetic abdominal CT phantoms with exact organ labels, for tests and tiny test models.
//!
//! A phantom is an [`Anatomy`] (a body and its organs, in world millimetres, RAS+) sampled on a
//! voxel grid. Because every voxel is computed from its *world* position, the same anatomy comes
//! out the same on any grid: a RAS and an LPS array of one seed hold the same image once
//! reoriented, and an oblique grid shows the organs where they are in the world. That is what
//! makes phantoms useful for geometry tests: a model that finds the liver on the patient's right
//! in a RAS scan must find it there in an LPS one too.
//!
//! # Anatomy (world RAS+: +x patient's Right, +y Anterior, +z Superior)
//! The body is an elliptic cylinder centred on the world origin, sized from the field of view
//! ([`Anatomy::new`]). With `bx`, `by` its lateral and antero-posterior half-axes and `hz` half the
//! field of view along z, the organs sit at (before the per-seed jitter):
//!
//! | label | organ | HU | centre (x, y, z) | shape |
//! |---|---|---|---|---|
//! | 1 | liver | ~65 | (+0.45 bx, +0.05 by, +0.25 hz): patient's right, upper | large ellipsoid |
//! | 3 | spleen | ~50 | (-0.52 bx, -0.32 by, +0.28 hz): patient's left, posterior, upper | ellipsoid |
//! | 2 | kidneys | ~150 | (+-0.35 bx, -0.45 by, -0.10 hz): both sides, posterior, lower | two ellipsoids |
//! | 4 | pancreas | ~90 | head (+0.05 bx, +0.05 by) to tail (-0.35 bx, -0.05 by), z ~0, radius 0.12 bx | capsule |
//! | 0 | spine | ~450 | (0, -0.72 by), all z | cylinder |
//!
//! Around them: soft tissue mixed with fat (~20 HU), a fat rim (~-100 HU) in the outer 10% of
//! the body, and air (-1000 HU) outside. Per seed, every organ's size is scaled by 0.85-1.15 per
//! axis, its centre moves by up to 5% of the body's half-axes and its mean HU by up to +-6 (+-8
//! for kidney and pancreas); each voxel then gets Gaussian noise (sigma
//! [`PhantomSpec::noise_hu`], 10 HU by default) and is rounded to a whole HU, as CT is stored.
//! Liver, spleen and soft tissue overlap in intensity once noisy, so a model has to use position
//! and shape, not intensity alone.
//!
//! The noise is a hash of the seed and the voxel's world position (to 0.001 mm), so it too is the
//! same on every grid that has a voxel at that position.

use flare_volume::{Geometry, GeometryError, LabelMap, Volume};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Label of the liver.
pub const LIVER: u8 = 1;
/// Label of the kidneys.
pub const KIDNEY: u8 = 2;
/// Label of the spleen.
pub const SPLEEN: u8 = 3;
/// Label of the pancreas.
pub const PANCREAS: u8 = 4;

/// HU of air outside the body.
pub const AIR_HU: f32 = -1000.0;

/// How the array axes of a phantom lie in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhantomOrientation {
    /// Axes point to the patient's Right, Anterior and Superior (NIfTI's canonical layout).
    Ras,
    /// Axes point to the patient's Left, Posterior and Superior (DICOM's layout).
    Lps,
}

/// What phantom to make: its grid and its seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhantomSpec {
    /// Voxels along the array axes `(i, j, k)`.
    pub shape: [usize; 3],
    /// Voxel spacing along the array axes, in millimetres.
    pub spacing_mm: [f64; 3],
    /// Seed of the anatomy's jitter and of the noise.
    pub seed: u64,
    /// Axis layout of the array (the anatomy does not depend on it).
    pub orientation: PhantomOrientation,
    /// Standard deviation of the voxel noise in HU (0 for a noise-free phantom).
    pub noise_hu: f64,
}

impl PhantomSpec {
    /// A RAS phantom with 10 HU noise.
    pub fn new(shape: [usize; 3], spacing_mm: [f64; 3], seed: u64) -> PhantomSpec {
        PhantomSpec {
            shape,
            spacing_mm,
            seed,
            orientation: PhantomOrientation::Ras,
            noise_hu: 10.0,
        }
    }

    /// The same phantom on an LPS array.
    pub fn lps(self) -> PhantomSpec {
        PhantomSpec {
            orientation: PhantomOrientation::Lps,
            ..self
        }
    }

    /// The grid: axis-aligned in the given orientation, its centre on the world origin.
    pub fn geometry(&self) -> Result<Geometry, GeometryError> {
        let sign = match self.orientation {
            PhantomOrientation::Ras => [1.0, 1.0, 1.0],
            PhantomOrientation::Lps => [-1.0, -1.0, 1.0],
        };
        let direction = [
            [sign[0], 0.0, 0.0],
            [0.0, sign[1], 0.0],
            [0.0, 0.0, sign[2]],
        ];
        // Centre the grid on the origin so that the body (centred there) fills it whatever the
        // orientation.
        let mut origin = [0.0; 3];
        for a in 0..3 {
            let half = (self.shape[a].max(1) as f64 - 1.0) / 2.0 * self.spacing_mm[a];
            origin[a] = -sign[a] * half;
        }
        Geometry::new(self.shape, self.spacing_mm, origin, direction)
    }

    /// The anatomy this spec samples: sized to the grid's field of view (which is the same for
    /// both orientations), jittered by the seed.
    pub fn anatomy(&self) -> Anatomy {
        // Axis-aligned grids: array axis a lies along world axis a in both orientations.
        let extent = [0, 1, 2].map(|a| self.shape[a] as f64 * self.spacing_mm[a]);
        Anatomy::new(self.seed, extent)
    }
}

/// Makes the phantom of `spec`: the CT in HU (whole numbers) and its organ labels, on
/// [`PhantomSpec::geometry`]. Fails only if the spec's grid is invalid (a zero size, a
/// non-positive spacing).
pub fn phantom(spec: &PhantomSpec) -> Result<(Volume<f32>, LabelMap), GeometryError> {
    let geometry = spec.geometry()?;
    Ok(phantom_on(&geometry, &spec.anatomy(), spec.noise_hu))
}

/// Samples `anatomy` on any grid (e.g. an oblique one): each voxel gets the label and HU of its
/// world position, plus noise of standard deviation `noise_hu`, rounded to a whole HU.
pub fn phantom_on(
    geometry: &Geometry,
    anatomy: &Anatomy,
    noise_hu: f64,
) -> (Volume<f32>, LabelMap) {
    let [nx, ny, nz] = geometry.shape();
    let affine = geometry.affine();
    let mut hu = Vec::with_capacity(geometry.n_voxels());
    let mut labels = Vec::with_capacity(geometry.n_voxels());
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let xyz = affine.apply([i as f64, j as f64, k as f64]);
                let (label, mean) = anatomy.tissue_at(xyz);
                let noise = if mean <= AIR_HU as f64 || noise_hu == 0.0 {
                    0.0
                } else {
                    noise_hu * gaussian_at(anatomy.seed, xyz)
                };
                hu.push((mean + noise).round() as f32);
                labels.push(label);
            }
        }
    }
    // The lengths match the geometry by construction.
    let hu = Volume::new(*geometry, hu).unwrap_or_else(|_| Volume::filled(*geometry, AIR_HU));
    let labels = Volume::new(*geometry, labels).unwrap_or_else(|_| Volume::filled(*geometry, 0));
    (hu, labels)
}

/// A solid ellipsoid aligned with the world axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipsoid {
    /// Centre (world mm).
    pub centre_mm: [f64; 3],
    /// Half-axes along world x, y, z (mm).
    pub half_mm: [f64; 3],
}

impl Ellipsoid {
    fn contains(&self, p: [f64; 3]) -> bool {
        (0..3)
            .map(|a| ((p[a] - self.centre_mm[a]) / self.half_mm[a]).powi(2))
            .sum::<f64>()
            <= 1.0
    }

    /// Volume in millilitres.
    pub fn volume_ml(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.half_mm.iter().product::<f64>() / 1000.0
    }
}

/// A capsule: the points within `radius_mm` of the segment from `a_mm` to `b_mm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capsule {
    /// One end of the axis (world mm).
    pub a_mm: [f64; 3],
    /// The other end (world mm).
    pub b_mm: [f64; 3],
    /// Radius (mm).
    pub radius_mm: f64,
}

impl Capsule {
    fn contains(&self, p: [f64; 3]) -> bool {
        let d = [0, 1, 2].map(|i| self.b_mm[i] - self.a_mm[i]);
        let w = [0, 1, 2].map(|i| p[i] - self.a_mm[i]);
        let dd: f64 = d.iter().map(|v| v * v).sum();
        let t = if dd > 0.0 {
            ((0..3).map(|i| w[i] * d[i]).sum::<f64>() / dd).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let dist2: f64 = (0..3).map(|i| (w[i] - t * d[i]).powi(2)).sum();
        dist2 <= self.radius_mm * self.radius_mm
    }

    /// The midpoint of the axis (world mm).
    pub fn centre_mm(&self) -> [f64; 3] {
        [0, 1, 2].map(|i| (self.a_mm[i] + self.b_mm[i]) / 2.0)
    }
}

/// A body and its organs in world millimetres (RAS+); see the module doc for the layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Anatomy {
    /// Seed of the jitter, also keying the voxel noise.
    pub seed: u64,
    /// Lateral (x) and antero-posterior (y) half-axes of the body's elliptic cross-section (mm),
    /// centred on the world z axis.
    pub body_half_mm: [f64; 2],
    /// Liver (label 1).
    pub liver: Ellipsoid,
    /// Right kidney (label 2; at +x).
    pub kidney_right: Ellipsoid,
    /// Left kidney (label 2; at -x).
    pub kidney_left: Ellipsoid,
    /// Spleen (label 3).
    pub spleen: Ellipsoid,
    /// Pancreas (label 4), head at `a_mm` (patient's right), tail at `b_mm`.
    pub pancreas: Capsule,
    /// Spine (bone, label 0): centre (x, y) and radius, all z (mm).
    pub spine: ([f64; 2], f64),
    /// Mean HU of background soft tissue, fat, liver, kidney, spleen, pancreas and bone.
    pub hu: TissueHu,
}

/// Mean HU of each tissue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TissueHu {
    /// Soft tissue between organs.
    pub soft: f64,
    /// The fat rim under the skin.
    pub fat: f64,
    /// Liver.
    pub liver: f64,
    /// Kidney (cortex-like).
    pub kidney: f64,
    /// Spleen.
    pub spleen: f64,
    /// Pancreas.
    pub pancreas: f64,
    /// Vertebral bone.
    pub bone: f64,
}

impl Anatomy {
    /// The anatomy of `seed` for a field of view of `extent_mm` (world x, y, z) centred on the
    /// world origin: the body spans about 84% of the lateral and 64% of the antero-posterior
    /// field (air around it), the organs lie within the central 80% along z.
    pub fn new(seed: u64, extent_mm: [f64; 3]) -> Anatomy {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut u = |lo: f64, hi: f64| rng.random_range(lo..=hi);
        let bx = 0.42 * extent_mm[0] * u(0.92, 1.05);
        let by = 0.32 * extent_mm[1] * u(0.92, 1.05);
        let hz = 0.5 * extent_mm[2];
        // Centres in body units, then size and position jitter per organ.
        let mut organ = |c: [f64; 3], h: [f64; 3]| {
            let centre = [
                (c[0] + u(-0.05, 0.05)) * bx,
                (c[1] + u(-0.05, 0.05)) * by,
                (c[2] + u(-0.05, 0.05)) * hz,
            ];
            let half = [
                h[0] * bx * u(0.85, 1.15),
                h[1] * by * u(0.85, 1.15),
                h[2] * hz * u(0.85, 1.15),
            ];
            Ellipsoid {
                centre_mm: centre,
                half_mm: half,
            }
        };
        let liver = organ([0.45, 0.05, 0.25], [0.38, 0.55, 0.38]);
        let spleen = organ([-0.52, -0.32, 0.28], [0.22, 0.30, 0.26]);
        let kidney_right = organ([0.35, -0.45, -0.10], [0.13, 0.20, 0.28]);
        let kidney_left = organ([-0.35, -0.45, -0.12], [0.13, 0.20, 0.28]);
        let head = organ([0.05, 0.05, -0.02], [0.0, 0.0, 0.0]).centre_mm;
        let tail = organ([-0.35, -0.05, 0.02], [0.0, 0.0, 0.0]).centre_mm;
        // Thicker than a real pancreas relative to the body, so that a coarse stage-1 grid
        // still sees it.
        let pancreas = Capsule {
            a_mm: head,
            b_mm: tail,
            radius_mm: 0.12 * bx * u(0.85, 1.15),
        };
        let spine = ([0.0, -0.72 * by], 0.14 * by * u(0.9, 1.1));
        let hu = TissueHu {
            soft: 20.0 + u(-5.0, 5.0),
            fat: -100.0 + u(-10.0, 10.0),
            liver: 65.0 + u(-6.0, 6.0),
            kidney: 150.0 + u(-8.0, 8.0),
            spleen: 50.0 + u(-6.0, 6.0),
            pancreas: 90.0 + u(-8.0, 8.0),
            bone: 450.0 + u(-30.0, 30.0),
        };
        Anatomy {
            seed,
            body_half_mm: [bx, by],
            liver,
            kidney_right,
            kidney_left,
            spleen,
            pancreas,
            spine,
            hu,
        }
    }

    /// The label and mean HU (before noise) at a world position.
    pub fn tissue_at(&self, xyz: [f64; 3]) -> (u8, f64) {
        let [bx, by] = self.body_half_mm;
        let r2 = (xyz[0] / bx).powi(2) + (xyz[1] / by).powi(2);
        if r2 > 1.0 {
            return (0, AIR_HU as f64);
        }
        let ([sx, sy], sr) = self.spine;
        if (xyz[0] - sx).powi(2) + (xyz[1] - sy).powi(2) <= sr * sr {
            return (0, self.hu.bone);
        }
        // Precedence settles the rare overlaps left by the jitter.
        if self.kidney_right.contains(xyz) || self.kidney_left.contains(xyz) {
            return (KIDNEY, self.hu.kidney);
        }
        if self.spleen.contains(xyz) {
            return (SPLEEN, self.hu.spleen);
        }
        if self.pancreas.contains(xyz) {
            return (PANCREAS, self.hu.pancreas);
        }
        if self.liver.contains(xyz) {
            return (LIVER, self.hu.liver);
        }
        if r2 > 0.81 {
            (0, self.hu.fat)
        } else {
            (0, self.hu.soft)
        }
    }

    /// The nominal centre of an organ (world mm; for the kidneys, the midpoint of the two), or
    /// `None` for a label that is not an organ. An organ's voxel centroid lies near it, though
    /// not exactly where it overlaps another organ or leaves the field of view.
    pub fn organ_centre_mm(&self, label: u8) -> Option<[f64; 3]> {
        match label {
            LIVER => Some(self.liver.centre_mm),
            KIDNEY => {
                let (r, l) = (self.kidney_right.centre_mm, self.kidney_left.centre_mm);
                Some([0, 1, 2].map(|a| (r[a] + l[a]) / 2.0))
            }
            SPLEEN => Some(self.spleen.centre_mm),
            PANCREAS => Some(self.pancreas.centre_mm()),
            _ => None,
        }
    }
}

/// Standard normal noise as a pure function of the seed and a world position (to 0.001 mm), so
/// that two grids sharing a voxel position share its noise.
fn gaussian_at(seed: u64, xyz: [f64; 3]) -> f64 {
    let q = xyz.map(|v| (v * 1000.0).round() as i64 as u64);
    let mut h = splitmix(seed ^ 0x05EE_D0FF_1A2E);
    for v in q {
        h = splitmix(h ^ v);
    }
    let u1 = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((splitmix(h) >> 11) as f64) / (1u64 << 53) as f64;
    // Box-Muller; u1 is never 0.
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash step.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Voxel centroid of a label in world mm, or `None` if the label is absent.
pub fn centroid_mm(labels: &LabelMap, label: u8) -> Option<[f64; 3]> {
    let g = labels.geometry();
    let [nx, ny, nz] = g.shape();
    let mut sum = [0.0; 3];
    let mut n = 0usize;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if labels.data()[g.linear_index([i, j, k])] == label {
                    for (s, v) in sum.iter_mut().zip([i, j, k]) {
                        *s += v as f64;
                    }
                    n += 1;
                }
            }
        }
    }
    (n > 0).then(|| g.index_to_world(sum.map(|s| s / n as f64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flare_volume::Orientation;

    fn spec(seed: u64) -> PhantomSpec {
        PhantomSpec::new([64, 56, 40], [2.5, 2.5, 4.0], seed)
    }

    fn count(labels: &LabelMap, l: u8) -> usize {
        labels.data().iter().filter(|&&v| v == l).count()
    }

    #[test]
    fn every_organ_is_present_with_a_plausible_volume() {
        for seed in 0..6 {
            let s = spec(seed);
            let (ct, labels) = phantom(&s).expect("phantom");
            let a = s.anatomy();
            let ml = labels.geometry().voxel_volume_ml();
            let liver = count(&labels, LIVER) as f64 * ml;
            let kidney = count(&labels, KIDNEY) as f64 * ml;
            let spleen = count(&labels, SPLEEN) as f64 * ml;
            let pancreas = count(&labels, PANCREAS) as f64 * ml;
            // Each organ's voxel volume is close to its analytic one (small clipping by
            // precedence), and the organs rank by size as in a patient.
            assert!(
                (liver / a.liver.volume_ml() - 1.0).abs() < 0.15,
                "seed {seed}: liver {liver} mL vs {}",
                a.liver.volume_ml()
            );
            let kidneys = a.kidney_left.volume_ml() + a.kidney_right.volume_ml();
            assert!(
                (kidney / kidneys - 1.0).abs() < 0.15,
                "seed {seed}: kidney {kidney}"
            );
            assert!(
                (spleen / a.spleen.volume_ml() - 1.0).abs() < 0.15,
                "seed {seed}: spleen {spleen}"
            );
            assert!(
                liver > spleen && liver > kidney && liver > pancreas,
                "seed {seed}"
            );
            assert!(
                pancreas > 0.02 * liver,
                "seed {seed}: pancreas {pancreas} mL"
            );
            // Air outside, fat and soft tissue and bone inside.
            let hu = ct.data();
            assert_eq!(hu[0], AIR_HU, "corner is air");
            assert!(hu.iter().any(|&v| v > 300.0), "bone present");
            assert!(hu.iter().all(|v| v.fract() == 0.0), "whole HU");
        }
    }

    #[test]
    fn organs_lie_on_the_anatomical_sides() {
        let (_, labels) = phantom(&spec(3)).expect("phantom");
        let c = |l| centroid_mm(&labels, l).expect("organ present");
        // RAS+: +x is the patient's right, +y anterior, +z superior.
        assert!(c(LIVER)[0] > 20.0, "liver on the patient's right");
        assert!(c(SPLEEN)[0] < -20.0, "spleen on the patient's left");
        assert!(c(SPLEEN)[1] < c(LIVER)[1], "spleen posterior to the liver");
        assert!(
            c(KIDNEY)[1] < c(PANCREAS)[1],
            "pancreas anterior to the kidneys"
        );
        assert!(c(KIDNEY)[2] < c(LIVER)[2], "kidneys below the liver");
        // Both kidneys: label 2 on both sides of the midline.
        let g = *labels.geometry();
        let sides = labels
            .data()
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l == KIDNEY)
            .map(|(n, _)| {
                let i = n % g.shape()[0];
                g.index_to_world([i as f64, 0.0, 0.0])[0] > 0.0
            })
            .fold([false; 2], |mut s, right| {
                s[right as usize] = true;
                s
            });
        assert_eq!(sides, [true, true], "a kidney on each side");
    }

    #[test]
    fn same_seed_same_phantom_other_seed_other_phantom() {
        let a = phantom(&spec(7)).expect("a");
        let b = phantom(&spec(7)).expect("b");
        assert_eq!(a, b);
        let c = phantom(&spec(8)).expect("c");
        assert_ne!(a.1, c.1);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn ras_and_lps_are_one_world_image() {
        let ras = spec(11);
        let lps = ras.lps();
        let (ct_r, lab_r) = phantom(&ras).expect("ras");
        let (ct_l, lab_l) = phantom(&lps).expect("lps");
        assert_eq!(lab_l.geometry().orientation().to_string(), "LPS");
        assert_ne!(lab_r.data(), lab_l.data(), "the arrays differ");
        let (axes, flips) = Orientation::from_direction(&lab_l.geometry().direction()).to_ras();
        let ct_l = ct_l.reorient(axes, flips).expect("reorient");
        let lab_l = lab_l.reorient(axes, flips).expect("reorient");
        assert!(lab_l.geometry().same_grid(lab_r.geometry(), 1e-9));
        assert_eq!(lab_l.data(), lab_r.data());
        assert_eq!(ct_l.data(), ct_r.data());
    }

    #[test]
    fn an_oblique_grid_shows_the_organs_where_they_are() {
        let s = spec(5);
        let anatomy = s.anatomy();
        let (_, lab_r) = phantom(&s).expect("ras");
        // 20 degrees about z, a finer in-plane grid, shifted origin.
        let (c, sn) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
        let dir = [[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]];
        let shape = [96, 90, 40];
        let spacing = [2.0, 2.0, 4.0];
        let centre = [(96.0 - 1.0) / 2.0 * 2.0, (90.0 - 1.0) / 2.0 * 2.0, 78.0];
        let origin = [0, 1, 2].map(|r| -(0..3).map(|a| dir[r][a] * centre[a]).sum::<f64>());
        let g = Geometry::new(shape, spacing, origin, dir).expect("oblique");
        let (_, lab_o) = phantom_on(&g, &anatomy, 10.0);
        for l in [LIVER, KIDNEY, SPLEEN, PANCREAS] {
            let a = centroid_mm(&lab_r, l).expect("ras organ");
            let b = centroid_mm(&lab_o, l).expect("oblique organ");
            let d = (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt();
            assert!(
                d < 2.5,
                "label {l}: centroid {a:?} vs {b:?} ({d:.2} mm apart)"
            );
        }
    }

    #[test]
    fn noise_has_the_requested_spread() {
        let mut s = spec(2);
        s.noise_hu = 10.0;
        let (ct, labels) = phantom(&s).expect("noisy");
        let liver: Vec<f64> = ct
            .data()
            .iter()
            .zip(labels.data())
            .filter(|&(_, &l)| l == LIVER)
            .map(|(&v, _)| v as f64)
            .collect();
        let n = liver.len() as f64;
        let mean = liver.iter().sum::<f64>() / n;
        let sd = (liver.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - s.anatomy().hu.liver).abs() < 1.0, "mean {mean}");
        assert!((sd - 10.0).abs() < 0.6, "sd {sd}");
    }
}
