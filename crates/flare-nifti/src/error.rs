//! The one error type of this crate: every message names the file and says what is wrong with it.

use std::path::PathBuf;

use flare_volume::{GeometryError, memory::InsufficientMemory};

/// Why a NIfTI file could not be read or written.
///
/// Every variant carries the path, and its message starts with it, so the CLI can print the
/// error as one line without adding context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NiftiError {
    /// The operating system refused to open, read, write or rename the file.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done ("cannot open", "cannot write", ...).
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file has no bytes at all.
    #[error("{}: file is empty (0 bytes)", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The gzip stream ends before its end marker: the file was cut short.
    #[error("{}: gzip data is truncated (the file ends in the middle of the compressed stream)", path.display())]
    TruncatedGzip {
        /// The file.
        path: PathBuf,
    },
    /// The file starts like gzip but its contents cannot be decompressed.
    #[error("{}: corrupt gzip data: {detail}", path.display())]
    CorruptGzip {
        /// The file.
        path: PathBuf,
        /// What the decompressor reported.
        detail: String,
    },
    /// The (decompressed) file is shorter than a NIfTI header.
    #[error("{}: file is only {len} bytes, too short for a NIfTI header (348 bytes for NIfTI-1, 540 for NIfTI-2)", path.display())]
    ShortHeader {
        /// The file.
        path: PathBuf,
        /// Bytes available.
        len: usize,
    },
    /// Neither a NIfTI-1 nor a NIfTI-2 header.
    #[error("{}: not a NIfTI file: {detail}", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// A two-file NIfTI (`.hdr` + `.img`, magic `ni1`).
    #[error("{}: two-file NIfTI (.hdr/.img pair, magic \"ni1\") is not supported; convert it to a single .nii or .nii.gz", path.display())]
    PairFile {
        /// The file.
        path: PathBuf,
    },
    /// A header field holds a value no NIfTI writer produces.
    #[error("{}: invalid NIfTI header: {detail}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// The field and its value.
        detail: String,
    },
    /// The image is not a single 3D volume (2D, or a 4D+ series with more than one volume).
    #[error("{}: image has shape {shape:?} but flare needs one 3D volume{}", path.display(), if shape.len() < 3 { " (this is a 2D image)" } else { " (extra axes must have size 1)" })]
    NotThreeD {
        /// The file.
        path: PathBuf,
        /// The shape from `dim[1..=dim[0]]`.
        shape: Vec<i64>,
    },
    /// A datatype this crate does not read (complex, RGB, 64-bit integers, ...).
    #[error("{}: NIfTI datatype {code} ({name}) is not supported; supported: uint8, int8, int16, uint16, int32, uint32, float32, float64", path.display())]
    UnsupportedDatatype {
        /// The file.
        path: PathBuf,
        /// The datatype code from the header.
        code: i32,
        /// Its NIfTI name, or "unknown".
        name: &'static str,
    },
    /// `vox_offset` points at or beyond the end of the (decompressed) file.
    #[error("{}: header says the voxels start at byte {}, beyond the end of the {}file ({len} bytes)", path.display(), byte_offset(*vox_offset), if *compressed { "decompressed " } else { "" })]
    VoxOffsetPastEnd {
        /// The file.
        path: PathBuf,
        /// The header's `vox_offset` (a float in NIfTI-1; may exceed any file size, e.g. 1e30).
        vox_offset: f64,
        /// Bytes in the (decompressed) file.
        len: u64,
        /// Whether `len` counts decompressed bytes.
        compressed: bool,
    },
    /// The file holds fewer voxel bytes than the header's dimensions and datatype need.
    #[error("{}: header needs {needed} bytes of voxels (shape {shape:?}, {bytes_per_voxel} bytes each, from byte {vox_offset}) but the {}file has only {available}", path.display(), if *compressed { "decompressed " } else { "" })]
    TruncatedData {
        /// The file.
        path: PathBuf,
        /// The volume's shape.
        shape: [usize; 3],
        /// Bytes per stored voxel.
        bytes_per_voxel: usize,
        /// Where the voxels start.
        vox_offset: u64,
        /// Voxel bytes the header promises.
        needed: u64,
        /// Voxel bytes present.
        available: u64,
        /// Whether the file is gzip-compressed.
        compressed: bool,
    },
    /// A float voxel is NaN or infinite.
    #[error("{}: voxel {ijk:?} is {value}; images must hold finite numbers", path.display())]
    NonFiniteVoxel {
        /// The file.
        path: PathBuf,
        /// The voxel's (i, j, k).
        ijk: [usize; 3],
        /// The value found (after scaling).
        value: f64,
    },
    /// The scaling intercept is not finite while the slope is valid.
    #[error("{}: scl_inter is {scl_inter} while scl_slope is {scl_slope}; the intensity scaling is unusable", path.display())]
    BadScaling {
        /// The file.
        path: PathBuf,
        /// The header's slope.
        scl_slope: f64,
        /// The header's intercept.
        scl_inter: f64,
    },
    /// A spatial voxel size (`pixdim[1..=3]`) is zero or not finite.
    #[error("{}: voxel spacing pixdim[1..=3] = {pixdim:?} mm has a zero or non-finite value", path.display())]
    BadSpacing {
        /// The file.
        path: PathBuf,
        /// `pixdim[1..=3]`.
        pixdim: [f64; 3],
    },
    /// The qform quaternion is not a rotation (b² + c² + d² > 1), as nibabel also refuses.
    #[error("{}: qform quaternion (b, c, d) = ({b}, {c}, {d}) has b²+c²+d² = {norm2} > 1, so it is not a rotation", path.display())]
    BadQuaternion {
        /// The file.
        path: PathBuf,
        /// `quatern_b`.
        b: f64,
        /// `quatern_c`.
        c: f64,
        /// `quatern_d`.
        d: f64,
        /// b² + c² + d².
        norm2: f64,
    },
    /// The header's affine or shape cannot describe a grid (e.g. a singular sform).
    #[error("{}: invalid geometry ({which}): {source}", path.display())]
    Geometry {
        /// The file.
        path: PathBuf,
        /// Which transform was used: "sform", "qform" or "pixdim".
        which: &'static str,
        /// The underlying problem.
        source: GeometryError,
    },
    /// Reading the volume would need more memory than is available; nothing was allocated.
    #[error("{}: {what} is too large to load: {source}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What would have been loaded (e.g. "volume of shape [..] (int16 each)").
        what: String,
        /// Needed and available memory.
        source: InsufficientMemory,
    },
    /// A label map holds a value that is not a whole number from 0 to 255.
    #[error("{}: not a label map: voxel {ijk:?} holds {value}, but labels must be whole numbers from 0 to 255", path.display())]
    NotALabel {
        /// The file.
        path: PathBuf,
        /// The voxel's (i, j, k).
        ijk: [usize; 3],
        /// The value found (after scaling).
        value: f64,
    },
    /// An output name that ends in neither `.nii` nor `.nii.gz`.
    #[error("{}: output file name must end in .nii or .nii.gz", path.display())]
    BadOutputName {
        /// The file.
        path: PathBuf,
    },
    /// The volume to write does not lie on the grid of the header it should be written "like".
    #[error("{}: cannot write like the reference image: {detail}", path.display())]
    GridMismatch {
        /// The output file.
        path: PathBuf,
        /// How the grids differ.
        detail: String,
    },
    /// A voxel cannot be stored in the requested datatype without changing its value.
    #[error("{}: voxel {ijk:?} holds {value}, which {datatype} cannot store exactly", path.display())]
    ValueNotRepresentable {
        /// The output file.
        path: PathBuf,
        /// The voxel's (i, j, k).
        ijk: [usize; 3],
        /// The value.
        value: f64,
        /// The datatype's name.
        datatype: &'static str,
    },
    /// A header field cannot be stored in the output's NIfTI version (e.g. a dimension over 32767
    /// in NIfTI-1).
    #[error("{}: cannot write header: {detail}", path.display())]
    Unwritable {
        /// The output file.
        path: PathBuf,
        /// The field and its value.
        detail: String,
    },
}

/// A byte offset from a header for a message: exact when it is a whole number a file could
/// reach (below 2^53), in scientific notation beyond, as the float32 NIfTI-1 stores when it is
/// one (`1e30`, not 31 digits of float noise).
fn byte_offset(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        format!("{v}")
    } else if f64::from(v as f32) == v {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = NiftiError> = std::result::Result<T, E>;
