//! Connected components of label masks, and the post-processing built on them: keeping the
//! largest components of an organ and filling the holes inside it.
//!
//! Labelling is run-based: every row (fixed `j`, `k`) is cut into runs of consecutive voxels in
//! the mask (in parallel), runs that touch runs of the already-visited neighbouring rows are
//! merged with a union-find (sequential, but over runs, a few per row, not voxels), then
//! components are numbered. Post-processing works inside the organ's bounding box and never
//! builds a per-voxel component image, so a full-size CT costs little more than one pass over
//! the organ's box.

use flare_volume::{LabelMap, Roi};
use rayon::prelude::*;

use crate::ImgprocError;

/// Which voxels count as touching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Voxels sharing a face (6 neighbours); SciPy's default structure in 3D.
    Faces,
    /// Voxels sharing a face, an edge or a corner (26 neighbours).
    Full,
}

/// The connected components of a mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components {
    /// Component of every voxel (`i` fastest): 0 outside the mask, else `1..=sizes.len()`,
    /// numbered in the order their first voxel comes in storage order.
    pub labels: Vec<u32>,
    /// Voxels in each component: `sizes[c - 1]` for component `c`.
    pub sizes: Vec<usize>,
}

/// What [`keep_largest_components`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepStats {
    /// Components the label had.
    pub components: usize,
    /// Components set to background.
    pub removed_components: usize,
    /// Voxels set to background.
    pub removed_voxels: usize,
}

/// What [`fill_holes`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FillStats {
    /// Holes filled.
    pub holes: usize,
    /// Voxels set to the label.
    pub voxels: usize,
}

/// Labels the connected components of `mask` (`shape` voxels, `i` fastest), as
/// `scipy.ndimage.label` does (same numbering when SciPy scans the same storage order).
pub fn label_components(
    mask: &[bool],
    shape: [usize; 3],
    connectivity: Connectivity,
) -> Result<Components, ImgprocError> {
    let what = "connected components";
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or(ImgprocError::TooManyVoxels {
            what,
            shape,
            limit: u32::MAX as usize,
        })?;
    if mask.len() != expected {
        return Err(ImgprocError::DataLength {
            what,
            shape,
            expected,
            actual: mask.len(),
        });
    }
    // Component numbers are `u32`.
    if expected > u32::MAX as usize {
        return Err(ImgprocError::TooManyVoxels {
            what,
            shape,
            limit: u32::MAX as usize,
        });
    }
    if expected == 0 {
        return Ok(Components {
            labels: Vec::new(),
            sizes: Vec::new(),
        });
    }
    let runs = Runs::find(mask, shape, &Roi::full(shape), |v| v, |r| r.contains(&true));
    let (comp, sizes) = runs.components(connectivity);
    let mut labels = vec![0u32; expected];
    let nx = shape[0];
    labels
        .par_chunks_mut(nx)
        .enumerate()
        .for_each(|(row, out)| {
            let rs = runs.offsets[row]..runs.offsets[row + 1];
            for (&(s, e), &c) in runs.spans[rs.clone()].iter().zip(&comp[rs]) {
                // Component ids fit: there are fewer components than voxels, checked above.
                out[s..e].fill(c as u32);
            }
        });
    Ok(Components { labels, sizes })
}

/// Keeps the `n` largest connected components of `label` (ties: the one whose first voxel
/// comes first in storage order) and sets the voxels of the others to background (0).
pub fn keep_largest_components(
    labels: &mut LabelMap,
    label: u8,
    n: usize,
    connectivity: Connectivity,
) -> KeepStats {
    let shape = labels.shape();
    let Some(roi) = bounding_box(labels.data(), shape, label) else {
        return KeepStats::default();
    };
    let runs = Runs::find(
        labels.data(),
        shape,
        &roi,
        |v| v == label,
        |r| r.contains(&label),
    );
    let (comp, sizes) = runs.components(connectivity);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(sizes[c]), c));
    let mut keep = vec![false; sizes.len()];
    for &c in order.iter().take(n) {
        keep[c] = true;
    }
    let removed_voxels = (0..sizes.len())
        .filter(|&c| !keep[c])
        .map(|c| sizes[c])
        .sum();
    let data = labels.data_mut();
    for (r, &(s, e)) in runs.spans.iter().enumerate() {
        if !keep[comp[r] - 1] {
            let base = runs.row_base(r);
            data[base + s..base + e].fill(0);
        }
    }
    KeepStats {
        components: sizes.len(),
        removed_components: sizes.len().saturating_sub(n),
        removed_voxels,
    }
}

/// Fills the holes of `label`: connected regions of other voxels, `connectivity`-connected,
/// that `label` encloses (they do not reach the border of its bounding box, hence not the
/// volume's border) and that are all background (0). A pocket that holds another organ's
/// voxels is left alone, so one organ never overwrites another.
pub fn fill_holes(labels: &mut LabelMap, label: u8, connectivity: Connectivity) -> FillStats {
    let shape = labels.shape();
    let Some(roi) = bounding_box(labels.data(), shape, label) else {
        return FillStats::default();
    };
    let runs = Runs::find(labels.data(), shape, &roi, |v| v != label, |_| true);
    let (comp, sizes) = runs.components(connectivity);
    let (start, end) = (roi.start(), roi.end());
    let mut fillable = vec![true; sizes.len()];
    {
        let data = labels.data();
        for (r, &(s, e)) in runs.spans.iter().enumerate() {
            let c = comp[r] - 1;
            if !fillable[c] {
                continue;
            }
            let (j, k) = runs.row_jk(r);
            let on_border = s == start[0]
                || e == end[0]
                || j == start[1]
                || j + 1 == end[1]
                || k == start[2]
                || k + 1 == end[2];
            let base = runs.row_base(r);
            if on_border || data[base + s..base + e].iter().any(|&v| v != 0) {
                fillable[c] = false;
            }
        }
    }
    let data = labels.data_mut();
    for (r, &(s, e)) in runs.spans.iter().enumerate() {
        if fillable[comp[r] - 1] {
            let base = runs.row_base(r);
            data[base + s..base + e].fill(label);
        }
    }
    FillStats {
        holes: fillable.iter().filter(|&&f| f).count(),
        voxels: (0..sizes.len())
            .filter(|&c| fillable[c])
            .map(|c| sizes[c])
            .sum(),
    }
}

/// The smallest block holding every voxel equal to `label` (slices in parallel), or `None`.
fn bounding_box(data: &[u8], shape: [usize; 3], label: u8) -> Option<Roi> {
    let [nx, ny, _] = shape;
    let plane = nx * ny;
    let per_slice = |(k, slice): (usize, &[u8])| -> Option<([usize; 3], [usize; 3])> {
        let mut lo = [usize::MAX, usize::MAX, k];
        let mut hi = [0, 0, k + 1];
        for (j, row) in slice.chunks(nx).enumerate() {
            // `contains` on bytes is a vectorised memchr: most rows hold no voxel of the label.
            if !row.contains(&label) {
                continue;
            }
            let Some(first) = row.iter().position(|&v| v == label) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v == label).unwrap_or(first);
            lo = [lo[0].min(first), lo[1].min(j), k];
            hi = [hi[0].max(last + 1), hi[1].max(j + 1), k + 1];
        }
        (lo[1] != usize::MAX).then_some((lo, hi))
    };
    let (lo, hi) = data
        .par_chunks(plane)
        .enumerate()
        .filter_map(per_slice)
        .reduce_with(|(la, ha), (lb, hb)| {
            (
                [0, 1, 2].map(|a| la[a].min(lb[a])),
                [0, 1, 2].map(|a| ha[a].max(hb[a])),
            )
        })?;
    Roi::new(lo, hi).ok()
}

/// The runs of a mask inside a region, row by row in storage order.
struct Runs {
    /// Grid shape.
    shape: [usize; 3],
    /// The region's rows: `j` in `j0..j1`, `k` in `k0..k1`.
    j0: usize,
    j1: usize,
    k0: usize,
    /// `[start, end)` along `i` of every run, rows in storage order.
    spans: Vec<(usize, usize)>,
    /// Runs of region row `r` are `spans[offsets[r]..offsets[r + 1]]`.
    offsets: Vec<usize>,
    /// Region row of every run.
    run_row: Vec<usize>,
}

impl Runs {
    /// Cuts the rows of `roi` into runs of voxels for which `inside` holds, slices in parallel.
    /// `row_may_have` is a fast pre-check that lets empty rows be skipped (`u8::contains` is a
    /// vectorised `memchr`); it may return true for a row without any such voxel.
    fn find<T: Copy + Sync>(
        data: &[T],
        shape: [usize; 3],
        roi: &Roi,
        inside: impl Fn(T) -> bool + Sync,
        row_may_have: impl Fn(&[T]) -> bool + Sync,
    ) -> Runs {
        let (s, e) = (roi.start(), roi.end());
        let [nx, ny, _] = shape;
        // Per slice: its runs, and how many runs each of its rows has.
        type SliceRuns = (Vec<(usize, usize)>, Vec<usize>);
        let per_slice: Vec<SliceRuns> = (s[2]..e[2])
            .into_par_iter()
            .map(|k| {
                let mut spans = Vec::new();
                let mut counts = Vec::with_capacity(e[1] - s[1]);
                for j in s[1]..e[1] {
                    let base = nx * (j + ny * k);
                    let row = &data[base + s[0]..base + e[0]];
                    let before = spans.len();
                    let mut i = if row_may_have(row) { 0 } else { row.len() };
                    while i < row.len() {
                        let Some(p) = row[i..].iter().position(|&v| inside(v)) else {
                            break;
                        };
                        let start = i + p;
                        let len = row[start..]
                            .iter()
                            .position(|&v| !inside(v))
                            .unwrap_or(row.len() - start);
                        spans.push((s[0] + start, s[0] + start + len));
                        i = start + len;
                    }
                    counts.push(spans.len() - before);
                }
                (spans, counts)
            })
            .collect();
        let total: usize = per_slice.iter().map(|(s, _)| s.len()).sum();
        let mut spans = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity((e[1] - s[1]) * (e[2] - s[2]) + 1);
        let mut run_row = Vec::with_capacity(total);
        offsets.push(0);
        for (slice_spans, counts) in per_slice {
            for c in counts {
                let row = offsets.len() - 1;
                run_row.extend(std::iter::repeat_n(row, c));
                offsets.push(offsets[row] + c);
            }
            spans.extend(slice_spans);
        }
        Runs {
            shape,
            j0: s[1],
            j1: e[1],
            k0: s[2],
            spans,
            offsets,
            run_row,
        }
    }

    /// Grid `(j, k)` of run `r`'s row.
    fn row_jk(&self, r: usize) -> (usize, usize) {
        let row = self.run_row[r];
        let rows_per_slice = self.j1 - self.j0;
        (
            self.j0 + row % rows_per_slice,
            self.k0 + row / rows_per_slice,
        )
    }

    /// Linear index of voxel `(0, j, k)` of run `r`'s row.
    fn row_base(&self, r: usize) -> usize {
        let (j, k) = self.row_jk(r);
        self.shape[0] * (j + self.shape[1] * k)
    }

    /// Component (1-based, numbered by first run) of every run, and component sizes.
    fn components(&self, connectivity: Connectivity) -> (Vec<usize>, Vec<usize>) {
        let n = self.spans.len();
        let mut parent: Vec<usize> = (0..n).collect();
        let rows_per_slice = self.j1 - self.j0;
        let n_rows = self.offsets.len() - 1;
        // Already-visited neighbour rows as (dj, dk), and whether diagonal contact counts.
        let (neighbours, reach): (&[(isize, isize)], usize) = match connectivity {
            Connectivity::Faces => (&[(-1, 0), (0, -1)], 0),
            Connectivity::Full => (&[(-1, 0), (-1, -1), (0, -1), (1, -1)], 1),
        };
        for row in 0..n_rows {
            let (j, k) = (row % rows_per_slice, row / rows_per_slice);
            for &(dj, dk) in neighbours {
                let (Some(nj), Some(nk)) = (j.checked_add_signed(dj), k.checked_add_signed(dk))
                else {
                    continue;
                };
                if nj >= rows_per_slice {
                    continue;
                }
                let other = nj + rows_per_slice * nk;
                self.merge_rows(row, other, reach, &mut parent);
            }
        }
        let mut comp = vec![0usize; n];
        let mut sizes = Vec::new();
        for r in 0..n {
            let root = find(&mut parent, r);
            if root == r {
                sizes.push(0);
                comp[r] = sizes.len();
            } else {
                // The root is the component's first run, so it is numbered already.
                comp[r] = comp[root];
            }
            let (s, e) = self.spans[r];
            sizes[comp[r] - 1] += e - s;
        }
        (comp, sizes)
    }

    /// Unites the runs of `row` with those of `other` that touch them: overlapping, or within
    /// `reach` voxels along `i` for diagonal contact.
    fn merge_rows(&self, row: usize, other: usize, reach: usize, parent: &mut [usize]) {
        let (mut a, a_end) = (self.offsets[row], self.offsets[row + 1]);
        let (mut b, b_end) = (self.offsets[other], self.offsets[other + 1]);
        while a < a_end && b < b_end {
            let (sa, ea) = self.spans[a];
            let (sb, eb) = self.spans[b];
            if sa < eb + reach && sb < ea + reach {
                union(parent, a, b);
            }
            // Advance whichever run ends first; the other may still touch the next one.
            if ea < eb {
                a += 1;
            } else {
                b += 1;
            }
        }
    }
}

/// Root of `x`, halving the path on the way.
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Joins two sets; the smaller index becomes the root, so a component's root is its first run.
fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra < rb {
        parent[rb] = ra;
    } else if rb < ra {
        parent[ra] = rb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flare_volume::{Geometry, Volume};

    #[test]
    fn bounding_box_matches_the_volume_method() {
        let g = Geometry::axis_aligned([9, 7, 5], [1.0; 3], [0.0; 3]).unwrap();
        let mut v = Volume::filled(g, 0u8);
        assert_eq!(bounding_box(v.data(), g.shape(), 3), None);
        for (ijk, l) in [
            ([2, 5, 1], 3),
            ([7, 1, 3], 3),
            ([8, 6, 4], 2),
            ([4, 3, 2], 3),
        ] {
            v.data_mut()[g.linear_index(ijk)] = l;
        }
        for l in [2, 3] {
            let want = v.bounding_box(|x| x == l);
            assert_eq!(bounding_box(v.data(), g.shape(), l), want, "label {l}");
        }
    }

    fn grid(shape: [usize; 3]) -> Geometry {
        Geometry::axis_aligned(shape, [1.0; 3], [0.0; 3]).unwrap()
    }

    #[test]
    fn diagonal_contact_depends_on_connectivity() {
        // Two voxels touching at a corner, one touching the second at an edge.
        let shape = [4, 4, 3];
        let mut mask = vec![false; 48];
        let at = |i: usize, j: usize, k: usize| i + 4 * (j + 4 * k);
        mask[at(0, 0, 0)] = true;
        mask[at(1, 1, 1)] = true;
        mask[at(2, 1, 2)] = true;
        mask[at(3, 3, 0)] = true;
        let full = label_components(&mask, shape, Connectivity::Full).unwrap();
        assert_eq!(full.sizes, vec![3, 1]);
        let faces = label_components(&mask, shape, Connectivity::Faces).unwrap();
        assert_eq!(faces.sizes, vec![1, 1, 1, 1]);
        assert_eq!(faces.labels[at(3, 3, 0)], 2);
    }

    #[test]
    fn runs_ending_at_the_same_place_still_meet_their_neighbours() {
        // Row 0: [0, 2) and [3, 5); row 1: [1, 4) joins both.
        let shape = [5, 2, 1];
        let mask = [
            true, true, false, true, true, false, true, true, true, false,
        ];
        let c = label_components(&mask, shape, Connectivity::Faces).unwrap();
        assert_eq!(c.sizes, vec![7]);
    }

    #[test]
    fn keeps_the_largest_and_removes_the_rest() {
        let g = grid([10, 6, 4]);
        let mut v = Volume::filled(g, 0u8);
        let idx = |i: usize, j: usize, k: usize| g.linear_index([i, j, k]);
        for i in 0..4 {
            v.data_mut()[idx(i, 1, 1)] = 2; // 4 voxels
        }
        for i in 6..9 {
            v.data_mut()[idx(i, 4, 2)] = 2; // 3 voxels
        }
        v.data_mut()[idx(9, 0, 3)] = 2; // 1 voxel
        v.data_mut()[idx(5, 5, 0)] = 1; // another label, untouched
        let stats = keep_largest_components(&mut v, 2, 2, Connectivity::Full);
        assert_eq!(
            stats,
            KeepStats {
                components: 3,
                removed_components: 1,
                removed_voxels: 1
            }
        );
        assert_eq!(v.data()[idx(9, 0, 3)], 0);
        assert_eq!(v.data()[idx(7, 4, 2)], 2);
        assert_eq!(v.data()[idx(5, 5, 0)], 1);
        keep_largest_components(&mut v, 2, 1, Connectivity::Full);
        assert_eq!(v.data().iter().filter(|&&x| x == 2).count(), 4);
        assert_eq!(
            keep_largest_components(&mut v, 4, 1, Connectivity::Full),
            KeepStats::default()
        );
    }

    #[test]
    fn fills_enclosed_background_only() {
        let g = grid([7, 7, 5]);
        let mut v = Volume::filled(g, 0u8);
        // A hollow box of label 1 (5x5x5 shell) with two cavities separated by a wall.
        for k in 0..5 {
            for j in 1..6 {
                for i in 1..6 {
                    let shell = k == 0 || k == 4 || j == 1 || j == 5 || i == 1 || i == 5 || i == 3;
                    if shell {
                        v.data_mut()[g.linear_index([i, j, k])] = 1;
                    }
                }
            }
        }
        // One cavity holds another organ's voxel: it must stay as it is.
        v.data_mut()[g.linear_index([4, 3, 2])] = 3;
        let stats = fill_holes(&mut v, 1, Connectivity::Faces);
        assert_eq!(
            stats,
            FillStats {
                holes: 1,
                voxels: 9
            }
        );
        assert_eq!(v.data()[g.linear_index([2, 3, 2])], 1);
        assert_eq!(v.data()[g.linear_index([4, 2, 2])], 0);
        assert_eq!(v.data()[g.linear_index([4, 3, 2])], 3);
        assert_eq!(v.data()[g.linear_index([0, 0, 0])], 0);
    }
}
