//! The NIfTI-1 and NIfTI-2 headers: parsing, checking, encoding, and the affine as nibabel picks it.
//!
//! Both versions are held in one [`NiftiHeader`] with the wider NIfTI-2 field types (`i64`
//! dimensions, `f64` floats); NIfTI-1's `f32` values convert to `f64` exactly, so a NIfTI-1
//! header read and written back is bit-for-bit the same in every field this crate keeps.

use std::path::Path;

use flare_volume::{Affine, Geometry, GeometryError};

use crate::{
    datatype::{DataType, Endian, code_name},
    error::{NiftiError, Result},
};

/// Size of a NIfTI-1 header in bytes.
pub(crate) const V1_SIZE: usize = 348;
/// Size of a NIfTI-2 header in bytes.
pub(crate) const V2_SIZE: usize = 540;
/// NIfTI-2 magic (single file).
const V2_MAGIC: &[u8; 8] = b"n+2\0\r\n\x1a\n";
/// NIfTI-2 magic (header/image pair).
const V2_PAIR_MAGIC: &[u8; 8] = b"ni2\0\r\n\x1a\n";

/// Which NIfTI format a header is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NiftiVersion {
    /// NIfTI-1: 348-byte header, `i16` dimensions, `f32` geometry.
    One,
    /// NIfTI-2: 540-byte header, `i64` dimensions, `f64` geometry.
    Two,
}

impl NiftiVersion {
    /// Header size plus the 4-byte extension flag: the first byte voxels may start at.
    pub fn min_vox_offset(self) -> u64 {
        match self {
            NiftiVersion::One => V1_SIZE as u64 + 4,
            NiftiVersion::Two => V2_SIZE as u64 + 4,
        }
    }
}

/// Which transform of the header gives the voxel-to-world affine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformSource {
    /// `srow_x/y/z` (sform_code > 0).
    Sform,
    /// The quaternion, `pixdim` and `qoffset` (sform_code 0, qform_code > 0).
    Qform,
    /// Neither code set: nibabel's fallback from `pixdim` alone (x flipped, centred).
    Pixdim,
}

impl TransformSource {
    /// `"sform"`, `"qform"` or `"pixdim"`.
    pub fn name(self) -> &'static str {
        match self {
            TransformSource::Sform => "sform",
            TransformSource::Qform => "qform",
            TransformSource::Pixdim => "pixdim",
        }
    }
}

/// A NIfTI header (version 1 or 2), every field as stored, floats widened to `f64`.
///
/// Field names and meanings are those of the NIfTI standard (`nifti1.h`, `nifti2.h`).
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    /// The format the header was read from (and is written back in by "like" writers).
    pub version: NiftiVersion,
    /// Byte order of the file the header was read from.
    pub endian: Endian,
    /// MRI slice ordering (frequency, phase, slice dimension bits).
    pub dim_info: u8,
    /// `dim[0]` is the number of dimensions, `dim[1..=dim[0]]` the size of each.
    pub dim: [i64; 8],
    /// First intent parameter.
    pub intent_p1: f64,
    /// Second intent parameter.
    pub intent_p2: f64,
    /// Third intent parameter.
    pub intent_p3: f64,
    /// NIFTI_INTENT_* code.
    pub intent_code: i32,
    /// Voxel datatype code (see [`DataType::from_code`]).
    pub datatype: i32,
    /// Bits per voxel as stored in the header (the datatype decides the real size).
    pub bitpix: i32,
    /// First slice index.
    pub slice_start: i64,
    /// `pixdim[0]` is qfac (-1 or 1), `pixdim[1..=3]` the voxel sizes, `pixdim[4]` the time step.
    pub pixdim: [f64; 8],
    /// Byte offset of the first voxel in a single-file NIfTI.
    pub vox_offset: f64,
    /// Intensity scaling slope (0 or non-finite means no scaling, as in nibabel).
    pub scl_slope: f64,
    /// Intensity scaling intercept.
    pub scl_inter: f64,
    /// Last slice index.
    pub slice_end: i64,
    /// Slice timing order code.
    pub slice_code: i32,
    /// Units of `pixdim[1..=4]` (NIFTI_UNITS_* bits: 2 = mm, 8 = s).
    pub xyzt_units: i32,
    /// Maximum display intensity.
    pub cal_max: f64,
    /// Minimum display intensity.
    pub cal_min: f64,
    /// Time for one slice.
    pub slice_duration: f64,
    /// Time axis shift.
    pub toffset: f64,
    /// Free-text description (up to 79 bytes).
    pub descrip: String,
    /// Auxiliary file name (up to 23 bytes).
    pub aux_file: String,
    /// NIFTI_XFORM_* code of the qform (0 = unset).
    pub qform_code: i32,
    /// NIFTI_XFORM_* code of the sform (0 = unset).
    pub sform_code: i32,
    /// Quaternion b parameter of the qform rotation.
    pub quatern_b: f64,
    /// Quaternion c parameter.
    pub quatern_c: f64,
    /// Quaternion d parameter.
    pub quatern_d: f64,
    /// qform x offset (world position of voxel 0, mm).
    pub qoffset_x: f64,
    /// qform y offset.
    pub qoffset_y: f64,
    /// qform z offset.
    pub qoffset_z: f64,
    /// First row of the sform affine.
    pub srow_x: [f64; 4],
    /// Second row of the sform affine.
    pub srow_y: [f64; 4],
    /// Third row of the sform affine.
    pub srow_z: [f64; 4],
    /// Name or meaning of the data (up to 15 bytes).
    pub intent_name: String,
}

/// Reads fixed-offset fields of a header in its byte order.
struct Fields<'a> {
    b: &'a [u8],
    e: Endian,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        a
    }
    fn i16(&self, off: usize) -> i16 {
        match self.e {
            Endian::Little => i16::from_le_bytes(self.arr(off)),
            Endian::Big => i16::from_be_bytes(self.arr(off)),
        }
    }
    fn i32(&self, off: usize) -> i32 {
        match self.e {
            Endian::Little => i32::from_le_bytes(self.arr(off)),
            Endian::Big => i32::from_be_bytes(self.arr(off)),
        }
    }
    fn i64(&self, off: usize) -> i64 {
        match self.e {
            Endian::Little => i64::from_le_bytes(self.arr(off)),
            Endian::Big => i64::from_be_bytes(self.arr(off)),
        }
    }
    fn f32(&self, off: usize) -> f64 {
        let bits = self.i32(off) as u32;
        f32::from_bits(bits) as f64
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_bits(self.i64(off) as u64)
    }
    fn text(&self, off: usize, len: usize) -> String {
        let raw = &self.b[off..off + len];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(len);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }
}

/// Writes fixed-offset fields, little-endian.
struct Out(Vec<u8>);

impl Out {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn i16(&mut self, off: usize, v: i16) {
        self.put(off, &v.to_le_bytes());
    }
    fn i32(&mut self, off: usize, v: i32) {
        self.put(off, &v.to_le_bytes());
    }
    fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes());
    }
    fn f32(&mut self, off: usize, v: f64) {
        self.put(off, &(v as f32).to_le_bytes());
    }
    fn f64(&mut self, off: usize, v: f64) {
        self.put(off, &v.to_le_bytes());
    }
    fn text(&mut self, off: usize, len: usize, s: &str) {
        // Always leave room for a terminating NUL; cut on a character boundary.
        let mut n = s.len().min(len - 1);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.put(off, &s.as_bytes()[..n]);
    }
}

impl NiftiHeader {
    /// Parses the first bytes of a file (at least 348 for NIfTI-1, 540 for NIfTI-2) and checks
    /// that the header describes a readable 3D volume. `path` only labels errors.
    pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<NiftiHeader> {
        let (version, endian) = detect(bytes, path)?;
        let f = Fields {
            b: bytes,
            e: endian,
        };
        let hdr = match version {
            NiftiVersion::One => {
                let mut dim = [0i64; 8];
                let mut pixdim = [0f64; 8];
                for i in 0..8 {
                    dim[i] = f.i16(40 + 2 * i) as i64;
                    pixdim[i] = f.f32(76 + 4 * i);
                }
                let row =
                    |off: usize| [f.f32(off), f.f32(off + 4), f.f32(off + 8), f.f32(off + 12)];
                NiftiHeader {
                    version,
                    endian,
                    dim_info: bytes[39],
                    dim,
                    intent_p1: f.f32(56),
                    intent_p2: f.f32(60),
                    intent_p3: f.f32(64),
                    intent_code: f.i16(68) as i32,
                    datatype: f.i16(70) as i32,
                    bitpix: f.i16(72) as i32,
                    slice_start: f.i16(74) as i64,
                    pixdim,
                    vox_offset: f.f32(108),
                    scl_slope: f.f32(112),
                    scl_inter: f.f32(116),
                    slice_end: f.i16(120) as i64,
                    slice_code: bytes[122] as i32,
                    xyzt_units: bytes[123] as i32,
                    cal_max: f.f32(124),
                    cal_min: f.f32(128),
                    slice_duration: f.f32(132),
                    toffset: f.f32(136),
                    descrip: f.text(148, 80),
                    aux_file: f.text(228, 24),
                    qform_code: f.i16(252) as i32,
                    sform_code: f.i16(254) as i32,
                    quatern_b: f.f32(256),
                    quatern_c: f.f32(260),
                    quatern_d: f.f32(264),
                    qoffset_x: f.f32(268),
                    qoffset_y: f.f32(272),
                    qoffset_z: f.f32(276),
                    srow_x: row(280),
                    srow_y: row(296),
                    srow_z: row(312),
                    intent_name: f.text(328, 16),
                }
            }
            NiftiVersion::Two => {
                let mut dim = [0i64; 8];
                let mut pixdim = [0f64; 8];
                for i in 0..8 {
                    dim[i] = f.i64(16 + 8 * i);
                    pixdim[i] = f.f64(104 + 8 * i);
                }
                let row =
                    |off: usize| [f.f64(off), f.f64(off + 8), f.f64(off + 16), f.f64(off + 24)];
                NiftiHeader {
                    version,
                    endian,
                    dim_info: bytes[524],
                    dim,
                    intent_p1: f.f64(80),
                    intent_p2: f.f64(88),
                    intent_p3: f.f64(96),
                    intent_code: f.i32(504),
                    datatype: f.i16(12) as i32,
                    bitpix: f.i16(14) as i32,
                    slice_start: f.i64(224),
                    pixdim,
                    vox_offset: f.i64(168) as f64,
                    scl_slope: f.f64(176),
                    scl_inter: f.f64(184),
                    slice_end: f.i64(232),
                    slice_code: f.i32(496),
                    xyzt_units: f.i32(500),
                    cal_max: f.f64(192),
                    cal_min: f.f64(200),
                    slice_duration: f.f64(208),
                    toffset: f.f64(216),
                    descrip: f.text(240, 80),
                    aux_file: f.text(320, 24),
                    qform_code: f.i32(344),
                    sform_code: f.i32(348),
                    quatern_b: f.f64(352),
                    quatern_c: f.f64(360),
                    quatern_d: f.f64(368),
                    qoffset_x: f.f64(376),
                    qoffset_y: f.f64(384),
                    qoffset_z: f.f64(392),
                    srow_x: row(400),
                    srow_y: row(432),
                    srow_z: row(464),
                    intent_name: f.text(508, 16),
                }
            }
        };
        hdr.validate(path)?;
        Ok(hdr)
    }

    /// Checks everything reading the voxels relies on, so that later steps cannot fail on the
    /// header: dimensions, datatype, voxel offset, spacing, scaling and the chosen affine.
    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |detail: String| NiftiError::BadHeader {
            path: path.to_path_buf(),
            detail,
        };
        let ndim = self.dim[0];
        if !(1..=7).contains(&ndim) {
            return Err(bad(format!("dim[0] = {ndim}, must be between 1 and 7")));
        }
        let ndim = ndim as usize;
        for i in 1..=ndim {
            if self.dim[i] < 1 {
                return Err(bad(format!(
                    "dim[{i}] = {}, must be at least 1",
                    self.dim[i]
                )));
            }
        }
        let shape: Vec<i64> = self.dim[1..=ndim].to_vec();
        if ndim < 3 || shape[3..].iter().any(|&d| d != 1) {
            return Err(NiftiError::NotThreeD {
                path: path.to_path_buf(),
                shape,
            });
        }
        if self.data_type().is_none() {
            return Err(NiftiError::UnsupportedDatatype {
                path: path.to_path_buf(),
                code: self.datatype,
                name: code_name(self.datatype),
            });
        }
        let vo = self.vox_offset;
        if !vo.is_finite() || vo < 0.0 || vo.fract() != 0.0 {
            return Err(bad(format!("vox_offset = {vo} is not a byte offset")));
        }
        let min = self.version.min_vox_offset();
        if vo != 0.0 && (vo as u64) < min {
            return Err(bad(format!(
                "vox_offset = {vo} lies inside the header (voxels must start at byte {min} or later)"
            )));
        }
        let pix = self.spatial_pixdim();
        if pix.iter().any(|p| !p.is_finite() || *p == 0.0) {
            return Err(NiftiError::BadSpacing {
                path: path.to_path_buf(),
                pixdim: pix,
            });
        }
        let (slope, inter) = (self.scl_slope, self.scl_inter);
        if slope != 0.0 && slope.is_finite() && !inter.is_finite() {
            return Err(NiftiError::BadScaling {
                path: path.to_path_buf(),
                scl_slope: slope,
                scl_inter: inter,
            });
        }
        let source = self.transform_source();
        if source == TransformSource::Qform && self.qform_affine().is_none() {
            let (b, c, d) = (self.quatern_b, self.quatern_c, self.quatern_d);
            return Err(NiftiError::BadQuaternion {
                path: path.to_path_buf(),
                b,
                c,
                d,
                norm2: b * b + c * c + d * d,
            });
        }
        self.geometry().map_err(|source_err| NiftiError::Geometry {
            path: path.to_path_buf(),
            which: source.name(),
            source: source_err,
        })?;
        Ok(())
    }

    /// The supported datatype of the voxels, or `None` for any other code.
    pub fn data_type(&self) -> Option<DataType> {
        DataType::from_code(self.datatype)
    }

    /// The volume's shape `(nx, ny, nz)`; trailing axes of size 1 are dropped.
    pub fn shape(&self) -> [usize; 3] {
        let d = |i: usize| {
            if (i as i64) <= self.dim[0] {
                self.dim[i].max(1) as usize
            } else {
                1
            }
        };
        [d(1), d(2), d(3)]
    }

    /// Number of voxels (saturating: a header that overflows is refused by the readers).
    pub fn n_voxels(&self) -> usize {
        self.shape()
            .iter()
            .fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// The byte where voxels start (`vox_offset`, or right after the header when it is 0).
    pub fn data_offset(&self) -> u64 {
        if self.vox_offset <= 0.0 || !self.vox_offset.is_finite() {
            self.version.min_vox_offset()
        } else {
            self.vox_offset as u64
        }
    }

    /// `pixdim[1..=3]` as stored (may be negative; the affine uses absolute values).
    pub fn spatial_pixdim(&self) -> [f64; 3] {
        [self.pixdim[1], self.pixdim[2], self.pixdim[3]]
    }

    /// The intensity scaling `(slope, intercept)` to apply, or `None` when voxels are used as
    /// stored: slope 0 or non-finite (as nibabel), or slope 1 with intercept 0.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        if s == 0.0 || !s.is_finite() || !i.is_finite() || (s == 1.0 && i == 0.0) {
            None
        } else {
            Some((s, i))
        }
    }

    /// Which transform [`best_affine`](Self::best_affine) uses, as nibabel's
    /// `get_best_affine`: sform when `sform_code` is set, else qform when `qform_code` is set,
    /// else `pixdim`. Codes outside NIfTI's 0..=5 count as 0, as nibabel resets them on load.
    pub fn transform_source(&self) -> TransformSource {
        if valid_code(self.sform_code) != 0 {
            TransformSource::Sform
        } else if valid_code(self.qform_code) != 0 {
            TransformSource::Qform
        } else {
            TransformSource::Pixdim
        }
    }

    /// The sform affine from `srow_x/y/z` (whatever `sform_code` says).
    pub fn sform_affine(&self) -> Affine {
        Affine::from_rows([self.srow_x, self.srow_y, self.srow_z])
    }

    /// The qform affine as nibabel's `get_qform` computes it (whatever `qform_code` says):
    /// rotation from the quaternion (a = sqrt(1 - b² - c² - d²), set to 0 when within
    /// 3 float32 epsilons of 0), voxel sizes `|pixdim[1..=3]|`, the third one times qfac
    /// (`pixdim[0]`, taken as 1 unless it is -1), and `qoffset_x/y/z`.
    /// `None` when b² + c² + d² exceeds 1 by more than that tolerance (nibabel raises too).
    pub fn qform_affine(&self) -> Option<Affine> {
        let (b, c, d) = (self.quatern_b, self.quatern_c, self.quatern_d);
        let w2 = 1.0 - (b * b + c * c + d * d);
        let thresh = 3.0 * f32::EPSILON as f64;
        let a = if w2.abs() < thresh {
            0.0
        } else if w2 < 0.0 || !w2.is_finite() {
            return None;
        } else {
            w2.sqrt()
        };
        let r = quat_to_matrix([a, b, c, d]);
        let mut vox = self.spatial_pixdim().map(f64::abs);
        vox[2] *= self.qfac();
        let t = [self.qoffset_x, self.qoffset_y, self.qoffset_z];
        let mut rows = [[0.0; 4]; 3];
        for (i, row) in rows.iter_mut().enumerate() {
            for j in 0..3 {
                row[j] = r[i][j] * vox[j];
            }
            row[3] = t[i];
        }
        Some(Affine::from_rows(rows))
    }

    /// qfac as nibabel uses it: -1 when `pixdim[0]` is -1, otherwise 1.
    pub fn qfac(&self) -> f64 {
        if self.pixdim[0] == -1.0 { -1.0 } else { 1.0 }
    }

    /// nibabel's fallback affine when neither transform is coded (`shape_zoom_affine`):
    /// `diag(-|p1|, |p2|, |p3|)` with the origin at the centre of the volume.
    pub fn base_affine(&self) -> Affine {
        let shape = self.shape();
        let zooms = self.spatial_pixdim().map(f64::abs);
        let z = [-zooms[0], zooms[1], zooms[2]];
        let mut rows = [[0.0; 4]; 3];
        for (i, row) in rows.iter_mut().enumerate() {
            row[i] = z[i];
            row[3] = -((shape[i] as f64 - 1.0) / 2.0) * z[i];
        }
        Affine::from_rows(rows)
    }

    /// The voxel-to-world affine exactly as nibabel's `get_best_affine()` (and so `img.affine`)
    /// gives it; `None` only for a header whose qform is used but has an invalid quaternion
    /// (which [`crate::read_header`] refuses).
    pub fn best_affine(&self) -> Option<Affine> {
        match self.transform_source() {
            TransformSource::Sform => Some(self.sform_affine()),
            TransformSource::Qform => self.qform_affine(),
            TransformSource::Pixdim => Some(self.base_affine()),
        }
    }

    /// The grid of the volume: [`best_affine`](Self::best_affine) decomposed by
    /// [`Geometry::from_affine`]. An unusable quaternion is reported as
    /// [`GeometryError::NonFiniteAffine`].
    pub fn geometry(&self) -> std::result::Result<Geometry, GeometryError> {
        let affine = self.best_affine().ok_or(GeometryError::NonFiniteAffine)?;
        Geometry::from_affine(self.shape(), &affine)
    }

    /// A fresh NIfTI-1 header for a volume on `geometry`: both qform and sform set from it with
    /// code 1 (scanner), `pixdim` from the spacing, units mm, no scaling.
    pub fn from_geometry(geometry: &Geometry, datatype: DataType) -> NiftiHeader {
        let shape = geometry.shape();
        let spacing = geometry.spacing_mm();
        let origin = geometry.origin_mm();
        let (quat, qfac) = quaternion_of(&geometry.direction());
        let rows = geometry.affine().rows();
        NiftiHeader {
            version: NiftiVersion::One,
            endian: Endian::Little,
            dim_info: 0,
            dim: [
                3,
                shape[0] as i64,
                shape[1] as i64,
                shape[2] as i64,
                1,
                1,
                1,
                1,
            ],
            intent_p1: 0.0,
            intent_p2: 0.0,
            intent_p3: 0.0,
            intent_code: 0,
            datatype: datatype.code(),
            bitpix: 8 * datatype.size() as i32,
            slice_start: 0,
            pixdim: [qfac, spacing[0], spacing[1], spacing[2], 1.0, 1.0, 1.0, 1.0],
            vox_offset: NiftiVersion::One.min_vox_offset() as f64,
            scl_slope: 1.0,
            scl_inter: 0.0,
            slice_end: 0,
            slice_code: 0,
            xyzt_units: 2,
            cal_max: 0.0,
            cal_min: 0.0,
            slice_duration: 0.0,
            toffset: 0.0,
            descrip: "flare".to_string(),
            aux_file: String::new(),
            qform_code: 1,
            sform_code: 1,
            quatern_b: quat[1],
            quatern_c: quat[2],
            quatern_d: quat[3],
            qoffset_x: origin[0],
            qoffset_y: origin[1],
            qoffset_z: origin[2],
            srow_x: rows[0],
            srow_y: rows[1],
            srow_z: rows[2],
            intent_name: String::new(),
        }
    }

    /// Encodes the header, little-endian, in its version, followed by the 4-byte extension flag
    /// (no extensions); `vox_offset` is set to right after it. Fails (with the reason) when a
    /// value does not fit NIfTI-1's narrower fields.
    pub(crate) fn encode(&self) -> std::result::Result<Vec<u8>, String> {
        match self.version {
            NiftiVersion::One => self.encode_v1(),
            NiftiVersion::Two => Ok(self.encode_v2()),
        }
    }

    fn encode_v1(&self) -> std::result::Result<Vec<u8>, String> {
        let narrow = |name: &str, v: i64| {
            i16::try_from(v).map_err(|_| format!("{name} = {v} does not fit NIfTI-1 (max 32767)"))
        };
        let mut o = Out(vec![0u8; V1_SIZE + 4]);
        o.i32(0, V1_SIZE as i32);
        o.put(38, b"r");
        o.put(39, &[self.dim_info]);
        for i in 0..8 {
            o.i16(40 + 2 * i, narrow(&format!("dim[{i}]"), self.dim[i])?);
            o.f32(76 + 4 * i, self.pixdim[i]);
        }
        o.f32(56, self.intent_p1);
        o.f32(60, self.intent_p2);
        o.f32(64, self.intent_p3);
        o.i16(68, narrow("intent_code", self.intent_code as i64)?);
        o.i16(70, narrow("datatype", self.datatype as i64)?);
        o.i16(72, narrow("bitpix", self.bitpix as i64)?);
        o.i16(74, narrow("slice_start", self.slice_start)?);
        o.f32(108, (V1_SIZE + 4) as f64);
        o.f32(112, self.scl_slope);
        o.f32(116, self.scl_inter);
        o.i16(120, narrow("slice_end", self.slice_end)?);
        o.put(122, &[self.slice_code.clamp(0, 255) as u8]);
        o.put(123, &[self.xyzt_units.clamp(0, 255) as u8]);
        o.f32(124, self.cal_max);
        o.f32(128, self.cal_min);
        o.f32(132, self.slice_duration);
        o.f32(136, self.toffset);
        o.text(148, 80, &self.descrip);
        o.text(228, 24, &self.aux_file);
        o.i16(252, narrow("qform_code", self.qform_code as i64)?);
        o.i16(254, narrow("sform_code", self.sform_code as i64)?);
        o.f32(256, self.quatern_b);
        o.f32(260, self.quatern_c);
        o.f32(264, self.quatern_d);
        o.f32(268, self.qoffset_x);
        o.f32(272, self.qoffset_y);
        o.f32(276, self.qoffset_z);
        for (r, row) in [self.srow_x, self.srow_y, self.srow_z].iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                o.f32(280 + 16 * r + 4 * c, *v);
            }
        }
        o.text(328, 16, &self.intent_name);
        o.put(344, b"n+1\0");
        Ok(o.0)
    }

    fn encode_v2(&self) -> Vec<u8> {
        let mut o = Out(vec![0u8; V2_SIZE + 4]);
        o.i32(0, V2_SIZE as i32);
        o.put(4, V2_MAGIC);
        // NIfTI-2 keeps datatype and bitpix as int16 (checked by the caller's datatype).
        o.i16(12, self.datatype as i16);
        o.i16(14, self.bitpix as i16);
        for i in 0..8 {
            o.i64(16 + 8 * i, self.dim[i]);
            o.f64(104 + 8 * i, self.pixdim[i]);
        }
        o.f64(80, self.intent_p1);
        o.f64(88, self.intent_p2);
        o.f64(96, self.intent_p3);
        o.i64(168, (V2_SIZE + 4) as i64);
        o.f64(176, self.scl_slope);
        o.f64(184, self.scl_inter);
        o.f64(192, self.cal_max);
        o.f64(200, self.cal_min);
        o.f64(208, self.slice_duration);
        o.f64(216, self.toffset);
        o.i64(224, self.slice_start);
        o.i64(232, self.slice_end);
        o.text(240, 80, &self.descrip);
        o.text(320, 24, &self.aux_file);
        o.i32(344, self.qform_code);
        o.i32(348, self.sform_code);
        o.f64(352, self.quatern_b);
        o.f64(360, self.quatern_c);
        o.f64(368, self.quatern_d);
        o.f64(376, self.qoffset_x);
        o.f64(384, self.qoffset_y);
        o.f64(392, self.qoffset_z);
        for (r, row) in [self.srow_x, self.srow_y, self.srow_z].iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                o.f64(400 + 32 * r + 8 * c, *v);
            }
        }
        o.i32(496, self.slice_code);
        o.i32(500, self.xyzt_units);
        o.i32(504, self.intent_code);
        o.text(508, 16, &self.intent_name);
        o.put(524, &[self.dim_info]);
        o.0
    }
}

/// Bytes needed from the start of a file to parse its header (enough for either version).
pub(crate) const HEADER_PROBE: usize = V2_SIZE;

/// Finds the version and byte order from `sizeof_hdr`, then checks the magic.
fn detect(bytes: &[u8], path: &Path) -> Result<(NiftiVersion, Endian)> {
    let short = || NiftiError::ShortHeader {
        path: path.to_path_buf(),
        len: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(short());
    }
    let first = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let (le, be) = (i32::from_le_bytes(first), i32::from_be_bytes(first));
    let (version, endian) = match (le, be) {
        (348, _) => (NiftiVersion::One, Endian::Little),
        (_, 348) => (NiftiVersion::One, Endian::Big),
        (540, _) => (NiftiVersion::Two, Endian::Little),
        (_, 540) => (NiftiVersion::Two, Endian::Big),
        _ => {
            let hint = if bytes.len() >= V1_SIZE && &bytes[344..347] == b"n+1" {
                " although the magic says NIfTI-1"
            } else {
                ""
            };
            return Err(NiftiError::BadMagic {
                path: path.to_path_buf(),
                detail: format!(
                    "header size field (sizeof_hdr) is {le}, expected 348 (NIfTI-1) or 540 \
                     (NIfTI-2){hint}"
                ),
            });
        }
    };
    match version {
        NiftiVersion::One => {
            if bytes.len() < V1_SIZE {
                return Err(short());
            }
            match &bytes[344..348] {
                b"n+1\0" => {}
                b"ni1\0" => {
                    return Err(NiftiError::PairFile {
                        path: path.to_path_buf(),
                    });
                }
                other => {
                    return Err(NiftiError::BadMagic {
                        path: path.to_path_buf(),
                        detail: format!(
                            "magic is {:?}, expected \"n+1\" (an Analyze 7.5 file has none)",
                            String::from_utf8_lossy(other).trim_end_matches('\0')
                        ),
                    });
                }
            }
        }
        NiftiVersion::Two => {
            if bytes.len() < V2_SIZE {
                return Err(short());
            }
            let magic = &bytes[4..12];
            if magic == V2_PAIR_MAGIC {
                return Err(NiftiError::PairFile {
                    path: path.to_path_buf(),
                });
            }
            if magic != V2_MAGIC {
                return Err(NiftiError::BadMagic {
                    path: path.to_path_buf(),
                    detail: format!(
                        "NIfTI-2 magic is {magic:?}, expected \"n+2\\0\\r\\n\\x1a\\n\""
                    ),
                });
            }
        }
    }
    Ok((version, endian))
}

/// nibabel resets transform codes outside NIfTI's list (0..=5) to 0 when loading.
fn valid_code(code: i32) -> i32 {
    if (0..=5).contains(&code) { code } else { 0 }
}

/// Rotation matrix of a quaternion `[w, x, y, z]`, nibabel's `quat2mat` (non-unit quaternions
/// are normalised; a near-zero one gives the identity).
fn quat_to_matrix(q: [f64; 4]) -> [[f64; 3]; 3] {
    let [w, x, y, z] = q;
    let nq = w * w + x * x + y * y + z * z;
    if nq < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / nq;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// The qform quaternion `[a, b, c, d]` (a >= 0) and qfac of a direction matrix (unit columns):
/// a left-handed direction gets qfac -1 with its third column negated, and a sheared one is
/// replaced by its nearest rotation (polar decomposition), as nibabel's `set_qform` does.
pub(crate) fn quaternion_of(direction: &[[f64; 3]; 3]) -> ([f64; 4], f64) {
    let mut r = *direction;
    let qfac = if det3(&r) < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let r = nearest_rotation(r);
    (matrix_to_quat(&r), qfac)
}

/// Determinant of a 3x3 matrix.
fn det3(a: &[[f64; 3]; 3]) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// The orthogonal polar factor of a non-singular matrix by Newton's iteration
/// `X <- (X + X^-T) / 2`, which converges quadratically for the near-rotations seen here.
fn nearest_rotation(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut x = m;
    for _ in 0..100 {
        let d = det3(&x);
        if d.abs() < 1e-300 || !d.is_finite() {
            break;
        }
        // Inverse transpose = cofactor matrix / det.
        let mut next = [[0.0; 3]; 3];
        let mut change: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                let (i1, i2) = ((i + 1) % 3, (i + 2) % 3);
                let (j1, j2) = ((j + 1) % 3, (j + 2) % 3);
                let cof = x[i1][j1] * x[i2][j2] - x[i1][j2] * x[i2][j1];
                next[i][j] = 0.5 * (x[i][j] + cof / d);
                change = change.max((next[i][j] - x[i][j]).abs());
            }
        }
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    x
}

/// Quaternion `[a, b, c, d]` with a >= 0 of a rotation matrix (the NIfTI reference algorithm,
/// `nifti_mat44_to_quatern`, which picks the numerically safest component first).
fn matrix_to_quat(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace1 = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace1 > 0.5 {
        a = 0.5 * trace1.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r[0][1] + r[1][0]) / b;
            d = 0.25 * (r[0][2] + r[2][0]) / b;
            a = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r[0][1] + r[1][0]) / c;
            d = 0.25 * (r[1][2] + r[2][1]) / c;
            a = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r[0][2] + r[2][0]) / d;
            c = 0.25 * (r[1][2] + r[2][1]) / d;
            a = 0.25 * (r[1][0] - r[0][1]) / d;
        }
        if a < 0.0 {
            a = -a;
            b = -b;
            c = -c;
            d = -d;
        }
    }
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3], tol: f64) -> bool {
        (0..3).all(|i| (0..3).all(|j| (a[i][j] - b[i][j]).abs() <= tol))
    }

    fn sample_header() -> NiftiHeader {
        let dir = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]];
        let g = Geometry::new([7, 6, 5], [0.7, 0.8, 2.5], [10.5, -20.25, 33.0], dir).expect("g");
        let mut h = NiftiHeader::from_geometry(&g, DataType::Int16);
        // 90 bytes: NIfTI keeps 79 and a terminating NUL.
        h.descrip = "0123456789".repeat(9);
        h.intent_name = "name".to_string();
        h.scl_slope = 0.5;
        h.scl_inter = -7.25;
        h
    }

    #[test]
    fn encode_then_parse_keeps_every_field() {
        let path = Path::new("test.nii");
        for version in [NiftiVersion::One, NiftiVersion::Two] {
            let mut h = sample_header();
            h.version = version;
            let once = NiftiHeader::parse(&h.encode().expect("encode"), path).expect("parse");
            let twice = NiftiHeader::parse(&once.encode().expect("encode"), path).expect("parse");
            // NIfTI-1 rounds to float32 once; after that the round trip is exact.
            assert_eq!(once, twice, "{version:?}");
            if version == NiftiVersion::Two {
                let mut want = h.clone();
                want.vox_offset = 544.0;
                want.descrip.truncate(79);
                assert_eq!(once, want);
            }
            assert_eq!(once.descrip, h.descrip[..79]);
            assert!(
                once.best_affine()
                    .expect("a")
                    .max_abs_diff(&h.best_affine().expect("a"))
                    < 1e-5
            );
        }
    }

    #[test]
    fn dimensions_beyond_nifti1_are_refused_when_encoding() {
        let mut h = sample_header();
        h.dim[1] = 40_000;
        assert!(h.encode().expect_err("too wide").contains("dim[1] = 40000"));
        h.version = NiftiVersion::Two;
        assert!(h.encode().is_ok());
    }

    #[test]
    fn quaternion_round_trips_through_rotation() {
        // A rotation about an oblique axis by 2.5 rad, and the 180-degree turns where a = 0.
        let axis = [0.3f64, -0.5, 0.81];
        let n = axis.iter().map(|v| v * v).sum::<f64>().sqrt();
        let (s, c) = (1.25f64.sin(), 1.25f64.cos());
        let q = [c, s * axis[0] / n, s * axis[1] / n, s * axis[2] / n];
        for quat in [
            q,
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ] {
            let r = quat_to_matrix(quat);
            let back = matrix_to_quat(&r);
            assert!(
                close(&quat_to_matrix(back), &r, 1e-12),
                "{quat:?} -> {back:?}"
            );
        }
    }

    #[test]
    fn polar_factor_removes_shear() {
        let sheared = [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let r = nearest_rotation(sheared);
        let mut rtr = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                rtr[i][j] = (0..3).map(|k| r[k][i] * r[k][j]).sum();
            }
        }
        assert!(close(
            &rtr,
            &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            1e-12
        ));
        assert!((det3(&r) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn left_handed_direction_gets_negative_qfac() {
        let lps = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
        let (_, qfac) = quaternion_of(&lps);
        assert_eq!(qfac, 1.0);
        let las = [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let (q, qfac) = quaternion_of(&las);
        assert_eq!(qfac, -1.0);
        // LAS with the third axis negated is a rotation by pi about y.
        assert!(close(
            &quat_to_matrix(q),
            &[[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]],
            1e-12
        ));
    }
}
