//! Conv3d against PyTorch (float64 reference fixtures), every SIMD path against the scalar
//! one, and gradients against finite differences.

mod common;

use common::{Fixtures, Rng, arr3, rel_l2, rel_max};
use flare_engine::{
    Conv3dSpec, Conv3dWeight, Ctx, Isa, Shape5, Tensor, conv3d_backward_data,
    conv3d_backward_weight, conv3d_forward,
};

fn ctxs() -> Vec<Ctx> {
    Isa::supported()
        .into_iter()
        .map(|i| Ctx::with_isa(i).unwrap())
        .collect()
}

#[test]
fn matches_pytorch_forward_and_backward_on_every_isa() {
    let fx = Fixtures::load("conv3d");
    assert!(fx.cases.len() >= 10);
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let n = case["n"].as_u64().unwrap() as usize;
        let [d, h, w] = arr3(&case["spatial"]);
        let cin = case["cin"].as_u64().unwrap() as usize;
        let cout = case["cout"].as_u64().unwrap() as usize;
        let spec = Conv3dSpec::new(
            arr3(&case["kernel"]),
            arr3(&case["stride"]),
            arr3(&case["padding"]),
        )
        .unwrap();
        let xs = Shape5::new(n, d, h, w, cin);
        let x = Tensor::from_vec(xs, fx.array(case, "x").1).unwrap();
        let wt = Conv3dWeight::from_torch(spec.kernel, cin, cout, &fx.array(case, "w").1).unwrap();
        let b = fx.array(case, "b").1;
        let (gys, gyd) = fx.array(case, "gy");
        let ys = Shape5::new(gys[0], gys[1], gys[2], gys[3], gys[4]);
        let gy = Tensor::from_vec(ys, gyd).unwrap();
        let y_ref = fx.array(case, "y").1;
        let gx_ref = fx.array(case, "gx").1;
        let gw_ref = fx.array(case, "gw").1;
        let gb_ref = fx.array(case, "gb").1;
        for ctx in ctxs() {
            let tag = format!("{name} on {}", ctx.isa());
            let y = conv3d_forward(&ctx, &x, &wt, Some(&b), &spec).unwrap();
            assert_eq!(y.shape(), ys, "{tag}: output shape");
            let e = rel_l2(y.data(), &y_ref);
            assert!(e < 1e-5, "{tag}: forward rel L2 {e:e}");

            let gx = conv3d_backward_data(&ctx, &gy, &wt, &spec, xs).unwrap();
            let e = rel_l2(gx.data(), &gx_ref);
            assert!(e < 1e-5, "{tag}: grad input rel L2 {e:e}");

            let g = conv3d_backward_weight(&ctx, &x, &gy, &spec).unwrap();
            let e = rel_l2(&g.weight.to_torch(), &gw_ref);
            assert!(e < 1e-5, "{tag}: grad weight rel L2 {e:e}");
            let e = rel_l2(&g.bias, &gb_ref);
            assert!(e < 1e-5, "{tag}: grad bias rel L2 {e:e}");
        }
    }
}

/// Edge shapes: size-1 axes, odd tails, channel counts off the vector widths, stride 2,
/// with and without padding, anisotropic kernels.
fn edge_cases() -> Vec<(Shape5, usize, Conv3dSpec)> {
    let mut v = Vec::new();
    let kernels = [[3, 3, 3], [1, 1, 1], [3, 3, 1], [1, 1, 3], [3, 1, 3]];
    // 64 and 128 input channels reach the kernels' voxel strides 128 and 256 (stride 2).
    let chans = [
        (1, 1),
        (3, 5),
        (5, 17),
        (17, 3),
        (16, 16),
        (8, 33),
        (2, 16),
        (128, 16),
        (64, 20),
    ];
    let sizes = [[1, 1, 1], [2, 3, 1], [3, 4, 9], [5, 2, 19], [4, 5, 23]];
    let strides = [[1, 1, 1], [2, 2, 2], [1, 2, 1], [2, 1, 2]];
    let mut i = 0usize;
    for k in kernels {
        for &(cin, cout) in &chans {
            for pad_same in [true, false] {
                let sz = sizes[i % sizes.len()];
                let st = strides[(i / 2) % strides.len()];
                i += 1;
                let pad = if pad_same { k.map(|k| k / 2) } else { [0; 3] };
                let spec = Conv3dSpec::new(k, st, pad).unwrap();
                let xs = Shape5::new(1 + (i % 2), sz[0], sz[1], sz[2], cin);
                if spec.output_shape(xs, cout).is_ok() {
                    v.push((xs, cout, spec));
                }
            }
        }
    }
    assert!(v.len() > 40);
    v
}

#[test]
fn simd_paths_equal_scalar_on_edge_shapes() {
    let scalar = Ctx::with_isa(Isa::Scalar).unwrap();
    let mut rng = Rng::new(7);
    for (xs, cout, spec) in edge_cases() {
        let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
        let w =
            Conv3dWeight::from_dhwio(spec.kernel, xs.c, cout, rng.vec(spec.taps() * xs.c * cout))
                .unwrap();
        let b = rng.vec(cout);
        let y0 = conv3d_forward(&scalar, &x, &w, Some(&b), &spec).unwrap();
        let gy = Tensor::from_vec(y0.shape(), rng.vec(y0.shape().len())).unwrap();
        let gx0 = conv3d_backward_data(&scalar, &gy, &w, &spec, xs).unwrap();
        let g0 = conv3d_backward_weight(&scalar, &x, &gy, &spec).unwrap();
        for ctx in ctxs().into_iter().filter(|c| c.isa() != Isa::Scalar) {
            let tag = format!("{xs} -> {cout} {spec:?} on {}", ctx.isa());
            let y = conv3d_forward(&ctx, &x, &w, Some(&b), &spec).unwrap();
            // FMA (SIMD) and separate multiply-add (portable) round each term differently; over
            // the 3456-term sums of 128 channels that reaches ~1e-6 of the largest output, so
            // long reductions are held to 1e-6 in relative L2 and 4e-6 in the worst element.
            let long = spec.taps() * xs.c > 1024;
            let (e_max, e_l2) = (rel_max(y.data(), y0.data()), rel_l2(y.data(), y0.data()));
            assert!(
                e_max < if long { 4e-6 } else { 1e-6 } && e_l2 < 1e-6,
                "{tag}: forward, rel max {e_max:e}, rel L2 {e_l2:e}"
            );
            let gx = conv3d_backward_data(&ctx, &gy, &w, &spec, xs).unwrap();
            assert!(rel_max(gx.data(), gx0.data()) < 1e-6, "{tag}: grad input");
            let g = conv3d_backward_weight(&ctx, &x, &gy, &spec).unwrap();
            assert!(
                rel_max(g.weight.data(), g0.weight.data()) < 1e-6,
                "{tag}: grad weight"
            );
            assert!(rel_max(&g.bias, &g0.bias) < 1e-6, "{tag}: grad bias");
        }
    }
}

/// A direct f64 convolution, written from the definition (no packing, no tiling), to check the
/// scalar path on shapes the PyTorch fixtures do not cover.
fn naive_forward(x: &Tensor, w: &Conv3dWeight, spec: &Conv3dSpec) -> Vec<f64> {
    let xs = x.shape();
    let ys = spec.output_shape(xs, w.cout()).unwrap();
    let [kd, kh, kw] = spec.kernel;
    let mut y = vec![0.0f64; ys.len()];
    for n in 0..ys.n {
        for od in 0..ys.d {
            for oh in 0..ys.h {
                for ow in 0..ys.w {
                    for co in 0..ys.c {
                        let mut s = 0.0f64;
                        for a in 0..kd {
                            for b in 0..kh {
                                for c in 0..kw {
                                    let id = (od * spec.stride[0] + a) as isize
                                        - spec.padding[0] as isize;
                                    let ih = (oh * spec.stride[1] + b) as isize
                                        - spec.padding[1] as isize;
                                    let iw = (ow * spec.stride[2] + c) as isize
                                        - spec.padding[2] as isize;
                                    if id < 0 || ih < 0 || iw < 0 {
                                        continue;
                                    }
                                    let (id, ih, iw) = (id as usize, ih as usize, iw as usize);
                                    if id >= xs.d || ih >= xs.h || iw >= xs.w {
                                        continue;
                                    }
                                    for ci in 0..xs.c {
                                        let t = (a * kh + b) * kw + c;
                                        s += x.data()[xs.index(n, id, ih, iw, ci)] as f64
                                            * w.data()[(t * xs.c + ci) * w.cout() + co] as f64;
                                    }
                                }
                            }
                        }
                        y[ys.index(n, od, oh, ow, co)] = s;
                    }
                }
            }
        }
    }
    y
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The convolution is linear in `x` and in `w`, so for `L = <conv(x, w), r>`:
/// `<x, dL/dx> = L = <w, dL/dw>` exactly (the adjoint identity), and a central difference of
/// `L` along any coordinate equals the gradient up to rounding.
#[test]
fn gradients_match_finite_differences_and_adjoint_identity() {
    let scalar = Ctx::with_isa(Isa::Scalar).unwrap();
    let mut rng = Rng::new(11);
    for (xs, cout, spec) in edge_cases().into_iter().step_by(5) {
        let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
        let w =
            Conv3dWeight::from_dhwio(spec.kernel, xs.c, cout, rng.vec(spec.taps() * xs.c * cout))
                .unwrap();
        let y = conv3d_forward(&scalar, &x, &w, None, &spec).unwrap();
        let y_ref = naive_forward(&x, &w, &spec);
        let y_ref32: Vec<f32> = y_ref.iter().map(|&v| v as f32).collect();
        assert!(
            rel_max(y.data(), &y_ref32) < 1e-6,
            "{xs} {spec:?}: naive forward"
        );

        let r = Tensor::from_vec(y.shape(), rng.vec(y.shape().len())).unwrap();
        let loss = |x: &Tensor, w: &Conv3dWeight| {
            dot(
                conv3d_forward(&scalar, x, w, None, &spec).unwrap().data(),
                r.data(),
            )
        };
        let l0 = loss(&x, &w);
        let gx = conv3d_backward_data(&scalar, &r, &w, &spec, xs).unwrap();
        let g = conv3d_backward_weight(&scalar, &x, &r, &spec).unwrap();
        let scale = l0.abs().max(1.0);
        assert!(
            (dot(x.data(), gx.data()) - l0).abs() < 1e-5 * scale,
            "adjoint x"
        );
        assert!(
            (dot(w.data(), g.weight.data()) - l0).abs() < 1e-5 * scale,
            "adjoint w"
        );
        let gb: f64 = g.bias.iter().map(|&v| v as f64).sum();
        let rsum: f64 = r.data().iter().map(|&v| v as f64).sum();
        assert!((gb - rsum).abs() < 1e-4 * rsum.abs().max(1.0), "bias grad");

        let h = 0.25f32;
        for _ in 0..6 {
            let i = (rng.next_u64() as usize) % xs.len();
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.data_mut()[i] += h;
            xm.data_mut()[i] -= h;
            let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * h as f64);
            assert!((fd - gx.data()[i] as f64).abs() < 1e-4 * scale, "fd x[{i}]");
            let j = (rng.next_u64() as usize) % w.data().len();
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp.data_mut()[j] += h;
            wm.data_mut()[j] -= h;
            let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * h as f64);
            assert!(
                (fd - g.weight.data()[j] as f64).abs() < 1e-4 * scale,
                "fd w[{j}]"
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let ctx = Ctx::new();
    let mut rng = Rng::new(3);
    let xs = Shape5::new(1, 6, 7, 9, 16);
    let spec = Conv3dSpec::same([3, 3, 3]).unwrap();
    let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
    let w = Conv3dWeight::from_dhwio([3, 3, 3], 16, 16, rng.vec(27 * 256)).unwrap();
    let gy = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                conv3d_forward(&ctx, &x, &w, None, &spec).unwrap(),
                conv3d_backward_data(&ctx, &gy, &w, &spec, xs).unwrap(),
                conv3d_backward_weight(&ctx, &x, &gy, &spec).unwrap(),
            )
        })
    };
    let a = run(1);
    let b = run(3);
    assert_eq!(a.0.data(), b.0.data());
    assert_eq!(a.1.data(), b.1.data());
    assert_eq!(a.2, b.2);
}

#[test]
fn bad_shapes_are_errors() {
    let ctx = Ctx::new();
    let spec = Conv3dSpec::same([3, 3, 3]).unwrap();
    let x = Tensor::zeros(Shape5::new(1, 4, 4, 4, 3)).unwrap();
    let w = Conv3dWeight::zeros([3, 3, 3], 2, 4).unwrap();
    assert!(conv3d_forward(&ctx, &x, &w, None, &spec).is_err());
    let w = Conv3dWeight::zeros([3, 3, 3], 3, 4).unwrap();
    assert!(conv3d_forward(&ctx, &x, &w, Some(&[0.0; 3]), &spec).is_err());
    let w1 = Conv3dWeight::zeros([1, 1, 1], 3, 4).unwrap();
    assert!(conv3d_forward(&ctx, &x, &w1, None, &spec).is_err());
    let gy = Tensor::zeros(Shape5::new(1, 4, 4, 3, 4)).unwrap();
    assert!(conv3d_backward_data(&ctx, &gy, &w, &spec, x.shape()).is_err());
    assert!(conv3d_backward_weight(&ctx, &x, &gy, &spec).is_err());
    assert!(Conv3dWeight::from_torch([3, 3, 3], 3, 4, &[0.0; 10]).is_err());
    let tiny = Tensor::zeros(Shape5::new(1, 1, 1, 1, 3)).unwrap();
    let valid = Conv3dSpec::new([3, 3, 3], [1; 3], [0; 3]).unwrap();
    assert!(conv3d_forward(&ctx, &tiny, &w, None, &valid).is_err());
}

#[test]
fn weight_layout_round_trips_through_pytorch_order() {
    let torch: Vec<f32> = (0..2 * 3 * 3 * 2).map(|v| v as f32).collect();
    let w = Conv3dWeight::from_torch([3, 1, 2], 3, 2, &torch).unwrap();
    assert_eq!(w.to_torch(), torch);
    // torch[o=1, i=2, a=2, b=0, c=1] sits at ((1*3+2)*3+2)*2+1 = 35; here at tap (2*1+0)*2+1 = 5.
    assert_eq!(w.data()[(5 * 3 + 2) * 2 + 1], 35.0);
}

/// Convolving a concat equals accumulating the convolutions of its parts with the split
/// weights, on every ISA; the split weights join back to the original.
#[test]
fn accumulated_split_conv_equals_conv_of_concat() {
    use flare_engine::{concat_channels, conv3d_forward_accumulate};
    let mut rng = Rng::new(17);
    for (sa, cb, cout, spec) in [
        (
            Shape5::new(1, 4, 5, 11, 16),
            16,
            16,
            Conv3dSpec::same([3; 3]).unwrap(),
        ),
        (
            Shape5::new(2, 3, 6, 7, 3),
            5,
            17,
            Conv3dSpec::new([3, 3, 1], [2, 1, 1], [1, 1, 0]).unwrap(),
        ),
    ] {
        let a = Tensor::from_vec(sa, rng.vec(sa.len())).unwrap();
        let sb = sa.with_channels(cb);
        let b = Tensor::from_vec(sb, rng.vec(sb.len())).unwrap();
        let cin = sa.c + cb;
        let w = Conv3dWeight::from_dhwio(spec.kernel, cin, cout, rng.vec(spec.taps() * cin * cout))
            .unwrap();
        let bias = rng.vec(cout);
        let (wa, wb) = w.split_input_channels(sa.c).unwrap();
        assert_eq!(Conv3dWeight::concat_input_channels(&wa, &wb).unwrap(), w);
        for ctx in ctxs() {
            let cat = concat_channels(&ctx, &a, &b).unwrap();
            let whole = conv3d_forward(&ctx, &cat, &w, Some(&bias), &spec).unwrap();
            let mut y = conv3d_forward(&ctx, &a, &wa, Some(&bias), &spec).unwrap();
            conv3d_forward_accumulate(&ctx, &b, &wb, None, &spec, &mut y).unwrap();
            let e = rel_max(y.data(), whole.data());
            assert!(e < 1e-6, "{sa} + {cb} on {}: {e:e}", ctx.isa());
        }
    }
    let w = Conv3dWeight::zeros([3; 3], 4, 2).unwrap();
    assert!(w.split_input_channels(0).is_err());
    assert!(w.split_input_channels(4).is_err());
}

/// Shapes with more rows than the weight gradient has chunks, so each kernel call sums several
/// row segments: compare with the direct f64 sum on every ISA.
#[test]
fn weight_gradient_over_many_rows_matches_direct_sum() {
    let mut rng = Rng::new(23);
    for (xs, cout, spec) in [
        (
            Shape5::new(1, 12, 12, 5, 3),
            5,
            Conv3dSpec::same([3; 3]).unwrap(),
        ),
        (
            Shape5::new(2, 9, 16, 7, 17),
            18,
            Conv3dSpec::new([3; 3], [2, 1, 2], [1; 3]).unwrap(),
        ),
    ] {
        let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
        let gs = spec.output_shape(xs, cout).unwrap();
        assert!(
            gs.rows() > 128,
            "{gs}: too few rows to span several per chunk"
        );
        let gy = Tensor::from_vec(gs, rng.vec(gs.len())).unwrap();
        let [_, kh, kw] = spec.kernel;
        let mut want = vec![0.0f64; spec.taps() * xs.c * cout];
        for n in 0..gs.n {
            for od in 0..gs.d {
                for oh in 0..gs.h {
                    for ow in 0..gs.w {
                        for t in 0..spec.taps() {
                            let (a, b, c) = (t / (kh * kw), (t / kw) % kh, t % kw);
                            let id = (od * spec.stride[0] + a) as isize - spec.padding[0] as isize;
                            let ih = (oh * spec.stride[1] + b) as isize - spec.padding[1] as isize;
                            let iw = (ow * spec.stride[2] + c) as isize - spec.padding[2] as isize;
                            if id < 0 || ih < 0 || iw < 0 {
                                continue;
                            }
                            let (id, ih, iw) = (id as usize, ih as usize, iw as usize);
                            if id >= xs.d || ih >= xs.h || iw >= xs.w {
                                continue;
                            }
                            for ci in 0..xs.c {
                                let xv = x.data()[xs.index(n, id, ih, iw, ci)] as f64;
                                for co in 0..cout {
                                    want[(t * xs.c + ci) * cout + co] +=
                                        xv * gy.data()[gs.index(n, od, oh, ow, co)] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        for ctx in ctxs() {
            let g = conv3d_backward_weight(&ctx, &x, &gy, &spec).unwrap();
            let e = rel_l2(g.weight.data(), &want);
            assert!(e < 1e-6, "{xs} on {}: {e:e}", ctx.isa());
        }
    }
}

/// The transposed convolution's weight gradient over many rows, checked through the adjoint
/// identity `<convT(x, w), r> = <w, dW(x, r)>` for random `w` (the loss is linear in `w`).
#[test]
fn transposed_weight_gradient_over_many_rows_satisfies_the_adjoint_identity() {
    use flare_engine::{conv_transpose3d_backward_weight, conv_transpose3d_forward};
    let mut rng = Rng::new(29);
    let xs = Shape5::new(1, 10, 9, 4, 5);
    let (k, cout) = ([2, 2, 2], 7);
    let x = Tensor::from_vec(xs, rng.vec(xs.len())).unwrap();
    let ys = Shape5::new(1, 20, 18, 8, cout);
    let r = Tensor::from_vec(ys, rng.vec(ys.len())).unwrap();
    for ctx in ctxs() {
        let g = conv_transpose3d_backward_weight(&ctx, &x, &r, k).unwrap();
        for _ in 0..2 {
            let w = Conv3dWeight::from_dhwio(k, xs.c, cout, rng.vec(8 * xs.c * cout)).unwrap();
            let y = conv_transpose3d_forward(&ctx, &x, &w, None).unwrap();
            let l = dot(y.data(), r.data());
            let lw = dot(w.data(), g.weight.data());
            assert!(
                (l - lw).abs() < 1e-5 * l.abs().max(1.0),
                "{}: {l} vs {lw}",
                ctx.isa()
            );
        }
        let rsum: f64 = r.data().iter().map(|&v| v as f64).sum();
        let bsum: f64 = g.bias.iter().map(|&v| v as f64).sum();
        assert!((rsum - bsum).abs() < 1e-4 * rsum.abs().max(1.0));
    }
}
