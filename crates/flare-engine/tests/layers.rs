//! Instance norm, activations, transposed convolution, add and concat against PyTorch
//! (float64 reference fixtures from `scripts/fixtures/engine_fixtures.py`), plus finite
//! differences and SIMD-versus-scalar checks.

mod common;

use common::{Fixtures, Rng, arr3, rel_l2, rel_max};
use flare_engine::{
    Conv3dWeight, Ctx, Isa, Shape5, Tensor, add_inplace, concat_channels,
    conv_transpose3d_backward_data, conv_transpose3d_backward_weight, conv_transpose3d_forward,
    conv_transpose3d_forward_into, instance_norm_act_backward, instance_norm_act_forward,
    instance_norm_backward, instance_norm_forward, leaky_relu, leaky_relu_backward,
    leaky_relu_inplace, split_channels,
};

fn shape5(v: &[usize]) -> Shape5 {
    Shape5::new(v[0], v[1], v[2], v[3], v[4])
}

fn tensor(fx: &Fixtures, case: &serde_json::Value, name: &str) -> Tensor {
    let (s, d) = fx.array(case, name);
    Tensor::from_vec(shape5(&s), d).unwrap()
}

fn ctxs() -> Vec<Ctx> {
    Isa::supported()
        .into_iter()
        .map(|i| Ctx::with_isa(i).unwrap())
        .collect()
}

#[test]
fn instance_norm_matches_pytorch() {
    let fx = Fixtures::load("norm");
    let ctx = Ctx::new();
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let x = tensor(&fx, case, "x");
        let gy = tensor(&fx, case, "gy");
        let gamma = fx.array(case, "gamma").1;
        let beta = fx.array(case, "beta").1;
        let eps = case["eps"].as_f64().unwrap() as f32;
        let (y, stats) = instance_norm_forward(&ctx, &x, &gamma, &beta, eps).unwrap();
        let e = rel_l2(y.data(), &fx.array(case, "y").1);
        assert!(e < 1e-5, "{name}: forward {e:e}");
        let g = instance_norm_backward(&ctx, &x, &stats, &gamma, &gy).unwrap();
        let e = rel_l2(g.input.data(), &fx.array(case, "gx").1);
        assert!(e < 1e-5, "{name}: grad input {e:e}");
        let e = rel_l2(&g.gamma, &fx.array(case, "ggamma").1);
        assert!(e < 1e-5, "{name}: grad gamma {e:e}");
        let e = rel_l2(&g.beta, &fx.array(case, "gbeta").1);
        assert!(e < 1e-5, "{name}: grad beta {e:e}");
    }
}

/// The training fusion equals the separate ops (each checked against PyTorch above) value for
/// value: the same sums in the same order, the activation applied in the same pass.
#[test]
fn fused_norm_act_forward_and_backward_equal_the_separate_ops() {
    use flare_engine::NormAct;
    let ctx = Ctx::new();
    let mut rng = Rng::new(11);
    // Two samples, channels with a large mean (cancellation) and more than one chunk of voxels.
    let s = Shape5::new(2, 9, 24, 21, 5);
    let mut xv = rng.vec(s.len());
    for (i, v) in xv.iter_mut().enumerate() {
        if i % 5 == 3 {
            *v = 300.0 + *v * 0.01;
        }
    }
    let x = Tensor::from_vec(s, xv).unwrap();
    let ga = Tensor::from_vec(s, rng.vec(s.len())).unwrap();
    let gamma = vec![0.7, 1.3, -0.4, 2.0, 0.9];
    let beta = vec![0.1, -0.2, 0.3, 0.0, -1.0];
    for slope in [0.01f32, 0.0] {
        let norm = NormAct {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
            slope,
        };
        let (mut a, stats) = instance_norm_forward(&ctx, &x, &gamma, &beta, 1e-5).unwrap();
        leaky_relu_inplace(&ctx, &mut a, slope);
        let (fa, fstats) = instance_norm_act_forward(&ctx, &x, &norm).unwrap();
        assert_eq!(fstats, stats);
        assert!(
            fa.data().iter().zip(a.data()).all(|(p, q)| p == q),
            "forward, slope {slope}"
        );
        assert!(a.data().iter().any(|&v| v < 0.0) == (slope > 0.0));

        let gy = leaky_relu_backward(&ctx, &a, &ga, slope).unwrap();
        let g = instance_norm_backward(&ctx, &x, &stats, &gamma, &gy).unwrap();
        let fg = instance_norm_act_backward(&ctx, &x, &a, &stats, &gamma, &ga, slope).unwrap();
        assert_eq!(
            fg.input.data(),
            g.input.data(),
            "input gradient, slope {slope}"
        );
        assert_eq!(fg.gamma, g.gamma);
        assert_eq!(fg.beta, g.beta);
    }
    let wrong = Tensor::zeros(Shape5::new(1, 9, 24, 21, 5)).unwrap();
    let (_, stats) = instance_norm_forward(&ctx, &x, &gamma, &beta, 1e-5).unwrap();
    assert!(instance_norm_act_backward(&ctx, &x, &wrong, &stats, &gamma, &ga, 0.01).is_err());
}

/// Channels are normalised independently, so the backward of 16 channels must equal, value for
/// value, the first 16 channels of the backward of the same data with a 17th channel: the two
/// run different loops (the compile-time widths of the U-Net, and the any-width loop checked
/// against PyTorch above).
#[test]
fn norm_backward_at_a_network_width_equals_the_any_width_loop() {
    let ctx = Ctx::new();
    let mut rng = Rng::new(23);
    for c in [8usize, 16, 32, 64, 128] {
        let s = Shape5::new(2, 5, 7, 9, c);
        let s1 = s.with_channels(c + 1);
        let (x1, ga1) = (rng.vec(s1.len()), rng.vec(s1.len()));
        // The first `c` channels of each voxel.
        let narrow = |v: &[f32]| -> Vec<f32> {
            v.chunks_exact(c + 1)
                .flat_map(|vox| vox[..c].to_vec())
                .collect()
        };
        let gamma1: Vec<f32> = (0..=c).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let beta1: Vec<f32> = (0..=c).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let norm1 = flare_engine::NormAct {
            gamma: &gamma1,
            beta: &beta1,
            eps: 1e-5,
            slope: 0.01,
        };
        let norm = flare_engine::NormAct {
            gamma: &gamma1[..c],
            beta: &beta1[..c],
            ..norm1
        };
        let (x1, ga1) = (
            Tensor::from_vec(s1, x1).unwrap(),
            Tensor::from_vec(s1, ga1).unwrap(),
        );
        let x = Tensor::from_vec(s, narrow(x1.data())).unwrap();
        let ga = Tensor::from_vec(s, narrow(ga1.data())).unwrap();
        let (a1, st1) = instance_norm_act_forward(&ctx, &x1, &norm1).unwrap();
        let (a, st) = instance_norm_act_forward(&ctx, &x, &norm).unwrap();
        assert_eq!(
            a.data(),
            narrow(a1.data()).as_slice(),
            "forward, {c} channels"
        );
        let g1 = instance_norm_act_backward(&ctx, &x1, &a1, &st1, &gamma1, &ga1, 0.01).unwrap();
        let g = instance_norm_act_backward(&ctx, &x, &a, &st, &gamma1[..c], &ga, 0.01).unwrap();
        assert_eq!(
            g.input.data(),
            narrow(g1.input.data()).as_slice(),
            "{c} channels"
        );
        assert_eq!(g.gamma, g1.gamma[..c], "gamma, {c} channels");
        assert_eq!(g.beta, g1.beta[..c], "beta, {c} channels");
        let plain1 = instance_norm_backward(&ctx, &x1, &st1, &gamma1, &ga1).unwrap();
        let plain = instance_norm_backward(&ctx, &x, &st, &gamma1[..c], &ga).unwrap();
        assert_eq!(plain.input.data(), narrow(plain1.input.data()).as_slice());
    }
}

#[test]
fn instance_norm_gradient_matches_finite_differences() {
    let ctx = Ctx::new();
    let mut rng = Rng::new(5);
    let s = Shape5::new(2, 2, 3, 2, 3);
    let x = Tensor::from_vec(s, rng.vec(s.len())).unwrap();
    let r = rng.vec(s.len());
    let gamma = vec![0.7, 1.3, -0.4];
    let beta = vec![0.1, -0.2, 0.3];
    let loss = |x: &Tensor, g: &[f32]| -> f64 {
        let (y, _) = instance_norm_forward(&ctx, x, g, &beta, 1e-5).unwrap();
        y.data()
            .iter()
            .zip(&r)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };
    let (_, stats) = instance_norm_forward(&ctx, &x, &gamma, &beta, 1e-5).unwrap();
    let gy = Tensor::from_vec(s, r.clone()).unwrap();
    let g = instance_norm_backward(&ctx, &x, &stats, &gamma, &gy).unwrap();
    let h = 1e-2f32;
    for i in (0..s.len()).step_by(7) {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data_mut()[i] += h;
        xm.data_mut()[i] -= h;
        let fd = (loss(&xp, &gamma) - loss(&xm, &gamma)) / (2.0 * h as f64);
        let an = g.input.data()[i] as f64;
        assert!(
            (fd - an).abs() < 2e-3 * (1.0 + an.abs()),
            "x[{i}]: fd {fd} vs {an}"
        );
    }
    for c in 0..3 {
        let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
        gp[c] += h;
        gm[c] -= h;
        let fd = (loss(&x, &gp) - loss(&x, &gm)) / (2.0 * h as f64);
        let an = g.gamma[c] as f64;
        assert!((fd - an).abs() < 1e-3 * (1.0 + an.abs()), "gamma[{c}]");
    }
}

#[test]
fn activations_match_pytorch() {
    let fx = Fixtures::load("act");
    let ctx = Ctx::new();
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let slope = case["slope"].as_f64().unwrap() as f32;
        let x = tensor(&fx, case, "x");
        let gy = tensor(&fx, case, "gy");
        let y = leaky_relu(&ctx, &x, slope);
        assert!(
            rel_l2(y.data(), &fx.array(case, "y").1) < 1e-7,
            "{name}: forward"
        );
        let gx = leaky_relu_backward(&ctx, &x, &gy, slope).unwrap();
        assert!(
            rel_l2(gx.data(), &fx.array(case, "gx").1) < 1e-7,
            "{name}: backward"
        );
        // With a positive slope the output's sign is the input's, so backward from y agrees.
        if slope > 0.0 {
            let gy2 = leaky_relu_backward(&ctx, &y, &gy, slope).unwrap();
            assert_eq!(gy2.data(), gx.data(), "{name}: backward from output");
        }
    }
}

#[test]
fn transposed_conv_matches_pytorch_on_every_isa() {
    let fx = Fixtures::load("convt");
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let k = arr3(&case["kernel"]);
        let cin = case["cin"].as_u64().unwrap() as usize;
        let cout = case["cout"].as_u64().unwrap() as usize;
        let x = tensor(&fx, case, "x");
        let gy = tensor(&fx, case, "gy");
        let w = Conv3dWeight::from_torch_transposed(k, cin, cout, &fx.array(case, "w").1).unwrap();
        assert_eq!(w.to_torch_transposed(), fx.array(case, "w").1);
        let b = fx.array(case, "b").1;
        for ctx in ctxs() {
            let tag = format!("{name} on {}", ctx.isa());
            let y = conv_transpose3d_forward(&ctx, &x, &w, Some(&b)).unwrap();
            assert_eq!(y.shape(), gy.shape());
            let e = rel_l2(y.data(), &fx.array(case, "y").1);
            assert!(e < 1e-5, "{tag}: forward {e:e}");
            // Into a reused buffer holding garbage: every element is overwritten.
            let mut y2 = Tensor::from_vec(y.shape(), vec![f32::NAN; y.shape().len()]).unwrap();
            conv_transpose3d_forward_into(&ctx, &x, &w, Some(&b), &mut y2).unwrap();
            let e = rel_l2(y2.data(), &fx.array(case, "y").1);
            assert!(e < 1e-5, "{tag}: forward into {e:e}");
            let mut wrong = Tensor::zeros(y.shape().with_channels(cout + 1)).unwrap();
            assert!(conv_transpose3d_forward_into(&ctx, &x, &w, Some(&b), &mut wrong).is_err());
            let gx = conv_transpose3d_backward_data(&ctx, &gy, &w, x.shape()).unwrap();
            let e = rel_l2(gx.data(), &fx.array(case, "gx").1);
            assert!(e < 1e-5, "{tag}: grad input {e:e}");
            let g = conv_transpose3d_backward_weight(&ctx, &x, &gy, k).unwrap();
            let e = rel_l2(&g.weight.to_torch_transposed(), &fx.array(case, "gw").1);
            assert!(e < 1e-5, "{tag}: grad weight {e:e}");
            let e = rel_l2(&g.bias, &fx.array(case, "gb").1);
            assert!(e < 1e-5, "{tag}: grad bias {e:e}");
        }
    }
}

#[test]
fn transposed_conv_simd_equals_scalar_on_odd_channels() {
    let scalar = Ctx::with_isa(Isa::Scalar).unwrap();
    let mut rng = Rng::new(9);
    for (s, cout, k) in [
        (Shape5::new(1, 1, 1, 1, 1), 1, [2, 2, 2]),
        (Shape5::new(2, 2, 3, 5, 17), 3, [2, 2, 2]),
        (Shape5::new(1, 3, 1, 7, 5), 33, [1, 2, 2]),
    ] {
        let x = Tensor::from_vec(s, rng.vec(s.len())).unwrap();
        let taps: usize = k.iter().product();
        let w = Conv3dWeight::from_dhwio(k, s.c, cout, rng.vec(taps * s.c * cout)).unwrap();
        let y0 = conv_transpose3d_forward(&scalar, &x, &w, None).unwrap();
        let gy = Tensor::from_vec(y0.shape(), rng.vec(y0.shape().len())).unwrap();
        let gx0 = conv_transpose3d_backward_data(&scalar, &gy, &w, s).unwrap();
        let g0 = conv_transpose3d_backward_weight(&scalar, &x, &gy, k).unwrap();
        for ctx in ctxs() {
            let y = conv_transpose3d_forward(&ctx, &x, &w, None).unwrap();
            assert!(rel_max(y.data(), y0.data()) < 1e-6, "{s} {}", ctx.isa());
            let gx = conv_transpose3d_backward_data(&ctx, &gy, &w, s).unwrap();
            assert!(rel_max(gx.data(), gx0.data()) < 1e-6, "{s} {}", ctx.isa());
            let g = conv_transpose3d_backward_weight(&ctx, &x, &gy, k).unwrap();
            assert!(rel_max(g.weight.data(), g0.weight.data()) < 1e-6);
            assert!(rel_max(&g.bias, &g0.bias) < 1e-6);
        }
    }
}

#[test]
fn add_and_concat_round_trip() {
    let ctx = Ctx::new();
    let mut rng = Rng::new(1);
    let sa = Shape5::new(2, 2, 3, 4, 3);
    let sb = sa.with_channels(5);
    let a = Tensor::from_vec(sa, rng.vec(sa.len())).unwrap();
    let b = Tensor::from_vec(sb, rng.vec(sb.len())).unwrap();
    let y = concat_channels(&ctx, &a, &b).unwrap();
    assert_eq!(y.shape(), sa.with_channels(8));
    // Voxel (1, 1, 2, 3): channels 0..3 from a, 3..8 from b.
    assert_eq!(y.get(1, 1, 2, 3, 2), a.get(1, 1, 2, 3, 2));
    assert_eq!(y.get(1, 1, 2, 3, 3), b.get(1, 1, 2, 3, 0));
    assert_eq!(y.get(1, 1, 2, 3, 7), b.get(1, 1, 2, 3, 4));
    let (ga, gb) = split_channels(&ctx, &y, 3).unwrap();
    assert_eq!(ga, a);
    assert_eq!(gb, b);
    assert!(
        concat_channels(
            &ctx,
            &a,
            &Tensor::zeros(Shape5::new(2, 2, 3, 5, 1)).unwrap()
        )
        .is_err()
    );
    assert!(split_channels(&ctx, &y, 9).is_err());

    let mut c = a.clone();
    add_inplace(&ctx, &mut c, &a).unwrap();
    assert!(c.data().iter().zip(a.data()).all(|(&x, &y)| x == 2.0 * y));
    assert!(add_inplace(&ctx, &mut c, &b).is_err());
}

#[test]
fn inplace_norm_act_equals_the_unfused_chain() {
    use flare_engine::{Conv3dSpec, NormAct, conv3d_forward, instance_norm_act_inplace};
    let mut rng = Rng::new(13);
    for (s, cout, spec) in [
        (
            Shape5::new(2, 5, 6, 7, 3),
            5,
            Conv3dSpec::same([3, 3, 3]).unwrap(),
        ),
        (
            Shape5::new(1, 6, 5, 9, 16),
            17,
            Conv3dSpec::new([3; 3], [2; 3], [1; 3]).unwrap(),
        ),
    ] {
        let x = Tensor::from_vec(s, rng.vec(s.len())).unwrap();
        let w = Conv3dWeight::from_dhwio(spec.kernel, s.c, cout, rng.vec(27 * s.c * cout)).unwrap();
        // A large bias offsets the channel means, which a naive E[x^2] - E[x]^2 in f32 would
        // not survive.
        let b: Vec<f32> = rng.vec(cout).iter().map(|v| v * 50.0).collect();
        let gamma: Vec<f32> = rng.vec(cout).iter().map(|v| v + 1.5).collect();
        let beta = rng.vec(cout);
        for ctx in ctxs() {
            let conv = conv3d_forward(&ctx, &x, &w, Some(&b), &spec).unwrap();
            let (y, _) = instance_norm_forward(&ctx, &conv, &gamma, &beta, 1e-5).unwrap();
            let y = leaky_relu(&ctx, &y, 0.01);
            let norm = NormAct {
                gamma: &gamma,
                beta: &beta,
                eps: 1e-5,
                slope: 0.01,
            };
            let mut f = conv;
            instance_norm_act_inplace(&ctx, &mut f, &norm).unwrap();
            let e = rel_l2(f.data(), y.data());
            assert!(e < 1e-5, "{s} on {}: in place vs chain {e:e}", ctx.isa());
            let bad = NormAct {
                gamma: &gamma[1..],
                ..norm
            };
            assert!(instance_norm_act_inplace(&ctx, &mut f, &bad).is_err());
        }
    }
}

#[test]
fn trilinear_resize_matches_pytorch() {
    use flare_engine::{resize_trilinear, resize_trilinear_backward};
    let fx = Fixtures::load("resize");
    let ctx = Ctx::new();
    for case in fx.cases.iter().filter(|c| c.get("out").is_some()) {
        let name = case["name"].as_str().unwrap();
        let x = tensor(&fx, case, "x");
        let gy = tensor(&fx, case, "gy");
        let y = resize_trilinear(&ctx, &x, arr3(&case["out"])).unwrap();
        assert_eq!(y.shape(), gy.shape(), "{name}");
        assert!(
            rel_l2(y.data(), &fx.array(case, "y").1) < 1e-6,
            "{name}: forward"
        );
        let gx = resize_trilinear_backward(&ctx, &gy, x.shape()).unwrap();
        assert!(
            rel_l2(gx.data(), &fx.array(case, "gx").1) < 1e-6,
            "{name}: backward"
        );
    }
}

/// Channels with a mean far from zero (CT intensities before normalisation are in the
/// hundreds) must keep their small variance: compare with a two-pass f64 formula.
#[test]
fn instance_norm_survives_a_large_mean() {
    let ctx = Ctx::new();
    let mut rng = Rng::new(31);
    let s = Shape5::new(1, 6, 7, 8, 2);
    let x: Vec<f32> = rng
        .vec(s.len())
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i % 2 == 0 {
                1000.0 + 0.05 * v
            } else {
                -300.0 + v
            }
        })
        .collect();
    let x = Tensor::from_vec(s, x).unwrap();
    let (y, _) = instance_norm_forward(&ctx, &x, &[1.0, 1.0], &[0.0, 0.0], 1e-5).unwrap();
    for c in 0..2 {
        let vals: Vec<f64> = x
            .data()
            .iter()
            .skip(c)
            .step_by(2)
            .map(|&v| v as f64)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        let expect: Vec<f32> = vals
            .iter()
            .map(|v| ((v - mean) / (var + 1e-5).sqrt()) as f32)
            .collect();
        let got: Vec<f32> = y.data().iter().skip(c).step_by(2).copied().collect();
        let e = rel_l2(&got, &expect);
        assert!(e < 1e-5, "channel {c}: {e:e}");
    }
}

#[test]
fn flip_spatial_mirrors_each_marked_axis_and_is_its_own_inverse() {
    use flare_engine::flip_spatial;
    let ctx = Ctx::new();
    let mut rng = Rng::new(3);
    let s = Shape5::new(2, 3, 4, 5, 3);
    let x = Tensor::from_vec(s, rng.vec(s.len())).unwrap();
    for mask in 0..8u8 {
        let axes = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0];
        let y = flip_spatial(&ctx, &x, axes).unwrap();
        for n in 0..s.n {
            for d in 0..s.d {
                for h in 0..s.h {
                    for w in 0..s.w {
                        let (fw, fh, fd) = (
                            if axes[0] { s.w - 1 - w } else { w },
                            if axes[1] { s.h - 1 - h } else { h },
                            if axes[2] { s.d - 1 - d } else { d },
                        );
                        for c in 0..s.c {
                            assert_eq!(y.get(n, d, h, w, c), x.get(n, fd, fh, fw, c));
                        }
                    }
                }
            }
        }
        let back = flip_spatial(&ctx, &y, axes).unwrap();
        assert_eq!(back.data(), x.data());
        assert_eq!(mask == 0, y.data() == x.data());
    }
}
