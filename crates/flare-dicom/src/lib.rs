//! Reading a CT DICOM series from a folder into a [`Volume<f32>`] in Hounsfield units, placed in
//! the world as NIfTI (RAS+) would place it.
//!
//! ```no_run
//! let scan = flare_dicom::scan_series("path/to/dicom")?; // headers only: for `flare info`
//! for s in &scan.series {
//!     println!("{s}");
//! }
//! let series = scan.read(None)?; // the series with the most slices
//! if let Some(note) = series.choice_note() {
//!     eprintln!("{note}");
//! }
//! let hu = series.volume;
//! # Ok::<(), flare_dicom::DicomError>(())
//! ```
//!
//! # What is read, and how
//! - The folder is searched recursively. Files that are not DICOM, DICOMDIRs and DICOM objects
//!   without an image are skipped and counted. Images are grouped by SeriesInstanceUID from their
//!   headers alone (parsing stops before the pixel data); only the chosen series is decoded.
//! - Slices are sorted by ImagePositionPatient projected on the slice normal (row x column
//!   direction of ImageOrientationPatient), never by file name or InstanceNumber.
//! - Voxel `(i, j, k)` is (column, row, slice in that order). In DICOM's LPS, axis `i` points along
//!   the row direction cosines, `j` along the column direction cosines, `k` along the normal; the
//!   spacings are PixelSpacing\[1\], PixelSpacing\[0\] and the *measured* distance between slices
//!   (`(last - first) / (n - 1)` along the normal, not SliceThickness); the origin is the first
//!   slice's ImagePositionPatient. LPS becomes RAS by negating x and y. This is the grid SimpleITK's
//!   ImageSeriesReader produces.
//! - Positions must agree to `max(1% of the slice spacing, 0.01 mm)`: consecutive gaps must equal
//!   the median gap (a gap that is a multiple of it is reported as missing slices), and every
//!   slice must lie on the normal through the first (otherwise: gantry tilt). Orientations must
//!   agree to 0.01 degrees.
//! - Voxels are `stored * RescaleSlope + RescaleIntercept` (per slice) in f32, decoded in parallel
//!   straight into the volume's buffer, after [`flare_volume::memory::ensure_fits`] has approved
//!   its size. Uncompressed, deflated, RLE, JPEG (baseline, extended, lossless) and JPEG 2000
//!   transfer syntaxes are decoded; others (JPEG-LS, JPEG XL, video) are refused by name.
//! - Results go back as DICOM over the same series with [`write`](mod@write): a Segmentation object and an
//!   RT Structure Set that refer to the source images (see that module for UIDs and checks).
//! - Refused with a [`DicomError`] naming the folder or file: no DICOM image, non-CT modality, a
//!   single slice, mixed sizes, non-parallel slices, gantry tilt, duplicate positions, missing
//!   slices, non-uniform spacing, missing or invalid ImageOrientationPatient, ImagePositionPatient
//!   or PixelSpacing, missing or truncated pixel data, unsupported pixel formats, a non-CT slice
//!   in the series, a damaged file of the series, and headers that contradict the pixels
//!   (lengths beyond the file, the codestream's own size or depth, invalid BitsStored, HighBit,
//!   PixelRepresentation or rescale; see `guard`, `layout` and `pixels::codestream`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod guard;
mod layout;
mod pixels;
mod scan;
pub mod write;

use std::path::Path;

use flare_volume::Volume;
use rayon::prelude::*;

pub use crate::{
    error::DicomError,
    scan::{FolderScan, SeriesSummary, scan_series},
};

/// A decoded series with what was found beside it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DicomSeries {
    /// The voxels in Hounsfield units, on the series' grid (RAS+).
    pub volume: Volume<f32>,
    /// The series that was read.
    pub series: SeriesSummary,
    /// Every series found in the folder, most slices first (includes `series`).
    pub all_series: Vec<SeriesSummary>,
    /// Whether `series` was picked as the one with the most slices (no UID was given).
    pub chosen_by_default: bool,
    /// Files skipped while scanning (not DICOM, or DICOM without an image).
    pub skipped_files: usize,
    /// Skipped files that start like DICOM but could not be parsed (`"path: reason"`).
    pub unreadable: Vec<String>,
    /// Those of them whose series could not be told (see [`DicomSeries::warnings`]).
    unattributed: Vec<scan::DamagedFile>,
}

impl DicomSeries {
    /// One line per damaged file whose series could not be told, for the CLI to print as a
    /// warning: it may have been a slice of this series, now missing from the volume. (A damaged
    /// file known to belong to the series refuses the read instead; see [`FolderScan::read`].)
    pub fn warnings(&self) -> Vec<String> {
        self.unattributed
            .iter()
            .map(|d| {
                format!(
                    "{}: skipped, not readable as DICOM ({}); if it was a slice of series {}, the volume lacks it",
                    d.path.display(),
                    d.reason,
                    self.series.uid
                )
            })
            .collect()
    }

    /// A line saying which series was taken when the folder holds several and none was named,
    /// for the CLI to print; `None` when there was no choice to make.
    pub fn choice_note(&self) -> Option<String> {
        (self.chosen_by_default && self.all_series.len() > 1).then(|| {
            format!(
                "{} series found; reading {} ({} slices, the most); choose another with --series UID",
                self.all_series.len(),
                self.series.uid,
                self.series.n_slices
            )
        })
    }
}

/// Reads one CT series from `dir`: the one whose SeriesInstanceUID is `series_uid`, or, when
/// `None`, the one with the most slices. Equivalent to `scan_series(dir)?.read(series_uid)`.
pub fn read_series(
    dir: impl AsRef<Path>,
    series_uid: Option<&str>,
) -> Result<DicomSeries, DicomError> {
    scan_series(dir)?.read(series_uid)
}

impl FolderScan {
    /// Decodes one series of this scan (see [`read_series`]).
    ///
    /// A damaged file (one that starts like DICOM but cannot be parsed) whose header names this
    /// series refuses the read: without it the volume silently loses a slice, and when that slice
    /// is the first or the last no gap shows, so the organ volumes and the DICOM outputs would
    /// cover less than the scan. A gap in the middle is refused as missing slices already; an
    /// engineer re-sending the series expects the same for its ends. Damaged files whose series
    /// cannot be told are kept for [`DicomSeries::warnings`].
    pub fn read(&self, series_uid: Option<&str>) -> Result<DicomSeries, DicomError> {
        let index = self.series_index(series_uid)?;
        let (Some(summary), Some(group)) = (self.series.get(index), self.groups.get(index)) else {
            // `scan_series` never returns an empty scan; a hand-built one reads as "no DICOM".
            return Err(DicomError::NoDicom {
                dir: self.dir.clone(),
                skipped: self.skipped_files,
                unreadable: None,
            });
        };
        if let Some(d) = self
            .damaged
            .iter()
            .find(|d| d.series_uid.as_deref() == Some(summary.uid.as_str()))
        {
            return Err(DicomError::DamagedSlice {
                file: d.path.clone(),
                series_uid: summary.uid.clone(),
                reason: d.reason.clone(),
            });
        }
        let volume = decode(&self.dir, group.clone())?;
        Ok(DicomSeries {
            volume,
            series: summary.clone(),
            all_series: self.series.clone(),
            chosen_by_default: series_uid.is_none(),
            skipped_files: self.skipped_files,
            unreadable: self.unreadable.clone(),
            unattributed: self
                .damaged
                .iter()
                .filter(|d| d.series_uid.is_none())
                .cloned()
                .collect(),
        })
    }
}

impl FolderScan {
    /// The index in `series` of the series `series_uid`, or 0 (the most slices) for `None`.
    fn series_index(&self, series_uid: Option<&str>) -> Result<usize, DicomError> {
        match series_uid {
            None => Ok(0),
            Some(uid) => self
                .series
                .iter()
                .position(|s| s.uid == uid.trim())
                .ok_or_else(|| DicomError::UnknownSeries {
                    dir: self.dir.clone(),
                    uid: uid.to_string(),
                    available: self.series.iter().map(|s| s.uid.clone()).collect(),
                }),
        }
    }
}

/// Bytes one slice holds while it is decoded, besides its parsed file: the codec's output (at
/// most Rows x Columns x 4 bytes: one sample of at most 32 bits) and the codec's own copy
/// (openjpeg keeps each component as i32), so twice Rows x Columns x 4.
fn codec_bytes(shape: [usize; 3]) -> u64 {
    (shape[0] as u64)
        .saturating_mul(shape[1] as u64)
        .saturating_mul(8)
}

fn decode(dir: &Path, slices: Vec<scan::SliceHeader>) -> Result<Volume<f32>, DicomError> {
    let layout = layout::arrange(dir, slices)?;
    for h in &layout.slices {
        pixels::check_transfer_syntax(h)?;
    }
    let geometry = layout.geometry;
    let shape = geometry.shape();
    let volume = (geometry.n_voxels() as u64).saturating_mul(std::mem::size_of::<f32>() as u64);
    // Every slice's file was walked by the scan, so its parse is bounded by its length; slices
    // in flight at once each hold that plus the codec's buffers. As many are decoded at once as
    // fit beside the volume (at most one per thread), so that parallel reading cannot multiply
    // the memory past the limit.
    let per_slice = layout
        .slices
        .iter()
        .map(|h| h.parse_bytes.unwrap_or(0))
        .max()
        .unwrap_or(0)
        .saturating_add(codec_bytes(shape));
    let threads = rayon::current_num_threads().clamp(1, shape[2].max(1));
    let mut in_flight = threads;
    let fits = |k: usize| {
        flare_volume::memory::ensure_fits(volume.saturating_add(per_slice.saturating_mul(k as u64)))
    };
    while in_flight > 1 && fits(in_flight).is_err() {
        in_flight -= 1;
    }
    fits(in_flight).map_err(|source| DicomError::Memory {
        dir: dir.to_path_buf(),
        shape,
        source,
    })?;
    // Zeroed allocation is lazily backed by the OS, so each page is touched once, by its slice.
    let mut data = vec![0.0f32; geometry.n_voxels()];
    let plane = shape[0] * shape[1];
    if in_flight >= threads {
        // A rayon worker decodes one slice at a time: at most `threads` in flight.
        data.par_chunks_mut(plane)
            .zip(layout.slices.par_iter())
            .try_for_each(|(out, h)| pixels::decode_slice(h, out))?;
    } else {
        for (out, hs) in data
            .chunks_mut(plane * in_flight)
            .zip(layout.slices.chunks(in_flight))
        {
            out.par_chunks_mut(plane)
                .zip(hs.par_iter())
                .try_for_each(|(out, h)| pixels::decode_slice(h, out))?;
        }
    }
    Volume::new(geometry, data).map_err(|source| DicomError::Geometry {
        dir: dir.to_path_buf(),
        source,
    })
}
