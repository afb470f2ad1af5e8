//! Voxel volumes that carry their geometry.
//!
//! Everything in flare that touches voxels goes through [`Volume`], which pairs the voxel data
//! with a [`Geometry`]: the grid's shape, its spacing in millimetres, the world position of the
//! first voxel and the direction of each array axis. Any operation that changes the grid (crop,
//! pad, resample, reorient) returns a new geometry, so a result can always be put back exactly
//! on the grid it came from.
//!
//! # Conventions (stated once, used everywhere)
//! - Array axes are NIfTI's `(i, j, k)`, the order nibabel reports a shape in. Voxel data is stored
//!   with `i` fastest: the linear index of `(i, j, k)` is `i + nx * (j + ny * k)`, which is the
//!   on-disk order of a NIfTI file, so reading and writing never transposes.
//! - World coordinates are NIfTI's RAS+ millimetres (+x toward the patient's Right, +y Anterior,
//!   +z Superior), as in the NIfTI affine. DICOM's LPS+ is converted on input.
//! - The affine maps a voxel index to the world: `world = direction * diag(spacing) * ijk + origin`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod affine;
mod error;
mod geometry;
pub mod memory;
mod orientation;
mod roi;
mod volume;

pub use crate::{
    affine::Affine,
    error::GeometryError,
    geometry::Geometry,
    orientation::{AxisCode, Orientation},
    roi::Roi,
    volume::{LabelMap, Volume},
};
