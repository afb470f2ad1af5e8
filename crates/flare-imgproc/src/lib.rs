//! Image processing on [`flare_volume::Volume`]s, shared by preprocessing, export and the outputs.
//!
//! - [`resample_linear`] and [`resample_labels`]: any grid onto any other (trilinear for images;
//!   nearest or per-label linear-then-argmax for label maps), with a fast separable path for
//!   grids that share their axes.
//! - [`interp`]: the one linear-interpolation rule (where a source index falls, how two
//!   neighbours blend) that resampling, export, the network input and training samples share.
//! - [`argmax_on_grid`]: the lean export of per-class scores on a network grid to a label map
//!   on a scan's grid (inside a region, slab by slab, argmax as it goes, no per-class volume).
//! - [`label_components`], [`keep_largest_components`] and [`fill_holes`]: connected components
//!   (6- or 26-connected) and the post-processing of a segmentation built on them.
//! - [`outlines`]: sub-pixel outlines of a 2D mask (marching squares), holes and pieces apart,
//!   for contour-based outputs such as DICOM RT Structure Sets.
//!
//! Voxel data follows flare's convention: axes `(i, j, k)`, stored `i` fastest
//! (`index = i + nx * (j + ny * k)`). Every function here is multi-threaded with rayon.
//!
//! ```
//! use flare_imgproc::{Connectivity, LabelInterp, keep_largest_components, resample_labels};
//! use flare_volume::{Geometry, Volume};
//!
//! // A 4 x 4 x 2 label map with a 2-voxel organ and a stray voxel of the same label.
//! let scan = Geometry::axis_aligned([4, 4, 2], [0.8, 0.8, 2.5], [0.0; 3])?;
//! let mut labels = Volume::filled(scan, 0u8);
//! for ijk in [[0, 0, 0], [1, 0, 0], [3, 3, 1]] {
//!     labels.data_mut()[scan.linear_index(ijk)] = 1;
//! }
//! let stats = keep_largest_components(&mut labels, 1, 1, Connectivity::Full);
//! assert_eq!(stats.removed_voxels, 1);
//!
//! // Onto a grid twice as fine over the same field of view, and back.
//! let fine = scan.resized([8, 8, 4])?;
//! let up = resample_labels(&labels, &fine, LabelInterp::Nearest)?;
//! let back = resample_labels(&up, &scan, LabelInterp::Nearest)?;
//! assert_eq!(back, labels);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod components;
mod contour;
mod error;
mod export;
pub mod interp;
mod resample;

pub use crate::{
    components::{
        Components, Connectivity, FillStats, KeepStats, fill_holes, keep_largest_components,
        label_components,
    },
    contour::{Outline, outlines},
    error::ImgprocError,
    export::argmax_on_grid,
    resample::{LabelInterp, resample_labels, resample_linear},
};
