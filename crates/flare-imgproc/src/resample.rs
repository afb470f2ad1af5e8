//! Resampling images and label maps onto another grid.
//!
//! For every target voxel, its centre is carried into the source's continuous voxel index
//! through the two affines (`source_index = source_affine⁻¹ · target_affine · target_index`), so
//! any affine relation between the grids works: scaling, flips, permutations, oblique
//! rotations.
//!
//! # Outside the source
//! A target centre is *inside* when its source index lies within `[-0.5, n - 0.5]` on every
//! axis, i.e. within the field of view the source voxels cover (their outer faces, not their
//! centres). Inside, the value is interpolated with neighbour indices clamped to the grid, so
//! the outermost half voxel repeats the edge value (as ITK's linear interpolator does, and
//! `scipy.ndimage.map_coordinates(..., mode="nearest")`). This matters for the common round
//! trip through [`flare_volume::Geometry::resized`]: the target's outermost centres lie between
//! the source's outermost centre and its outer face and must not turn into fill. Outside, images
//! get the caller's `fill` value and label maps get background (0).
//!
//! # Speed
//! When the two grids share their axes (the index map has no off-diagonal terms: scaling,
//! translation and flips, the usual "scan to a fixed grid and back"), interpolation is separable:
//! per-axis tables, source slices resampled in-plane once and cached, then blended along the
//! slice axis. Otherwise each voxel maps through the full affine. Both work in slabs of target
//! slices in parallel with rayon, with no per-voxel allocation.

use flare_volume::{Geometry, LabelMap, Volume, memory};
use rayon::prelude::*;

use crate::{
    ImgprocError,
    interp::{Tap, lerp},
};

/// The separable path drops the index map's off-diagonal terms; it is taken only when that
/// moves no target voxel by more than this (in source voxels) anywhere on the target grid.
const SEPARABLE_TOL: f64 = 1e-6;

/// How a label map is interpolated by [`resample_labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelInterp {
    /// The label of the source voxel whose centre is nearest (halves round up, as ITK does).
    Nearest,
    /// Trilinear interpolation of each label's one-hot mask (background included), then the
    /// label with the largest weight; ties go to the lowest label. When upsampling (a coarse
    /// segmentation back onto a scan's grid) the boundary follows the interpolated surface
    /// (the one-hot fields' 0.5 level) instead of nearest neighbour's staircase of coarse
    /// voxels, which fits smooth organs better (see the tests). Parts one source voxel thin
    /// shrink towards their centre line and can lose their corners; use [`Self::Nearest`]
    /// where every source voxel must survive. Computed from the eight neighbours' labels,
    /// never from full-size one-hot volumes.
    Linear,
}

/// Resamples an image onto `target` by trilinear interpolation; target voxels outside the
/// source's field of view get `fill` (see the module docs for the exact rule).
pub fn resample_linear(
    src: &Volume<f32>,
    target: &Geometry,
    fill: f32,
) -> Result<Volume<f32>, ImgprocError> {
    let map = IndexMap::new(src.geometry(), target)?;
    let mut out = alloc(target, fill, "resampled image")?;
    if map.separable {
        linear_separable(src, target, &map, fill, &mut out);
    } else {
        linear_general(src, target, &map, &mut out);
    }
    Ok(Volume::new(*target, out)?)
}

/// Resamples a label map onto `target` with the chosen [`LabelInterp`]; target voxels outside
/// the source's field of view are background (0).
pub fn resample_labels(
    src: &LabelMap,
    target: &Geometry,
    mode: LabelInterp,
) -> Result<LabelMap, ImgprocError> {
    let map = IndexMap::new(src.geometry(), target)?;
    let mut out = alloc(target, 0u8, "resampled label map")?;
    let taps = if map.separable {
        Some(map.axis_taps(src.shape(), target.shape()))
    } else {
        None
    };
    let [tnx, tny, _] = target.shape();
    out.par_chunks_mut(tnx * tny)
        .enumerate()
        .for_each_init(Vec::new, |uniform, (kt, slice)| {
            for (jt, row) in slice.chunks_mut(tnx).enumerate() {
                match &taps {
                    Some([tx, ty, tz]) => {
                        label_row_separable(src, tx, &ty[jt], &tz[kt], mode, uniform, row)
                    }
                    None => label_row_general(src, &map, jt, kt, mode, row),
                }
            }
        });
    Ok(Volume::new(*target, out)?)
}

/// A target-sized buffer, after checking that it fits in memory.
fn alloc<T: Copy>(target: &Geometry, value: T, what: &'static str) -> Result<Vec<T>, ImgprocError> {
    let bytes = (target.n_voxels() as u64).saturating_mul(size_of::<T>() as u64);
    memory::ensure_fits(bytes).map_err(|e| ImgprocError::OutOfMemory {
        what,
        needed_mb: e.needed_mb,
        available_mb: e.available_mb,
    })?;
    Ok(vec![value; target.n_voxels()])
}

/// The affine map from a target voxel index to the source's continuous voxel index.
#[derive(Debug, Clone, Copy)]
struct IndexMap {
    /// Rows of the 3x4 matrix.
    m: [[f64; 4]; 3],
    /// Whether each source axis depends on the same-numbered target axis only.
    separable: bool,
}

impl IndexMap {
    fn new(src: &Geometry, dst: &Geometry) -> Result<IndexMap, ImgprocError> {
        let mut m = src.index_map_from(dst)?;
        let reach = dst.shape().map(|n| (n - 1) as f64);
        let separable = (0..3).all(|r| {
            let drift: f64 = (0..3)
                .filter(|&c| c != r)
                .map(|c| m[r][c].abs() * reach[c])
                .sum();
            drift <= SEPARABLE_TOL
        });
        if separable {
            for (r, row) in m.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate().take(3) {
                    if c != r {
                        *v = 0.0;
                    }
                }
            }
        }
        Ok(IndexMap { m, separable })
    }

    /// Source index along axis `a` of target voxel `t`.
    #[inline]
    fn source(&self, a: usize, t: [usize; 3]) -> f64 {
        let r = &self.m[a];
        r[0] * t[0] as f64 + r[1] * t[1] as f64 + r[2] * t[2] as f64 + r[3]
    }

    /// Per-axis interpolation taps, valid when the map is separable.
    fn axis_taps(&self, src: [usize; 3], dst: [usize; 3]) -> [Vec<Tap>; 3] {
        [0, 1, 2].map(|a| {
            (0..dst[a])
                .map(|t| Tap::new(self.m[a][a] * t as f64 + self.m[a][3], src[a]))
                .collect()
        })
    }
}

/// Trilinear interpolation through the full affine (any grid relation). The interpolation
/// order (x, then y, then z) is the separable path's, so both agree bit for bit on grids that
/// share their axes.
/// Target voxels outside the source are left as they are (`out` comes filled).
fn linear_general(src: &Volume<f32>, dst: &Geometry, map: &IndexMap, out: &mut [f32]) {
    let [sx, sy, sz] = src.shape();
    let [tnx, tny, _] = dst.shape();
    let data = src.data();
    out.par_chunks_mut(tnx * tny)
        .enumerate()
        .for_each(|(kt, slice)| {
            for (jt, row) in slice.chunks_mut(tnx).enumerate() {
                let start = [0, 1, 2].map(|a| map.source(a, [0, jt, kt]));
                let step = [map.m[0][0], map.m[1][0], map.m[2][0]];
                for (it, o) in row.iter_mut().enumerate() {
                    let f = it as f64;
                    let z = Tap::new(start[2] + step[2] * f, sz);
                    let y = Tap::new(start[1] + step[1] * f, sy);
                    if !(y.inside && z.inside) {
                        continue; // already `fill`
                    }
                    let x = Tap::new(start[0] + step[0] * f, sx);
                    if !x.inside {
                        continue;
                    }
                    let at = |i: usize, j: usize, k: usize| data[i + sx * (j + sy * k)];
                    let c00 = lerp(at(x.i0, y.i0, z.i0), at(x.i1, y.i0, z.i0), x.w);
                    let c10 = lerp(at(x.i0, y.i1, z.i0), at(x.i1, y.i1, z.i0), x.w);
                    let c01 = lerp(at(x.i0, y.i0, z.i1), at(x.i1, y.i0, z.i1), x.w);
                    let c11 = lerp(at(x.i0, y.i1, z.i1), at(x.i1, y.i1, z.i1), x.w);
                    *o = lerp(lerp(c00, c10, y.w), lerp(c01, c11, y.w), z.w);
                }
            }
        });
}

/// Source slices resampled in-plane onto the target's (i, j) grid, two kept per task: target
/// slices advance monotonically through source slices, so each is computed about once.
struct SliceCache {
    keys: [Option<usize>; 2],
    slices: [Vec<f32>; 2],
    /// Source rows resampled along i (`sy` rows of the target's width).
    rows: Vec<f32>,
}

/// Everything the separable path needs about the grids.
struct Separable<'a> {
    data: &'a [f32],
    src: [usize; 3],
    dst: [usize; 3],
    tx: Vec<Tap>,
    ty: Vec<Tap>,
    /// Source rows some target row interpolates from.
    rows_needed: Vec<bool>,
}

impl Separable<'_> {
    /// Source slice `k` on the target's in-plane grid, into `out`.
    fn plane(&self, k: usize, rows: &mut [f32], out: &mut [f32]) {
        let [sx, sy, _] = self.src;
        let tnx = self.dst[0];
        for j in (0..sy).filter(|&j| self.rows_needed[j]) {
            let s = &self.data[sx * (j + sy * k)..][..sx];
            for (r, t) in rows[j * tnx..][..tnx].iter_mut().zip(&self.tx) {
                *r = lerp(s[t.i0], s[t.i1], t.w);
            }
        }
        for (o, t) in out.chunks_mut(tnx).zip(&self.ty) {
            let a = &rows[t.i0 * tnx..][..tnx];
            let b = &rows[t.i1 * tnx..][..tnx];
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = lerp(a, b, t.w);
            }
        }
    }

    /// The cache slot holding source slice `k`, computing it if needed without evicting `keep`.
    fn ensure(&self, cache: &mut SliceCache, k: usize, keep: Option<usize>) -> usize {
        if let Some(s) = cache.keys.iter().position(|&key| key == Some(k)) {
            return s;
        }
        let s = if cache.keys[0].is_some() && cache.keys[0] == keep {
            1
        } else {
            0
        };
        let (rows, slice) = (&mut cache.rows, &mut cache.slices[s]);
        self.plane(k, rows, slice);
        cache.keys[s] = Some(k);
        s
    }
}

fn linear_separable(src: &Volume<f32>, dst: &Geometry, map: &IndexMap, fill: f32, out: &mut [f32]) {
    let [tx, ty, tz] = map.axis_taps(src.shape(), dst.shape());
    let (s, d) = (src.shape(), dst.shape());
    let mut rows_needed = vec![false; s[1]];
    for t in &ty {
        rows_needed[t.i0] = true;
        rows_needed[t.i1] = true;
    }
    let outside_x: Vec<usize> = (0..d[0]).filter(|&i| !tx[i].inside).collect();
    let sep = Separable {
        data: src.data(),
        src: s,
        dst: d,
        tx,
        ty,
        rows_needed,
    };
    let plane = d[0] * d[1];
    let per_task = d[2].div_ceil(4 * rayon::current_num_threads()).max(1);
    out.par_chunks_mut(plane * per_task)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut cache = SliceCache {
                keys: [None, None],
                slices: [vec![0.0; plane], vec![0.0; plane]],
                rows: vec![0.0; s[1] * d[0]],
            };
            for (n, o) in chunk.chunks_mut(plane).enumerate() {
                let z = tz[c * per_task + n];
                if !z.inside {
                    continue; // already `fill`
                }
                let a = sep.ensure(&mut cache, z.i0, None);
                if z.i1 == z.i0 {
                    o.copy_from_slice(&cache.slices[a]);
                } else {
                    let b = sep.ensure(&mut cache, z.i1, Some(z.i0));
                    let (sa, sb) = (&cache.slices[a], &cache.slices[b]);
                    for ((o, &a), &b) in o.iter_mut().zip(sa).zip(sb) {
                        *o = lerp(a, b, z.w);
                    }
                }
                for (row, t) in o.chunks_mut(d[0]).zip(&sep.ty) {
                    if !t.inside {
                        row.fill(fill);
                    } else {
                        for &i in &outside_x {
                            row[i] = fill;
                        }
                    }
                }
            }
        });
}

/// Marks a source column whose four neighbouring rows disagree (labels are `u8`).
const MIXED: u16 = u16::MAX;

/// One target row of a label map on a separable grid. `uniform` is scratch for the linear
/// mode: per source column, the label when the four source rows around the target row agree
/// there, else [`MIXED`]; most target voxels then need two lookups instead of eight.
fn label_row_separable(
    src: &LabelMap,
    tx: &[Tap],
    y: &Tap,
    z: &Tap,
    mode: LabelInterp,
    uniform: &mut Vec<u16>,
    row: &mut [u8],
) {
    if !(y.inside && z.inside) {
        return; // already background
    }
    let [sx, sy, _] = src.shape();
    let data = src.data();
    let src_row = |j: usize, k: usize| &data[sx * (j + sy * k)..][..sx];
    match mode {
        LabelInterp::Nearest => {
            let s = src_row(y.near, z.near);
            for (o, x) in row.iter_mut().zip(tx) {
                if x.inside {
                    *o = s[x.near];
                }
            }
        }
        LabelInterp::Linear => {
            let (r00, r10) = (src_row(y.i0, z.i0), src_row(y.i1, z.i0));
            let (r01, r11) = (src_row(y.i0, z.i1), src_row(y.i1, z.i1));
            uniform.clear();
            uniform.extend((0..sx).map(|i| {
                let l = r00[i];
                if r10[i] == l && r01[i] == l && r11[i] == l {
                    u16::from(l)
                } else {
                    MIXED
                }
            }));
            for (o, x) in row.iter_mut().zip(tx) {
                if !x.inside {
                    continue;
                }
                let u = uniform[x.i0];
                *o = if u != MIXED && uniform[x.i1] == u {
                    u as u8
                } else {
                    vote(data, [sx, sy], x, y, z)
                };
            }
        }
    }
}

/// One target row of a label map through the full affine.
fn label_row_general(
    src: &LabelMap,
    map: &IndexMap,
    jt: usize,
    kt: usize,
    mode: LabelInterp,
    row: &mut [u8],
) {
    let [sx, sy, sz] = src.shape();
    let data = src.data();
    for (it, o) in row.iter_mut().enumerate() {
        let t = [it, jt, kt];
        let (x, y, z) = (
            Tap::new(map.source(0, t), sx),
            Tap::new(map.source(1, t), sy),
            Tap::new(map.source(2, t), sz),
        );
        if !(x.inside && y.inside && z.inside) {
            continue;
        }
        *o = match mode {
            LabelInterp::Nearest => data[x.near + sx * (y.near + sy * z.near)],
            LabelInterp::Linear => vote(data, [sx, sy], &x, &y, &z),
        };
    }
}

/// The label with the largest trilinear weight among the eight neighbours (ties: lowest label).
#[inline]
fn vote(data: &[u8], [sx, sy]: [usize; 2], x: &Tap, y: &Tap, z: &Tap) -> u8 {
    let at = |i: usize, j: usize, k: usize| data[i + sx * (j + sy * k)];
    let labels = [
        at(x.i0, y.i0, z.i0),
        at(x.i1, y.i0, z.i0),
        at(x.i0, y.i1, z.i0),
        at(x.i1, y.i1, z.i0),
        at(x.i0, y.i0, z.i1),
        at(x.i1, y.i0, z.i1),
        at(x.i0, y.i1, z.i1),
        at(x.i1, y.i1, z.i1),
    ];
    if labels.iter().all(|&l| l == labels[0]) {
        return labels[0];
    }
    let wx = [1.0 - x.w, x.w];
    let wy = [1.0 - y.w, y.w];
    let wz = [1.0 - z.w, z.w];
    let mut seen = [(0u8, 0.0f32); 8];
    let mut n = 0;
    for (c, &l) in labels.iter().enumerate() {
        let w = wx[c & 1] * wy[(c >> 1) & 1] * wz[c >> 2];
        match seen[..n].iter_mut().find(|(sl, _)| *sl == l) {
            Some((_, s)) => *s += w,
            None => {
                seen[n] = (l, w);
                n += 1;
            }
        }
    }
    let mut best = seen[0];
    for &(l, s) in &seen[1..n] {
        if s > best.1 || (s == best.1 && l < best.0) {
            best = (l, s);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32) / (1u64 << 24) as f32 * 100.0 - 50.0
            })
            .collect()
    }

    #[test]
    fn separable_path_equals_general_path_bit_for_bit() {
        let g = Geometry::new(
            [13, 11, 9],
            [0.8, 0.9, 2.5],
            [10.0, -20.0, 5.0],
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        )
        .unwrap();
        let src = Volume::new(g, noise(13 * 11 * 9, 3)).unwrap();
        for target in [
            g.resized([7, 17, 5]).unwrap(),
            g.resized([20, 4, 13]).unwrap(),
            g.pad([2, 0, 1], [3, 1, 0])
                .unwrap()
                .resized([9, 9, 9])
                .unwrap(),
            // A flipped axis: still separable.
            g.reorient([0, 1, 2], [true, false, true])
                .unwrap()
                .resized([10, 6, 7])
                .unwrap(),
        ] {
            let map = IndexMap::new(&g, &target).unwrap();
            assert!(map.separable);
            let mut a = vec![-7.0; target.n_voxels()];
            let mut b = a.clone();
            linear_separable(&src, &target, &map, -7.0, &mut a);
            linear_general(&src, &target, &map, &mut b);
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "paths differ for {target:?}"
            );
        }
    }

    #[test]
    fn separable_label_rows_equal_general_label_rows() {
        let g = Geometry::new(
            [12, 10, 8],
            [0.8, 0.9, 2.5],
            [1.0, 2.0, 3.0],
            [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]],
        )
        .unwrap();
        let labels = Volume::new(
            g,
            noise(960, 9)
                .iter()
                .map(|v| (v.abs() / 12.0) as u8)
                .collect(),
        )
        .unwrap();
        for target in [
            g.resized([29, 7, 13]).unwrap(),
            g.resized([5, 23, 4]).unwrap(),
        ] {
            let map = IndexMap::new(&g, &target).unwrap();
            assert!(map.separable);
            let [tx, ty, tz] = map.axis_taps(g.shape(), target.shape());
            let mut scratch = Vec::new();
            for mode in [LabelInterp::Nearest, LabelInterp::Linear] {
                for (kt, z) in tz.iter().enumerate() {
                    for (jt, y) in ty.iter().enumerate() {
                        let mut a = vec![0u8; target.shape()[0]];
                        let mut b = a.clone();
                        label_row_separable(&labels, &tx, y, z, mode, &mut scratch, &mut a);
                        label_row_general(&labels, &map, jt, kt, mode, &mut b);
                        assert_eq!(a, b, "{mode:?} row {jt}, {kt}");
                    }
                }
            }
        }
    }

    #[test]
    fn separable_only_when_dropping_the_shear_moves_nothing() {
        let src = Geometry::axis_aligned([50, 50, 20], [1.0; 3], [0.0; 3]).unwrap();
        let tilted = |eps: f64, n: usize| {
            let dir = [[1.0, eps, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
            Geometry::new([n, n, 10], [1.0; 3], [0.0; 3], dir).unwrap()
        };
        assert!(IndexMap::new(&src, &tilted(0.0, 40)).unwrap().separable);
        assert!(IndexMap::new(&src, &tilted(1e-9, 40)).unwrap().separable);
        // 1e-7 per voxel over 40 voxels is 4e-6 voxel: too much.
        assert!(!IndexMap::new(&src, &tilted(1e-7, 40)).unwrap().separable);
        assert!(IndexMap::new(&src, &tilted(1e-8, 40)).unwrap().separable);
        assert!(!IndexMap::new(&src, &tilted(1e-8, 400)).unwrap().separable);
    }

    #[test]
    fn vote_prefers_heaviest_then_lowest_label() {
        let data = [3u8, 1, 1, 1, 3, 3, 3, 0];
        let tap = |w: f32| Tap {
            i0: 0,
            i1: 1,
            w,
            near: 0,
            inside: true,
        };
        // Equal weights: label 3 has four corners, label 1 three, label 0 one.
        assert_eq!(vote(&data, [2, 2], &tap(0.5), &tap(0.5), &tap(0.5)), 3);
        // Near corner (1, 1, 0): label 1.
        assert_eq!(vote(&data, [2, 2], &tap(0.9), &tap(0.9), &tap(0.1)), 1);
        // A tie between 1 and 3 goes to 1.
        let tie = [3u8, 1, 3, 1, 3, 1, 3, 1];
        assert_eq!(vote(&tie, [2, 2], &tap(0.5), &tap(0.5), &tap(0.5)), 1);
    }
}
