//! Reading .nii and .nii.gz files: header, float image, label map, or voxels as stored.
//!
//! # How .nii.gz is decoded, and why
//! The whole compressed file is read into memory and inflated by libdeflate in one call into
//! the allocation that will hold the output voxels; the compressed buffer is then freed and the
//! stored voxels are converted in place ([`crate::convert`]). On a 512x512x300 int16 CT
//! (85 MB compressed, 2-core machine) libdeflate inflated in about 0.45 s where streaming
//! zlib-rs (flate2) took 0.6 s, and the whole read to float32 took 1.0 s this way against
//! 1.4 s for a streaming decode straight into the output (`examples/read_bench.rs`, modes
//! `image` and `stream`, same load; nibabel: 1.6 s to int16, 2.8 s to float32). The output
//! is allocated zeroed, i.e. untouched by the kernel until written, so the peak resident memory
//! is max(compressed + stored, output): 303 MB for that CT read as float32, the same as the
//! streaming decode (307 MB), and about half of decode-then-convert's 560 MB.
//!
//! libdeflate decodes one gzip member per call and only into a buffer large enough for it. When
//! it stops short of the voxels the header promises (a multi-member file, as written by
//! parallel compressors) or fails (trailing data, or damage), the file is decoded again with
//! flate2's streaming multi-member decoder, which also tells a truncated stream from a corrupt
//! one for the error message.

use std::{
    fs::File,
    io::{BufReader, ErrorKind, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use bytemuck::Pod;
use flare_volume::{Geometry, Volume, memory::ensure_fits};

use crate::{
    convert::{self, BadVoxel, Converter, Stored},
    datatype::DataType,
    datatype::Endian,
    error::{NiftiError, Result},
    header::{HEADER_PROBE, NiftiHeader},
};

/// A volume read from a NIfTI file, with the header it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiImage<T> {
    /// The header as stored (for writing results "like" this image).
    pub header: NiftiHeader,
    /// The voxels on the grid of the header's best affine.
    pub volume: Volume<T>,
}

/// Voxels exactly as stored (native byte order, no scaling), one variant per datatype.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RawVoxels {
    /// `uint8` voxels.
    UInt8(Vec<u8>),
    /// `int8` voxels.
    Int8(Vec<i8>),
    /// `int16` voxels.
    Int16(Vec<i16>),
    /// `uint16` voxels.
    UInt16(Vec<u16>),
    /// `int32` voxels.
    Int32(Vec<i32>),
    /// `uint32` voxels.
    UInt32(Vec<u32>),
    /// `float32` voxels.
    Float32(Vec<f32>),
    /// `float64` voxels.
    Float64(Vec<f64>),
}

impl RawVoxels {
    /// The stored datatype.
    pub fn datatype(&self) -> DataType {
        match self {
            RawVoxels::UInt8(_) => DataType::UInt8,
            RawVoxels::Int8(_) => DataType::Int8,
            RawVoxels::Int16(_) => DataType::Int16,
            RawVoxels::UInt16(_) => DataType::UInt16,
            RawVoxels::Int32(_) => DataType::Int32,
            RawVoxels::UInt32(_) => DataType::UInt32,
            RawVoxels::Float32(_) => DataType::Float32,
            RawVoxels::Float64(_) => DataType::Float64,
        }
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        match self {
            RawVoxels::UInt8(v) => v.len(),
            RawVoxels::Int8(v) => v.len(),
            RawVoxels::Int16(v) => v.len(),
            RawVoxels::UInt16(v) => v.len(),
            RawVoxels::Int32(v) => v.len(),
            RawVoxels::UInt32(v) => v.len(),
            RawVoxels::Float32(v) => v.len(),
            RawVoxels::Float64(v) => v.len(),
        }
    }

    /// Whether there are no voxels (never true for a volume read from a file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Smallest and largest stored value, or `None` when empty.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        fn mm<T: Stored>(v: &[T]) -> Option<(f64, f64)> {
            use rayon::prelude::*;
            v.par_chunks(1 << 16)
                .map(|c| {
                    c.iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                            let x = x.to_f64();
                            (lo.min(x), hi.max(x))
                        })
                })
                .reduce_with(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        }
        match self {
            RawVoxels::UInt8(v) => mm(v),
            RawVoxels::Int8(v) => mm(v),
            RawVoxels::Int16(v) => mm(v),
            RawVoxels::UInt16(v) => mm(v),
            RawVoxels::Int32(v) => mm(v),
            RawVoxels::UInt32(v) => mm(v),
            RawVoxels::Float32(v) => mm(v),
            RawVoxels::Float64(v) => mm(v),
        }
    }
}

/// A NIfTI file's voxels as stored, with its header (for `flare info`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawImage {
    /// The header.
    pub header: NiftiHeader,
    /// The grid of the header's best affine (spacing, orientation, ...).
    pub geometry: Geometry,
    /// The voxels, `i` fastest, in the stored datatype.
    pub voxels: RawVoxels,
}

impl RawImage {
    /// Smallest and largest intensity after the header's scaling (`scl_slope`/`scl_inter`).
    pub fn intensity_range(&self) -> Option<(f64, f64)> {
        let (lo, hi) = self.voxels.min_max()?;
        Some(match self.header.scaling() {
            None => (lo, hi),
            Some((s, k)) => {
                let (a, b) = (lo * s + k, hi * s + k);
                (a.min(b), a.max(b))
            }
        })
    }
}

/// Reads only the header of a .nii or .nii.gz file and checks that it describes a readable 3D
/// volume (dimensions, datatype, voxel offset, spacing, scaling, affine).
pub fn read_header(path: impl AsRef<Path>) -> Result<NiftiHeader> {
    let path = path.as_ref();
    let file = Source::open(path)?;
    let probe = file.header_probe()?;
    NiftiHeader::parse(&probe, path)
}

/// Boxes the conversion kernel `$kernel::<T>` for the stored datatype `$dt`.
macro_rules! kernel_for {
    ($dt:expr, $out:ty, |$t:ident| $call:expr) => {{
        macro_rules! with {
            ($ty:ty) => {{
                type $t = $ty;
                let k: Box<Converter<'static, $out>> = Box::new($call);
                k
            }};
        }
        match $dt {
            DataType::UInt8 => with!(u8),
            DataType::Int8 => with!(i8),
            DataType::Int16 => with!(i16),
            DataType::UInt16 => with!(u16),
            DataType::Int32 => with!(i32),
            DataType::UInt32 => with!(u32),
            DataType::Float32 => with!(f32),
            DataType::Float64 => with!(f64),
        }
    }};
}

/// Reads a volume as `f32` with the intensity scaling applied (as nibabel's `get_fdata`).
/// Float voxels must be finite.
pub fn read_image(path: impl AsRef<Path>) -> Result<NiftiImage<f32>> {
    let path = path.as_ref();
    let (header, data, bad) = load(path, |hdr, dt| {
        let (big, scale) = (hdr.endian == Endian::Big, hdr.scaling());
        kernel_for!(dt, f32, |T| move |f, s, d| convert::to_f32::<T>(
            f, s, d, big, scale
        ))
    })?;
    finish(header, data, path, bad, false)
}

/// Reads a label map: every voxel (after any scaling) must be a whole number from 0 to 255,
/// whatever the stored datatype (integer or float). Values above the organ labels (1-4)
/// are kept for the caller to judge. Voxels never pass through `f32`.
pub fn read_label_map(path: impl AsRef<Path>) -> Result<NiftiImage<u8>> {
    let path = path.as_ref();
    let (header, data, bad) = load(path, |hdr, dt| {
        let (big, scale) = (hdr.endian == Endian::Big, hdr.scaling());
        kernel_for!(dt, u8, |T| move |f, s, d| convert::to_label::<T>(
            f, s, d, big, scale
        ))
    })?;
    finish(header, data, path, bad, true)
}

/// Reads the voxels in their stored datatype (native byte order, scaling not applied), e.g. to
/// report a file's datatype and intensity range. Float voxels must be finite.
pub fn read_raw(path: impl AsRef<Path>) -> Result<RawImage> {
    let path = path.as_ref();
    fn raw<T: Stored + Pod>(path: &Path) -> Result<(NiftiHeader, Vec<T>)> {
        let (header, data, bad) = load(path, |hdr, _| {
            let big = hdr.endian == Endian::Big;
            let k: Box<Converter<'static, T>> =
                Box::new(move |f, s, d| convert::to_native::<T>(f, s, d, big));
            k
        })?;
        match bad {
            Some(b) => Err(voxel_error(path, &header, b, false)),
            None => Ok((header, data)),
        }
    }
    let dt = checked_type(path, &read_header(path)?)?;
    let (header, voxels) = match dt {
        DataType::UInt8 => raw::<u8>(path).map(|(h, v)| (h, RawVoxels::UInt8(v)))?,
        DataType::Int8 => raw::<i8>(path).map(|(h, v)| (h, RawVoxels::Int8(v)))?,
        DataType::Int16 => raw::<i16>(path).map(|(h, v)| (h, RawVoxels::Int16(v)))?,
        DataType::UInt16 => raw::<u16>(path).map(|(h, v)| (h, RawVoxels::UInt16(v)))?,
        DataType::Int32 => raw::<i32>(path).map(|(h, v)| (h, RawVoxels::Int32(v)))?,
        DataType::UInt32 => raw::<u32>(path).map(|(h, v)| (h, RawVoxels::UInt32(v)))?,
        DataType::Float32 => raw::<f32>(path).map(|(h, v)| (h, RawVoxels::Float32(v)))?,
        DataType::Float64 => raw::<f64>(path).map(|(h, v)| (h, RawVoxels::Float64(v)))?,
    };
    if voxels.datatype() != checked_type(path, &header)? {
        // The file changed between the two reads.
        return Err(NiftiError::BadHeader {
            path: path.to_path_buf(),
            detail: "datatype changed while reading".to_string(),
        });
    }
    let geometry = header_geometry(path, &header)?;
    Ok(RawImage {
        header,
        geometry,
        voxels,
    })
}

/// The header's datatype, or the error for an unsupported one.
fn checked_type(path: &Path, header: &NiftiHeader) -> Result<DataType> {
    header
        .data_type()
        .ok_or_else(|| NiftiError::UnsupportedDatatype {
            path: path.to_path_buf(),
            code: header.datatype,
            name: crate::datatype::code_name(header.datatype),
        })
}

/// Pairs converted voxels with the header's grid, or reports the voxel that failed.
fn finish<T>(
    header: NiftiHeader,
    data: Vec<T>,
    path: &Path,
    bad: Option<BadVoxel>,
    labels: bool,
) -> Result<NiftiImage<T>> {
    if let Some(b) = bad {
        return Err(voxel_error(path, &header, b, labels));
    }
    let geometry = header_geometry(path, &header)?;
    let volume = Volume::new(geometry, data).map_err(|source| NiftiError::Geometry {
        path: path.to_path_buf(),
        which: header.transform_source().name(),
        source,
    })?;
    Ok(NiftiImage { header, volume })
}

/// The header's grid, or the error naming the transform it came from.
fn header_geometry(path: &Path, header: &NiftiHeader) -> Result<Geometry> {
    header.geometry().map_err(|source| NiftiError::Geometry {
        path: path.to_path_buf(),
        which: header.transform_source().name(),
        source,
    })
}

/// The error for a voxel a converter refused.
fn voxel_error(path: &Path, header: &NiftiHeader, b: BadVoxel, labels: bool) -> NiftiError {
    let [nx, ny, _] = header.shape();
    let ijk = [b.index % nx, (b.index / nx) % ny, b.index / (nx * ny)];
    if labels {
        NiftiError::NotALabel {
            path: path.to_path_buf(),
            ijk,
            value: b.value,
        }
    } else {
        NiftiError::NonFiniteVoxel {
            path: path.to_path_buf(),
            ijk,
            value: b.value,
        }
    }
}

/// Decodes a file into output voxels with the converter `make(header)` returns. A voxel the
/// converter refuses is returned (third item) for the caller to phrase the error.
fn load<O: Pod + Send + Sync>(
    path: &Path,
    make: impl FnOnce(&NiftiHeader, DataType) -> Box<Converter<'static, O>>,
) -> Result<(NiftiHeader, Vec<O>, Option<BadVoxel>)> {
    let source = Source::open(path)?;
    let probe = source.header_probe()?;
    let header = NiftiHeader::parse(&probe, path)?;
    let dt = checked_type(path, &header)?;
    let s_in = dt.size();
    let shape = header.shape();
    let n = header.n_voxels();
    let vo = header.data_offset();
    let too_large = |source| NiftiError::TooLarge {
        path: path.to_path_buf(),
        what: format!("volume of shape {shape:?} ({} each)", dt.name()),
        source,
    };
    // Sizes from the header are checked against the file first, so that a hostile header
    // (a `vox_offset` of 1e30, dimensions whose product overflows) is reported as what it is,
    // not as a memory shortage. A plain file must hold every byte the header promises; a gzip
    // file can expand at most 1032-fold (deflate's limit), so a header promising more is
    // checked against what the stream really holds.
    let promised = (n as u64).saturating_mul(s_in as u64).saturating_add(vo);
    let compressed = if source.gzip { source.len } else { 0 };
    if !source.gzip {
        check_stored_size(path, &header, source.len, false)?;
    } else if promised > source.len.saturating_mul(1032).saturating_add(4096) {
        check_stored_size(path, &header, source.decompressed_len()?, true)?;
    }
    // Unreachable after the checks above on 64-bit targets; kept for 32-bit ones.
    let huge = || {
        too_large(flare_volume::memory::InsufficientMemory {
            needed_mb: promised >> 20,
            available_mb: flare_volume::memory::available_bytes().unwrap_or(0) >> 20,
        })
    };
    let vo_usize = usize::try_from(vo).map_err(|_| huge())?;
    let need = usize::try_from(promised).map_err(|_| huge())?;
    let len = convert::buffer_len::<O>(vo_usize, n, s_in).ok_or_else(huge)?;
    // The output buffer, and for gzip the compressed file held while it is inflated.
    let bytes = (len as u64)
        .saturating_mul(size_of::<O>() as u64)
        .saturating_add(compressed);
    if let Err(short) = ensure_fits(bytes) {
        if source.gzip {
            // Say "truncated" rather than "too large" when the stream holds less than promised.
            check_stored_size(path, &header, source.decompressed_len()?, true)?;
        }
        return Err(too_large(short));
    }
    let mut buf: Vec<O> = bytemuck::zeroed_vec(len);
    source.decode_into(bytemuck::cast_slice_mut(&mut buf[..]), need, &header)?;
    let conv = make(&header, dt);
    let bad = convert::convert_in_place(&mut buf, vo_usize, n, s_in, &*conv).err();
    buf.truncate(n);
    if buf.capacity() > n + n / 8 {
        buf.shrink_to_fit();
    }
    Ok((header, buf, bad))
}

/// Checks that a (decompressed) file of `len` bytes holds every voxel the header promises.
fn check_stored_size(path: &Path, header: &NiftiHeader, len: u64, compressed: bool) -> Result<()> {
    let vo = header.data_offset();
    let s_in = header.data_type().map_or(1, DataType::size) as u64;
    let needed = (header.n_voxels() as u64).saturating_mul(s_in);
    if vo >= len {
        // The header's own value: `vo` saturates at u64::MAX for offsets like 1e30.
        let stated = header.vox_offset;
        return Err(NiftiError::VoxOffsetPastEnd {
            path: path.to_path_buf(),
            vox_offset: if stated.is_finite() && stated > 0.0 {
                stated
            } else {
                vo as f64
            },
            len,
            compressed,
        });
    }
    if len - vo < needed {
        return Err(NiftiError::TruncatedData {
            path: path.to_path_buf(),
            shape: header.shape(),
            bytes_per_voxel: s_in as usize,
            vox_offset: vo,
            needed,
            available: len - vo,
            compressed,
        });
    }
    Ok(())
}

/// An opened input file, plain or gzip-compressed (told apart by content, not name).
struct Source {
    /// The open file (read-only).
    file: File,
    /// Its length in bytes.
    len: u64,
    /// Whether it starts with the gzip magic bytes.
    gzip: bool,
    /// Its path, for errors.
    path: PathBuf,
}

impl Source {
    /// Opens a file read-only and looks at its first two bytes.
    fn open(path: &Path) -> Result<Source> {
        let mut file = File::open(path).map_err(io_error(path, "cannot open"))?;
        let meta = file.metadata().map_err(io_error(path, "cannot read"))?;
        if meta.is_dir() {
            return Err(NiftiError::Io {
                path: path.to_path_buf(),
                action: "cannot read",
                source: std::io::Error::new(ErrorKind::IsADirectory, "is a directory"),
            });
        }
        let len = meta.len();
        if len == 0 {
            return Err(NiftiError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        let mut magic = [0u8; 2];
        let got = read_full(&mut file, &mut magic).map_err(io_error(path, "cannot read"))?;
        Ok(Source {
            file,
            len,
            gzip: got == 2 && magic == [0x1f, 0x8b],
            path: path.to_path_buf(),
        })
    }

    /// The file's bytes from the start, decompressed if need be (streaming, so cheap for the
    /// header even of a large file).
    fn reader(&self) -> Result<Box<dyn Read + '_>> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))
            .map_err(io_error(&self.path, "cannot read"))?;
        let buffered = BufReader::with_capacity(1 << 16, f);
        Ok(if self.gzip {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        })
    }

    /// The first bytes of the (decompressed) file, enough for either header version.
    fn header_probe(&self) -> Result<Vec<u8>> {
        let mut probe = vec![0u8; HEADER_PROBE];
        let got = read_full(&mut self.reader()?, &mut probe).map_err(|e| self.read_error(e))?;
        probe.truncate(got);
        Ok(probe)
    }

    /// Decompressed length of a gzip file, by decoding it without keeping anything.
    fn decompressed_len(&self) -> Result<u64> {
        std::io::copy(&mut self.reader()?, &mut std::io::sink()).map_err(|e| self.read_error(e))
    }

    /// An error while reading (through the decompressor, for gzip).
    fn read_error(&self, e: std::io::Error) -> NiftiError {
        if self.gzip {
            gzip_error(&self.path, e)
        } else {
            io_error(&self.path, "cannot read")(e)
        }
    }

    /// Fills `out[..need]` with the first `need` bytes of the (decompressed) file.
    fn decode_into(self, out: &mut [u8], need: usize, header: &NiftiHeader) -> Result<()> {
        let path = &self.path;
        if !self.gzip {
            let mut f = &self.file;
            return f
                .seek(SeekFrom::Start(0))
                .and_then(|_| f.read_exact(&mut out[..need]))
                .map_err(io_error(path, "cannot read"));
        }
        let mut data = Vec::new();
        {
            let mut f = &self.file;
            f.seek(SeekFrom::Start(0))
                .and_then(|_| {
                    data.try_reserve_exact(self.len as usize)
                        .map_err(std::io::Error::other)
                })
                .and_then(|_| f.read_to_end(&mut data))
                .map_err(io_error(path, "cannot read"))?;
        }
        let mut inflater = libdeflater::Decompressor::new();
        if let Ok(got) = inflater.gzip_decompress(&data, out)
            && got >= need
        {
            return Ok(());
        }
        // Multi-member, trailing data, or damage: let the streaming decoder sort it out.
        let mut dec = flate2::read::MultiGzDecoder::new(&data[..]);
        let got = read_full(&mut dec, &mut out[..need]).map_err(|e| gzip_error(path, e))?;
        if got < need {
            return Err(match check_stored_size(path, header, got as u64, true) {
                Err(e) => e,
                // Not reachable: got < need always fails one of the checks.
                Ok(()) => NiftiError::TruncatedGzip {
                    path: path.to_path_buf(),
                },
            });
        }
        // Decode the rest so that a damaged tail or a bad checksum is still reported.
        std::io::copy(&mut dec, &mut std::io::sink()).map_err(|e| gzip_error(path, e))?;
        Ok(())
    }
}

/// Maps an I/O error to [`NiftiError::Io`] for `path`.
fn io_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(std::io::Error) -> NiftiError + 'a {
    move |source| NiftiError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Classifies a gzip decoder error: an early end is truncation, anything else corruption.
fn gzip_error(path: &Path, e: std::io::Error) -> NiftiError {
    if e.kind() == ErrorKind::UnexpectedEof {
        NiftiError::TruncatedGzip {
            path: path.to_path_buf(),
        }
    } else {
        NiftiError::CorruptGzip {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    }
}
