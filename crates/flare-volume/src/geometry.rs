//! The voxel grid: shape, spacing, origin and direction.

use crate::{
    Affine, GeometryError, Orientation, Roi,
    affine::{det3, inverse3},
};

/// Where a grid of voxels lies in the world.
///
/// `direction` holds one unit column per array axis (`direction[row][axis]`, rows are world x, y,
/// z in RAS+). Columns need not be orthogonal (a NIfTI sform may shear) but must span 3D space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    origin_mm: [f64; 3],
    direction: [[f64; 3]; 3],
}

impl Geometry {
    /// Builds a geometry, normalising the direction columns and checking that it is usable.
    pub fn new(
        shape: [usize; 3],
        spacing_mm: [f64; 3],
        origin_mm: [f64; 3],
        direction: [[f64; 3]; 3],
    ) -> Result<Self, GeometryError> {
        if shape.contains(&0) {
            return Err(GeometryError::EmptyShape { shape });
        }
        shape
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .ok_or(GeometryError::TooLarge { shape })?;
        if spacing_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(GeometryError::BadSpacing { spacing_mm });
        }
        if origin_mm
            .iter()
            .chain(direction.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(GeometryError::NonFiniteAffine);
        }
        let mut dir = direction;
        for c in 0..3 {
            let norm = (0..3).map(|r| dir[r][c] * dir[r][c]).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(GeometryError::SingularAffine { determinant: 0.0 });
            }
            for row in dir.iter_mut() {
                row[c] /= norm;
            }
        }
        let det = det3(&dir);
        if inverse3(&dir).is_none() || det.abs() < 1e-6 {
            return Err(GeometryError::SingularAffine { determinant: det });
        }
        Ok(Geometry {
            shape,
            spacing_mm,
            origin_mm,
            direction: dir,
        })
    }

    /// An axis-aligned RAS grid (identity direction).
    pub fn axis_aligned(
        shape: [usize; 3],
        spacing_mm: [f64; 3],
        origin_mm: [f64; 3],
    ) -> Result<Self, GeometryError> {
        Self::new(
            shape,
            spacing_mm,
            origin_mm,
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        )
    }

    /// Decomposes an affine into spacing (column lengths), direction (unit columns) and origin.
    pub fn from_affine(shape: [usize; 3], affine: &Affine) -> Result<Self, GeometryError> {
        if !affine.is_finite() {
            return Err(GeometryError::NonFiniteAffine);
        }
        let lin = affine.linear();
        let mut spacing = [0.0; 3];
        for (c, s) in spacing.iter_mut().enumerate() {
            *s = (0..3).map(|r| lin[r][c] * lin[r][c]).sum::<f64>().sqrt();
        }
        if spacing.contains(&0.0) {
            return Err(GeometryError::SingularAffine {
                determinant: det3(&lin),
            });
        }
        Self::new(shape, spacing, affine.translation(), lin)
    }

    /// Voxels along each array axis.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Distance between voxel centres along each array axis, in millimetres.
    pub fn spacing_mm(&self) -> [f64; 3] {
        self.spacing_mm
    }

    /// World position (RAS+, mm) of the centre of voxel (0, 0, 0).
    pub fn origin_mm(&self) -> [f64; 3] {
        self.origin_mm
    }

    /// Unit direction of each array axis: `direction()[row][axis]`.
    pub fn direction(&self) -> [[f64; 3]; 3] {
        self.direction
    }

    /// Number of voxels.
    pub fn n_voxels(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }

    /// Volume of one voxel in millilitres (accounts for sheared axes).
    pub fn voxel_volume_ml(&self) -> f64 {
        (det3(&self.affine().linear())).abs() / 1000.0
    }

    /// Linear index of voxel `(i, j, k)` in the `i`-fastest layout.
    #[inline]
    pub fn linear_index(&self, ijk: [usize; 3]) -> usize {
        ijk[0] + self.shape[0] * (ijk[1] + self.shape[1] * ijk[2])
    }

    /// The voxel-to-world affine.
    pub fn affine(&self) -> Affine {
        let mut rows = [[0.0; 4]; 3];
        // Row and column indices are the formula's own.
        #[allow(clippy::needless_range_loop)]
        for r in 0..3 {
            for c in 0..3 {
                rows[r][c] = self.direction[r][c] * self.spacing_mm[c];
            }
            rows[r][3] = self.origin_mm[r];
        }
        Affine::from_rows(rows)
    }

    /// World position (mm) of a continuous voxel index.
    pub fn index_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        self.affine().apply(ijk)
    }

    /// Continuous voxel index of a world position (mm).
    pub fn world_to_index(&self, xyz: [f64; 3]) -> [f64; 3] {
        // `new` guarantees the direction is invertible, hence so is the affine.
        self.affine()
            .inverse()
            .map_or([f64::NAN; 3], |inv| inv.apply(xyz))
    }

    /// The 3 x 4 affine map (rows) from a voxel index of `other` to the continuous voxel index
    /// of this grid, through world coordinates: what resampling from this grid onto `other`
    /// evaluates at every target voxel.
    pub fn index_map_from(&self, other: &Geometry) -> Result<[[f64; 4]; 3], GeometryError> {
        let sa = self.affine();
        let inv = sa.inverse().ok_or(GeometryError::SingularAffine {
            determinant: sa.determinant(),
        })?;
        let ta = other.affine();
        let mut m = [[0.0; 4]; 3];
        for (r, row) in m.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = (0..4).map(|q| inv.m[r][q] * ta.m[q][c]).sum();
            }
        }
        Ok(m)
    }

    /// Whether two grids have the same shape and affines within `tol_mm` entry by entry.
    pub fn same_grid(&self, other: &Geometry, tol_mm: f64) -> bool {
        self.shape == other.shape && self.affine().max_abs_diff(&other.affine()) <= tol_mm
    }

    /// The orientation code of the array axes (e.g. RAS, LPS), chosen as nibabel's `aff2axcodes`.
    pub fn orientation(&self) -> Orientation {
        Orientation::from_direction(&self.direction)
    }

    /// The grid of a sub-block: same spacing and direction, origin moved to the block's first voxel.
    pub fn crop(&self, roi: &Roi) -> Result<Geometry, GeometryError> {
        roi.check_within(self.shape)?;
        let start = roi.start().map(|v| v as f64);
        Ok(Geometry {
            shape: roi.shape(),
            origin_mm: self.index_to_world(start),
            ..*self
        })
    }

    /// The grid grown by `before` voxels at the low end and `after` at the high end of each axis.
    pub fn pad(&self, before: [usize; 3], after: [usize; 3]) -> Result<Geometry, GeometryError> {
        let mut shape = self.shape;
        for a in 0..3 {
            shape[a] = shape[a]
                .checked_add(before[a])
                .and_then(|s| s.checked_add(after[a]))
                .ok_or(GeometryError::TooLarge { shape: self.shape })?;
        }
        let origin = self.index_to_world(before.map(|b| -(b as f64)));
        Geometry::new(shape, self.spacing_mm, origin, self.direction)
    }

    /// A grid of `new_shape` voxels covering the same field of view (outer voxel edges aligned),
    /// as used to resample a whole scan to a fixed grid and back.
    pub fn resized(&self, new_shape: [usize; 3]) -> Result<Geometry, GeometryError> {
        if new_shape.contains(&0) {
            return Err(GeometryError::EmptyShape { shape: new_shape });
        }
        let mut spacing = [0.0; 3];
        let mut first = [0.0; 3];
        for a in 0..3 {
            let ratio = self.shape[a] as f64 / new_shape[a] as f64;
            spacing[a] = self.spacing_mm[a] * ratio;
            // The old grid's edge is at index -0.5; the new first centre is half a new voxel in.
            first[a] = -0.5 + 0.5 * ratio;
        }
        Geometry::new(
            new_shape,
            spacing,
            self.index_to_world(first),
            self.direction,
        )
    }

    /// A grid with the given spacing covering (at least) the same field of view, centred on it.
    pub fn with_spacing(&self, spacing_mm: [f64; 3]) -> Result<Geometry, GeometryError> {
        if spacing_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(GeometryError::BadSpacing { spacing_mm });
        }
        let mut shape = [0; 3];
        let mut first = [0.0; 3];
        for a in 0..3 {
            let extent = self.shape[a] as f64 * self.spacing_mm[a];
            shape[a] = ((extent / spacing_mm[a]).round() as usize).max(1);
            // Centre the new grid on the old one.
            let old_centre = (self.shape[a] as f64 - 1.0) / 2.0;
            let half_new = (shape[a] as f64 - 1.0) / 2.0 * spacing_mm[a] / self.spacing_mm[a];
            first[a] = old_centre - half_new;
        }
        Geometry::new(
            shape,
            spacing_mm,
            self.index_to_world(first),
            self.direction,
        )
    }

    /// The grid after reordering and flipping array axes: new axis `a` is old axis `axes[a]`,
    /// reversed when `flips[a]`. The voxels stay where they are in the world.
    pub fn reorient(&self, axes: [usize; 3], flips: [bool; 3]) -> Result<Geometry, GeometryError> {
        let mut seen = [false; 3];
        for &a in &axes {
            if a > 2 || seen[a] {
                return Err(GeometryError::BadPermutation { axes });
            }
            seen[a] = true;
        }
        let mut shape = [0; 3];
        let mut spacing = [0.0; 3];
        let mut dir = [[0.0; 3]; 3];
        let mut old_first = [0.0; 3];
        for a in 0..3 {
            let old = axes[a];
            shape[a] = self.shape[old];
            spacing[a] = self.spacing_mm[old];
            let sign = if flips[a] { -1.0 } else { 1.0 };
            for (r, row) in dir.iter_mut().enumerate() {
                row[a] = sign * self.direction[r][old];
            }
            if flips[a] {
                old_first[old] = (self.shape[old] - 1) as f64;
            }
        }
        Geometry::new(shape, spacing, self.index_to_world(old_first), dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique() -> Geometry {
        let a = Affine::from_rows([
            [-0.68, 0.12, 0.3, 101.0],
            [0.15, 0.66, -0.9, -22.0],
            [0.05, 0.2, 2.8, -340.5],
        ]);
        Geometry::from_affine([7, 5, 4], &a).expect("valid")
    }

    fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
        (0..3).all(|d| (a[d] - b[d]).abs() <= tol)
    }

    #[test]
    fn affine_round_trip() {
        let g = oblique();
        let a = g.affine();
        let g2 = Geometry::from_affine(g.shape(), &a).expect("valid");
        assert!(g2.affine().max_abs_diff(&a) < 1e-12);
        assert!(close(g.spacing_mm(), g2.spacing_mm(), 1e-12));
    }

    #[test]
    fn rejects_bad_spacing_and_singular() {
        let dir = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        for s in [[0.0, 1.0, 1.0], [1.0, -2.0, 1.0], [1.0, 1.0, f64::NAN]] {
            assert!(matches!(
                Geometry::new([2, 2, 2], s, [0.0; 3], dir),
                Err(GeometryError::BadSpacing { .. })
            ));
        }
        let sing = Affine::from_rows([
            [1.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]);
        assert!(matches!(
            Geometry::from_affine([2, 2, 2], &sing),
            Err(GeometryError::SingularAffine { .. })
        ));
        assert!(matches!(
            Geometry::new([0, 2, 2], [1.0; 3], [0.0; 3], dir),
            Err(GeometryError::EmptyShape { .. })
        ));
    }

    #[test]
    fn crop_and_pad_keep_voxels_in_place() {
        let g = oblique();
        let roi = Roi::new([2, 1, 1], [6, 5, 3]).expect("roi");
        let c = g.crop(&roi).expect("crop");
        assert_eq!(c.shape(), [4, 4, 2]);
        assert!(close(
            c.index_to_world([1.0, 2.0, 1.0]),
            g.index_to_world([3.0, 3.0, 2.0]),
            1e-9
        ));
        let p = g.pad([1, 2, 3], [0, 0, 1]).expect("pad");
        assert_eq!(p.shape(), [8, 7, 8]);
        assert!(close(
            p.index_to_world([1.0, 2.0, 3.0]),
            g.index_to_world([0.0; 3]),
            1e-9
        ));
    }

    #[test]
    fn resized_keeps_field_of_view() {
        let g = Geometry::axis_aligned([10, 4, 3], [1.0, 2.0, 3.0], [0.0; 3]).expect("g");
        let r = g.resized([5, 8, 3]).expect("r");
        assert!(close(r.spacing_mm(), [2.0, 1.0, 3.0], 1e-12));
        // Outer edges coincide: old edge at -0.5 mm on x; new first centre at 0.5 mm.
        assert!(close(r.origin_mm(), [0.5, -0.5, 0.0], 1e-12));
        // Resizing back gives the original grid.
        assert!(r.resized([10, 4, 3]).expect("back").same_grid(&g, 1e-9));
    }

    #[test]
    fn with_spacing_is_centred() {
        let g = Geometry::axis_aligned([10, 10, 10], [1.0; 3], [0.0; 3]).expect("g");
        let r = g.with_spacing([2.0, 0.5, 1.0]).expect("r");
        assert_eq!(r.shape(), [5, 20, 10]);
        let c_old = g.index_to_world([4.5; 3]);
        let c_new = r.index_to_world([2.0, 9.5, 4.5]);
        assert!(close(c_old, c_new, 1e-9), "{c_old:?} {c_new:?}");
    }

    #[test]
    fn reorient_keeps_voxels_in_place() {
        let g = oblique();
        let r = g
            .reorient([2, 0, 1], [true, false, true])
            .expect("reorient");
        assert_eq!(r.shape(), [4, 7, 5]);
        // New (a, b, c) is old (i=b, j=4-c, k=3-a).
        for (a, b, c) in [(0, 0, 0), (3, 6, 4), (1, 2, 3)] {
            let new = r.index_to_world([a as f64, b as f64, c as f64]);
            let old = g.index_to_world([b as f64, (4 - c) as f64, (3 - a) as f64]);
            assert!(close(new, old, 1e-9), "{new:?} vs {old:?}");
        }
        assert!(g.reorient([0, 0, 1], [false; 3]).is_err());
    }
}
