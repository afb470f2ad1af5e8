//! Errors for geometry and volume construction.

/// A grid or volume that cannot exist: bad spacing, a singular affine, data of the wrong length.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GeometryError {
    /// An axis has zero voxels.
    #[error("shape {shape:?} has an empty axis")]
    EmptyShape {
        /// The offending shape.
        shape: [usize; 3],
    },
    /// A spacing is zero, negative, NaN or infinite.
    #[error("voxel spacing {spacing_mm:?} mm is not positive and finite")]
    BadSpacing {
        /// The offending spacing.
        spacing_mm: [f64; 3],
    },
    /// The affine or direction has a NaN or infinite entry.
    #[error("affine has a non-finite entry")]
    NonFiniteAffine,
    /// The affine's 3x3 part cannot be inverted (axes are parallel or an axis has zero length).
    #[error(
        "affine is singular (determinant {determinant:e}): the voxel axes do not span 3D space"
    )]
    SingularAffine {
        /// Determinant of the 3x3 part.
        determinant: f64,
    },
    /// The voxel buffer does not match the shape.
    #[error("voxel buffer holds {actual} values but shape {shape:?} needs {expected}")]
    DataLength {
        /// The shape.
        shape: [usize; 3],
        /// Voxels the shape needs.
        expected: usize,
        /// Voxels supplied.
        actual: usize,
    },
    /// The number of voxels overflows `usize`.
    #[error("shape {shape:?} has too many voxels to address")]
    TooLarge {
        /// The shape.
        shape: [usize; 3],
    },
    /// A region of interest that is empty or reaches outside the grid.
    #[error("region {start:?}..{end:?} is empty or outside the grid of shape {shape:?}")]
    BadRoi {
        /// First voxel of the region.
        start: [usize; 3],
        /// One past the last voxel of the region.
        end: [usize; 3],
        /// The grid's shape.
        shape: [usize; 3],
    },
    /// An axis permutation that is not a permutation of (0, 1, 2).
    #[error("axes {axes:?} are not a permutation of 0, 1, 2")]
    BadPermutation {
        /// The offending axes.
        axes: [usize; 3],
    },
}
