//! Why a DICOM folder cannot be read: one variant per problem, each message naming the folder or
//! file and saying what is wrong, in one line.

use std::path::PathBuf;

/// An error reading a DICOM folder. Every message starts with the folder or file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    /// The path cannot be listed (missing, not a folder, no permission).
    #[error("{}: cannot read the folder: {source}", path.display())]
    Io {
        /// The folder or sub-folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Nothing in the folder is a DICOM image.
    #[error(
        "{}: no DICOM image files found ({skipped} other file(s) skipped){}",
        dir.display(),
        unreadable.as_ref().map(|u| format!("; {u}")).unwrap_or_default()
    )]
    NoDicom {
        /// The folder.
        dir: PathBuf,
        /// Files looked at and skipped (not DICOM, or DICOM without an image).
        skipped: usize,
        /// The first DICOM file that could not be parsed and why, if any.
        unreadable: Option<String>,
    },
    /// `--series UID` names a series that is not in the folder.
    #[error(
        "{}: no series with SeriesInstanceUID {uid}; series found: {}",
        dir.display(),
        available.join(", ")
    )]
    UnknownSeries {
        /// The folder.
        dir: PathBuf,
        /// The UID asked for.
        uid: String,
        /// The UIDs present.
        available: Vec<String>,
    },
    /// The series is not CT (flare works in Hounsfield units).
    #[error(
        "{}: series {series_uid} has modality {modality}, not CT; flare reads CT series only",
        dir.display()
    )]
    NotCt {
        /// The folder.
        dir: PathBuf,
        /// The series.
        series_uid: String,
        /// Its modality (`(none)` when absent).
        modality: String,
    },
    /// A slice of a CT series whose own Modality is not CT.
    #[error(
        "{}: modality {modality} inside CT series {series_uid}; every slice of the series must be CT",
        file.display()
    )]
    SliceNotCt {
        /// The slice.
        file: PathBuf,
        /// The series.
        series_uid: String,
        /// The slice's modality (`(none)` when absent).
        modality: String,
    },
    /// A file of the series that cannot be parsed (truncated, corrupt): reading without it would
    /// silently lose a slice.
    #[error(
        "{}: damaged slice of series {series_uid} ({reason}); the volume would lack it, so the series is not read: restore or remove the file",
        file.display()
    )]
    DamagedSlice {
        /// The damaged file.
        file: PathBuf,
        /// The series its header names.
        series_uid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The header's description of the pixels (size, samples, bit depth) disagrees with the
    /// pixel data itself (its length, or the codestream's own header).
    #[error("{}: the header contradicts the pixel data: {problem}", file.display())]
    HeaderContradictsPixels {
        /// The file.
        file: PathBuf,
        /// What disagrees with what.
        problem: String,
    },
    /// The series has a single slice: not a volume.
    #[error(
        "{}: series {series_uid} has only one slice; a volume needs at least two",
        dir.display()
    )]
    SingleSlice {
        /// The folder.
        dir: PathBuf,
        /// The series.
        series_uid: String,
    },
    /// A file that cannot be parsed once chosen for decoding.
    #[error("{}: cannot read DICOM: {message}", file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// An attribute needed to place or decode the slice is absent.
    #[error("{}: missing {attribute}", file.display())]
    MissingAttribute {
        /// The file.
        file: PathBuf,
        /// The attribute's keyword, e.g. `ImageOrientationPatient`.
        attribute: &'static str,
    },
    /// An attribute holds a value that cannot be used.
    #[error("{}: {attribute} = {value:?}: {problem}", file.display())]
    BadAttribute {
        /// The file.
        file: PathBuf,
        /// The attribute's keyword.
        attribute: &'static str,
        /// The value as found.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The image has no pixel data element.
    #[error("{}: DICOM image has no pixel data", file.display())]
    MissingPixelData {
        /// The file.
        file: PathBuf,
    },
    /// The pixel data is shorter than Rows x Columns samples.
    #[error(
        "{}: pixel data holds {actual} bytes but {rows} rows x {columns} columns x {bytes_per_sample} bytes need {expected}",
        file.display()
    )]
    TruncatedPixelData {
        /// The file.
        file: PathBuf,
        /// Rows of the image.
        rows: usize,
        /// Columns of the image.
        columns: usize,
        /// Bytes per sample (BitsAllocated / 8).
        bytes_per_sample: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// Pixel data encoded in a transfer syntax this build cannot decode.
    #[error(
        "{}: pixel data is compressed as {name} (transfer syntax {uid}), which flare cannot decode; convert the series to an uncompressed transfer syntax first (e.g. `gdcmconv --raw IN OUT`)",
        file.display()
    )]
    UnsupportedTransferSyntax {
        /// The file.
        file: PathBuf,
        /// The transfer syntax UID.
        uid: String,
        /// Its name, or "an unknown transfer syntax".
        name: String,
    },
    /// The pixel codec failed.
    #[error("{}: cannot decode the pixel data: {message}", file.display())]
    Decode {
        /// The file.
        file: PathBuf,
        /// What the codec said.
        message: String,
    },
    /// A pixel format CT does not use (colour, multi-frame, odd bit depths, float pixels).
    #[error("{}: unsupported image format: {what}", file.display())]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// What is not supported.
        what: String,
    },
    /// Slices of one series differ in Rows/Columns.
    #[error(
        "{}: slices of different sizes in one series: {} is {}x{} (columns x rows) but {} is {}x{}",
        dir.display(), first.display(), first_size[0], first_size[1],
        other.display(), other_size[0], other_size[1]
    )]
    MixedSizes {
        /// The folder.
        dir: PathBuf,
        /// A slice of the usual size.
        first: PathBuf,
        /// Its columns and rows.
        first_size: [usize; 2],
        /// A slice of another size.
        other: PathBuf,
        /// Its columns and rows.
        other_size: [usize; 2],
    },
    /// Slices of one series have different orientations.
    #[error(
        "{}: slices are not parallel: ImageOrientationPatient differs from {} by {angle_deg:.3} degrees",
        file.display(), reference.display()
    )]
    NonParallelSlices {
        /// The slice that differs.
        file: PathBuf,
        /// The slice it was compared with.
        reference: PathBuf,
        /// The largest angle between corresponding direction cosines.
        angle_deg: f64,
    },
    /// Slices are shifted within their plane from one to the next (CT gantry tilt).
    #[error(
        "{}: gantry tilt or sheared series: slice position is {offset_mm:.3} mm off the slice normal through {} (about {angle_deg:.2} degrees); resample the series to a regular grid first",
        file.display(), reference.display()
    )]
    GantryTilt {
        /// The slice that is off the normal.
        file: PathBuf,
        /// The first slice, the normal's foot.
        reference: PathBuf,
        /// In-plane distance from the normal line, in mm.
        offset_mm: f64,
        /// The tilt angle implied.
        angle_deg: f64,
    },
    /// Two slices at the same position.
    #[error(
        "{}: duplicate slice position: {} and {} are both at {position_mm:.3} mm along the slice normal",
        dir.display(), a.display(), b.display()
    )]
    DuplicatePosition {
        /// The folder.
        dir: PathBuf,
        /// One slice.
        a: PathBuf,
        /// The other.
        b: PathBuf,
        /// Their position along the normal.
        position_mm: f64,
    },
    /// A gap between slices that is a multiple of the usual spacing.
    #[error(
        "{}: missing slices: {gap_mm:.3} mm between {} and {} where the usual spacing is {spacing_mm:.3} mm (about {missing} slice(s) missing)",
        dir.display(), a.display(), b.display()
    )]
    MissingSlices {
        /// The folder.
        dir: PathBuf,
        /// The slice before the gap.
        a: PathBuf,
        /// The slice after the gap.
        b: PathBuf,
        /// The gap.
        gap_mm: f64,
        /// The usual spacing (median).
        spacing_mm: f64,
        /// Slices that would fill the gap.
        missing: usize,
    },
    /// Spacing between slices that is neither uniform nor a gap.
    #[error(
        "{}: non-uniform slice spacing: {gap_mm:.3} mm between {} and {} where the usual spacing is {spacing_mm:.3} mm (tolerance {tolerance_mm:.3} mm)",
        dir.display(), a.display(), b.display()
    )]
    NonUniformSpacing {
        /// The folder.
        dir: PathBuf,
        /// The slice before.
        a: PathBuf,
        /// The slice after.
        b: PathBuf,
        /// Their distance along the normal.
        gap_mm: f64,
        /// The usual spacing (median).
        spacing_mm: f64,
        /// The tolerance applied.
        tolerance_mm: f64,
    },
    /// The volume would not fit in memory.
    #[error(
        "{}: the volume ({shape:?} voxels, f32) with a slice being decoded {source}",
        dir.display()
    )]
    Memory {
        /// The folder.
        dir: PathBuf,
        /// The volume's shape.
        shape: [usize; 3],
        /// How much was needed and available.
        source: flare_volume::memory::InsufficientMemory,
    },
    /// The geometry derived from the headers is unusable.
    #[error("{}: invalid geometry: {source}", dir.display())]
    Geometry {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: flare_volume::GeometryError,
    },
    /// UIDs that contradict each other (dataset against file meta, or between slices).
    #[error("{}: inconsistent UIDs: {problem}", file.display())]
    InconsistentUids {
        /// The file.
        file: PathBuf,
        /// What disagrees with what.
        problem: String,
    },
    /// Slices of one series in different frames of reference.
    #[error("{}: mixed frames of reference: {problem}", file.display())]
    MixedFrameOfReference {
        /// The file.
        file: PathBuf,
        /// Which UIDs differ.
        problem: String,
    },
    /// A label map to write over a series does not lie on the series' grid.
    #[error(
        "{}: the label map ({labels:?} voxels) does not lie on the series' grid ({series:?}); it must come from this series",
        dir.display()
    )]
    LabelGridMismatch {
        /// The series' folder.
        dir: PathBuf,
        /// The label map's shape.
        labels: [usize; 3],
        /// The series' shape.
        series: [usize; 3],
    },
    /// Nothing to write: the label map holds none of the organs.
    #[error("{}: no organ found, so there is nothing to write as {what}", dir.display())]
    NoOrgan {
        /// The series' folder.
        dir: PathBuf,
        /// The output kind (DICOM-SEG, RTSTRUCT).
        what: &'static str,
    },
    /// Encoding a DICOM output failed (a bug rather than bad input).
    #[error("cannot encode the DICOM output: {message}")]
    Encode {
        /// What the encoder said.
        message: String,
    },
}
