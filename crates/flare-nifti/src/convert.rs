//! Voxel conversion kernels and the in-place widening/narrowing of a decoded buffer.
//!
//! A file is decoded (decompressed or read) into the very allocation that will hold the output
//! voxels, and converted there: for int16 to float32 the stored bytes fill the first half and
//! are widened back to front. The peak memory of a read is then the output volume plus, for
//! .nii.gz, the compressed file, instead of compressed + stored + output.
//!
//! Kernels are plain loops over fixed-size byte arrays (`[u8; N]`), which LLVM turns into SIMD
//! shuffles and conversions; work is split into chunks run in parallel with rayon.

use bytemuck::Pod;
use rayon::prelude::*;

use crate::datatype::DataType;

/// Voxels per parallel work item: large enough to amortise scheduling, small enough to keep a
/// chunk's source and destination in L2.
const CHUNK: usize = 1 << 16;

/// A voxel that cannot be converted: its linear index and its value (after scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BadVoxel {
    pub index: usize,
    pub value: f64,
}

/// A stored voxel type: decoding from its on-disk bytes in either byte order.
pub(crate) trait Stored: Copy + Send + Sync + 'static {
    /// The on-disk bytes of one voxel.
    type Raw: Pod + Send + Sync;
    /// Whether the type can hold NaN or infinity.
    const FLOAT: bool;
    fn from_le(r: Self::Raw) -> Self;
    fn from_be(r: Self::Raw) -> Self;
    fn to_le(self) -> Self::Raw;
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
    /// Whether the value is finite (always true for integers).
    fn finite(self) -> bool;
}

macro_rules! stored {
    ($t:ty, $n:expr, $float:expr, $finite:expr) => {
        impl Stored for $t {
            type Raw = [u8; $n];
            const FLOAT: bool = $float;
            #[inline(always)]
            fn from_le(r: [u8; $n]) -> Self {
                <$t>::from_le_bytes(r)
            }
            #[inline(always)]
            fn from_be(r: [u8; $n]) -> Self {
                <$t>::from_be_bytes(r)
            }
            #[inline(always)]
            fn to_le(self) -> [u8; $n] {
                self.to_le_bytes()
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn finite(self) -> bool {
                $finite(self)
            }
        }
    };
}

stored!(u8, 1, false, |_| true);
stored!(i8, 1, false, |_| true);
stored!(i16, 2, false, |_| true);
stored!(u16, 2, false, |_| true);
stored!(i32, 4, false, |_| true);
stored!(u32, 4, false, |_| true);
stored!(f32, 4, true, |v: f32| v.is_finite());
stored!(f64, 8, true, |v: f64| v.is_finite());

/// Reinterprets stored bytes as raw voxels (lengths are always whole voxels by construction).
fn raws<T: Stored>(src: &[u8]) -> &[T::Raw] {
    bytemuck::cast_slice(src)
}

/// Stored voxels to `f32`, optionally `v * slope + inter` (computed in f64, rounded once).
/// Returns the first non-finite result, if any.
pub(crate) fn to_f32<T: Stored>(
    first: usize,
    src: &[u8],
    dst: &mut [f32],
    big: bool,
    scale: Option<(f64, f64)>,
) -> Result<(), BadVoxel> {
    let src = raws::<T>(src);
    match (scale, big) {
        (None, false) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, r)| *d = T::from_le(*r).to_f32()),
        (None, true) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, r)| *d = T::from_be(*r).to_f32()),
        (Some((s, k)), false) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, r)| *d = (T::from_le(*r).to_f64() * s + k) as f32),
        (Some((s, k)), true) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, r)| *d = (T::from_be(*r).to_f64() * s + k) as f32),
    }
    // Integers without scaling are always finite; otherwise check (a NaN stored value, or a
    // scaled value beyond f32) with a branch-free pass first, locating the voxel only on failure.
    if T::FLOAT || scale.is_some() {
        let all_finite = dst.iter().fold(true, |ok, v| ok & v.is_finite());
        if !all_finite && let Some(i) = dst.iter().position(|v| !v.is_finite()) {
            let value = if T::FLOAT && scale.is_none() {
                dst[i] as f64
            } else {
                let raw = if big {
                    T::from_be(src[i])
                } else {
                    T::from_le(src[i])
                };
                scale.map_or(raw.to_f64(), |(s, k)| raw.to_f64() * s + k)
            };
            return Err(BadVoxel {
                index: first + i,
                value,
            });
        }
    }
    Ok(())
}

/// Stored voxels to `u8` labels: each value (after scaling) must be a whole number in 0..=255.
pub(crate) fn to_label<T: Stored>(
    first: usize,
    src: &[u8],
    dst: &mut [u8],
    big: bool,
    scale: Option<(f64, f64)>,
) -> Result<(), BadVoxel> {
    let src = raws::<T>(src);
    let value = |r: T::Raw| {
        let v = if big { T::from_be(r) } else { T::from_le(r) }.to_f64();
        scale.map_or(v, |(s, k)| v * s + k)
    };
    let integral = !T::FLOAT && scale.is_none();
    let mut ok = true;
    for (d, r) in dst.iter_mut().zip(src) {
        let v = value(*r);
        let in_range = (0.0..=255.0).contains(&v);
        ok &= in_range && (integral || v == v.trunc());
        // Out-of-range values become 0 here; the check below then reports them.
        *d = if in_range { v as u8 } else { 0 };
    }
    if !ok
        && let Some(i) = src.iter().position(|r| {
            let v = value(*r);
            !((0.0..=255.0).contains(&v) && v == v.trunc())
        })
    {
        return Err(BadVoxel {
            index: first + i,
            value: value(src[i]),
        });
    }
    Ok(())
}

/// Stored voxels to native values of the same type (byte swapping where needed).
pub(crate) fn to_native<T: Stored + Pod>(
    first: usize,
    src: &[u8],
    dst: &mut [T],
    big: bool,
) -> Result<(), BadVoxel> {
    let src = raws::<T>(src);
    if big {
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, r)| *d = T::from_be(*r));
    } else {
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, r)| *d = T::from_le(*r));
    }
    if T::FLOAT
        && !dst.iter().fold(true, |ok, v| ok & v.finite())
        && let Some(i) = dst.iter().position(|v| !v.finite())
    {
        return Err(BadVoxel {
            index: first + i,
            value: dst[i].to_f64(),
        });
    }
    Ok(())
}

/// A chunk converter: `(index of the first voxel, stored bytes, output voxels)`.
pub(crate) type Converter<'a, O> =
    dyn Fn(usize, &[u8], &mut [O]) -> Result<(), BadVoxel> + Sync + 'a;

/// Output elements to allocate so that `n` voxels of `s_in` bytes stored after a `vo`-byte
/// prefix fit in the buffer as decoded, and `n` output voxels fit after conversion.
pub(crate) fn buffer_len<O>(vo: usize, n: usize, s_in: usize) -> Option<usize> {
    let s_out = size_of::<O>();
    let stored = s_in.checked_mul(n)?.checked_add(vo)?;
    let out = s_out.checked_mul(n)?;
    Some(stored.max(out).div_ceil(s_out))
}

/// Converts, inside `buf`, the `n` stored voxels of `s_in` bytes that start at byte `vo` into
/// `n` output voxels at the start of `buf`. `buf` must be at least [`buffer_len`] long.
///
/// The conversion runs in waves: each wave converts a block whose stored bytes and output
/// bytes do not overlap, so its chunks run in parallel; waves are ordered so that no output
/// overwrites stored bytes not yet converted (back to front when widening, front to back when
/// narrowing). The few voxels where no such block exists are converted from a small copy.
pub(crate) fn convert_in_place<O: Pod + Send + Sync>(
    buf: &mut [O],
    vo: usize,
    n: usize,
    s_in: usize,
    conv: &Converter<'_, O>,
) -> Result<(), BadVoxel> {
    let s_out = size_of::<O>();
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
    if s_out == s_in {
        bytes.copy_within(vo..vo + s_in * n, 0);
        let out: &mut [O] = bytemuck::cast_slice_mut(&mut bytes[..s_out * n]);
        return out
            .par_chunks_mut(CHUNK)
            .enumerate()
            .try_for_each(|(c, dst)| {
                let src = bytemuck::cast_slice::<O, u8>(dst).to_vec();
                conv(c * CHUNK, &src, dst)
            });
    }
    // Converts voxels [a, b) from a private copy of their stored bytes.
    let via_copy = |bytes: &mut [u8], a: usize, b: usize| {
        let src = bytes[vo + s_in * a..vo + s_in * b].to_vec();
        let dst: &mut [O] = bytemuck::cast_slice_mut(&mut bytes[s_out * a..s_out * b]);
        conv(a, &src, dst)
    };
    if s_out > s_in {
        let mut b = n;
        while b > 0 {
            // Lowest a whose output [s_out*a, ...) lies above every stored byte of [a, b).
            let a = (vo + s_in * b).div_ceil(s_out);
            if a >= b || b - a < 4096 {
                return via_copy(bytes, 0, b);
            }
            wave(bytes, a, b, vo, s_in, conv)?;
            b = a;
        }
        Ok(())
    } else {
        // Narrowing: the first voxels' outputs would cover their own stored bytes when vo is
        // small, so convert them from a copy; every later block then has room below it.
        let head = n.min(CHUNK);
        via_copy(bytes, 0, head)?;
        let mut a = head;
        while a < n {
            let b = ((vo + s_in * a) / s_out).min(n);
            wave(bytes, a, b, vo, s_in, conv)?;
            a = b;
        }
        Ok(())
    }
}

/// Converts voxels [a, b) whose stored bytes and output bytes are disjoint, in parallel.
fn wave<O: Pod + Send + Sync>(
    bytes: &mut [u8],
    a: usize,
    b: usize,
    vo: usize,
    s_in: usize,
    conv: &Converter<'_, O>,
) -> Result<(), BadVoxel> {
    let s_out = size_of::<O>();
    let (r0, r1) = (vo + s_in * a, vo + s_in * b);
    let (w0, w1) = (s_out * a, s_out * b);
    let (src, dst): (&[u8], &mut [u8]) = if w1 <= r0 {
        let (lo, hi) = bytes.split_at_mut(r0);
        (&hi[..r1 - r0], &mut lo[w0..w1])
    } else {
        debug_assert!(w0 >= r1, "overlapping wave");
        let (lo, hi) = bytes.split_at_mut(w0);
        (&lo[r0..r1], &mut hi[..w1 - w0])
    };
    let dst: &mut [O] = bytemuck::cast_slice_mut(dst);
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK * s_in))
        .enumerate()
        .try_for_each(|(c, (d, s))| conv(a + c * CHUNK, s, d))
}

/// Checks that every value can be stored as `dt` without change (finite; whole and in range
/// for integer types). Returns the first voxel that cannot.
pub(crate) fn check_representable(data: &[f32], dt: DataType) -> Result<(), BadVoxel> {
    let (lo, hi) = dt.range();
    let fits = |v: f32| {
        let v = v as f64;
        v.is_finite() && (dt.is_float() || (v >= lo && v <= hi && v == v.trunc()))
    };
    data.par_chunks(CHUNK)
        .enumerate()
        .try_for_each(|(c, chunk)| {
            if chunk.iter().fold(true, |ok, &v| ok & fits(v)) {
                return Ok(());
            }
            match chunk.iter().position(|&v| !fits(v)) {
                Some(i) => Err(BadVoxel {
                    index: c * CHUNK + i,
                    value: chunk[i] as f64,
                }),
                None => Ok(()),
            }
        })
}

/// Encodes `f32` voxels as little-endian `T` (values already checked by
/// [`check_representable`]) into `out`.
pub(crate) fn encode_le<T: Stored>(src: &[f32], out: &mut Vec<u8>, cast: impl Fn(f32) -> T) {
    out.clear();
    out.reserve(src.len() * size_of::<T::Raw>());
    for &v in src {
        out.extend_from_slice(bytemuck::bytes_of(&cast(v).to_le()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a decoded file: `vo` header bytes, then `vals` as little-endian `T`.
    fn decoded<T: Stored, O: Pod>(vo: usize, vals: &[T]) -> Vec<O> {
        let n = vals.len();
        let len = buffer_len::<O>(vo, n, size_of::<T::Raw>()).expect("size");
        let mut buf = vec![O::zeroed(); len];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        bytes[..vo].fill(0xAB);
        for (i, v) in vals.iter().enumerate() {
            let s = size_of::<T::Raw>();
            bytes[vo + s * i..vo + s * (i + 1)].copy_from_slice(bytemuck::bytes_of(&v.to_le()));
        }
        buf
    }

    #[test]
    fn widening_in_place_matches_direct_conversion() {
        // Sizes around every wave and tail boundary, and header sizes of both versions.
        for n in [0, 1, 5, 175, 177, 4095, 8200, 70_000, 300_001] {
            for vo in [0, 352, 544] {
                let vals: Vec<i16> = (0..n).map(|i| ((i * 7919) % 65536) as u16 as i16).collect();
                let mut buf = decoded::<i16, f32>(vo, &vals);
                let conv = |f: usize, s: &[u8], d: &mut [f32]| to_f32::<i16>(f, s, d, false, None);
                convert_in_place(&mut buf, vo, n, 2, &conv).expect("convert");
                let want: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
                assert_eq!(&buf[..n], &want[..], "n={n} vo={vo}");
                let vals8: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                let mut buf = decoded::<u8, f32>(vo, &vals8);
                let conv = |f: usize, s: &[u8], d: &mut [f32]| to_f32::<u8>(f, s, d, false, None);
                convert_in_place(&mut buf, vo, n, 1, &conv).expect("convert");
                let want: Vec<f32> = vals8.iter().map(|&v| v as f32).collect();
                assert_eq!(&buf[..n], &want[..], "u8 n={n} vo={vo}");
            }
        }
    }

    #[test]
    fn narrowing_and_same_size_in_place() {
        for n in [1, 3, 1000, 65_537, 200_000] {
            for vo in [0, 352] {
                let vals: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 7.25).collect();
                let mut buf = decoded::<f64, f32>(vo, &vals);
                let conv = |f: usize, s: &[u8], d: &mut [f32]| to_f32::<f64>(f, s, d, false, None);
                convert_in_place(&mut buf, vo, n, 8, &conv).expect("convert");
                assert!(
                    buf[..n].iter().zip(&vals).all(|(a, b)| *a == *b as f32),
                    "n={n}"
                );
                let vals: Vec<i32> = (0..n).map(|i| i as i32 * 3 - 100).collect();
                let mut buf = decoded::<i32, f32>(vo, &vals);
                let conv = |f: usize, s: &[u8], d: &mut [f32]| to_f32::<i32>(f, s, d, false, None);
                convert_in_place(&mut buf, vo, n, 4, &conv).expect("convert");
                assert!(
                    buf[..n].iter().zip(&vals).all(|(a, b)| *a == *b as f32),
                    "n={n}"
                );
                let labels: Vec<i16> = (0..n).map(|i| (i % 5) as i16).collect();
                let mut buf = decoded::<i16, u8>(vo, &labels);
                let conv = |f: usize, s: &[u8], d: &mut [u8]| to_label::<i16>(f, s, d, false, None);
                convert_in_place(&mut buf, vo, n, 2, &conv).expect("convert");
                assert!(
                    buf[..n].iter().zip(&labels).all(|(a, b)| *a as i16 == *b),
                    "n={n}"
                );
            }
        }
    }

    #[test]
    fn bad_voxels_are_located() {
        let mut vals = vec![1.0f32; 100_000];
        vals[77_777] = f32::NAN;
        let mut buf = decoded::<f32, f32>(352, &vals);
        let conv = |f: usize, s: &[u8], d: &mut [f32]| to_f32::<f32>(f, s, d, false, None);
        let err = convert_in_place(&mut buf, 352, vals.len(), 4, &conv).expect_err("nan");
        assert_eq!(err.index, 77_777);
        assert!(err.value.is_nan());
        let mut labels = vec![2i16; 70_000];
        labels[69_000] = 300;
        let mut buf = decoded::<i16, u8>(352, &labels);
        let conv = |f: usize, s: &[u8], d: &mut [u8]| to_label::<i16>(f, s, d, false, None);
        let err = convert_in_place(&mut buf, 352, labels.len(), 2, &conv).expect_err("300");
        assert_eq!((err.index, err.value), (69_000, 300.0));
    }

    #[test]
    fn big_endian_and_scaling() {
        let src: Vec<u8> = [-2i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut dst = [0f32; 2];
        to_f32::<i16>(0, &src, &mut dst, true, Some((0.5, -1.0))).expect("ok");
        assert_eq!(dst, [-2.0, 149.0]);
        let mut out = [0i16; 2];
        to_native::<i16>(0, &src, &mut out, true).expect("ok");
        assert_eq!(out, [-2, 300]);
    }

    #[test]
    fn representable_checks_type_limits() {
        assert!(check_representable(&[0.0, -32768.0, 32767.0], DataType::Int16).is_ok());
        let e = check_representable(&[1.0, 32768.0], DataType::Int16).expect_err("range");
        assert_eq!(e.index, 1);
        let e = check_representable(&[1.5], DataType::UInt8).expect_err("fraction");
        assert_eq!(e.value, 1.5);
        assert!(check_representable(&[f32::INFINITY], DataType::Float32).is_err());
    }
}
