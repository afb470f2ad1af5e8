//! bfloat16 conversions: the portable rounding every bf16 path is defined by, and the packing of
//! activations into the channel pairs the bf16 convolution kernels read.
//!
//! A bf16 value is the top 16 bits of an fp32 (sign, 8-bit exponent, 7-bit mantissa). Rounding
//! here is what AVX512-BF16's `vcvtne2ps2bf16` does, checked bit for bit on this CPU by the
//! tests below: round to nearest, ties to even; a NaN stays a (quiet) NaN; an fp32 denormal
//! becomes a zero of its sign (the instruction assumes DAZ); values past the largest finite bf16
//! become infinity.
//!
//! # Channel pairs
//! `vdpbf16ps` multiplies 32 bf16 lanes in adjacent pairs into 16 fp32 sums, so the bf16
//! kernels sum over input channels two at a time: an activation is stored as `u32` words, word
//! `p` of a voxel holding channel `2p` in its low half and `2p + 1` (or zero, past an odd
//! channel count) in its high half. In channels-last order with an even channel count that is
//! exactly the fp32 stream converted element by element.

use std::sync::Mutex;

use rayon::prelude::*;

use crate::{Bf16Kernel, Ctx, EngineError, Result, Shape5, Tensor};

/// Rounds `x` to bfloat16 (round to nearest even; NaN stays NaN; denormals flush to a signed
/// zero), returning its 16 bits.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    if b & 0x7f80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The fp32 value of the bf16 bits `h` (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` rounded to the nearest bf16 value, as an fp32 ([`f32_to_bf16`] then [`bf16_to_f32`]).
pub fn bf16_round(x: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(x))
}

/// One word of two bf16 values: `lo` in the low half (the even channel).
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(f32_to_bf16(lo)) | (u32::from(f32_to_bf16(hi)) << 16)
}

/// Words per voxel for `c` channels.
pub(crate) fn pairs(c: usize) -> usize {
    c.div_ceil(2)
}

/// A converted activation. Its buffer goes back to a small spare pool when dropped, so that the
/// next convolution converts into memory that is already mapped: a fresh 64 MB buffer per call
/// costs ~16 000 page faults (the fp32 network reuses its activations for the same reason).
pub(crate) struct Pairs(Vec<u32>);

/// Spare buffers (a pass converts at most one operand whole; the weight gradient converts its
/// other operand block by block into small per-thread buffers).
static SPARE: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());

/// Spare buffers kept at most.
const SPARES: usize = 2;

impl Pairs {
    /// `len` words with unspecified contents (the caller overwrites them all).
    fn with_len(len: usize) -> Pairs {
        let mut v = SPARE
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0);
        }
        Pairs(v)
    }

    /// The words.
    pub(crate) fn as_slice(&self) -> &[u32] {
        &self.0
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        if let Ok(mut spare) = SPARE.lock() {
            spare.push(std::mem::take(&mut self.0));
            // Keep the largest.
            spare.sort_by_key(|v| v.capacity());
            while spare.len() > SPARES {
                spare.remove(0);
            }
        }
    }
}

/// Converts a channels-last activation with `c` channels into bf16 channel pairs
/// (`voxels * pairs(c)` words, see the module doc). Splits the work over rayon; `kernel` picks
/// the conversion instruction (the native one gives the same bits as the portable one).
pub(crate) fn to_pairs(kernel: Bf16Kernel, x: &[f32], c: usize) -> Pairs {
    debug_assert!(c > 0 && x.len().is_multiple_of(c));
    let mut pairs_buf = Pairs::with_len(x.len() / c * pairs(c));
    convert_into(kernel, x, c, &mut pairs_buf.0);
    pairs_buf
}

/// [`convert_voxels`] of all of `x` (`c > 0` channels) into `out`, split over rayon.
fn convert_into(kernel: Bf16Kernel, x: &[f32], c: usize, out: &mut [u32]) {
    // About 64 KiB of input per task: enough to amortise rayon, small enough to balance.
    let per = (16384 / c).max(1);
    out.par_chunks_mut(per * pairs(c))
        .zip(x.par_chunks(per * c))
        .for_each(|(dst, src)| convert_voxels(kernel, src, c, dst));
}

/// Converts whole voxels of `c` channels (`src`) into their channel pairs (`dst`, `pairs(c)`
/// words per voxel): the one conversion every bf16 activation goes through, whether a
/// convolution converts its input or a layer writes bf16 directly.
pub(crate) fn convert_voxels(kernel: Bf16Kernel, src: &[f32], c: usize, dst: &mut [u32]) {
    if c.is_multiple_of(2) {
        convert_even(kernel, src, dst);
    } else {
        let cp = pairs(c);
        for (d, s) in dst.chunks_exact_mut(cp).zip(src.chunks_exact(c)) {
            for (p, w) in d.iter_mut().enumerate() {
                let hi = s.get(2 * p + 1).copied().unwrap_or(0.0);
                *w = pair(s[2 * p], hi);
            }
        }
    }
}

/// An activation stored as bf16 channel pairs (channels-last, `pairs(c)` words per voxel; see
/// the module doc): what a bf16 layer can hand straight to the next convolution without the
/// convolution's conversion pass.
///
/// Its buffer may be longer than the words it holds (a reused fp32 activation buffer of the
/// same shape, so that one pool of buffers serves both); the words past
/// [`Bf16Tensor::words_for`] are ignored.
#[derive(Clone, Debug)]
pub struct Bf16Tensor {
    shape: Shape5,
    words: Vec<u32>,
}

impl PartialEq for Bf16Tensor {
    fn eq(&self, other: &Bf16Tensor) -> bool {
        self.shape == other.shape && self.words() == other.words()
    }
}

impl Bf16Tensor {
    /// Words a tensor of `shape` holds (voxels times channel pairs).
    pub fn words_for(shape: Shape5) -> usize {
        (shape.len() / shape.c.max(1)).saturating_mul(pairs(shape.c))
    }

    /// A tensor of `shape` over `buf` (for example a reused buffer), which must hold at least
    /// [`Bf16Tensor::words_for`] words.
    pub fn from_words(shape: Shape5, buf: Vec<u32>) -> Result<Bf16Tensor> {
        let expected = Bf16Tensor::words_for(shape);
        if buf.len() < expected {
            return Err(EngineError::DataLength {
                what: "bf16 tensor",
                shape: shape.to_string(),
                expected,
                len: buf.len(),
            });
        }
        Ok(Bf16Tensor { shape, words: buf })
    }

    /// `x` rounded to bf16 with the conversion of `ctx`'s bf16 kernel; an error in an fp32
    /// context.
    pub fn from_tensor(ctx: &Ctx, x: &Tensor) -> Result<Bf16Tensor> {
        let kernel = bf16_kernel_of(ctx, "bf16 conversion")?;
        let shape = x.shape();
        let mut words = vec![0u32; Bf16Tensor::words_for(shape)];
        if shape.c > 0 {
            convert_into(kernel, x.data(), shape.c, &mut words);
        }
        Ok(Bf16Tensor { shape, words })
    }

    /// The fp32 tensor of the same values (exact: every bf16 value is an fp32 value).
    pub fn to_tensor(&self) -> Tensor {
        let c = self.shape.c;
        let cp = pairs(c);
        let mut data = Vec::with_capacity(self.shape.len());
        for v in self.words().chunks_exact(cp.max(1)) {
            for ch in 0..c {
                let w = v[ch / 2];
                let half = if ch % 2 == 0 {
                    w as u16
                } else {
                    (w >> 16) as u16
                };
                data.push(bf16_to_f32(half));
            }
        }
        Tensor::from_vec(self.shape, data).expect("one value per channel of every voxel")
    }

    /// The shape (in channels, not pairs).
    pub fn shape(&self) -> Shape5 {
        self.shape
    }

    /// The channel-pair words.
    pub fn words(&self) -> &[u32] {
        &self.words[..Bf16Tensor::words_for(self.shape)]
    }

    /// The channel-pair words, to overwrite (see the module doc for their layout).
    pub fn words_mut(&mut self) -> &mut [u32] {
        let n = Bf16Tensor::words_for(self.shape);
        &mut self.words[..n]
    }

    /// The whole buffer, for reuse.
    pub fn into_words(self) -> Vec<u32> {
        self.words
    }
}

/// `ctx`'s bf16 kernel, or an error naming `op` in an fp32 context.
pub(crate) fn bf16_kernel_of(ctx: &Ctx, op: &'static str) -> Result<Bf16Kernel> {
    ctx.bf16_kernel().ok_or_else(|| needs_bf16_context(op))
}

/// The error for a bf16 tensor met in an fp32 context.
pub(crate) fn needs_bf16_context(op: &'static str) -> EngineError {
    EngineError::Param {
        op,
        detail: "a bf16 tensor needs a bf16 context (this one computes in fp32)".into(),
    }
}

/// "Sliding pairs" for the weight-gradient kernels: word `i` holds the bf16 values of `x[i]`
/// (low half) and of `x[i + stride]` (high half; zero past the end). Each value appears in two
/// words, so a pair of voxels `stride` apart starts at any element, whatever its alignment.
pub(crate) fn sliding_pairs(kernel: Bf16Kernel, x: &[f32], stride: usize) -> Pairs {
    let mut buf = Pairs::with_len(x.len());
    const CHUNK: usize = 16384;
    buf.0
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(k, dst)| sliding_into(kernel, x, k * CHUNK, stride, dst));
    buf
}

/// Words `i0 .. i0 + dst.len()` of [`sliding_pairs`]`(x, stride)` into `dst`, on this thread
/// (the weight gradient converts the rows each of its blocks owns this way, into a buffer
/// that stays in cache for the kernel).
pub(crate) fn sliding_into(
    kernel: Bf16Kernel,
    x: &[f32],
    i0: usize,
    stride: usize,
    dst: &mut [u32],
) {
    // The part of `dst` whose partner lies inside `x`.
    let full = x
        .len()
        .saturating_sub(stride)
        .saturating_sub(i0)
        .min(dst.len());
    let n = match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 if full > 0 => {
            // SAFETY: a `Bf16Kernel::Avx512Bf16` only reaches here through a `Ctx` that
            // checked `is_supported`; the slices hold `full` words and values.
            unsafe {
                sliding_avx512bf16(
                    &x[i0..i0 + full],
                    &x[i0 + stride..i0 + stride + full],
                    &mut dst[..full],
                )
            }
        }
        _ => 0,
    };
    for (j, d) in dst.iter_mut().enumerate().skip(n) {
        let hi = x.get(i0 + j + stride).copied().unwrap_or(0.0);
        *d = pair(x[i0 + j], hi);
    }
}

/// `dst[j] = pair(lo[j], hi[j])` for the first `len / 16 * 16` words; returns how many.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn sliding_avx512bf16(lo: &[f32], hi: &[f32], dst: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let n = dst.len().min(lo.len()).min(hi.len()) / 16 * 16;
    // SAFETY: each step reads `lo[j..j + 16]`, `hi[j..j + 16]` and writes `dst[j..j + 16]`,
    // `j + 16 <= n`. `__m256bh` and `__m256i` are both 32-byte vectors.
    unsafe {
        let mut j = 0;
        while j < n {
            let a = _mm512_cvtneps_pbh(_mm512_loadu_ps(lo.as_ptr().add(j)));
            let b = _mm512_cvtneps_pbh(_mm512_loadu_ps(hi.as_ptr().add(j)));
            let a = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(a));
            let b = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(b));
            let w = _mm512_or_si512(a, _mm512_slli_epi32::<16>(b));
            _mm512_storeu_si512(dst.as_mut_ptr().add(j).cast(), w);
            j += 16;
        }
    }
    n
}

/// `dst[i] = pair(src[2i], src[2i + 1])`; `src.len() == 2 * dst.len()`.
fn convert_even(kernel: Bf16Kernel, src: &[f32], dst: &mut [u32]) {
    assert_eq!(src.len(), 2 * dst.len(), "bf16 conversion: lengths");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 => {
            // SAFETY: a `Bf16Kernel::Avx512Bf16` only reaches the kernels through a `Ctx` that
            // checked `is_supported` (avx512f and avx512bf16 detected); the lengths were checked
            // above.
            unsafe { convert_even_avx512bf16(src, dst) }
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = pair(s[0], s[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_even_avx512bf16(src: &[f32], dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let n = dst.len() / 16 * 16;
    // SAFETY: each step reads `src[2i..2i + 32]` and writes `dst[i..i + 16]` with `i + 16 <= n
    // <= dst.len()` and `src.len() == 2 * dst.len()`.
    unsafe {
        let mut i = 0;
        while i < n {
            let lo = _mm512_loadu_ps(src.as_ptr().add(2 * i));
            let hi = _mm512_loadu_ps(src.as_ptr().add(2 * i + 16));
            // The result's low 16 bf16 lanes come from the second operand.
            let h = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                dst.as_mut_ptr().add(i).cast(),
                std::mem::transmute::<__m512bh, __m512i>(h),
            );
            i += 16;
        }
    }
    for (d, s) in dst[n..].iter_mut().zip(src[2 * n..].chunks_exact(2)) {
        *d = pair(s[0], s[1]);
    }
}

/// Re-packs a kernel weight buffer `[outer][nk][16]` (fp32, `nk` reduction channels) into bf16
/// pairs `[outer][pairs(nk)][16]`: word `(o, p, lane)` holds channels `2p` and `2p + 1` of lane
/// `lane`, the second zero past an odd `nk`. The bf16 kernels then load one 16-word vector per
/// channel pair, as the fp32 ones load one 16-float vector per channel.
pub(crate) fn pack_pairs(packed: &[f32], nk: usize) -> crate::aligned::AlignedBuf<u32> {
    const B: usize = 16;
    let outer = packed.len() / (nk * B);
    let np = pairs(nk);
    let mut buf = crate::aligned::AlignedBuf::zeros(outer * np * B);
    let dst = buf.as_mut_slice();
    for o in 0..outer {
        for p in 0..np {
            for lane in 0..B {
                let lo = packed[(o * nk + 2 * p) * B + lane];
                let hi = if 2 * p + 1 < nk {
                    packed[(o * nk + 2 * p + 1) * B + lane]
                } else {
                    0.0
                };
                dst[(o * np + p) * B + lane] = pair(lo, hi);
            }
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2^-8 lies half-way between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 lies half-way between 1 + 2^-7 and 1 + 2^-6: up to the even one.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        // Just above a tie rounds up.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(-2.0), 0xc000);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(-0.0), 0x8000);
        assert_eq!(f32_to_bf16(-1e-39), 0x8000);
        assert_eq!(f32_to_bf16(f32::MIN_POSITIVE), 0x0080);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert!(bf16_to_f32(f32_to_bf16(f32::from_bits(0x7f80_0001))).is_nan());
        // Relative error at most 2^-8 (half an ulp of an 8-bit significand) in the normal range.
        let mut x = 1e-30f32;
        while x < 1e30 {
            assert!((bf16_round(x) - x).abs() <= x * (1.0 / 256.0), "{x}");
            x *= 1.37;
        }
    }

    /// Values with every interesting low half: ties, just-off ties, denormals, NaNs, limits.
    fn awkward_values() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1e-39,
            -1e-39,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffff_0000),
        ];
        let mut s = 0x1234_5678u32;
        for k in 0..1000u32 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let hi = (s >> 16) << 16;
            // Exact ties, one below, one above, and a random low half.
            let low = [0x8000, 0x7fff, 0x8001, s & 0xffff][k as usize % 4];
            v.push(f32::from_bits(hi | low));
        }
        v
    }

    #[test]
    fn pairs_are_channel_pairs_with_zero_padding() {
        let x: Vec<f32> = (0..15).map(|i| i as f32 + 0.5).collect();
        // 5 voxels of 3 channels: 2 words each, the last high half zero.
        let p = to_pairs(Bf16Kernel::Reference, &x, 3);
        let p = p.as_slice();
        assert_eq!(p.len(), 10);
        for v in 0..5 {
            let (a, b) = (p[2 * v], p[2 * v + 1]);
            assert_eq!(bf16_to_f32(a as u16), bf16_round(x[3 * v]));
            assert_eq!(bf16_to_f32((a >> 16) as u16), bf16_round(x[3 * v + 1]));
            assert_eq!(bf16_to_f32(b as u16), bf16_round(x[3 * v + 2]));
            assert_eq!(b >> 16, 0);
        }
        let w: Vec<f32> = (0..3 * 16).map(|i| i as f32).collect();
        let pw = pack_pairs(&w, 3);
        let pw = pw.as_slice();
        assert_eq!(pw.len(), 2 * 16);
        assert_eq!(pw[5], pair(5.0, 21.0));
        assert_eq!(pw[16 + 5], pair(37.0, 0.0));
    }

    #[test]
    fn sliding_pairs_hold_each_value_and_its_partner() {
        let x: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
        let p = sliding_pairs(Bf16Kernel::Reference, &x, 7);
        let p = p.as_slice();
        assert_eq!(p.len(), 40);
        for (i, &w) in p.iter().enumerate() {
            assert_eq!(bf16_to_f32(w as u16), bf16_round(x[i]));
            let hi = x.get(i + 7).map_or(0.0, |&v| bf16_round(v));
            assert_eq!(bf16_to_f32((w >> 16) as u16), hi);
        }
    }

    #[test]
    fn native_conversion_matches_the_portable_one_bit_for_bit() {
        let Some(k) = Bf16Kernel::native() else {
            eprintln!("skipped: this CPU has no avx512_bf16, so there is no native conversion");
            return;
        };
        let mut v = awkward_values();
        v.truncate(2 * (v.len() / 2));
        for len in [2, 30, 32, 34, 64, v.len()] {
            let src = &v[..len];
            let native = to_pairs(k, src, 2);
            let portable = to_pairs(Bf16Kernel::Reference, src, 2);
            assert_eq!(native.as_slice(), portable.as_slice(), "len {len}");
            for stride in [1, 5, 16] {
                let native = sliding_pairs(k, src, stride);
                let portable = sliding_pairs(Bf16Kernel::Reference, src, stride);
                assert_eq!(
                    native.as_slice(),
                    portable.as_slice(),
                    "len {len} stride {stride}"
                );
            }
        }
    }
}
