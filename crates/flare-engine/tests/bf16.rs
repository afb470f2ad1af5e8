//! bf16 convolutions (issue 11), forward, input gradient and weight gradient, plain and
//! transposed: every bf16 kernel against an independent oracle written here
//! from the definition (operands rounded with `bf16_round`, products summed in f64), the native
//! kernel against the portable reference, and bf16 against fp32 whole layers.
//!
//! Tolerances:
//! - kernel vs oracle: `|y - oracle| <= n * 2^-24 * S + 1e-30`, where `S` is the sum of the
//!   absolute values of the output's `n` terms (bias included): the classical bound on fp32
//!   recursive summation of exact terms (bf16 x bf16 products are exact in fp32). A wrong
//!   operand, channel or tap moves an output by about one term, far beyond it.
//! - native vs reference: equal bit for bit. Both sum each output in the same order (taps,
//!   channel pairs, odd then even channel, as `vdpbf16ps` does) and the random data here has no
//!   denormal products, the only place the instruction (flush to zero) and fp32 arithmetic part.
//! - bf16 vs fp32 of a whole layer: relative L2 error between 1e-4 and 1e-2. Each operand
//!   carries a relative rounding error up to 2^-8 (about 2^-8 / sqrt(3) = 0.0023 rms), a product
//!   about 0.0032 rms; over many random-signed terms the relative L2 lands near that. The lower
//!   bound proves the bf16 path ran (fp32 paths agree to 1e-6).
//!
//! The native kernel's checks skip, printing why, on a CPU without avx512_bf16.

mod common;

use common::{Rng, rel_l2};
use flare_engine::{
    Bf16Kernel, Bf16Tensor, Conv3dSpec, Conv3dWeight, Ctx, NormAct, Precision, Shape5, Tensor,
    bf16_round, bf16_to_f32, conv_transpose3d_backward_data, conv_transpose3d_backward_weight,
    conv_transpose3d_forward, conv_transpose3d_forward_into, conv_transpose3d_output_shape,
    conv3d_backward_data, conv3d_backward_weight, conv3d_forward, conv3d_forward_accumulate,
    conv3d_forward_into, f32_to_bf16, instance_norm_act_inplace, instance_norm_act_to_bf16,
};

/// The bf16 contexts this CPU can run: the reference always, the native kernel where present.
fn bf16_ctxs() -> Vec<Ctx> {
    let mut v = vec![Ctx::new().with_bf16_kernel(Bf16Kernel::Reference).unwrap()];
    match Bf16Kernel::native() {
        Some(k) => v.push(Ctx::new().with_bf16_kernel(k).unwrap()),
        None => eprintln!(
            "native bf16 kernel skipped: this CPU lacks avx512_bf16 (checked only the portable reference)"
        ),
    }
    v
}

fn rounded(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| bf16_round(x) as f64).collect()
}

/// Oracle outputs and their term magnitudes (`sum |term|`, `term count`) per output element.
struct Oracle {
    y: Vec<f64>,
    abs: Vec<f64>,
    terms: Vec<usize>,
}

impl Oracle {
    fn zeros(n: usize) -> Oracle {
        Oracle {
            y: vec![0.0; n],
            abs: vec![0.0; n],
            terms: vec![0; n],
        }
    }

    fn add(&mut self, i: usize, t: f64) {
        self.y[i] += t;
        self.abs[i] += t.abs();
        self.terms[i] += 1;
    }

    /// Asserts `got` is within the summation bound of the module doc.
    fn check(&self, got: &[f32], tag: &str) {
        assert_eq!(got.len(), self.y.len(), "{tag}: length");
        for (i, &g) in got.iter().enumerate() {
            let tol = self.terms[i] as f64 * 2f64.powi(-24) * self.abs[i] + 1e-30;
            let err = (g as f64 - self.y[i]).abs();
            assert!(
                err <= tol,
                "{tag}: element {i}: got {g}, oracle {}, error {err:e} > {tol:e}",
                self.y[i]
            );
        }
    }
}

/// What an oracle computes: the forward output, or, from an output gradient, the input
/// gradient or the weight gradient.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    Forward,
    Data,
    Weight,
}

/// A convolution pass from the definition: every (output, tap, input channel, output channel)
/// term added to the output, scattered back to its input voxel, or summed into its weight.
fn oracle_conv(
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    gy: Option<&Tensor>,
) -> Oracle {
    let pass = if gy.is_some() {
        Pass::Data
    } else {
        Pass::Forward
    };
    oracle_conv_pass(x, w, bias, spec, gy, pass)
}

fn oracle_conv_pass(
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    gy: Option<&Tensor>,
    pass: Pass,
) -> Oracle {
    let xs = x.shape();
    let ys = spec.output_shape(xs, w.cout()).unwrap();
    let (xb, wb) = (rounded(x.data()), rounded(w.data()));
    let gb = gy.map(|g| rounded(g.data()));
    let [kd, kh, kw] = spec.kernel;
    let mut o = Oracle::zeros(match pass {
        Pass::Forward => ys.len(),
        Pass::Data => xs.len(),
        Pass::Weight => w.data().len(),
    });
    if let (Pass::Forward, Some(b)) = (pass, bias) {
        for i in 0..ys.len() {
            o.add(i, b[i % ys.c] as f64);
        }
    }
    for n in 0..ys.n {
        for od in 0..ys.d {
            for oh in 0..ys.h {
                for ow in 0..ys.w {
                    for a in 0..kd {
                        for b in 0..kh {
                            for c in 0..kw {
                                let id = (od * spec.stride[0] + a).checked_sub(spec.padding[0]);
                                let ih = (oh * spec.stride[1] + b).checked_sub(spec.padding[1]);
                                let iw = (ow * spec.stride[2] + c).checked_sub(spec.padding[2]);
                                let (Some(id), Some(ih), Some(iw)) = (id, ih, iw) else {
                                    continue;
                                };
                                if id >= xs.d || ih >= xs.h || iw >= xs.w {
                                    continue;
                                }
                                let t = (a * kh + b) * kw + c;
                                for ci in 0..xs.c {
                                    for co in 0..ys.c {
                                        let wi = (t * xs.c + ci) * ys.c + co;
                                        let yi = ys.index(n, od, oh, ow, co);
                                        let xi = xs.index(n, id, ih, iw, ci);
                                        match (&gb, pass) {
                                            (Some(g), Pass::Data) => o.add(xi, g[yi] * wb[wi]),
                                            (Some(g), Pass::Weight) => o.add(wi, g[yi] * xb[xi]),
                                            _ => o.add(yi, xb[xi] * wb[wi]),
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    o
}

/// Transposed convolution (stride = kernel) from the definition; with `gy`, its input gradient.
fn oracle_convt(x: &Tensor, w: &Conv3dWeight, bias: Option<&[f32]>, gy: Option<&Tensor>) -> Oracle {
    let pass = if gy.is_some() {
        Pass::Data
    } else {
        Pass::Forward
    };
    oracle_convt_pass(x, w, bias, gy, pass)
}

/// [`oracle_convt`] for any [`Pass`] (the weight gradient needs `gy`).
fn oracle_convt_pass(
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    gy: Option<&Tensor>,
    pass: Pass,
) -> Oracle {
    let xs = x.shape();
    let k = w.kernel();
    let cout = w.cout();
    let ys = Shape5::new(xs.n, xs.d * k[0], xs.h * k[1], xs.w * k[2], cout);
    let (xb, wb) = (rounded(x.data()), rounded(w.data()));
    let gb = gy.map(|g| rounded(g.data()));
    let mut o = Oracle::zeros(match pass {
        Pass::Forward => ys.len(),
        Pass::Data => xs.len(),
        Pass::Weight => w.data().len(),
    });
    if let (Pass::Forward, Some(b)) = (pass, bias) {
        for i in 0..ys.len() {
            o.add(i, b[i % cout] as f64);
        }
    }
    for n in 0..ys.n {
        for d in 0..ys.d {
            for h in 0..ys.h {
                for wv in 0..ys.w {
                    let t = ((d % k[0]) * k[1] + h % k[1]) * k[2] + wv % k[2];
                    for ci in 0..xs.c {
                        let xi = xs.index(n, d / k[0], h / k[1], wv / k[2], ci);
                        for co in 0..cout {
                            let yi = ys.index(n, d, h, wv, co);
                            let wi = (t * xs.c + ci) * cout + co;
                            match (&gb, pass) {
                                (Some(g), Pass::Data) => o.add(xi, g[yi] * wb[wi]),
                                (Some(g), Pass::Weight) => o.add(wi, g[yi] * xb[xi]),
                                _ => o.add(yi, xb[xi] * wb[wi]),
                            }
                        }
                    }
                }
            }
        }
    }
    o
}

/// Shapes covering the U-Net's convolutions and the kernels' edges: 3x3x3 and 1x1x1, stride 2,
/// no padding, odd channel counts (a zero-padded last pair), more than 16 output channels,
/// rows shorter than a register tile, and 128 channels (weights split into L1-sized groups).
fn cases() -> Vec<(Shape5, usize, Conv3dSpec)> {
    let same = |k: usize| Conv3dSpec::same([k, k, k]).unwrap();
    vec![
        (Shape5::new(1, 1, 1, 1, 1), 1, same(3)),
        (Shape5::new(1, 4, 5, 11, 1), 16, same(3)),
        (Shape5::new(2, 3, 4, 9, 3), 5, same(3)),
        (Shape5::new(1, 5, 3, 19, 16), 16, same(3)),
        (Shape5::new(1, 4, 4, 13, 17), 33, same(3)),
        (Shape5::new(1, 3, 3, 10, 128), 16, same(3)),
        (Shape5::new(1, 2, 3, 7, 32), 5, same(1)),
        (Shape5::new(1, 3, 2, 12, 7), 20, same(1)),
        (
            Shape5::new(1, 6, 5, 17, 16),
            32,
            Conv3dSpec::new([3, 3, 3], [2, 2, 2], [1, 1, 1]).unwrap(),
        ),
        (
            Shape5::new(1, 5, 6, 9, 9),
            18,
            Conv3dSpec::new([3, 3, 1], [2, 1, 2], [0, 1, 0]).unwrap(),
        ),
        // Enough rows for several chunks of the weight gradient, each of two cache blocks (256
        // output rows of 8 x 128 channels: 2 chunks of 128 rows, blocks of 64), whose
        // gradient rows are converted block by block.
        (Shape5::new(1, 8, 32, 8, 4), 128, same(3)),
    ]
}

/// A random input of shape `xs`, weights and bias for `cout` outputs under `spec`, and the
/// output shape.
fn random_conv(
    rng: &mut Rng,
    xs: Shape5,
    cout: usize,
    spec: &Conv3dSpec,
) -> (Tensor, Conv3dWeight, Vec<f32>, Shape5) {
    let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
    let w = Conv3dWeight::from_dhwio(spec.kernel, xs.c, cout, rng.vec(spec.taps() * xs.c * cout))
        .unwrap();
    let b = rng.vec(cout);
    (x, w, b, spec.output_shape(xs, cout).unwrap())
}

#[test]
fn bf16_convolutions_match_the_oracle() {
    let mut rng = Rng::new(1101);
    for (xs, cout, spec) in cases() {
        let (x, w, b, ys) = random_conv(&mut rng, xs, cout, &spec);
        let gy = Tensor::from_vec(ys, rng.vec(ys.len())).unwrap();
        let fwd = oracle_conv(&x, &w, Some(&b), &spec, None);
        let bwd = oracle_conv(&x, &w, None, &spec, Some(&gy));
        let wgt = oracle_conv_pass(&x, &w, None, &spec, Some(&gy), Pass::Weight);
        let gb32 = conv3d_backward_weight(&Ctx::new(), &x, &gy, &spec)
            .unwrap()
            .bias;
        for ctx in bf16_ctxs() {
            let tag = format!("{xs} -> {cout} {spec:?} on {:?}", ctx.bf16_kernel());
            let y = conv3d_forward(&ctx, &x, &w, Some(&b), &spec).unwrap();
            fwd.check(y.data(), &format!("{tag}: forward"));
            let gx = conv3d_backward_data(&ctx, &gy, &w, &spec, xs).unwrap();
            bwd.check(gx.data(), &format!("{tag}: input gradient"));
            let g = conv3d_backward_weight(&ctx, &x, &gy, &spec).unwrap();
            wgt.check(g.weight.data(), &format!("{tag}: weight gradient"));
            // The bias gradient is a plain fp32 sum in both precisions.
            assert_eq!(g.bias, gb32, "{tag}: bias gradient");
        }
    }
}

#[test]
fn bf16_transposed_convolutions_match_the_oracle() {
    let mut rng = Rng::new(1102);
    for (s, cout, k) in [
        (Shape5::new(1, 1, 1, 1, 1), 1, [2, 2, 2]),
        (Shape5::new(2, 2, 3, 5, 17), 3, [2, 2, 2]),
        (Shape5::new(1, 3, 2, 9, 32), 16, [2, 2, 2]),
        (Shape5::new(1, 3, 1, 7, 5), 33, [1, 2, 2]),
        // Two chunks of 128 input rows, each of two cache blocks of 64 (their input rows are
        // converted block by block).
        (Shape5::new(1, 8, 32, 8, 4), 16, [2, 2, 2]),
    ] {
        let x = Tensor::from_vec(s, rng.vec(s.len())).unwrap();
        let taps: usize = k.iter().product();
        let w = Conv3dWeight::from_dhwio(k, s.c, cout, rng.vec(taps * s.c * cout)).unwrap();
        let b = rng.vec(cout);
        let fwd = oracle_convt(&x, &w, Some(&b), None);
        let ys = Shape5::new(s.n, s.d * k[0], s.h * k[1], s.w * k[2], cout);
        let gy = Tensor::from_vec(ys, rng.vec(ys.len())).unwrap();
        let bwd = oracle_convt(&x, &w, None, Some(&gy));
        let wgt = oracle_convt_pass(&x, &w, None, Some(&gy), Pass::Weight);
        for ctx in bf16_ctxs() {
            let tag = format!("{s} -> {cout} k {k:?} on {:?}", ctx.bf16_kernel());
            let y = conv_transpose3d_forward(&ctx, &x, &w, Some(&b)).unwrap();
            fwd.check(y.data(), &format!("{tag}: forward"));
            let gx = conv_transpose3d_backward_data(&ctx, &gy, &w, s).unwrap();
            bwd.check(gx.data(), &format!("{tag}: input gradient"));
            let g = conv_transpose3d_backward_weight(&ctx, &x, &gy, k).unwrap();
            wgt.check(g.weight.data(), &format!("{tag}: weight gradient"));
        }
    }
}

#[test]
fn native_bf16_kernel_equals_the_reference_bit_for_bit() {
    let Some(native) = Bf16Kernel::native() else {
        eprintln!(
            "skipped: this CPU lacks avx512_bf16, so there is no native bf16 kernel to check"
        );
        return;
    };
    let reference = Ctx::new().with_bf16_kernel(Bf16Kernel::Reference).unwrap();
    let native = Ctx::new().with_bf16_kernel(native).unwrap();
    let mut rng = Rng::new(1103);
    for (xs, cout, spec) in cases() {
        let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
        let w =
            Conv3dWeight::from_dhwio(spec.kernel, xs.c, cout, rng.vec(spec.taps() * xs.c * cout))
                .unwrap();
        let b = rng.vec(cout);
        let tag = format!("{xs} -> {cout} {spec:?}");
        let y0 = conv3d_forward(&reference, &x, &w, Some(&b), &spec).unwrap();
        let y1 = conv3d_forward(&native, &x, &w, Some(&b), &spec).unwrap();
        assert_eq!(y0.data(), y1.data(), "{tag}: forward");
        // Accumulating into an existing output (the decoder's concat-free convolution).
        let mut a0 = y0.clone();
        let mut a1 = y0.clone();
        conv3d_forward_accumulate(&reference, &x, &w, None, &spec, &mut a0).unwrap();
        conv3d_forward_accumulate(&native, &x, &w, None, &spec, &mut a1).unwrap();
        assert_eq!(a0.data(), a1.data(), "{tag}: accumulate");
        let gy = Tensor::from_vec(y0.shape(), rng.vec(y0.shape().len())).unwrap();
        let g0 = conv3d_backward_data(&reference, &gy, &w, &spec, xs).unwrap();
        let g1 = conv3d_backward_data(&native, &gy, &w, &spec, xs).unwrap();
        assert_eq!(g0.data(), g1.data(), "{tag}: input gradient");
        let w0 = conv3d_backward_weight(&reference, &x, &gy, &spec).unwrap();
        let w1 = conv3d_backward_weight(&native, &x, &gy, &spec).unwrap();
        assert_eq!(w0.weight.data(), w1.weight.data(), "{tag}: weight gradient");
    }
}

#[test]
fn bf16_layers_stay_within_bf16_error_of_fp32() {
    let fp32 = Ctx::new();
    let mut rng = Rng::new(1104);
    for (xs, cout, spec) in cases()
        .into_iter()
        .filter(|(s, _, sp)| s.c * sp.taps() >= 16)
    {
        let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
        let w =
            Conv3dWeight::from_dhwio(spec.kernel, xs.c, cout, rng.vec(spec.taps() * xs.c * cout))
                .unwrap();
        let y32 = conv3d_forward(&fp32, &x, &w, None, &spec).unwrap();
        let gy = Tensor::from_vec(y32.shape(), rng.vec(y32.shape().len())).unwrap();
        let gx32 = conv3d_backward_data(&fp32, &gy, &w, &spec, xs).unwrap();
        let gw32 = conv3d_backward_weight(&fp32, &x, &gy, &spec).unwrap();
        for ctx in bf16_ctxs() {
            assert_eq!(ctx.precision(), Precision::Bf16);
            let tag = format!("{xs} -> {cout} {spec:?} on {:?}", ctx.bf16_kernel());
            let y = conv3d_forward(&ctx, &x, &w, None, &spec).unwrap();
            let e = rel_l2(y.data(), y32.data());
            assert!((1e-4..1e-2).contains(&e), "{tag}: forward rel L2 {e:e}");
            let gx = conv3d_backward_data(&ctx, &gy, &w, &spec, xs).unwrap();
            let e = rel_l2(gx.data(), gx32.data());
            assert!(
                (1e-4..1e-2).contains(&e),
                "{tag}: input gradient rel L2 {e:e}"
            );
            let gw = conv3d_backward_weight(&ctx, &x, &gy, &spec).unwrap();
            let e = rel_l2(gw.weight.data(), gw32.weight.data());
            assert!(
                (1e-4..1e-2).contains(&e),
                "{tag}: weight gradient rel L2 {e:e}"
            );
        }
    }
}

#[test]
fn bf16_results_do_not_depend_on_thread_count() {
    let k = Bf16Kernel::native().unwrap_or(Bf16Kernel::Reference);
    let ctx = Ctx::new().with_bf16_kernel(k).unwrap();
    let mut rng = Rng::new(1105);
    let (xs, cout, spec) = cases().swap_remove(4);
    let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
    let w = Conv3dWeight::from_dhwio(spec.kernel, xs.c, cout, rng.vec(spec.taps() * xs.c * cout))
        .unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| conv3d_forward(&ctx, &x, &w, None, &spec).unwrap())
    };
    assert_eq!(run(1).data(), run(3).data());
}

/// The fp32 values of a bf16 tensor's words, decoded here from the layout the engine documents
/// (word `p` of a voxel: channel `2p` low, `2p + 1` high, zero past an odd count), not with the
/// engine's own `to_tensor`.
fn decode_pairs(t: &Bf16Tensor) -> (Vec<f32>, Vec<u16>) {
    let c = t.shape().c;
    let cp = c.div_ceil(2);
    let (mut values, mut padding) = (Vec::new(), Vec::new());
    for v in t.words().chunks_exact(cp) {
        for ch in 0..2 * cp {
            let half = (v[ch / 2] >> (16 * (ch % 2))) as u16;
            if ch < c {
                values.push(bf16_to_f32(half));
            } else {
                padding.push(half);
            }
        }
    }
    (values, padding)
}

#[test]
fn norm_act_to_bf16_is_the_in_place_norm_rounded_to_nearest_even() {
    let mut rng = Rng::new(1105);
    for (shape, slope) in [
        (Shape5::new(2, 3, 5, 7, 16), 0.01),
        (Shape5::new(1, 4, 4, 5, 3), 0.0),
        (Shape5::new(1, 70, 3, 21, 8), 0.01),
        (Shape5::new(1, 2, 2, 2, 1), 0.2),
    ] {
        let c = shape.c;
        // Offsets per channel so that the norm has a mean to remove.
        let x: Vec<f32> = rng
            .vec(shape.len())
            .iter()
            .enumerate()
            .map(|(i, v)| v * 3.0 + (i % c) as f32)
            .collect();
        let x = Tensor::from_vec(shape, x).unwrap();
        let (gamma, beta) = (rng.vec(c), rng.vec(c));
        let norm = NormAct {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
            slope,
        };
        let mut want = x.clone();
        instance_norm_act_inplace(&Ctx::new(), &mut want, &norm).unwrap();
        for ctx in bf16_ctxs() {
            let tag = format!("{shape} on {:?}", ctx.bf16_kernel());
            let mut out =
                Bf16Tensor::from_words(shape, vec![u32::MAX; Bf16Tensor::words_for(shape)])
                    .unwrap();
            instance_norm_act_to_bf16(&ctx, &x, &norm, &mut out).unwrap();
            let (got, padding) = decode_pairs(&out);
            for (i, (&g, &w)) in got.iter().zip(want.data()).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    bf16_to_f32(f32_to_bf16(w)).to_bits(),
                    "{tag}: value {i}"
                );
            }
            assert!(
                padding.iter().all(|&h| h == 0),
                "{tag}: odd channel padding"
            );
            // The engine's own decoding agrees with the documented layout.
            assert_eq!(out.to_tensor().data(), &got[..], "{tag}: to_tensor");
            assert_eq!(
                Bf16Tensor::from_tensor(&ctx, &want).unwrap(),
                out,
                "{tag}: from_tensor"
            );
        }
    }
}

#[test]
fn convolutions_read_bf16_pairs_as_they_read_fp32() {
    let mut rng = Rng::new(1106);
    for (xs, cout, spec) in cases() {
        let (x, w, b, ys) = random_conv(&mut rng, xs, cout, &spec);
        let start = Tensor::from_vec(ys, rng.vec(ys.len())).unwrap();
        let wt = Conv3dWeight::from_dhwio([2, 2, 2], xs.c, cout, rng.vec(8 * xs.c * cout)).unwrap();
        let ts = conv_transpose3d_output_shape(xs, [2, 2, 2], cout);
        for ctx in bf16_ctxs() {
            let tag = format!("{xs} -> {cout} {spec:?} on {:?}", ctx.bf16_kernel());
            let pairs = Bf16Tensor::from_tensor(&ctx, &x).unwrap();
            let mut want = Tensor::zeros(ys).unwrap();
            conv3d_forward_into(&ctx, &x, &w, Some(&b), &spec, &mut want).unwrap();
            let mut got = Tensor::zeros(ys).unwrap();
            conv3d_forward_into(&ctx, &pairs, &w, Some(&b), &spec, &mut got).unwrap();
            assert_eq!(got, want, "{tag}: forward");
            let (mut want, mut got) = (start.clone(), start.clone());
            conv3d_forward_accumulate(&ctx, &x, &w, None, &spec, &mut want).unwrap();
            conv3d_forward_accumulate(&ctx, &pairs, &w, None, &spec, &mut got).unwrap();
            assert_eq!(got, want, "{tag}: accumulate");
            let mut want = Tensor::zeros(ts).unwrap();
            conv_transpose3d_forward_into(&ctx, &x, &wt, Some(&b), &mut want).unwrap();
            let mut got = Tensor::zeros(ts).unwrap();
            conv_transpose3d_forward_into(&ctx, &pairs, &wt, Some(&b), &mut got).unwrap();
            assert_eq!(got, want, "{tag}: transposed");
        }
        // The pairs moved nothing the fp32 path reads: an fp32 context refuses them.
        let ctx = bf16_ctxs().remove(0);
        let pairs = Bf16Tensor::from_tensor(&ctx, &x).unwrap();
        let mut y = Tensor::zeros(ys).unwrap();
        let e = conv3d_forward_into(&Ctx::new(), &pairs, &w, Some(&b), &spec, &mut y).unwrap_err();
        assert!(e.to_string().contains("bf16 context"), "{e}");
    }
}

#[test]
fn bf16_tensors_refuse_what_does_not_fit() {
    let shape = Shape5::new(1, 2, 2, 2, 3);
    assert_eq!(Bf16Tensor::words_for(shape), 16);
    assert!(Bf16Tensor::from_words(shape, vec![0; 15]).is_err());
    let x = Tensor::zeros(shape).unwrap();
    assert!(Bf16Tensor::from_tensor(&Ctx::new(), &x).is_err());
    let (gamma, beta) = ([1.0f32; 3], [0.0f32; 3]);
    let norm = NormAct {
        gamma: &gamma,
        beta: &beta,
        eps: 1e-5,
        slope: 0.01,
    };
    let ctx = bf16_ctxs().remove(0);
    let mut other = Bf16Tensor::from_words(Shape5::new(1, 2, 2, 3, 3), vec![0; 24]).unwrap();
    assert!(instance_norm_act_to_bf16(&ctx, &x, &norm, &mut other).is_err());
    let mut out = Bf16Tensor::from_words(shape, vec![0; 16]).unwrap();
    let e = instance_norm_act_to_bf16(&Ctx::new(), &x, &norm, &mut out).unwrap_err();
    assert!(e.to_string().contains("bf16 context"), "{e}");
}
