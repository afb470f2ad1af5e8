//! Errors of the image-processing operations.

/// Why an image-processing operation refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImgprocError {
    /// A voxel buffer whose length does not match the shape it comes with.
    #[error("{what}: buffer holds {actual} voxels but shape {shape:?} needs {expected}")]
    DataLength {
        /// Which input.
        what: &'static str,
        /// The shape.
        shape: [usize; 3],
        /// Voxels the shape needs.
        expected: usize,
        /// Voxels supplied.
        actual: usize,
    },
    /// A spacing that is zero, negative, NaN or infinite.
    #[error("{what}: voxel spacing {spacing_mm:?} mm is not positive and finite")]
    BadSpacing {
        /// Which input.
        what: &'static str,
        /// The offending spacing.
        spacing_mm: [f64; 3],
    },
    /// A grid that cannot be used (e.g. a singular affine).
    #[error("grid: {0}")]
    Geometry(#[from] flare_volume::GeometryError),
    /// An output that would not fit in the memory available.
    #[error("{what}: needs {needed_mb} MB but only {available_mb} MB of memory is available")]
    OutOfMemory {
        /// Which output.
        what: &'static str,
        /// Megabytes needed.
        needed_mb: u64,
        /// Megabytes available.
        available_mb: u64,
    },
    /// A grid with too many voxels in all for the operation's index type.
    #[error("{what}: shape {shape:?} has too many voxels (at most {limit} in all)")]
    TooManyVoxels {
        /// Which input.
        what: &'static str,
        /// The offending shape.
        shape: [usize; 3],
        /// Most voxels supported.
        limit: usize,
    },
    /// A grid too large for the operation's index type.
    #[error("{what}: shape {shape:?} is too large (each axis must be below {limit} voxels)")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// The offending shape.
        shape: [usize; 3],
        /// Largest supported axis length plus one.
        limit: usize,
    },
}
