//! Image processing on [`flare_volume::Volume`]s, shared by preprocessing, export and metrics.
//!
//! - [`distance_to_nearest`]: the exact Euclidean distance transform with anisotropic spacing,
//!   bit-for-bit what `scipy.ndimage.distance_transform_edt` returns (the FLARE NSD compares
//!   these distances with `<=`, so an ulp matters).
//!
//! Voxel data follows flare's convention: axes `(i, j, k)`, stored `i` fastest
//! (`index = i + nx * (j + ny * k)`). Every function here is multi-threaded with rayon.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod edt;
mod error;

pub use crate::{
    edt::{distance_to_nearest, distance_to_nearest_in},
    error::ImgprocError,
};
