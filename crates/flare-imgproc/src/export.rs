//! The lean export: per-class scores on a small network grid to a label map on a scan's own
//! grid, without ever building a full-size volume per class.
//!
//! nnU-Net and MONAI resample every class's probabilities to the full scan (C float volumes of
//! the scan's size, often in float64) and take the argmax at the end: minutes and gigabytes
//! for a 512 x 512 x 300 CT. Here every target voxel inside the region of interest
//! interpolates the C scores of its eight source neighbours and keeps only the winning class,
//! so memory is the output label map (1 byte per voxel) plus the source scores, and the work
//! is proportional to the region, not the scan.
//!
//! # Rules (the same as [`crate::resample_linear`], class by class)
//! A target voxel centre is inside the source when its continuous source index lies within
//! `[-0.5, n - 0.5]` on every axis; inside, neighbours are clamped to the grid (the outer half
//! voxel repeats the edge value). Outside the source, and outside the region of interest, the
//! label is background (0). Ties go to the lowest class.
//!
//! # Speed
//! The index map is computed once. When every source axis follows a single target axis (the
//! network grid is the scan's grid reoriented and rescaled, which is always the case in flare's
//! pipeline, whatever the scan's orientation), each target row needs one line of blended
//! source scores (bilinear across the two fixed axes) and then one lerp per class per voxel.
//! Any other relation (an oblique source grid) takes the general path, a full trilinear
//! interpolation per voxel. Slabs of target slices run in parallel with rayon.

use flare_volume::{Geometry, GeometryError, LabelMap, Roi, Volume, memory};
use rayon::prelude::*;

use crate::{
    ImgprocError,
    interp::{Tap, lerp},
};

/// Largest drift (source voxels, over the whole region) of the index map's dropped terms for
/// the per-row fast path.
const AXIS_TOL: f64 = 1e-6;
/// "No class wins strictly" in the winner tables.
const TIE: u8 = u8::MAX;

/// For every voxel of `target` inside `roi`, the class whose score, trilinearly interpolated
/// from `scores` on `source`, is largest (ties: lowest class); background (0) elsewhere.
///
/// `scores` is channels-last on the source grid: the score of class `c` at source voxel
/// `(i, j, k)` is `scores[(i + nx * (j + ny * k)) * classes + c]` (the engine's `[1, D, H, W,
/// C]` logits or probabilities). `roi` is in `target`'s index space.
pub fn argmax_on_grid(
    scores: &[f32],
    classes: usize,
    source: &Geometry,
    target: &Geometry,
    roi: &Roi,
) -> Result<LabelMap, ImgprocError> {
    let what = "class scores";
    // Labels are `u8` and [`TIE`] is reserved.
    if classes == 0 || classes > TIE as usize {
        return Err(ImgprocError::DataLength {
            what,
            shape: source.shape(),
            expected: source.n_voxels(),
            actual: scores.len(),
        });
    }
    let expected = source.n_voxels().saturating_mul(classes);
    if scores.len() != expected {
        return Err(ImgprocError::DataLength {
            what,
            shape: source.shape(),
            expected,
            actual: scores.len(),
        });
    }
    let shape = target.shape();
    if (0..3).any(|a| roi.end()[a] > shape[a]) {
        return Err(GeometryError::BadRoi {
            start: roi.start(),
            end: roi.end(),
            shape,
        }
        .into());
    }
    memory::ensure_fits(target.n_voxels() as u64).map_err(|e| ImgprocError::OutOfMemory {
        what: "exported label map",
        needed_mb: e.needed_mb,
        available_mb: e.available_mb,
    })?;
    let map = IndexMap::new(source, target)?;
    let mut out = vec![0u8; target.n_voxels()];
    let src = Source {
        scores,
        classes,
        shape: source.shape(),
    };
    let [tnx, tny, _] = shape;
    let (rs, re) = (roi.start(), roi.end());
    // Each source voxel's strict winner: where all the neighbours a target voxel blends have
    // the same one, so does the blend, and most voxels need no interpolation at all.
    let winners: Vec<u8> = scores.par_chunks(classes).map(strict_winner).collect();
    match map.axis_permutation(roi) {
        Some(axis_of) => {
            let row = RowPlan::new(&src, &map, axis_of, roi);
            out.par_chunks_mut(tnx * tny)
                .enumerate()
                .skip(rs[2])
                .take(re[2] - rs[2])
                .for_each_init(
                    || Line::new(classes),
                    |line, (kt, slice)| {
                        for jt in rs[1]..re[1] {
                            let o = &mut slice[jt * tnx + rs[0]..jt * tnx + re[0]];
                            row.run(&src, &winners, &map, [rs[0], jt, kt], line, o);
                        }
                    },
                );
        }
        None => {
            out.par_chunks_mut(tnx * tny)
                .enumerate()
                .skip(rs[2])
                .take(re[2] - rs[2])
                .for_each_init(
                    || vec![0f32; classes],
                    |acc, (kt, slice)| {
                        for jt in rs[1]..re[1] {
                            let o = &mut slice[jt * tnx + rs[0]..jt * tnx + re[0]];
                            row_general(&src, &winners, &map, [rs[0], jt, kt], acc, o);
                        }
                    },
                );
        }
    }
    Ok(Volume::new(*target, out)?)
}

/// The scores and their grid.
struct Source<'a> {
    scores: &'a [f32],
    classes: usize,
    shape: [usize; 3],
}

impl Source<'_> {
    /// Distance between neighbours along source axis `a`, in floats.
    fn stride(&self, a: usize) -> usize {
        self.classes
            * match a {
                0 => 1,
                1 => self.shape[0],
                _ => self.shape[0] * self.shape[1],
            }
    }
}

/// The affine map from a target voxel index to the source's continuous voxel index.
struct IndexMap {
    m: [[f64; 4]; 3],
}

impl IndexMap {
    fn new(src: &Geometry, dst: &Geometry) -> Result<IndexMap, ImgprocError> {
        Ok(IndexMap {
            m: src.index_map_from(dst)?,
        })
    }

    #[inline(always)]
    fn source(&self, a: usize, t: [f64; 3]) -> f64 {
        let r = &self.m[a];
        r[0] * t[0] + r[1] * t[1] + r[2] * t[2] + r[3]
    }

    /// `Some(axis_of)` when source axis `a` depends on target axis `axis_of[a]` only (within
    /// [`AXIS_TOL`] over the region), each target axis used once.
    fn axis_permutation(&self, roi: &Roi) -> Option<[usize; 3]> {
        let reach = roi.end().map(|e| e as f64);
        let mut axis_of = [0; 3];
        let mut used = [false; 3];
        for (a, row) in self.m.iter().enumerate() {
            let c = (0..3).max_by(|&x, &y| row[x].abs().total_cmp(&row[y].abs()))?;
            let drift: f64 = (0..3)
                .filter(|&o| o != c)
                .map(|o| row[o].abs() * reach[o])
                .sum();
            if drift > AXIS_TOL || used[c] {
                return None;
            }
            used[c] = true;
            axis_of[a] = c;
        }
        Some(axis_of)
    }
}

/// The class that is strictly larger than every other, or [`TIE`].
#[inline(always)]
fn strict_winner(v: &[f32]) -> u8 {
    let mut best = 0;
    let mut tie = false;
    for (c, &x) in v.iter().enumerate().skip(1) {
        if x > v[best] {
            best = c;
            tie = false;
        } else if x == v[best] || x.is_nan() {
            tie = true;
        }
    }
    if tie || v[best].is_nan() {
        TIE
    } else {
        best as u8
    }
}

/// The first index of the largest value.
#[inline(always)]
fn argmax(v: &[f32]) -> u8 {
    let mut best = 0;
    for (c, &x) in v.iter().enumerate().skip(1) {
        if x > v[best] {
            best = c;
        }
    }
    best as u8
}

/// Per-thread scratch of the fast path: one row's blended scores along the source axis that
/// follows target `i`, and each entry's strict winner.
struct Line {
    values: Vec<f32>,
    /// Whether `values` holds entry `n` (entries whose four corners agree are not blended
    /// unless a voxel next to a disagreeing entry needs them).
    ready: Vec<bool>,
    winners: Vec<u8>,
    acc: Vec<f32>,
}

impl Line {
    fn new(classes: usize) -> Line {
        Line {
            values: Vec::new(),
            ready: Vec::new(),
            winners: Vec::new(),
            acc: vec![0.0; classes],
        }
    }
}

/// What the fast path knows before any row: source axis `q` follows target `i` (and only it),
/// so its taps are the same for every row; `a` and `b` are fixed along a row.
struct RowPlan {
    q: usize,
    a: usize,
    b: usize,
    /// Taps along `q` for the region's target `i`s.
    taps: Vec<Tap>,
    /// Source range along `q` the taps read.
    lo: usize,
    hi: usize,
    /// Whether any tap is inside the source.
    any_inside: bool,
}

impl RowPlan {
    fn new(src: &Source<'_>, map: &IndexMap, axis_of: [usize; 3], roi: &Roi) -> RowPlan {
        // `axis_permutation` found a target axis for every source axis: one of them is `i`.
        let q = (0..3).find(|&a| axis_of[a] == 0).unwrap_or(0);
        let (a, b) = match q {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        let nq = src.shape[q];
        let r = &map.m[q];
        // The `j`, `k` terms of this row of the map are below `AXIS_TOL` over the region.
        let taps: Vec<Tap> = (roi.start()[0]..roi.end()[0])
            .map(|i| Tap::new(r[0] * i as f64 + r[3], nq))
            .collect();
        let (mut lo, mut hi) = (usize::MAX, 0);
        for t in taps.iter().filter(|t| t.inside) {
            lo = lo.min(t.i0);
            hi = hi.max(t.i1);
        }
        let any_inside = lo <= hi;
        if !any_inside {
            (lo, hi) = (0, 0);
        }
        RowPlan {
            q,
            a,
            b,
            taps,
            lo,
            hi,
            any_inside,
        }
    }

    /// One target row (`row` starts at target voxel `t0`): the two fixed source axes are
    /// blended into a line of scores along `q`, then each voxel lerps two line entries, or
    /// takes their common strict winner. Any blend of score vectors that one class wins
    /// strictly is won by that class, so an entry whose four source corners share a strict
    /// winner (`winners`, per source voxel) needs no blending, and a voxel between two entries
    /// with the same strict winner needs no interpolation: inside an organ or the background,
    /// a voxel costs two byte loads.
    fn run(
        &self,
        src: &Source<'_>,
        winners: &[u8],
        map: &IndexMap,
        t0: [usize; 3],
        line: &mut Line,
        row: &mut [u8],
    ) {
        let (q, a, b) = (self.q, self.a, self.b);
        let c = src.classes;
        let t = t0.map(|v| v as f64);
        let ta = Tap::new(map.source(a, t), src.shape[a]);
        let tb = Tap::new(map.source(b, t), src.shape[b]);
        if !(ta.inside && tb.inside && self.any_inside) {
            return; // already background
        }
        let (lo, hi) = (self.lo, self.hi);
        // Voxel numbers of the four corners at `q = 0`; scores start at `voxel * c`.
        let corner = |ia: usize, ib: usize| {
            let mut p = [0usize; 3];
            p[a] = ia;
            p[b] = ib;
            p[0] + src.shape[0] * (p[1] + src.shape[1] * p[2])
        };
        let corners = [
            corner(ta.i0, tb.i0),
            corner(ta.i1, tb.i0),
            corner(ta.i0, tb.i1),
            corner(ta.i1, tb.i1),
        ];
        let step_q = src.stride(q) / c;
        let n = hi - lo + 1;
        line.values.clear();
        line.values.resize(n * c, 0.0);
        line.ready.clear();
        line.ready.resize(n, false);
        line.winners.clear();
        let s = src.scores;
        let blend = |e: usize, out: &mut [f32]| {
            let off = (lo + e) * step_q;
            let [p00, p10, p01, p11] = corners.map(|v| (v + off) * c);
            for (k, v) in out.iter_mut().enumerate() {
                let lo_b = lerp(s[p00 + k], s[p10 + k], ta.w);
                let hi_b = lerp(s[p01 + k], s[p11 + k], ta.w);
                *v = lerp(lo_b, hi_b, tb.w);
            }
        };
        for e in 0..n {
            let off = (lo + e) * step_q;
            let w = winners[corners[0] + off];
            if w != TIE && corners[1..].iter().all(|&v| winners[v + off] == w) {
                line.winners.push(w);
            } else {
                let out = &mut line.values[e * c..][..c];
                blend(e, out);
                line.ready[e] = true;
                line.winners.push(strict_winner(out));
            }
        }
        for (o, tq) in row.iter_mut().zip(&self.taps) {
            if !tq.inside {
                continue;
            }
            let (n0, n1) = (tq.i0 - lo, tq.i1 - lo);
            let w = line.winners[n0];
            if w != TIE && line.winners[n1] == w {
                *o = w;
                continue;
            }
            for e in [n0, n1] {
                if !line.ready[e] {
                    blend(e, &mut line.values[e * c..][..c]);
                    line.ready[e] = true;
                }
            }
            let (l0, l1) = (&line.values[n0 * c..][..c], &line.values[n1 * c..][..c]);
            for k in 0..c {
                line.acc[k] = lerp(l0[k], l1[k], tq.w);
            }
            *o = argmax(&line.acc);
        }
    }
}

/// One target row through the full affine: trilinear per voxel, x then y then z as the
/// resampler does.
fn row_general(
    src: &Source<'_>,
    winners: &[u8],
    map: &IndexMap,
    t0: [usize; 3],
    acc: &mut [f32],
    row: &mut [u8],
) {
    let c = src.classes;
    let [sx, sy, sz] = src.shape;
    let t = t0.map(|v| v as f64);
    let start = [0, 1, 2].map(|a| map.source(a, t));
    let step = [map.m[0][0], map.m[1][0], map.m[2][0]];
    let s = src.scores;
    for (i, o) in row.iter_mut().enumerate() {
        let f = i as f64;
        let z = Tap::new(start[2] + step[2] * f, sz);
        let y = Tap::new(start[1] + step[1] * f, sy);
        if !(y.inside && z.inside) {
            continue;
        }
        let x = Tap::new(start[0] + step[0] * f, sx);
        if !x.inside {
            continue;
        }
        // Voxel numbers; scores start at `voxel * c`.
        let p = |i: usize, j: usize, k: usize| i + sx * (j + sy * k);
        let v = [
            p(x.i0, y.i0, z.i0),
            p(x.i1, y.i0, z.i0),
            p(x.i0, y.i1, z.i0),
            p(x.i1, y.i1, z.i0),
            p(x.i0, y.i0, z.i1),
            p(x.i1, y.i0, z.i1),
            p(x.i0, y.i1, z.i1),
            p(x.i1, y.i1, z.i1),
        ];
        let w = winners[v[0]];
        if w != TIE && v[1..].iter().all(|&q| winners[q] == w) {
            *o = w;
            continue;
        }
        let [p000, p100, p010, p110, p001, p101, p011, p111] = v.map(|q| q * c);
        for k in 0..c {
            let c00 = lerp(s[p000 + k], s[p100 + k], x.w);
            let c10 = lerp(s[p010 + k], s[p110 + k], x.w);
            let c01 = lerp(s[p001 + k], s[p101 + k], x.w);
            let c11 = lerp(s[p011 + k], s[p111 + k], x.w);
            acc[k] = lerp(lerp(c00, c10, y.w), lerp(c01, c11, y.w), z.w);
        }
        *o = argmax(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_grids_take_the_fast_path_and_oblique_ones_do_not() {
        let g = Geometry::axis_aligned([10, 12, 8], [0.7, 0.8, 2.5], [1.0, 2.0, 3.0]).unwrap();
        let lps = g.reorient([1, 0, 2], [true, true, false]).unwrap();
        let roi = Roi::full([10, 12, 8]);
        let m = IndexMap::new(&lps.resized([4, 5, 6]).unwrap(), &g).unwrap();
        assert_eq!(m.axis_permutation(&roi), Some([1, 0, 2]));
        let oblique = Geometry::new(
            [4, 5, 6],
            [1.0; 3],
            [0.0; 3],
            [[1.0, 0.2, 0.0], [-0.2, 1.0, 0.0], [0.0, 0.0, 1.0]],
        )
        .unwrap();
        let m = IndexMap::new(&oblique, &g).unwrap();
        assert_eq!(m.axis_permutation(&roi), None);
    }
}
