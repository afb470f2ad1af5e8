//! Exact Euclidean distances up to a bound, by separable lower envelopes of parabolas.
//!
//! The NSD only asks, for each surface corner of one mask, whether the nearest surface corner of
//! the other lies within the tolerance. This module answers that exactly and in linear time with
//! the separable algorithm of Felzenszwalb and Huttenlocher (Theory of Computing 8, 2012): one
//! pass per array axis, each taking the lower envelope of parabolas along every line, on the
//! union bounding box only. Two things make it both fast and equal to the package's numbers:
//!
//! - **SciPy's arithmetic.** SciPy's `distance_transform_edt` finds the nearest feature, then
//!   evaluates `sqrt(((d0*s0)^2 + (d1*s1)^2) + (d2*s2)^2)` for its integer offset `d`. Our passes
//!   run in axis order 0, 1, 2 and the value carried from pass to pass is exactly that partial sum
//!   (`(d0*s0)^2`, then `+ (d1*s1)^2`, then `+ (d2*s2)^2`, the same operations in the same order),
//!   so the final value is, bit for bit, SciPy's squared distance for the feature found.
//! - **A bound.** A line's site whose partial sum already exceeds the squared tolerance can never
//!   be within tolerance (rounding is monotonic, so partial sums never exceed the total). Such
//!   sites are dropped, so most lines hold few sites or none and are skipped. The bound has a
//!   relative margin of 1e-6 so that no site whose rounded distance is `<=` the tolerance is lost.
//!
//! - **Short lines of sight.** With the bound, a site farther than `r = floor(sqrt(bound) / s)`
//!   voxels along an axis cannot matter. When `2r + 1` is small (1 mm tolerance at 0.8 mm
//!   spacing: r = 1 in-plane and r = 0 across 2.5 mm slices) the envelope of a line is the
//!   plain minimum over that window, which is computed for whole rows at once (vectorised) in
//!   the passes along axes 1 and 2, and in the last pass only at the query points. Larger
//!   windows use the envelope, so the work stays linear in the number of voxels.
//!
//! Only equally near features (ties in exact arithmetic) can be chosen differently from SciPy,
//! and their distances then differ at most in the last bit.

use rayon::prelude::*;

const INF: f64 = f64::INFINITY;

/// Windows up to this many voxels use the direct minimum; longer ones the parabola envelope.
const MAX_WINDOW: usize = 25;

/// Voxels along an axis of spacing `s` within which a site can lie inside the bound.
fn reach(bound: f64, s: f64) -> usize {
    let r = (bound.sqrt() / s).floor();
    if r.is_finite() && r < 1e9 {
        r as usize
    } else {
        usize::MAX / 4
    }
}

/// `((d * s)^2)` exactly as SciPy evaluates it for an integer offset `d`.
#[inline]
fn offset_sq(d: usize, s: f64) -> f64 {
    let x = d as f64 * s;
    x * x
}

/// The squared-distance bound for a tolerance: `tol^2` with a small relative margin.
pub(crate) fn bound_sq(tolerance_mm: f64) -> f64 {
    tolerance_mm * tolerance_mm * (1.0 + 1e-6)
}

/// Passes along axes 0 and 1: for every voxel, the partial sum `(d0*s0)^2 + (d1*s1)^2` to its
/// nearest feature within its slice `k`, or infinity when that exceeds `bound`.
pub(crate) fn passes_01(
    features: &[bool],
    shape: [usize; 3],
    spacing: [f64; 3],
    bound: f64,
) -> Vec<f64> {
    let [n0, n1, n2] = shape;
    let mut g = vec![INF; n0 * n1 * n2];
    if g.is_empty() {
        return g;
    }
    let r0 = reach(bound, spacing[0]).min(n0 - 1);
    g.par_chunks_mut(n0 * n1)
        .zip(features.par_chunks(n0 * n1))
        .for_each(|(slab, feat)| {
            let mut any = false;
            for (row, f) in slab.chunks_exact_mut(n0).zip(feat.chunks_exact(n0)) {
                if !f.contains(&true) {
                    continue;
                }
                any = true;
                if 2 * r0 < MAX_WINDOW {
                    // Axis 0, short window: features d voxels left or right, row at a time.
                    for (o, &x) in row.iter_mut().zip(f) {
                        if x {
                            *o = 0.0;
                        }
                    }
                    for d in 1..=r0 {
                        let c = offset_sq(d, spacing[0]);
                        for (o, &x) in row[d..].iter_mut().zip(f) {
                            if x {
                                *o = o.min(c);
                            }
                        }
                        for (o, &x) in row.iter_mut().zip(&f[d..]) {
                            if x {
                                *o = o.min(c);
                            }
                        }
                    }
                    for o in row.iter_mut() {
                        if *o > bound {
                            *o = INF;
                        }
                    }
                } else {
                    row_nearest(row, f, spacing[0], bound);
                }
            }
            if !any || n1 == 1 {
                return;
            }
            let r1 = reach(bound, spacing[1]).min(n1 - 1);
            if 2 * r1 < MAX_WINDOW {
                // Axis 1, short window: row-wise minimum over the rows j-r1..=j+r1.
                let src = slab.to_vec();
                for d in 1..=r1 {
                    let c = offset_sq(d, spacing[1]);
                    for j in 0..n1 {
                        let out = &mut slab[j * n0..(j + 1) * n0];
                        for nb in [j.checked_sub(d), (j + d < n1).then_some(j + d)]
                            .into_iter()
                            .flatten()
                        {
                            for (o, &v) in out.iter_mut().zip(&src[nb * n0..(nb + 1) * n0]) {
                                *o = o.min(v + c);
                            }
                        }
                    }
                }
                for v in slab.iter_mut() {
                    if *v > bound {
                        *v = INF;
                    }
                }
                return;
            }
            // Axis 1: lower envelope along each column of the slab.
            let mut env = Envelope::new(n1);
            let mut col = vec![INF; n1];
            for i in 0..n0 {
                let mut finite = false;
                for (j, c) in col.iter_mut().enumerate() {
                    *c = slab[i + n0 * j];
                    finite |= c.is_finite();
                }
                if !finite {
                    continue;
                }
                env.build(&col, spacing[1]);
                env.for_each(n1, spacing[1], &col, |j, v| {
                    slab[i + n0 * j] = if v <= bound { v } else { INF };
                });
            }
        });
    g
}

/// Axis 0 by two sweeps: `(d*s)^2` for the nearest feature `d` voxels away along the row.
fn row_nearest(row: &mut [f64], f: &[bool], s: f64, bound: f64) {
    let n = row.len();
    let mut last: Option<usize> = None;
    for i in 0..n {
        if f[i] {
            last = Some(i);
        }
        row[i] = last.map_or(INF, |l| (i - l) as f64);
    }
    let mut next: Option<usize> = None;
    for i in (0..n).rev() {
        if f[i] {
            next = Some(i);
        }
        // row[i] holds the distance (in voxels) to the feature before, as a float.
        let before = row[i];
        let d = match next {
            Some(nx) if ((nx - i) as f64) < before => Some(nx - i),
            _ if before.is_finite() => Some(before as usize),
            _ => None,
        };
        row[i] = match d {
            Some(d) => {
                let v = offset_sq(d, s);
                if v <= bound { v } else { INF }
            }
            None => INF,
        };
    }
}

/// Pass along axis 2 over the output of [`passes_01`], calling `visit(index, squared_distance)`
/// for every voxel where `want(index)` holds and a feature lies within the bound. Planes of
/// constant `j` are processed in parallel; `visit` returns a value summed per plane, and the
/// plane sums are added in order (so results do not depend on scheduling).
pub(crate) fn pass_2_sum<V>(
    g: &[f64],
    shape: [usize; 3],
    spacing: [f64; 3],
    bound: f64,
    want: &[bool],
    visit: V,
) -> f64
where
    V: Fn(usize, f64) -> f64 + Sync,
{
    let [n0, n1, n2] = shape;
    let slab = n0 * n1;
    let r2 = reach(bound, spacing[2]).min(n2.saturating_sub(1));
    if 2 * r2 < MAX_WINDOW {
        // Short window: the minimum over k-r2..=k+r2, evaluated at the wanted voxels only.
        let costs: Vec<f64> = (0..=r2).map(|d| offset_sq(d, spacing[2])).collect();
        let per_slab: Vec<f64> = (0..n2)
            .into_par_iter()
            .map(|k| {
                let mut sum = 0.0;
                for idx in k * slab..(k + 1) * slab {
                    if !want[idx] {
                        continue;
                    }
                    let mut best = g[idx];
                    for (d, &c) in costs.iter().enumerate().skip(1) {
                        if k >= d {
                            best = best.min(g[idx - d * slab] + c);
                        }
                        if k + d < n2 {
                            best = best.min(g[idx + d * slab] + c);
                        }
                    }
                    if best <= bound {
                        sum += visit(idx, best);
                    }
                }
                sum
            })
            .collect();
        return per_slab.iter().sum();
    }
    let per_plane: Vec<f64> = (0..n1)
        .into_par_iter()
        .map(|j| {
            // Gather plane j (a row of n0 for every k) so that columns along k are read from
            // cache; the wanted flags likewise.
            let mut plane = vec![INF; n0 * n2];
            let mut wanted = vec![false; n0 * n2];
            for k in 0..n2 {
                let src = n0 * (j + n1 * k);
                plane[k * n0..(k + 1) * n0].copy_from_slice(&g[src..src + n0]);
                wanted[k * n0..(k + 1) * n0].copy_from_slice(&want[src..src + n0]);
            }
            if !plane.iter().any(|v| v.is_finite()) || !wanted.contains(&true) {
                return 0.0;
            }
            let mut env = Envelope::new(n2);
            let mut col = vec![INF; n2];
            let mut sum = 0.0;
            for i in 0..n0 {
                let mut finite = false;
                let mut any_wanted = false;
                for (k, c) in col.iter_mut().enumerate() {
                    *c = plane[i + n0 * k];
                    finite |= c.is_finite();
                    any_wanted |= wanted[i + n0 * k];
                }
                if !finite || !any_wanted {
                    continue;
                }
                env.build(&col, spacing[2]);
                env.for_each(n2, spacing[2], &col, |k, v| {
                    if v <= bound && wanted[i + n0 * k] {
                        sum += visit(i + n0 * (j + n1 * k), v);
                    }
                });
            }
            sum
        })
        .collect();
    per_plane.iter().sum()
}

/// The lower envelope of the parabolas `f[p] + ((q - p) * w)^2` over the finite `f[p]` of a line.
struct Envelope {
    /// Sites (indices along the line) on the envelope, left to right.
    v: Vec<usize>,
    /// `z[m]..z[m+1]` (in mm along the line) is where site `v[m]` is lowest.
    z: Vec<f64>,
}

impl Envelope {
    fn new(n: usize) -> Envelope {
        Envelope {
            v: Vec::with_capacity(n),
            z: Vec::with_capacity(n + 1),
        }
    }

    /// Builds the envelope of the finite entries of `f` (at least one must be finite).
    fn build(&mut self, f: &[f64], w: f64) {
        self.v.clear();
        self.z.clear();
        for (q, &fq) in f.iter().enumerate() {
            if !fq.is_finite() {
                continue;
            }
            if self.v.is_empty() {
                self.v.push(q);
                self.z.push(-INF);
                self.z.push(INF);
                continue;
            }
            let xq = q as f64 * w;
            loop {
                let p = self.v[self.v.len() - 1];
                let xp = p as f64 * w;
                // Where the parabolas of p and q meet, written around their midpoint to keep
                // the large squared positions out of the subtraction.
                let s = 0.5 * (xq + xp) + (fq - f[p]) / (2.0 * (xq - xp));
                let m = self.v.len() - 1;
                if s <= self.z[m] && m > 0 {
                    self.v.pop();
                    self.z.pop();
                    continue;
                }
                if s <= self.z[m] {
                    // m == 0 and q dominates everywhere (cannot happen for finite s, kept
                    // for safety): replace the only site.
                    self.v[0] = q;
                    break;
                }
                self.z[m + 1] = s;
                self.v.push(q);
                self.z.push(INF);
                break;
            }
        }
    }

    /// Calls `emit(q, value)` for every position `q` of the line with the envelope's value,
    /// computed as SciPy does: `f[p] + ((p - q) as f64 * w)^2` for the winning site `p`.
    fn for_each(&self, n: usize, w: f64, f: &[f64], mut emit: impl FnMut(usize, f64)) {
        let mut m = 0;
        for q in 0..n {
            let xq = q as f64 * w;
            while self.z[m + 1] < xq {
                m += 1;
            }
            let p = self.v[m];
            let x = (p as f64 - q as f64) * w;
            emit(q, f[p] + x * x);
        }
    }
}

/// Squared distances to the nearest feature for every voxel, infinity beyond `bound`
/// (used by tests to compare with SciPy and with the full transform).
#[cfg(test)]
pub(crate) fn bounded_squared_distances(
    features: &[bool],
    shape: [usize; 3],
    spacing: [f64; 3],
    bound: f64,
) -> Vec<f64> {
    use std::sync::Mutex;
    let g = passes_01(features, shape, spacing, bound);
    let out = Mutex::new(vec![INF; g.len()]);
    let all = vec![true; g.len()];
    pass_2_sum(&g, shape, spacing, bound, &all, |idx, v| {
        if let Ok(mut o) = out.lock() {
            o[idx] = v;
        }
        0.0
    });
    out.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency needed for test masks).
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn equals_the_full_transform_within_the_bound() {
        // The unbounded transform is SciPy's bit for bit (`scipy_tests`, infinite tolerance).
        let mut seed = 42;
        for (shape, spacing, density, tol) in [
            ([23, 17, 11], [0.7, 0.9, 5.0], 0.01, 1.0),
            ([23, 17, 11], [0.7, 0.9, 5.0], 0.002, 6.0),
            ([16, 19, 13], [0.5, 1.0, 1.0], 0.05, 1.0),
            ([31, 7, 9], [3.0, 0.6, 0.75], 0.02, 2.5),
            ([9, 9, 9], [1.0, 1.0, 1.0], 0.3, 0.0),
            ([1, 12, 5], [0.8, 0.8, 2.5], 0.1, 3.0),
            ([40, 1, 1], [0.8, 0.8, 2.5], 0.05, 5.0),
            // Windows longer than MAX_WINDOW along axes 1 and 2: the envelope path.
            ([40, 30, 28], [0.7, 0.9, 1.0], 0.0005, 20.0),
            ([20, 60, 3], [0.7, 0.5, 1.0], 0.01, 9.0),
            ([10, 4, 60], [0.7, 0.5, 0.4], 0.01, 9.0),
        ] {
            let n: usize = shape.iter().product();
            let mask: Vec<bool> = (0..n).map(|_| lcg(&mut seed) < density).collect();
            let full: Vec<f64> = bounded_squared_distances(&mask, shape, spacing, INF)
                .iter()
                .map(|d| d.sqrt())
                .collect();
            let b = bound_sq(tol);
            let got = bounded_squared_distances(&mask, shape, spacing, b);
            for idx in 0..n {
                let want_within = full[idx] <= tol;
                let got_d = got[idx].sqrt();
                assert_eq!(
                    got_d <= tol,
                    want_within,
                    "{shape:?} {spacing:?} tol {tol} at {idx}: {got_d} vs {}",
                    full[idx]
                );
                if full[idx] * full[idx] <= b * 0.999 {
                    assert_eq!(got_d, full[idx], "{shape:?} {spacing:?} at {idx}");
                }
            }
        }
    }

    #[test]
    fn no_features_means_nothing_within() {
        let shape = [5, 4, 3];
        let got = bounded_squared_distances(&[false; 60], shape, [1.0; 3], bound_sq(100.0));
        assert!(got.iter().all(|v| v.is_infinite()));
    }
}

#[cfg(test)]
mod scipy_tests {
    use super::*;

    /// The SciPy distance transforms in the oracle fixture (scripts/fixtures/metrics_oracle.py),
    /// bit for bit: the NSD compares these distances with `<=`, so an ulp matters.
    #[test]
    fn equals_scipy_within_the_bound() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/metrics_oracle.json"
        );
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let nums = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        for e in fx["edt"].as_array().unwrap() {
            let s = nums(&e["shape"]);
            let shape = [s[0] as usize, s[1] as usize, s[2] as usize];
            let sp = nums(&e["spacing"]);
            let spacing = [sp[0], sp[1], sp[2]];
            let runs = nums(&e["mask"]);
            let mut mask = Vec::new();
            for r in runs.chunks(2) {
                mask.extend(std::iter::repeat_n(r[0] != 0.0, r[1] as usize));
            }
            let want = nums(&e["distances"]);
            // An infinite tolerance is the unbounded transform: SciPy's at every voxel.
            for tol in [0.0, 0.7, 1.0, 2.5, 6.0, 100.0, f64::INFINITY] {
                let got = bounded_squared_distances(&mask, shape, spacing, bound_sq(tol));
                for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.sqrt() <= tol, w <= tol, "{shape:?} tol {tol} at {idx}");
                    if w <= tol {
                        assert_eq!(g.sqrt(), w, "{shape:?} tol {tol} at {idx}");
                    }
                }
            }
        }
    }
}
