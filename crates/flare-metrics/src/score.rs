//! DSC and NSD of the organs of one case (FLARE21's four unless told otherwise), with FLARE21's
//! rules for empty masks.

use flare_labels::LabelSet;
use rayon::prelude::*;

use crate::{
    LabelValue, MAX_ORGANS, MetricsError, SurfaceOverlap, Tolerances,
    labels::ClassMap,
    surface::{check_inputs, ensure_crops_fit, overlap_on_padded_crop, padded_crop},
};

/// Classes the tallies hold: background, up to [`MAX_ORGANS`] organs, and "other value".
const CLASSES: usize = MAX_ORGANS + 2;

/// The two scores of one organ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrganScore {
    /// Dice similarity coefficient, 0..=1.
    pub dsc: f64,
    /// Normalised surface Dice at the organ's tolerance, 0..=1.
    pub nsd: f64,
}

/// Voxel counts of one organ: in the ground truth, in the prediction, in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrganCounts {
    /// Voxels labelled with the organ in the ground truth.
    pub gt: u64,
    /// Voxels labelled with the organ in the prediction.
    pub pred: u64,
    /// Voxels labelled with the organ in both.
    pub both: u64,
}

impl OrganCounts {
    /// FLARE21's DSC: 1 when both are empty, 0 when only the ground truth is, else
    /// `2 |G ∩ P| / (|G| + |P|)` (counts are exact integers; one rounding at the division).
    pub fn dsc(&self) -> f64 {
        match (self.gt, self.pred) {
            (0, 0) => 1.0,
            (0, _) => 0.0,
            _ => (2 * self.both) as f64 / (self.gt + self.pred) as f64,
        }
    }
}

/// The scores of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseScore {
    /// DSC and NSD per organ, in the label set's order (FLARE21: label 1 first).
    pub organs: Vec<OrganScore>,
    /// Voxel counts per organ, in the same order.
    pub counts: Vec<OrganCounts>,
    /// Surface areas per organ (zero where FLARE's rules decided without surfaces).
    pub surfaces: Vec<SurfaceOverlap>,
    /// Prediction voxels whose value is no organ and not 0 (scored as background).
    pub pred_other_voxels: u64,
    /// Ground-truth voxels whose value is no organ and not 0 (scored as background).
    pub gt_other_voxels: u64,
}

impl CaseScore {
    /// Mean DSC over the organs (the case's DSC in FLARE's ranking).
    pub fn mean_dsc(&self) -> f64 {
        self.organs.iter().map(|o| o.dsc).sum::<f64>() / self.organs.len() as f64
    }

    /// Mean NSD over the organs (the case's NSD in FLARE's ranking).
    pub fn mean_nsd(&self) -> f64 {
        self.organs.iter().map(|o| o.nsd).sum::<f64>() / self.organs.len() as f64
    }

    /// The score FLARE gives a case with no prediction: every voxel predicted background.
    /// `gt_counts`: the ground truth's voxels per organ.
    pub fn missing_prediction(gt_counts: &[u64]) -> CaseScore {
        let n = gt_counts.len();
        let counts = gt_counts
            .iter()
            .map(|&gt| OrganCounts {
                gt,
                ..OrganCounts::default()
            })
            .collect();
        let organs = gt_counts
            .iter()
            .map(|&gt| {
                let both_empty = gt == 0;
                let s = if both_empty { 1.0 } else { 0.0 };
                OrganScore { dsc: s, nsd: s }
            })
            .collect();
        CaseScore {
            organs,
            counts,
            surfaces: vec![SurfaceOverlap::default(); n],
            pred_other_voxels: 0,
            gt_other_voxels: 0,
        }
    }
}

/// Voxel counts of each organ of `labels` in a label map, in the set's order (what a missing
/// prediction is scored on).
pub fn organ_voxel_counts<L: LabelValue>(map: &[L], labels: &LabelSet) -> Vec<u64> {
    let classes = ClassMap::new(labels);
    let per_class = map
        .par_chunks(1 << 16)
        .map(|chunk| {
            let mut c = [0u64; 256];
            for &v in chunk {
                c[usize::from(classes.of(v))] += 1;
            }
            c
        })
        .reduce(|| [0u64; 256], |a, b| std::array::from_fn(|i| a[i] + b[i]));
    (1..=classes.organs()).map(|o| per_class[o]).collect()
}

/// Voxel counts and bounding boxes of every class, gathered in one pass over both maps.
#[derive(Clone)]
struct Stats {
    /// `confusion[g][p]`: voxels of class g in the ground truth and p in the prediction.
    confusion: [[u64; CLASSES]; CLASSES],
    /// Half-open bounding boxes of the organs (index = label) in the union of both maps.
    lo: [[usize; 3]; CLASSES],
    hi: [[usize; 3]; CLASSES],
}

impl Stats {
    fn empty() -> Stats {
        Stats {
            confusion: [[0; CLASSES]; CLASSES],
            lo: [[usize::MAX; 3]; CLASSES],
            hi: [[0; 3]; CLASSES],
        }
    }

    fn merge(mut self, other: Stats) -> Stats {
        for g in 0..CLASSES {
            for p in 0..CLASSES {
                self.confusion[g][p] += other.confusion[g][p];
            }
            for a in 0..3 {
                self.lo[g][a] = self.lo[g][a].min(other.lo[g][a]);
                self.hi[g][a] = self.hi[g][a].max(other.hi[g][a]);
            }
        }
        self
    }
}

/// Counts and union bounding boxes of a slab of rows (one `k`), in one sweep. Voxels that are
/// background in both maps are not visited one by one: they are counted at the end as the rest.
fn slab_stats<G: LabelValue, P: LabelValue>(
    gt: &[G],
    pred: &[P],
    n0: usize,
    k: usize,
    classes: &ClassMap,
) -> Stats {
    let mut s = Stats::empty();
    let bytes = G::as_u8_slice(gt).zip(P::as_u8_slice(pred));
    for j in 0..gt.len() / n0 {
        let row = j * n0..(j + 1) * n0;
        // First and last column of each class on this row, folded into the boxes once per row.
        let mut first = [usize::MAX; CLASSES];
        let mut last = [0usize; CLASSES];
        let mut visit = |i: usize, cg: usize, cp: usize| {
            s.confusion[cg][cp] += 1;
            for c in [cg, cp] {
                first[c] = first[c].min(i);
                last[c] = i;
            }
        };
        match bytes {
            Some((g, p)) => {
                // Byte labels: skip eight voxels at a time where both maps hold zeros.
                let (g_row, p_row) = (&g[row.clone()], &p[row.clone()]);
                let mut i = 0;
                for (gw, pw) in g_row.chunks_exact(8).zip(p_row.chunks_exact(8)) {
                    let word = |b: &[u8]| <[u8; 8]>::try_from(b).map_or(1, u64::from_ne_bytes);
                    if (word(gw) | word(pw)) != 0 {
                        for t in 0..8 {
                            let (cg, cp) = (classes.of_byte(gw[t]), classes.of_byte(pw[t]));
                            if (cg | cp) != 0 {
                                visit(i + t, usize::from(cg), usize::from(cp));
                            }
                        }
                    }
                    i += 8;
                }
                for t in i..n0 {
                    let (cg, cp) = (classes.of_byte(g_row[t]), classes.of_byte(p_row[t]));
                    if (cg | cp) != 0 {
                        visit(t, usize::from(cg), usize::from(cp));
                    }
                }
            }
            None => {
                for (i, (g, p)) in gt[row.clone()].iter().zip(&pred[row]).enumerate() {
                    let (cg, cp) = (classes.of(*g), classes.of(*p));
                    if (cg | cp) != 0 {
                        visit(i, usize::from(cg), usize::from(cp));
                    }
                }
            }
        }
        for c in 1..=classes.organs() {
            if first[c] != usize::MAX {
                s.lo[c] = [
                    s.lo[c][0].min(first[c]),
                    s.lo[c][1].min(j),
                    s.lo[c][2].min(k),
                ];
                s.hi[c] = [
                    s.hi[c][0].max(last[c] + 1),
                    s.hi[c][1].max(j + 1),
                    s.hi[c][2].max(k + 1),
                ];
            }
        }
    }
    let visited: u64 = s.confusion.iter().flatten().sum();
    s.confusion[0][0] += gt.len() as u64 - visited;
    s
}

/// Scores the organs of one case: ground truth `gt` and prediction `pred` on the same grid of
/// `shape` (`i` fastest) with voxel spacing `spacing_mm`; the organs are those of
/// `tolerances`' label set (FLARE21's four by default), each NSD at its tolerance.
///
/// Values other than 0 and the organs' (for FLARE21: other than 0..=4) belong to no organ (they
/// are counted in the result). The organs are scored in parallel; each NSD works on the
/// bounding box of its two masks only.
pub fn score_case<G: LabelValue, P: LabelValue>(
    gt: &[G],
    pred: &[P],
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    tolerances: &Tolerances,
) -> Result<CaseScore, MetricsError> {
    let what = "case";
    check_inputs(what, gt.len(), pred.len(), shape, spacing_mm)?;
    let classes = ClassMap::new(tolerances.labels());
    let organs = classes.organs();
    if organs > MAX_ORGANS {
        return Err(MetricsError::TooManyOrgans {
            organs,
            max: MAX_ORGANS,
        });
    }
    let [n0, n1, _] = shape;
    let slab = n0 * n1;
    let stats = if slab == 0 {
        Stats::empty()
    } else {
        gt.par_chunks(slab)
            .zip(pred.par_chunks(slab))
            .enumerate()
            .map(|(k, (g, p))| slab_stats(g, p, n0, k, &classes))
            .reduce(Stats::empty, Stats::merge)
    };
    let counts: Vec<OrganCounts> = (0..organs)
        .map(|o| {
            let c = o + 1;
            OrganCounts {
                gt: stats.confusion[c].iter().sum(),
                pred: stats.confusion.iter().map(|row| row[c]).sum(),
                both: stats.confusion[c][c],
            }
        })
        .collect();
    // The organs are scored at once: their crops must fit in memory together.
    let crops: u64 = (1..=organs)
        .filter(|&c| counts[c - 1].gt > 0)
        .map(|c| {
            (0..3)
                .map(|a| (stats.hi[c][a] - stats.lo[c][a] + 1) as u64)
                .product::<u64>()
        })
        .sum();
    ensure_crops_fit(what, crops)?;
    let per_organ: Vec<Result<(OrganScore, SurfaceOverlap), MetricsError>> = (0..organs)
        .into_par_iter()
        .map(|o| {
            let class = (o + 1) as u8;
            let n = counts[o];
            let dsc = n.dsc();
            if n.gt == 0 {
                // FLARE: both empty scores 1, an organ predicted where there is none scores 0.
                return Ok((OrganScore { dsc, nsd: dsc }, SurfaceOverlap::default()));
            }
            let (lo, hi) = (stats.lo[o + 1], stats.hi[o + 1]);
            let (mg, mp, padded) = padded_crop(lo, hi, shape, |idx| {
                (classes.of(gt[idx]) == class, classes.of(pred[idx]) == class)
            });
            let tol = tolerances.as_array()[o];
            let surf = overlap_on_padded_crop(&mg, &mp, padded, spacing_mm, tol);
            Ok((
                OrganScore {
                    dsc,
                    nsd: surf.surface_dice(),
                },
                surf,
            ))
        })
        .collect();
    let mut scores = Vec::with_capacity(organs);
    let mut surfaces = Vec::with_capacity(organs);
    for r in per_organ {
        let (score, surface) = r?;
        scores.push(score);
        surfaces.push(surface);
    }
    let other = usize::from(classes.other());
    Ok(CaseScore {
        organs: scores,
        counts,
        surfaces,
        pred_other_voxels: stats.confusion.iter().map(|row| row[other]).sum(),
        gt_other_voxels: stats.confusion[other].iter().sum(),
    })
}
