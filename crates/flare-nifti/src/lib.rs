//! NIfTI-1 and NIfTI-2 files (`.nii`, `.nii.gz`) in and out of flare's [`Volume`]s.
//!
//! - Reading: [`read_header`], [`read_image`] (float32, intensity scaling applied),
//!   [`read_label_map`] (uint8 labels, no float round trip) and [`read_raw`] (stored datatype).
//!   Datatypes uint8, int8, int16, uint16, int32, uint32, float32 and float64, either byte order.
//!   gzip is recognised by content, decoded with libdeflate (see the `read` module for why and
//!   how memory stays low), and multi-member gzip works.
//! - The affine is chosen exactly as nibabel's `get_best_affine()` / `img.affine`
//!   ([`NiftiHeader::best_affine`]): sform when `sform_code` is set, else the qform, else the
//!   `pixdim` fallback; the volume's [`Geometry`](flare_volume::Geometry) is its decomposition.
//! - Writing: [`write_label_map_like`] keeps an input's qform and sform so viewers place the
//!   result exactly on the input; [`write_volume`] and [`write_label_map`] write from a geometry
//!   alone. Writes go through a temporary file renamed into place.
//! - Bad input gives a [`NiftiError`] naming the file and the problem, never a panic; volumes
//!   that cannot fit in memory are refused before allocating.
//! - [`naming`]: how NIfTI files are named in FLARE and nnU-Net folders (stems, channels, cases).
//!
//! Voxels are stored `i` fastest, as on disk (see `flare_volume`'s conventions).

#![deny(missing_docs)]

mod convert;
mod datatype;
mod error;
mod header;
pub mod naming;
mod read;
mod write;

pub use crate::{
    datatype::{DataType, Endian},
    error::{NiftiError, Result},
    header::{NiftiHeader, NiftiVersion, TransformSource},
    read::{NiftiImage, RawImage, RawVoxels, read_header, read_image, read_label_map, read_raw},
    write::{write_label_map, write_label_map_like, write_volume},
};

#[doc(no_inline)]
pub use flare_volume::{LabelMap, Volume};
