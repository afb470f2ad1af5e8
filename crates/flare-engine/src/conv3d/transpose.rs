//! Transposed 3D convolution with stride equal to the kernel (non-overlapping, the U-Net's
//! learned upsampling, e.g. 2x2x2 stride 2): forward and backward.
//!
//! Output voxel `(i * k + t)` along each axis is `sum_ci x[i][ci] * w[t][ci][co] + bias`: every
//! output sees exactly one input voxel through one tap, so each pass is one of the convolution
//! kernels with strided offsets, and no output is summed from overlapping contributions.
//!
//! Weights use [`Conv3dWeight`]'s `[kd][kh][kw][ci][co]` layout. PyTorch's
//! `ConvTranspose3d.weight` is `[ci][co][kd][kh][kw]`; convert with
//! [`Conv3dWeight::from_torch_transposed`] and [`Conv3dWeight::to_torch_transposed`].

use rayon::prelude::*;

use super::{
    BLOCK, Conv3dGrads, Conv3dWeight, ConvInput, Operands, Pass, Source, Tap, backward_weight,
    packed_offset, reduce_rows, sub_blocks,
};
use crate::{Ctx, EngineError, Result, Shape5, Tensor, shape::round_up};

impl Conv3dWeight {
    /// Converts PyTorch's `ConvTranspose3d` weight buffer, `[ci][co][kd][kh][kw]`.
    pub fn from_torch_transposed(
        kernel: [usize; 3],
        cin: usize,
        cout: usize,
        torch: &[f32],
    ) -> Result<Conv3dWeight> {
        let mut w = Conv3dWeight::zeros(kernel, cin, cout)?;
        if torch.len() != w.data.len() {
            return Err(EngineError::DataLength {
                what: "conv-transpose3d weight (PyTorch layout)",
                shape: format!(
                    "[{cin}, {cout}, {}, {}, {}]",
                    kernel[0], kernel[1], kernel[2]
                ),
                expected: w.data.len(),
                len: torch.len(),
            });
        }
        let taps = w.taps();
        for i in 0..cin {
            for o in 0..cout {
                for t in 0..taps {
                    w.data[(t * cin + i) * cout + o] = torch[(i * cout + o) * taps + t];
                }
            }
        }
        Ok(w)
    }

    /// The weights in PyTorch's `ConvTranspose3d` layout, `[ci][co][kd][kh][kw]`.
    pub fn to_torch_transposed(&self) -> Vec<f32> {
        let taps = self.taps();
        let (cin, cout) = (self.cin, self.cout);
        let mut out = vec![0.0; self.data.len()];
        for i in 0..cin {
            for o in 0..cout {
                for t in 0..taps {
                    out[(i * cout + o) * taps + t] = self.data[(t * cin + i) * cout + o];
                }
            }
        }
        out
    }
}

/// Output shape of a stride-equals-kernel transposed convolution.
pub fn conv_transpose3d_output_shape(input: Shape5, kernel: [usize; 3], cout: usize) -> Shape5 {
    Shape5::new(
        input.n,
        input.d * kernel[0],
        input.h * kernel[1],
        input.w * kernel[2],
        cout,
    )
}

fn check(w: &Conv3dWeight, cin: usize) -> Result<()> {
    if w.cin != cin {
        return Err(EngineError::Shape {
            op: "conv-transpose3d",
            detail: format!("input has {cin} channels, weight expects {}", w.cin),
        });
    }
    Ok(())
}

/// Forward transposed convolution, stride = kernel: `[n, d, h, w, cin] ->
/// [n, d*kd, h*kh, w*kw, cout]`.
pub fn conv_transpose3d_forward(
    ctx: &Ctx,
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
) -> Result<Tensor> {
    check(w, x.shape().c)?;
    let mut y = Tensor::zeros(conv_transpose3d_output_shape(x.shape(), w.kernel, w.cout))?;
    conv_transpose3d_forward_into(ctx, x, w, bias, &mut y)?;
    Ok(y)
}

/// [`conv_transpose3d_forward`] into an existing tensor of the output's shape (every element
/// is overwritten), so that a network can reuse a buffer instead of faulting in a fresh one.
pub fn conv_transpose3d_forward_into<'a>(
    ctx: &Ctx,
    x: impl Into<ConvInput<'a>>,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    y: &mut Tensor,
) -> Result<()> {
    let x = x.into();
    let xs = x.shape();
    check(w, xs.c)?;
    let (cin, cout) = (xs.c, w.cout);
    if let Some(b) = bias
        && b.len() != cout
    {
        return Err(EngineError::Shape {
            op: "conv-transpose3d",
            detail: format!("bias has {} values for {cout} output channels", b.len()),
        });
    }
    let [kd, kh, kw] = w.kernel;
    let ys = conv_transpose3d_output_shape(xs, w.kernel, cout);
    if y.shape() != ys {
        return Err(EngineError::Shape {
            op: "conv-transpose3d",
            detail: format!("output tensor has shape {}, expected {ys}", y.shape()),
        });
    }
    if ys.is_empty() {
        return Ok(());
    }
    let cpad = round_up(cout, BLOCK);
    let ops = Operands::new(ctx, "conv-transpose3d", x.source(), cin, w.pack(cpad))?;
    // Input and weight offsets count channels, or bf16 channel pairs.
    let ck = ops.cin();
    let xk = xs.with_channels(ck);
    let mut inits = vec![[0.0f32; BLOCK]; cpad / BLOCK];
    if let Some(b) = bias {
        for (i, &v) in b.iter().enumerate() {
            inits[i / BLOCK][i % BLOCK] = v;
        }
    }
    y.data_mut()
        .par_chunks_mut(ys.row_len())
        .enumerate()
        .for_each(|(r, row)| {
            let oh = r % ys.h;
            let od = (r / ys.h) % ys.d;
            let n = r / (ys.h * ys.d);
            let xrow = xk.index(n, od / kd, oh / kh, 0, 0);
            let t0 = ((od % kd) * kh + oh % kh) * kw;
            for c in 0..kw {
                for (blk, init) in inits.iter().enumerate() {
                    let co0 = blk * BLOCK;
                    let taps = [Tap {
                        x: xrow,
                        w: packed_offset(blk, t0 + c, w.taps(), 0, ck),
                    }];
                    let pass = Pass {
                        taps: &taps,
                        x_vstride: ck,
                        init,
                        accumulate: false,
                    };
                    let nco = (cout - co0).min(BLOCK);
                    ops.run(&pass, xs.w, &mut row[c * cout + co0..], kw * cout, nco);
                }
            }
        });
    Ok(())
}

/// Gradient with respect to the input of [`conv_transpose3d_forward`].
pub fn conv_transpose3d_backward_data(
    ctx: &Ctx,
    gy: &Tensor,
    w: &Conv3dWeight,
    input: Shape5,
) -> Result<Tensor> {
    check(w, input.c)?;
    let gs = gy.shape();
    let expect = conv_transpose3d_output_shape(input, w.kernel, w.cout);
    if gs != expect {
        return Err(EngineError::Shape {
            op: "conv-transpose3d backward (input)",
            detail: format!("output gradient has shape {gs}, forward output was {expect}"),
        });
    }
    let mut gx = Tensor::zeros(input)?;
    if gs.is_empty() {
        return Ok(gx);
    }
    let (cin, cout) = (input.c, w.cout);
    let [kd, kh, kw] = w.kernel;
    let cpad = round_up(cin, BLOCK);
    let ops = Operands::new(
        ctx,
        "conv-transpose3d backward",
        Source::F32(gy.data()),
        cout,
        w.pack_transposed(cpad),
    )?;
    // Gradient and weight offsets count output channels, or bf16 pairs of them.
    let ck = ops.cin();
    let gk = gs.with_channels(ck);
    let zero = [0.0f32; BLOCK];
    gx.data_mut()
        .par_chunks_mut(input.row_len())
        .enumerate()
        .for_each_init(Vec::new, |taps: &mut Vec<Tap>, (r, row)| {
            let ih = r % input.h;
            let id = (r / input.h) % input.d;
            let n = r / (input.h * input.d);
            for ci0 in (0..cin).step_by(BLOCK) {
                taps.clear();
                for a in 0..kd {
                    for b in 0..kh {
                        for c in 0..kw {
                            taps.push(Tap {
                                x: gk.index(n, id * kd + a, ih * kh + b, c, 0),
                                w: packed_offset(
                                    ci0 / BLOCK,
                                    (a * kh + b) * kw + c,
                                    w.taps(),
                                    0,
                                    ck,
                                ),
                            });
                        }
                    }
                }
                let pass = Pass {
                    taps,
                    x_vstride: kw * ck,
                    init: &zero,
                    accumulate: false,
                };
                let nco = (cin - ci0).min(BLOCK);
                ops.run(&pass, input.w, &mut row[ci0..], cin, nco);
            }
        });
    Ok(gx)
}

/// Gradients with respect to the weights and bias of [`conv_transpose3d_forward`], from its
/// input `x` and output gradient `gy`; `kernel` is the forward kernel (= stride).
pub fn conv_transpose3d_backward_weight(
    ctx: &Ctx,
    x: &Tensor,
    gy: &Tensor,
    kernel: [usize; 3],
) -> Result<Conv3dGrads> {
    let xs = x.shape();
    let gs = gy.shape();
    let cout = gs.c;
    let expect = conv_transpose3d_output_shape(xs, kernel, cout);
    if gs != expect {
        return Err(EngineError::Shape {
            op: "conv-transpose3d backward (weight)",
            detail: format!("output gradient has shape {gs}, forward output was {expect}"),
        });
    }
    let cin = xs.c;
    let mut weight = Conv3dWeight::zeros(kernel, cin, cout)?;
    let mut bias = vec![0.0f32; cout];
    if xs.is_empty() {
        return Ok(Conv3dGrads { weight, bias });
    }
    let [kd, kh, kw] = kernel;
    let cpad = round_up(cout, BLOCK);
    let plen = weight.taps() * cin * cpad;
    let gd = gy.data();
    let wops = backward_weight::WOperands::new(
        ctx,
        x.data(),
        cin,
        gd,
        kw * cout,
        backward_weight::BlockOwns::Input,
    );
    // Chunks of input rows; each input row meets kd * kh output rows, each through kw
    // interleaved taps.
    let row_work = xs.w * weight.taps() * cin * cout;
    let (total, bsum) = reduce_rows(xs.rows(), row_work, plen, cout, |rows, acc, bacc| {
        let mut segs: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
        let mut scratch = Vec::new();
        for rows in sub_blocks(rows, gs.row_len() * kd * kh) {
            // The block's input rows; its offsets below are from their start.
            let base = rows.start * xs.row_len();
            let block = wops.block(base..rows.end * xs.row_len(), &mut scratch);
            for a in 0..kd {
                for b in 0..kh {
                    // The output rows this tap plane reaches from the block's input rows.
                    segs.clear();
                    for r in rows.clone() {
                        let (ih, id, n) = (r % xs.h, (r / xs.h) % xs.d, r / (xs.h * xs.d));
                        let grow = gs.index(n, id * kd + a, ih * kh + b, 0, 0);
                        for v in gd[grow..grow + gs.row_len()].chunks_exact(cout) {
                            for (s, &g) in bacc.iter_mut().zip(v) {
                                *s += g;
                            }
                        }
                        segs.push((xs.index(n, id, ih, 0, 0) - base, grow));
                    }
                    for c in 0..kw {
                        let tap = (a * kh + b) * kw + c;
                        for co0 in (0..cout).step_by(2 * BLOCK) {
                            let t = backward_weight::WShape {
                                x_vstride: cin,
                                g_vstride: kw * cout,
                                segs: &segs,
                                g_shift: c * cout + co0,
                                nv: xs.w,
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
