//! Regions of interest: axis-aligned blocks of voxels.

use crate::GeometryError;

/// A block of voxels `start..end` (half-open) along each array axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    start: [usize; 3],
    end: [usize; 3],
}

impl Roi {
    /// A non-empty block; `end` is one past the last voxel.
    pub fn new(start: [usize; 3], end: [usize; 3]) -> Result<Roi, GeometryError> {
        if (0..3).any(|a| start[a] >= end[a]) {
            return Err(GeometryError::BadRoi {
                start,
                end,
                shape: end,
            });
        }
        Ok(Roi { start, end })
    }

    /// The whole grid.
    pub fn full(shape: [usize; 3]) -> Roi {
        Roi {
            start: [0; 3],
            end: shape,
        }
    }

    /// First voxel.
    pub fn start(&self) -> [usize; 3] {
        self.start
    }

    /// One past the last voxel.
    pub fn end(&self) -> [usize; 3] {
        self.end
    }

    /// Voxels along each axis.
    pub fn shape(&self) -> [usize; 3] {
        [
            self.end[0] - self.start[0],
            self.end[1] - self.start[1],
            self.end[2] - self.start[2],
        ]
    }

    /// Whether the voxel lies inside.
    pub fn contains(&self, ijk: [usize; 3]) -> bool {
        (0..3).all(|a| ijk[a] >= self.start[a] && ijk[a] < self.end[a])
    }

    /// The block grown by `margin` voxels on every side, clipped to a grid of `shape`.
    pub fn expanded(&self, margin: [usize; 3], shape: [usize; 3]) -> Roi {
        let mut r = *self;
        for a in 0..3 {
            r.start[a] = self.start[a].saturating_sub(margin[a]);
            r.end[a] = (self.end[a].saturating_add(margin[a]))
                .min(shape[a])
                .max(r.start[a] + 1);
        }
        r
    }

    /// The smallest block holding both.
    pub fn union(&self, other: &Roi) -> Roi {
        let mut r = *self;
        for a in 0..3 {
            r.start[a] = self.start[a].min(other.start[a]);
            r.end[a] = self.end[a].max(other.end[a]);
        }
        r
    }

    pub(crate) fn check_within(&self, shape: [usize; 3]) -> Result<(), GeometryError> {
        if (0..3).any(|a| self.end[a] > shape[a] || self.start[a] >= self.end[a]) {
            return Err(GeometryError::BadRoi {
                start: self.start,
                end: self.end,
                shape,
            });
        }
        Ok(())
    }
}
