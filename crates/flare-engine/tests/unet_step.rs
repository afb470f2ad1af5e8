//! A whole (tiny, two-level) U-Net training step composed from the engine's layers: forward,
//! cross-entropy + soft Dice, backward through every layer, one SGD (Nesterov) step; the loss,
//! every parameter gradient and every updated parameter must match PyTorch (float64).

mod common;

use common::{Fixtures, rel_l2};
use flare_engine::{
    Conv3dSpec, Conv3dWeight, Ctx, Isa, NormStats, Sgd, SgdState, Shape5, Tensor, add_inplace,
    concat_channels, conv_transpose3d_backward_data, conv_transpose3d_backward_weight,
    conv_transpose3d_forward, conv3d_backward_data, conv3d_backward_weight, conv3d_forward,
    cross_entropy, instance_norm_backward, instance_norm_forward, leaky_relu, leaky_relu_backward,
    soft_dice, split_channels,
};

/// Conv + instance norm + LeakyReLU, keeping what backward needs.
struct Block {
    input: Tensor,
    conv: Tensor,
    stats: NormStats,
    normed: Tensor,
}

struct Params {
    conv: Conv3dWeight,
    bias: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    spec: Conv3dSpec,
}

fn block_fwd(ctx: &Ctx, x: &Tensor, p: &Params) -> (Block, Tensor) {
    let conv = conv3d_forward(ctx, x, &p.conv, Some(&p.bias), &p.spec).unwrap();
    let (normed, stats) = instance_norm_forward(ctx, &conv, &p.gamma, &p.beta, 1e-5).unwrap();
    let out = leaky_relu(ctx, &normed, 0.01);
    let b = Block {
        input: x.clone(),
        conv,
        stats,
        normed,
    };
    (b, out)
}

/// Returns the input gradient and the gradients (conv w, conv b, gamma, beta).
fn block_bwd(ctx: &Ctx, b: &Block, p: &Params, g: &Tensor) -> (Tensor, [Vec<f32>; 4]) {
    let g = leaky_relu_backward(ctx, &b.normed, g, 0.01).unwrap();
    let n = instance_norm_backward(ctx, &b.conv, &b.stats, &p.gamma, &g).unwrap();
    let cg = conv3d_backward_weight(ctx, &b.input, &n.input, &p.spec).unwrap();
    let gx = conv3d_backward_data(ctx, &n.input, &p.conv, &p.spec, b.input.shape()).unwrap();
    (gx, [cg.weight.to_torch(), cg.bias, n.gamma, n.beta])
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn two_level_unet_step_matches_pytorch_on_every_isa() {
    let fx = Fixtures::load("unet");
    let case = &fx.cases[0];
    let arr = |name: &str| fx.array(case, name).1;
    let x = Tensor::from_vec(Shape5::new(1, 8, 8, 8, 1), arr("x")).unwrap();
    let labels: Vec<u8> = arr("labels").iter().map(|&v| v as u8).collect();
    let ce_w: Vec<f32> = common::usizes_f32(&case["ce_weights"]);
    let dice_w: Vec<f32> = common::usizes_f32(&case["dice_weights"]);
    let same = Conv3dSpec::same([3; 3]).unwrap();
    let down = Conv3dSpec::new([3; 3], [2; 3], [1; 3]).unwrap();
    let head = Conv3dSpec::same([1; 3]).unwrap();
    let params = |i: usize, cin: usize, cout: usize, spec: Conv3dSpec| Params {
        conv: Conv3dWeight::from_torch([3; 3], cin, cout, &arr(&format!("p0_c{i}w"))).unwrap(),
        bias: arr(&format!("p0_c{i}b")),
        gamma: arr(&format!("p0_n{i}g")),
        beta: arr(&format!("p0_n{i}b")),
        spec,
    };
    let p0 = params(0, 1, 4, same);
    let p1 = params(1, 4, 8, down);
    let p2 = params(2, 8, 4, same);
    let tw = Conv3dWeight::from_torch_transposed([2; 3], 8, 4, &arr("p0_tw")).unwrap();
    let tb = arr("p0_tb");
    let hw = Conv3dWeight::from_torch([1; 3], 4, 3, &arr("p0_hw")).unwrap();
    let hb = arr("p0_hb");

    for isa in Isa::supported() {
        let ctx = Ctx::with_isa(isa).unwrap();
        // Forward.
        let (b0, a0) = block_fwd(&ctx, &x, &p0);
        let (b1, a1) = block_fwd(&ctx, &a0, &p1);
        let u = conv_transpose3d_forward(&ctx, &a1, &tw, Some(&tb)).unwrap();
        let cat = concat_channels(&ctx, &u, &a0).unwrap();
        let (b2, a2) = block_fwd(&ctx, &cat, &p2);
        let z = conv3d_forward(&ctx, &a2, &hw, Some(&hb), &head).unwrap();
        let ce = cross_entropy(&ctx, &z, &labels, Some(&ce_w)).unwrap();
        let dl = soft_dice(&ctx, &z, &labels, Some(&dice_w), 1e-5).unwrap();
        let loss = ce.loss + dl.loss;
        let loss_ref = arr("loss")[0] as f64;
        assert!(
            (loss - loss_ref).abs() < 1e-5 * loss_ref,
            "{isa}: loss {loss} vs {loss_ref}"
        );

        // Backward.
        let mut gz = ce.grad;
        add_inplace(&ctx, &mut gz, &dl.grad).unwrap();
        let gh = conv3d_backward_weight(&ctx, &a2, &gz, &head).unwrap();
        let ga2 = conv3d_backward_data(&ctx, &gz, &hw, &head, a2.shape()).unwrap();
        let (gcat, g2) = block_bwd(&ctx, &b2, &p2, &ga2);
        let (gu, mut ga0) = split_channels(&ctx, &gcat, 4).unwrap();
        let gt = conv_transpose3d_backward_weight(&ctx, &a1, &gu, [2; 3]).unwrap();
        let ga1 = conv_transpose3d_backward_data(&ctx, &gu, &tw, a1.shape()).unwrap();
        let (ga0_down, g1) = block_bwd(&ctx, &b1, &p1, &ga1);
        add_inplace(&ctx, &mut ga0, &ga0_down).unwrap();
        let (_, g0) = block_bwd(&ctx, &b0, &p0, &ga0);

        let mut grads: Vec<(String, Vec<f32>)> = Vec::new();
        for (i, g) in [(0, g0), (1, g1), (2, g2)] {
            let [w, b, gm, bt] = g;
            grads.push((format!("c{i}w"), w));
            grads.push((format!("c{i}b"), b));
            grads.push((format!("n{i}g"), gm));
            grads.push((format!("n{i}b"), bt));
        }
        grads.push(("tw".into(), gt.weight.to_torch_transposed()));
        grads.push(("tb".into(), gt.bias));
        grads.push(("hw".into(), gh.weight.to_torch()));
        grads.push(("hb".into(), gh.bias));
        assert_eq!(grads.len(), 16);

        // One SGD step per parameter (in PyTorch's layout: the update is element-wise).
        let sgd = Sgd {
            momentum: 0.99,
            nesterov: true,
            weight_decay: 3e-5,
        };
        for (name, g) in &grads {
            let reference = arr(&format!("grad_{name}"));
            let e = if name.starts_with('c') && name.ends_with('b') {
                // A bias followed by instance norm has zero gradient in exact arithmetic (the
                // norm removes the channel mean), so both sides are rounding noise: measure the
                // error against the layer's weight gradient instead.
                let scale = norm(&arr(&format!("grad_{}w", &name[..2])));
                let diff: Vec<f32> = g.iter().zip(&reference).map(|(a, b)| a - b).collect();
                norm(&diff) / scale
            } else {
                rel_l2(g, &reference)
            };
            assert!(e < 1e-5, "{isa}: grad {name} rel L2 {e:e}");
            let mut p = arr(&format!("p0_{name}"));
            let mut st = SgdState::new(p.len());
            sgd.step(&mut p, g, &mut st, 0.01).unwrap();
            let e = rel_l2(&p, &arr(&format!("p1_{name}")));
            assert!(e < 1e-6, "{isa}: updated {name} rel L2 {e:e}");
        }
    }
}
