//! 3D convolution: forward, gradient with respect to the input, gradient with respect to the
//! weights and bias.
//!
//! The drivers here are safe code: they check shapes, pack weights into the layout the kernels
//! want, split the work over rayon and hand each kernel call precomputed offsets. The kernels
//! (`forward/`, `backward_weight/`, one file per ISA) hold all the `unsafe`.
//!
//! # Weight layout
//! [`Conv3dWeight`] stores `[kd][kh][kw][ci][co]` (output channel fastest, "DHWIO"). PyTorch's
//! `Conv3d.weight` is `[co][ci][kd][kh][kw]`; the element `w_torch[o, i, a, b, c]` is
//! `w[(((a * kh + b) * kw + c) * cin + i) * cout + o]` here. [`Conv3dWeight::from_torch`] and
//! [`Conv3dWeight::to_torch`] convert. For the kernels each op packs a 64-byte-aligned copy,
//! `[co block][tap][ci][16]` with the output channels zero-padded to a multiple of 16, so one
//! block's weights are a contiguous stream of 16-wide vectors; the gradient with respect to the
//! input packs the transpose, `[ci block][tap][co][16]`. Packing costs `taps * cin * cout`
//! copies per call, nothing next to the convolution, and lets training update the weights in
//! their plain layout.
//!
//! # Determinism
//! Every output element is computed by one kernel call in a fixed order, so forward and
//! input-gradient results do not depend on the thread count. The weight gradient is summed over
//! row chunks whose boundaries depend only on the shapes, then the chunk partials are added in
//! chunk order: also independent of the thread count.

mod backward_weight;
mod forward;
mod transpose;

pub use self::transpose::{
    conv_transpose3d_backward_data, conv_transpose3d_backward_weight, conv_transpose3d_forward,
    conv_transpose3d_forward_into, conv_transpose3d_output_shape,
};

use rayon::prelude::*;

use self::forward::{BLOCK, Tap, Tile};
use crate::{
    Bf16Kernel, Bf16Tensor, Conv3dSpec, Ctx, EngineError, Isa, Result, Shape5, Tensor,
    aligned::AlignedBuf, bf16, shape::round_up,
};

/// What a forward convolution reads: an fp32 tensor, or an activation a bf16 layer already
/// wrote as channel pairs ([`Bf16Tensor`], bf16 contexts only), which the convolution then
/// reads without converting it.
#[derive(Clone, Copy, Debug)]
pub enum ConvInput<'a> {
    /// fp32 channels (converted on the fly in a bf16 context).
    F32(&'a Tensor),
    /// bf16 channel pairs.
    Bf16(&'a Bf16Tensor),
}

impl<'a> From<&'a Tensor> for ConvInput<'a> {
    fn from(x: &'a Tensor) -> ConvInput<'a> {
        ConvInput::F32(x)
    }
}

impl<'a> From<&'a Bf16Tensor> for ConvInput<'a> {
    fn from(x: &'a Bf16Tensor) -> ConvInput<'a> {
        ConvInput::Bf16(x)
    }
}

impl<'a> ConvInput<'a> {
    /// The shape (in channels).
    pub fn shape(&self) -> Shape5 {
        match self {
            ConvInput::F32(x) => x.shape(),
            ConvInput::Bf16(x) => x.shape(),
        }
    }

    /// The values as the gather kernels take them.
    fn source(&self) -> Source<'a> {
        match *self {
            ConvInput::F32(x) => Source::F32(x.data()),
            ConvInput::Bf16(x) => Source::Pairs(x.words()),
        }
    }
}

/// A pass's input values: fp32 channels, or bf16 channel pairs a layer already wrote.
#[derive(Clone, Copy)]
enum Source<'a> {
    F32(&'a [f32]),
    Pairs(&'a [u32]),
}

/// bf16 channel pairs a pass reads: converted by the pass, or given.
enum PairsIn<'a> {
    Converted(bf16::Pairs),
    Given(&'a [u32]),
}

impl PairsIn<'_> {
    fn as_slice(&self) -> &[u32] {
        match self {
            PairsIn::Converted(p) => p.as_slice(),
            PairsIn::Given(w) => w,
        }
    }
}

/// What the gather kernels read in one pass, in the context's precision: the input as given
/// and the fp32 packed weights, or both in bf16 channel pairs (`crate::bf16`; the input
/// converted here unless a layer wrote it as pairs). The drivers compute every input and
/// weight offset in [`Operands::cin`] units (channels, or channel pairs), so the same tap lists
/// serve both.
enum Operands<'a> {
    F32 {
        isa: Isa,
        x: &'a [f32],
        w: AlignedBuf,
        cin: usize,
    },
    Bf16 {
        kernel: Bf16Kernel,
        x: PairsIn<'a>,
        w: AlignedBuf<u32>,
        cin: usize,
    },
}

/// One kernel call's taps and settings ([`forward::Tile`] without its operands).
struct Pass<'a> {
    taps: &'a [Tap],
    x_vstride: usize,
    init: &'a [f32; BLOCK],
    accumulate: bool,
}

impl<'a> Operands<'a> {
    /// `x` is channels-last with `c` channels; `packed` is a `[block][tap][c][16]` weight pack
    /// (reduction over `c`). A bf16 context converts both (an fp32 input once per call: one
    /// pass over it, next to `taps * cout` multiply-adds per input value); pairs are an error
    /// in an fp32 context (`op` names the operation).
    fn new(
        ctx: &Ctx,
        op: &'static str,
        x: Source<'a>,
        c: usize,
        packed: AlignedBuf,
    ) -> Result<Operands<'a>> {
        Ok(match (ctx.bf16_kernel(), x) {
            (None, Source::F32(x)) => Operands::F32 {
                isa: ctx.isa(),
                x,
                w: packed,
                cin: c,
            },
            (None, Source::Pairs(_)) => return Err(bf16::needs_bf16_context(op)),
            (Some(kernel), x) => Operands::Bf16 {
                kernel,
                x: match x {
                    Source::F32(x) => PairsIn::Converted(bf16::to_pairs(kernel, x, c)),
                    Source::Pairs(w) => PairsIn::Given(w),
                },
                w: bf16::pack_pairs(packed.as_slice(), c),
                cin: bf16::pairs(c),
            },
        })
    }

    /// Units per voxel of the input, and per tap of the weights: channels, or channel pairs.
    fn cin(&self) -> usize {
        match self {
            Operands::F32 { cin, .. } | Operands::Bf16 { cin, .. } => *cin,
        }
    }

    /// Runs one kernel call (see [`forward::run`]).
    fn run(&self, p: &Pass, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
        match self {
            Operands::F32 { isa, x, w, cin } => {
                let tile = Tile {
                    x,
                    w: w.as_slice(),
                    taps: p.taps,
                    x_vstride: p.x_vstride,
                    cin: *cin,
                    init: p.init,
                    accumulate: p.accumulate,
                };
                forward::run(*isa, &tile, nv, out, out_vstride, nco);
            }
            Operands::Bf16 { kernel, x, w, cin } => {
                let tile = Tile {
                    x: x.as_slice(),
                    w: w.as_slice(),
                    taps: p.taps,
                    x_vstride: p.x_vstride,
                    cin: *cin,
                    init: p.init,
                    accumulate: p.accumulate,
                };
                forward::run_bf16(*kernel, &tile, nv, out, out_vstride, nco);
            }
        }
    }
}

/// Convolution weights in `[kd][kh][kw][ci][co]` layout (see the module doc for PyTorch's).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv3dWeight {
    kernel: [usize; 3],
    cin: usize,
    cout: usize,
    data: Vec<f32>,
}

impl Conv3dWeight {
    /// Zero weights.
    pub fn zeros(kernel: [usize; 3], cin: usize, cout: usize) -> Result<Conv3dWeight> {
        let len = weight_len(kernel, cin, cout)?;
        Ok(Conv3dWeight {
            kernel,
            cin,
            cout,
            data: vec![0.0; len],
        })
    }

    /// Wraps a buffer in this type's `[kd][kh][kw][ci][co]` layout.
    pub fn from_dhwio(
        kernel: [usize; 3],
        cin: usize,
        cout: usize,
        data: Vec<f32>,
    ) -> Result<Conv3dWeight> {
        let len = weight_len(kernel, cin, cout)?;
        if data.len() != len {
            return Err(EngineError::DataLength {
                what: "conv3d weight",
                shape: weight_shape_text(kernel, cin, cout),
                expected: len,
                len: data.len(),
            });
        }
        Ok(Conv3dWeight {
            kernel,
            cin,
            cout,
            data,
        })
    }

    /// Converts PyTorch's `[co][ci][kd][kh][kw]` buffer.
    pub fn from_torch(
        kernel: [usize; 3],
        cin: usize,
        cout: usize,
        torch: &[f32],
    ) -> Result<Conv3dWeight> {
        let mut w = Conv3dWeight::zeros(kernel, cin, cout)?;
        if torch.len() != w.data.len() {
            return Err(EngineError::DataLength {
                what: "conv3d weight (PyTorch layout)",
                shape: format!(
                    "[{cout}, {cin}, {}, {}, {}]",
                    kernel[0], kernel[1], kernel[2]
                ),
                expected: w.data.len(),
                len: torch.len(),
            });
        }
        let taps = kernel.iter().product::<usize>();
        for o in 0..cout {
            for i in 0..cin {
                for t in 0..taps {
                    w.data[(t * cin + i) * cout + o] = torch[(o * cin + i) * taps + t];
                }
            }
        }
        Ok(w)
    }

    /// The weights in PyTorch's `[co][ci][kd][kh][kw]` layout.
    pub fn to_torch(&self) -> Vec<f32> {
        let taps = self.taps();
        let (cin, cout) = (self.cin, self.cout);
        let mut out = vec![0.0; self.data.len()];
        for o in 0..cout {
            for i in 0..cin {
                for t in 0..taps {
                    out[(o * cin + i) * taps + t] = self.data[(t * cin + i) * cout + o];
                }
            }
        }
        out
    }

    /// Kernel extent `[kd, kh, kw]`.
    pub fn kernel(&self) -> [usize; 3] {
        self.kernel
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Number of kernel taps.
    pub fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    /// The values, `[kd][kh][kw][ci][co]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, mutable (an optimiser updates them in place).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Packs for the forward kernels: `[co block][tap][ci][16]`, output channels zero-padded
    /// to `cpad`. Each block's weights are contiguous, so a tile walks them sequentially and
    /// they spread over every L1 set (a `[tap][ci][cpad]` layout with `cpad >= 32` strides
    /// by 128+ bytes and thrashes half the sets or more).
    fn pack(&self, cpad: usize) -> AlignedBuf {
        let (taps, cin, cout) = (self.taps(), self.cin, self.cout);
        let mut buf = AlignedBuf::zeros(taps * cin * cpad);
        let p = buf.as_mut_slice();
        for t in 0..taps {
            for i in 0..cin {
                for o in 0..cout {
                    p[packed_offset(o / BLOCK, t, taps, i, cin) + o % BLOCK] =
                        self.data[(t * cin + i) * cout + o];
                }
            }
        }
        buf
    }

    /// Splits along input channels into `[0, at)` and `[at, cin)` (the two halves of a
    /// convolution over a concat; see [`conv3d_forward_accumulate`]).
    pub fn split_input_channels(&self, at: usize) -> Result<(Conv3dWeight, Conv3dWeight)> {
        if at == 0 || at >= self.cin {
            return Err(EngineError::Shape {
                op: "split weight",
                detail: format!("cannot split {} input channels at {at}", self.cin),
            });
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for tap in self.data.chunks_exact(self.cin * self.cout) {
            a.extend_from_slice(&tap[..at * self.cout]);
            b.extend_from_slice(&tap[at * self.cout..]);
        }
        Ok((
            Conv3dWeight::from_dhwio(self.kernel, at, self.cout, a)?,
            Conv3dWeight::from_dhwio(self.kernel, self.cin - at, self.cout, b)?,
        ))
    }

    /// Joins two weights along input channels (inverse of
    /// [`Conv3dWeight::split_input_channels`], e.g. for the two halves' gradients).
    pub fn concat_input_channels(a: &Conv3dWeight, b: &Conv3dWeight) -> Result<Conv3dWeight> {
        if a.kernel != b.kernel || a.cout != b.cout {
            return Err(EngineError::Shape {
                op: "concat weights",
                detail: format!(
                    "kernels {:?}/{:?}, output channels {}/{}",
                    a.kernel, b.kernel, a.cout, b.cout
                ),
            });
        }
        let mut data = Vec::with_capacity(a.data.len() + b.data.len());
        for (ta, tb) in a
            .data
            .chunks_exact(a.cin * a.cout)
            .zip(b.data.chunks_exact(b.cin * b.cout))
        {
            data.extend_from_slice(ta);
            data.extend_from_slice(tb);
        }
        Conv3dWeight::from_dhwio(a.kernel, a.cin + b.cin, a.cout, data)
    }

    /// Copies a `[tap][ci][co]` buffer whose output channels are padded to `cpad` into `self`.
    fn unpack_from(&mut self, padded: &[f32], cpad: usize) {
        for (dst, src) in self
            .data
            .chunks_exact_mut(self.cout)
            .zip(padded.chunks_exact(cpad))
        {
            dst.copy_from_slice(&src[..self.cout]);
        }
    }

    /// Packs the transpose for the input-gradient kernels: `[ci block][tap][co][16]`, input
    /// channels zero-padded to `cpad`.
    fn pack_transposed(&self, cpad: usize) -> AlignedBuf {
        let (taps, cin, cout) = (self.taps(), self.cin, self.cout);
        let mut buf = AlignedBuf::zeros(taps * cout * cpad);
        let p = buf.as_mut_slice();
        for t in 0..taps {
            for i in 0..cin {
                for o in 0..cout {
                    p[packed_offset(i / BLOCK, t, taps, o, cout) + i % BLOCK] =
                        self.data[(t * cin + i) * cout + o];
                }
            }
        }
        buf
    }
}

/// Offset of `(block, tap, k)` in a packed `[block][tap][k][16]` weight buffer with `nk`
/// reduction channels (the kernels step `k` by 16).
fn packed_offset(block: usize, tap: usize, taps: usize, k: usize, nk: usize) -> usize {
    ((block * taps + tap) * nk + k) * BLOCK
}

fn weight_shape_text(kernel: [usize; 3], cin: usize, cout: usize) -> String {
    format!(
        "[{}, {}, {}, {cin}, {cout}]",
        kernel[0], kernel[1], kernel[2]
    )
}

fn weight_len(kernel: [usize; 3], cin: usize, cout: usize) -> Result<usize> {
    [kernel[0], kernel[1], kernel[2], cin, cout]
        .iter()
        .try_fold(1usize, |a, &x| a.checked_mul(x))
        .filter(|&l| l > 0)
        .ok_or_else(|| EngineError::Shape {
            op: "conv3d weight",
            detail: format!(
                "shape {} is empty or overflows",
                weight_shape_text(kernel, cin, cout)
            ),
        })
}

/// Gradients of a convolution's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv3dGrads {
    /// Gradient with respect to the weights, same layout as [`Conv3dWeight`].
    pub weight: Conv3dWeight,
    /// Gradient with respect to the bias, one value per output channel.
    pub bias: Vec<f32>,
}

fn check_weight(w: &Conv3dWeight, spec: &Conv3dSpec, cin: usize) -> Result<()> {
    spec.validate()?;
    if w.kernel != spec.kernel {
        return Err(EngineError::Shape {
            op: "conv3d",
            detail: format!(
                "weight kernel {:?} differs from spec kernel {:?}",
                w.kernel, spec.kernel
            ),
        });
    }
    if w.cin != cin {
        return Err(EngineError::Shape {
            op: "conv3d",
            detail: format!("input has {cin} channels, weight expects {}", w.cin),
        });
    }
    Ok(())
}

/// The output voxels `[lo, hi)` along w whose every kernel column reads inside the input
/// (`lo <= hi <= out_w`); the rest touch the zero padding.
fn interior(in_w: usize, out_w: usize, k: usize, s: usize, p: usize) -> (usize, usize) {
    let lo = p.div_ceil(s);
    let hi = if in_w + p >= k {
        ((in_w + p - k) / s + 1).min(out_w)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Forward convolution: `y = conv(x, w) + bias`, zero padding, output shape from
/// [`Conv3dSpec::output_shape`].
pub fn conv3d_forward(
    ctx: &Ctx,
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
) -> Result<Tensor> {
    let mut y = Tensor::zeros(spec.output_shape(x.shape(), w.cout)?)?;
    conv3d_forward_into(ctx, x, w, bias, spec, &mut y)?;
    Ok(y)
}

/// [`conv3d_forward`] into an existing tensor of the output's shape (every element is
/// overwritten), so that a network can reuse its activation buffers instead of paying for a
/// fresh allocation and its page faults on every layer.
pub fn conv3d_forward_into<'a>(
    ctx: &Ctx,
    x: impl Into<ConvInput<'a>>,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    y: &mut Tensor,
) -> Result<()> {
    forward_impl(ctx, x.into(), w, bias, spec, y, false)
}

/// `y += conv(x, w) + bias`: adds a convolution into an existing output. A convolution over a
/// channel concat `[a, b]` equals the convolution of `a` with the weights' first input
/// channels plus that of `b` with the rest ([`Conv3dWeight::split_input_channels`]), so a
/// U-Net decoder can skip materialising the concat.
pub fn conv3d_forward_accumulate<'a>(
    ctx: &Ctx,
    x: impl Into<ConvInput<'a>>,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    y: &mut Tensor,
) -> Result<()> {
    forward_impl(ctx, x.into(), w, bias, spec, y, true)
}

/// The forward driver: overwrites `y`, or adds into it when `accumulate`.
fn forward_impl(
    ctx: &Ctx,
    x: ConvInput,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    y: &mut Tensor,
    accumulate: bool,
) -> Result<()> {
    let xs = x.shape();
    check_weight(w, spec, xs.c)?;
    let cout = w.cout;
    if let Some(b) = bias
        && b.len() != cout
    {
        return Err(EngineError::Shape {
            op: "conv3d",
            detail: format!("bias has {} values for {cout} output channels", b.len()),
        });
    }
    let ys = spec.output_shape(xs, cout)?;
    if y.shape() != ys {
        return Err(EngineError::Shape {
            op: "conv3d",
            detail: format!("output tensor has shape {}, expected {ys}", y.shape()),
        });
    }
    if ys.is_empty() || xs.is_empty() {
        if !accumulate {
            y.data_mut().fill(0.0);
        }
        return Ok(());
    }
    let cpad = round_up(cout, BLOCK);
    let ops = Operands::new(ctx, "conv3d", x.source(), xs.c, w.pack(cpad))?;
    // Input and weight offsets count channels, or bf16 channel pairs.
    let ck = ops.cin();
    let xk = xs.with_channels(ck);
    let taps_total = spec.taps();
    let mut inits = vec![[0.0f32; BLOCK]; cpad / BLOCK];
    if let Some(b) = bias {
        for (i, &v) in b.iter().enumerate() {
            inits[i / BLOCK][i % BLOCK] = v;
        }
    }
    let [kd, kh, kw] = spec.kernel;
    let [sd, sh, sw] = spec.stride;
    let [pd, ph, pw] = spec.padding;
    let (lo, hi) = interior(xs.w, ys.w, kw, sw, pw);

    let compute_row =
        |planes: &mut Vec<(usize, usize)>, taps: &mut Vec<Tap>, r: usize, row: &mut [f32]| {
            let oh = r % ys.h;
            let od = (r / ys.h) % ys.d;
            let n = r / (ys.h * ys.d);
            // The (kd, kh) kernel planes that read a real input row: (first tap, row start).
            planes.clear();
            for a in 0..kd {
                let Some(id) = (od * sd + a).checked_sub(pd).filter(|&i| i < xs.d) else {
                    continue;
                };
                for b in 0..kh {
                    let Some(ih) = (oh * sh + b).checked_sub(ph).filter(|&i| i < xs.h) else {
                        continue;
                    };
                    planes.push(((a * kh + b) * kw, xk.index(n, id, ih, 0, 0)));
                }
            }
            for (blk, init) in inits.iter().enumerate() {
                let co0 = blk * BLOCK;
                let nco = (cout - co0).min(BLOCK);
                // Interior voxels: every kernel column valid, one call for the whole run.
                if hi > lo {
                    taps.clear();
                    for &(t0, xrow) in planes.iter() {
                        for c in 0..kw {
                            taps.push(Tap {
                                x: xrow + (lo * sw + c - pw) * ck,
                                w: packed_offset(blk, t0 + c, taps_total, 0, ck),
                            });
                        }
                    }
                    let pass = Pass {
                        taps,
                        x_vstride: sw * ck,
                        init,
                        accumulate,
                    };
                    ops.run(&pass, hi - lo, &mut row[lo * cout + co0..], cout, nco);
                }
                // Border voxels: only the kernel columns that land inside the input.
                for ow in (0..lo).chain(hi..ys.w) {
                    taps.clear();
                    for &(t0, xrow) in planes.iter() {
                        for c in 0..kw {
                            if let Some(iw) = (ow * sw + c).checked_sub(pw).filter(|&i| i < xs.w) {
                                taps.push(Tap {
                                    x: xrow + iw * ck,
                                    w: packed_offset(blk, t0 + c, taps_total, 0, ck),
                                });
                            }
                        }
                    }
                    let pass = Pass {
                        taps,
                        x_vstride: 0,
                        init,
                        accumulate,
                    };
                    ops.run(&pass, 1, &mut row[ow * cout + co0..], cout, nco);
                }
            }
        };
    y.data_mut()
        .par_chunks_mut(ys.row_len())
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(planes, taps), (r, row)| compute_row(planes, taps, r, row),
        );
    Ok(())
}

/// Per-task scratch of the input-gradient driver: kernel planes (first tap, gradient row), kernel
/// columns of one residue class (column, output offset), and the tap list.
type Scratch = (Vec<(usize, usize)>, Vec<(usize, isize)>, Vec<Tap>);

/// Gradient of the loss with respect to the convolution's input, given the gradient `gy` with
/// respect to its output. `input` is the forward input's shape (with stride 2 several input
/// sizes give the same output size, so it cannot be inferred).
pub fn conv3d_backward_data(
    ctx: &Ctx,
    gy: &Tensor,
    w: &Conv3dWeight,
    spec: &Conv3dSpec,
    input: Shape5,
) -> Result<Tensor> {
    let mut gx = Tensor::zeros(input)?;
    conv3d_backward_data_into(ctx, gy, w, spec, &mut gx)?;
    Ok(gx)
}

/// [`conv3d_backward_data`] into an existing tensor of the forward input's shape (every
/// element is overwritten).
pub fn conv3d_backward_data_into(
    ctx: &Ctx,
    gy: &Tensor,
    w: &Conv3dWeight,
    spec: &Conv3dSpec,
    gx: &mut Tensor,
) -> Result<()> {
    let input = gx.shape();
    check_weight(w, spec, input.c)?;
    let gs = gy.shape();
    let expect = spec.output_shape(input, w.cout)?;
    if expect != gs {
        return Err(EngineError::Shape {
            op: "conv3d backward (input)",
            detail: format!("output gradient has shape {gs}, forward output was {expect}"),
        });
    }
    if gs.is_empty() || input.is_empty() {
        gx.data_mut().fill(0.0);
        return Ok(());
    }
    let (cin, cout) = (input.c, w.cout);
    let cpad = round_up(cin, BLOCK);
    let ops = Operands::new(
        ctx,
        "conv3d backward",
        Source::F32(gy.data()),
        cout,
        w.pack_transposed(cpad),
    )?;
    // Gradient and weight offsets count output channels, or bf16 pairs of them.
    let ck = ops.cin();
    let gk = gs.with_channels(ck);
    let taps_total = spec.taps();
    let zero = [0.0f32; BLOCK];
    let [kd, kh, kw] = spec.kernel;
    let [sd, sh, sw] = spec.stride;
    let [pd, ph, pw] = spec.padding;

    // Output position along one axis that input position `i` meets through kernel index `k`:
    // `o * s + k - p = i`, if such an integer `o` exists inside `0..n_out`.
    fn source(i: usize, k: usize, s: usize, p: usize, n_out: usize) -> Option<usize> {
        let t = (i + p).checked_sub(k)?;
        (t % s == 0 && t / s < n_out).then_some(t / s)
    }

    gx.data_mut()
        .par_chunks_mut(input.row_len())
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(planes, cols, taps): &mut Scratch, (r, row)| {
                let ih = r % input.h;
                let id = (r / input.h) % input.d;
                let n = r / (input.h * input.d);
                planes.clear();
                for a in 0..kd {
                    let Some(od) = source(id, a, sd, pd, gs.d) else {
                        continue;
                    };
                    for b in 0..kh {
                        let Some(oh) = source(ih, b, sh, ph, gs.h) else {
                            continue;
                        };
                        planes.push(((a * kh + b) * kw, gk.index(n, od, oh, 0, 0)));
                    }
                }
                // Input columns iw = res + sw * j of one residue class meet the same kernel
                // columns c, at output column ow = j + q_c: consecutive, so one kernel call
                // covers a run of them.
                for res in 0..sw.min(input.w) {
                    let nj = (input.w - res).div_ceil(sw);
                    cols.clear();
                    for c in 0..kw {
                        let t = (res + pw) as isize - c as isize;
                        if t.rem_euclid(sw as isize) == 0 {
                            cols.push((c, t.div_euclid(sw as isize)));
                        }
                    }
                    let ow_max = gs.w as isize;
                    let lo = cols.iter().map(|&(_, q)| (-q).max(0)).max().unwrap_or(0);
                    let hi = cols
                        .iter()
                        .map(|&(_, q)| ow_max - q)
                        .min()
                        .unwrap_or(nj as isize)
                        .clamp(0, nj as isize);
                    let lo = lo.min(hi) as usize;
                    let hi = hi as usize;
                    for blk in 0..cpad / BLOCK {
                        let ci0 = blk * BLOCK;
                        let nco = (cin - ci0).min(BLOCK);
                        let mut call = |j0: usize, nv: usize, all: bool, taps: &mut Vec<Tap>| {
                            taps.clear();
                            for &(t0, grow) in planes.iter() {
                                for &(c, q) in cols.iter() {
                                    let ow = j0 as isize + q;
                                    if all || (0..ow_max).contains(&ow) {
                                        taps.push(Tap {
                                            x: grow + ow as usize * ck,
                                            w: packed_offset(blk, t0 + c, taps_total, 0, ck),
                                        });
                                    }
                                }
                            }
                            let pass = Pass {
                                taps,
                                x_vstride: ck,
                                init: &zero,
                                accumulate: false,
                            };
                            let start = (res + sw * j0) * cin + ci0;
                            ops.run(&pass, nv, &mut row[start..], sw * cin, nco);
                        };
                        if hi > lo {
                            call(lo, hi - lo, true, taps);
                        }
                        for j in (0..lo).chain(hi..nj) {
                            call(j, 1, false, taps);
                        }
                    }
                }
            },
        );
    Ok(())
}

/// Sums contributions to a padded weight gradient (`plen` values) and a bias gradient (`cout`
/// values) over `rows` rows of `row_work` multiply-adds each. Rows are split into chunks fixed
/// by the shapes alone (not the thread count: at most 64 chunks, ~64 MiB of partial sums, and
/// enough work per chunk to pay for its partial); `per_chunk_fn` sums one
/// chunk's rows into fresh buffers, and the chunks are added in order, so the result is
/// reproducible.
fn reduce_rows<F>(
    rows: usize,
    row_work: usize,
    plen: usize,
    cout: usize,
    per_chunk_fn: F,
) -> (Vec<f32>, Vec<f32>)
where
    F: Fn(std::ops::Range<usize>, &mut [f32], &mut [f32]) + Sync,
{
    // Each chunk costs a zeroed partial of `plen` values and its share of the final sum, so a
    // chunk must do at least ~1024 multiply-adds per partial value to keep that overhead near
    // 1%; wide, short layers get fewer chunks.
    let by_work = (rows.saturating_mul(row_work) / (1024 * plen.max(1))).max(1);
    let max_chunks = ((64usize << 20) / 4 / plen.max(1))
        .clamp(1, 64)
        .min(by_work);
    let per_chunk = rows.div_ceil(rows.clamp(1, max_chunks)).max(1);
    let nchunks = rows.div_ceil(per_chunk);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..nchunks)
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![0.0f32; plen];
            let mut bacc = vec![0.0f32; cout];
            per_chunk_fn(
                k * per_chunk..((k + 1) * per_chunk).min(rows),
                &mut acc,
                &mut bacc,
            );
            (acc, bacc)
        })
        .collect();
    let mut total = vec![0.0f32; plen];
    total.par_chunks_mut(4096).enumerate().for_each(|(i, dst)| {
        for (p, _) in &partials {
            for (d, s) in dst.iter_mut().zip(&p[i * 4096..]) {
                *d += s;
            }
        }
    });
    let mut bias = vec![0.0f32; cout];
    for (_, b) in &partials {
        for (d, s) in bias.iter_mut().zip(b) {
            *d += s;
        }
    }
    (total, bias)
}

/// Gradients of the loss with respect to the weights and the bias, given the forward input `x`
/// and the gradient `gy` with respect to the output.
pub fn conv3d_backward_weight(
    ctx: &Ctx,
    x: &Tensor,
    gy: &Tensor,
    spec: &Conv3dSpec,
) -> Result<Conv3dGrads> {
    spec.validate()?;
    let xs = x.shape();
    let gs = gy.shape();
    let expect = spec.output_shape(xs, gs.c)?;
    if expect != gs {
        return Err(EngineError::Shape {
            op: "conv3d backward (weight)",
            detail: format!("output gradient has shape {gs}, forward output was {expect}"),
        });
    }
    let (cin, cout) = (xs.c, gs.c);
    let mut weight = Conv3dWeight::zeros(spec.kernel, cin, cout)?;
    let mut bias = vec![0.0f32; cout];
    if gs.is_empty() || xs.is_empty() {
        return Ok(Conv3dGrads { weight, bias });
    }
    let cpad = round_up(cout, BLOCK);
    let plen = spec.taps() * cin * cpad;
    let [kd, kh, kw] = spec.kernel;
    let [sd, sh, sw] = spec.stride;
    let [pd, ph, pw] = spec.padding;
    let gd = gy.data();
    let wops = backward_weight::WOperands::new(
        ctx,
        x.data(),
        sw * cin,
        gd,
        cout,
        backward_weight::BlockOwns::Gradient,
    );
    let row_work = gs.w * spec.taps() * cin * cout;
    let (total, bsum) = reduce_rows(gs.rows(), row_work, plen, cout, |rows, acc, bacc| {
        let mut segs: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
        let mut scratch = Vec::new();
        for r in rows.clone() {
            let grow = r * gs.row_len();
            for v in gd[grow..grow + gs.row_len()].chunks_exact(cout) {
                for (b, &g) in bacc.iter_mut().zip(v) {
                    *b += g;
                }
            }
        }
        // Per tap, one kernel call over every row of a cache-sized block that the tap
        // reaches: the accumulators stay in registers across rows, the rows stay in L2.
        for rows in sub_blocks(rows, gs.row_len()) {
            // The block's gradient rows; its offsets below are from their start.
            let base = rows.start * gs.row_len();
            let block = wops.block(base..rows.end * gs.row_len(), &mut scratch);
            for a in 0..kd {
                for b in 0..kh {
                    for c in 0..kw {
                        // Output columns whose input column ow * sw + c - pw is inside.
                        let lo = pw.saturating_sub(c).div_ceil(sw);
                        let hi = if xs.w + pw > c {
                            ((xs.w - 1 + pw - c) / sw + 1).min(gs.w)
                        } else {
                            0
                        };
                        if hi <= lo {
                            continue;
                        }
                        segs.clear();
                        for r in rows.clone() {
                            let (oh, od, n) = (r % gs.h, (r / gs.h) % gs.d, r / (gs.h * gs.d));
                            let id = (od * sd + a).checked_sub(pd).filter(|&i| i < xs.d);
                            let ih = (oh * sh + b).checked_sub(ph).filter(|&i| i < xs.h);
                            if let (Some(id), Some(ih)) = (id, ih) {
                                segs.push((
                                    xs.index(n, id, ih, lo * sw + c - pw, 0),
                                    gs.index(n, od, oh, lo, 0) - base,
                                ));
                            }
                        }
                        let tap = (a * kh + b) * kw + c;
                        for co0 in (0..cout).step_by(2 * BLOCK) {
                            let t = backward_weight::WShape {
                                x_vstride: sw * cin,
                                g_vstride: cout,
                                segs: &segs,
                                g_shift: co0,
                                nv: hi - lo,
                                nci: cin,
                                nco: (cout - co0).min(2 * BLOCK),
                            };
                            block.run(&t, &mut acc[tap * cin * cpad + co0..], cpad);
                        }
                    }
                }
            }
        }
    });
    weight.unpack_from(&total, cpad);
    bias.copy_from_slice(&bsum);
    Ok(Conv3dGrads { weight, bias })
}

/// Splits a chunk's rows into blocks of about 256 KiB of `row_len`-float rows, so that one
/// block's input and gradient rows stay in L2 while every tap sweeps them.
pub(crate) fn sub_blocks(
    rows: std::ops::Range<usize>,
    row_len: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let per = ((256usize << 10) / (4 * row_len.max(1))).max(1);
    let end = rows.end;
    rows.step_by(per).map(move |r| r..(r + per).min(end))
}
