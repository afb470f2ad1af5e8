//! The normalised surface Dice (NSD) of FLARE21, as the `surface-distance` package computes it.
//!
//! The surface of a mask is described on the corners of its voxels: every corner gets an 8-bit
//! neighbour code from the 2x2x2 voxels around it, a corner whose code is neither 0 nor 255 lies
//! on the surface, and its share of the surface area comes from the marching-cubes normals of its
//! code. Each surface corner of one mask is then "within tolerance" when the exact Euclidean
//! distance (with the voxel spacing) to the nearest surface corner of the other mask is `<=` the
//! tolerance. Every step below mirrors the package so that the numbers agree to rounding.

use crate::{MetricsError, edt, normals_table::NEIGHBOUR_CODE_TO_NORMALS};

/// Surface area in mm² that each 2x2x2 neighbour code contributes, for a voxel spacing.
///
/// Equals `surface_distance.lookup_tables.create_table_neighbour_code_to_surface_area(spacing)`:
/// each normal's components are scaled by `(s1*s2, s0*s2, s0*s1)` and the lengths summed.
pub fn surface_area_table(spacing_mm: [f64; 3]) -> [f64; 256] {
    let [s0, s1, s2] = spacing_mm;
    let mut table = [0.0; 256];
    for (area, normals) in table.iter_mut().zip(NEIGHBOUR_CODE_TO_NORMALS.iter()) {
        let mut sum = 0.0;
        for n in normals.iter() {
            // Same operation order as the package (`normal * spacing[a] * spacing[b]`).
            let v = [n[0] * s1 * s2, n[1] * s0 * s2, n[2] * s0 * s1];
            sum += (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        }
        *area = sum;
    }
    table
}

/// The 8-bit neighbour code of every voxel of `mask` (a grid of `shape`, `i` fastest).
///
/// Equals `scipy.ndimage.correlate(mask.astype(uint8), [[[128, 64], [32, 16]], [[8, 4], [2, 1]]],
/// mode="constant", cval=0)`: for an even-sized kernel SciPy centres it on its second element, so
/// the code of voxel `(i, j, k)` is built from voxels `i-1..=i`, `j-1..=j`, `k-1..=k`, weight 128
/// for `(i-1, j-1, k-1)` down to 1 for `(i, j, k)`, with zeros outside the grid.
///
/// Fails when `mask` does not hold `shape[0] * shape[1] * shape[2]` voxels.
pub fn neighbour_codes(mask: &[bool], shape: [usize; 3]) -> Result<Vec<u8>, MetricsError> {
    let expected = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
    if expected != Some(mask.len()) {
        return Err(MetricsError::MaskLength {
            shape,
            expected: expected.unwrap_or(usize::MAX),
            actual: mask.len(),
        });
    }
    Ok(codes_unchecked(mask, shape))
}

/// [`neighbour_codes`] once the length is known to match.
fn codes_unchecked(mask: &[bool], shape: [usize; 3]) -> Vec<u8> {
    let [n0, n1, n2] = shape;
    if n0 == 0 || n1 == 0 || n2 == 0 {
        return Vec::new();
    }
    let mut codes: Vec<u8> = Vec::with_capacity(mask.len());
    // The kernel is separable into bit shifts: (m[i-1] << 4 | m[i]), then the same along j with
    // << 2, then along k with << 1, giving weight 2^(4(1-di) + 2(1-dj) + (1-dk)) to each voxel.
    for row in mask.chunks_exact(n0) {
        let mut prev = 0u8;
        for &m in row {
            let m = u8::from(m);
            codes.push((prev << 4) | m);
            prev = m;
        }
    }
    let slab = n0 * n1;
    for plane in codes.chunks_exact_mut(slab) {
        // In place from the last row down, so that row j-1 still holds its old value.
        for j in (1..n1).rev() {
            let (lo, hi) = plane.split_at_mut(j * n0);
            for (c, &p) in hi[..n0].iter_mut().zip(&lo[(j - 1) * n0..]) {
                *c |= p << 2;
            }
        }
    }
    // Row 0 of every plane has no j-1 neighbour, so its bits for dj=0 stay 0 (zeros outside).
    for k in (1..n2).rev() {
        let (lo, hi) = codes.split_at_mut(k * slab);
        for (c, &p) in hi[..slab].iter_mut().zip(&lo[(k - 1) * slab..]) {
            *c |= p << 1;
        }
    }
    codes
}

/// Surface areas of two masks and the parts of each within tolerance of the other.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SurfaceOverlap {
    /// Total surface area of the ground truth, mm².
    pub area_gt: f64,
    /// Total surface area of the prediction, mm².
    pub area_pred: f64,
    /// Ground-truth surface area within tolerance of the predicted surface, mm².
    pub overlap_gt: f64,
    /// Predicted surface area within tolerance of the ground-truth surface, mm².
    pub overlap_pred: f64,
}

impl SurfaceOverlap {
    /// The surface Dice: `(overlap_gt + overlap_pred) / (area_gt + area_pred)`; NaN when both
    /// masks are empty (as the package; the FLARE rules decide that case before calling it).
    pub fn surface_dice(&self) -> f64 {
        (self.overlap_gt + self.overlap_pred) / (self.area_gt + self.area_pred)
    }
}

/// Surface overlap of two boolean masks on the same grid (`i` fastest), at `tolerance_mm`.
///
/// This is `compute_surface_distances` followed by `compute_surface_dice_at_tolerance` of the
/// `surface-distance` package: crop to the bounding box of the union, pad one voxel of zeros on
/// the high side, neighbour codes, areas, exact distance transforms, `<=` tolerance.
pub fn surface_overlap(
    gt: &[bool],
    pred: &[bool],
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    tolerance_mm: f64,
) -> Result<SurfaceOverlap, MetricsError> {
    let what = "surface overlap";
    check_inputs(what, gt.len(), pred.len(), shape, spacing_mm)?;
    check_tolerance(tolerance_mm)?;
    let Some((lo, hi)) = union_bounds(gt, pred, shape) else {
        return Ok(SurfaceOverlap::default());
    };
    let crop: u64 = (0..3).map(|a| (hi[a] - lo[a] + 1) as u64).product();
    ensure_crops_fit(what, crop)?;
    let (mg, mp, padded) = padded_crop(lo, hi, shape, |idx| (gt[idx], pred[idx]));
    Ok(overlap_on_padded_crop(
        &mg,
        &mp,
        padded,
        spacing_mm,
        tolerance_mm,
    ))
}

/// Bytes of working memory per voxel of a padded crop: two masks, two code maps, two border
/// maps, and the bounded distances of both directions (with one slab copy each).
pub(crate) const BYTES_PER_CROP_VOXEL: u64 = 6 + 2 * 8;

/// Refuses to score crops totalling `voxels` when their working memory is not available.
pub(crate) fn ensure_crops_fit(what: &str, voxels: u64) -> Result<(), MetricsError> {
    flare_volume::memory::ensure_fits(voxels.saturating_mul(BYTES_PER_CROP_VOXEL)).map_err(
        |source| MetricsError::OutOfMemory {
            what: what.to_string(),
            voxels,
            source,
        },
    )
}

/// Validates lengths and spacing shared by every entry point.
pub(crate) fn check_inputs(
    what: &str,
    gt: usize,
    pred: usize,
    shape: [usize; 3],
    spacing_mm: [f64; 3],
) -> Result<(), MetricsError> {
    let expected = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
    if expected != Some(gt) || gt != pred {
        return Err(MetricsError::DataLength {
            what: what.to_string(),
            shape,
            expected: expected.unwrap_or(usize::MAX),
            gt,
            pred,
        });
    }
    if spacing_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(MetricsError::BadSpacing {
            what: what.to_string(),
            spacing_mm,
        });
    }
    Ok(())
}

/// Rejects a negative or non-finite tolerance.
pub(crate) fn check_tolerance(tolerance_mm: f64) -> Result<(), MetricsError> {
    if tolerance_mm.is_finite() && tolerance_mm >= 0.0 {
        Ok(())
    } else {
        Err(MetricsError::BadTolerance {
            text: tolerance_mm.to_string(),
            reason: "a tolerance must be a finite number of millimetres, 0 or more".into(),
        })
    }
}

/// Half-open bounding box of the voxels true in either mask.
fn union_bounds(gt: &[bool], pred: &[bool], shape: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let [n0, n1, _] = shape;
    if shape.contains(&0) {
        return None;
    }
    let mut lo = shape;
    let mut hi = [0usize; 3];
    for (r, (g, p)) in gt.chunks_exact(n0).zip(pred.chunks_exact(n0)).enumerate() {
        let first = (0..n0).find(|&i| g[i] || p[i]);
        if let Some(first) = first {
            let last = (0..n0).rev().find(|&i| g[i] || p[i]).unwrap_or(first);
            let (j, k) = (r % n1, r / n1);
            lo = [lo[0].min(first), lo[1].min(j), lo[2].min(k)];
            hi = [hi[0].max(last + 1), hi[1].max(j + 1), hi[2].max(k + 1)];
        }
    }
    (hi[0] > 0).then_some((lo, hi))
}

/// The block `lo..hi` of both masks, padded with one voxel of `false` on the high side of each
/// axis (as the package's `_crop_to_bounding_box`). `at(index)` reads (gt, pred) at a linear
/// index of the full grid.
pub(crate) fn padded_crop(
    lo: [usize; 3],
    hi: [usize; 3],
    shape: [usize; 3],
    at: impl Fn(usize) -> (bool, bool),
) -> (Vec<bool>, Vec<bool>, [usize; 3]) {
    let padded = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
    let len = padded[0] * padded[1] * padded[2];
    let mut mg = vec![false; len];
    let mut mp = vec![false; len];
    for z in 0..padded[2] - 1 {
        for y in 0..padded[1] - 1 {
            let src = lo[0] + shape[0] * ((lo[1] + y) + shape[1] * (lo[2] + z));
            let dst = padded[0] * (y + padded[1] * z);
            for x in 0..padded[0] - 1 {
                let (g, p) = at(src + x);
                mg[dst + x] = g;
                mp[dst + x] = p;
            }
        }
    }
    (mg, mp, padded)
}

/// The NSD terms on an already cropped and padded pair of masks.
pub(crate) fn overlap_on_padded_crop(
    mg: &[bool],
    mp: &[bool],
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    tolerance_mm: f64,
) -> SurfaceOverlap {
    let table = surface_area_table(spacing_mm);
    let (codes_g, codes_p) =
        rayon::join(|| codes_unchecked(mg, shape), || codes_unchecked(mp, shape));
    let border =
        |codes: &[u8]| -> Vec<bool> { codes.iter().map(|&c| c != 0 && c != 255).collect() };
    let (border_g, border_p) = rayon::join(|| border(&codes_g), || border(&codes_p));
    // Total area: count the surface codes, then weigh the counts (codes 0 and 255, the vast
    // majority, are skipped so that the counters do not wait on each other).
    let total = |codes: &[u8]| -> f64 {
        let mut hist = [0u64; 256];
        for &c in codes {
            if c != 0 && c != 255 {
                hist[usize::from(c)] += 1;
            }
        }
        hist.iter().zip(&table).map(|(&n, &a)| n as f64 * a).sum()
    };
    // Each surface corner of one mask is within tolerance of the other's surface when the
    // exact distance to the nearest of the other's surface corners is `<=` the tolerance.
    let bound = edt::bound_sq(tolerance_mm);
    let within = |features: &[bool], queries: &[bool], codes: &[u8]| -> f64 {
        let g = edt::passes_01(features, shape, spacing_mm, bound);
        edt::pass_2_sum(&g, shape, spacing_mm, bound, queries, |i, d2| {
            if d2.sqrt() <= tolerance_mm {
                table[usize::from(codes[i])]
            } else {
                0.0
            }
        })
    };
    let ((area_gt, area_pred), (overlap_gt, overlap_pred)) = rayon::join(
        || (total(&codes_g), total(&codes_p)),
        || {
            rayon::join(
                || within(&border_p, &border_g, &codes_g),
                || within(&border_g, &border_p, &codes_p),
            )
        },
    );
    SurfaceOverlap {
        area_gt,
        area_pred,
        overlap_gt,
        overlap_pred,
    }
}
