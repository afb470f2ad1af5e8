//! A whole training step of a small U-Net (forward, CE + soft-Dice loss with a deep-supervision
//! head, backward, one SGD step) against PyTorch float64, from the fixtures written by
//! `scripts/fixtures/model_unet_step.py`. The initial weights are the file PyTorch wrote, so
//! this also checks that PyTorch-written model files load.

use std::{collections::HashMap, path::PathBuf};

use flare_engine::{Ctx, Isa, Sgd, Shape5, Tensor};
use flare_model::{LossConfig, Optimizer, file};
use safetensors::{Dtype, SafeTensors};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Expected tensors as f64 (values, PyTorch shape).
fn expected() -> HashMap<String, (Vec<f64>, Vec<usize>)> {
    let bytes = std::fs::read(fixture("model_unet_step_expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, t)| {
            let d = t.data();
            let v: Vec<f64> = match t.dtype() {
                Dtype::F32 => d
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::F64 => d
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                Dtype::U8 => d.iter().map(|&b| b as f64).collect(),
                other => panic!("{k}: unexpected dtype {other:?}"),
            };
            (k, (v, t.shape().to_vec()))
        })
        .collect()
}

/// `[N, C, D, H, W]` -> channels-last.
fn ncdhw_to_ndhwc(v: &[f64], s: &[usize]) -> Vec<f64> {
    let (n, c, sp) = (s[0], s[1], s[2] * s[3] * s[4]);
    let mut out = vec![0.0; v.len()];
    for b in 0..n {
        for ch in 0..c {
            for i in 0..sp {
                out[(b * sp + i) * c + ch] = v[(b * c + ch) * sp + i];
            }
        }
    }
    out
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-300)).sqrt()
}

fn run_step(ctx: &Ctx) {
    let exp = expected();
    let (mut net, card) = file::load(&fixture("model_unet_step_init.safetensors")).unwrap();
    assert!(card.architecture.deep_supervision);
    let (xv, xs) = &exp["x"];
    let shape = Shape5::new(xs[0], xs[2], xs[3], xs[4], xs[1]);
    let x = Tensor::from_vec(
        shape,
        ncdhw_to_ndhwc(xv, xs).iter().map(|&v| v as f32).collect(),
    )
    .unwrap();
    let labels: Vec<u8> = exp["labels"].0.iter().map(|&v| v as u8).collect();

    let fwd = net.forward_train(ctx, x).unwrap();
    let (lv, ls) = &exp["logits"];
    let e = rel_l2(fwd.logits.data(), &ncdhw_to_ndhwc(lv, ls));
    assert!(e < 1e-5, "logits rel L2 {e:e}");
    let (dv, ds) = &exp["ds.1.logits"];
    assert_eq!(fwd.ds_logits.len(), 1);
    let e = rel_l2(fwd.ds_logits[0].1.data(), &ncdhw_to_ndhwc(dv, ds));
    assert!(e < 1e-5, "ds logits rel L2 {e:e}");

    let cfg = LossConfig::default();
    let lg = fwd.loss(ctx, &net, &labels, &cfg).unwrap();
    let loss = lg.loss;
    let want = exp["loss"].0[0];
    assert!(
        ((loss - want) / want).abs() < 1e-5,
        "loss {loss} vs PyTorch {want}"
    );
    let grads = net.backward(ctx, &fwd, &lg.logits, &lg.ds).unwrap();

    // Gradients: relative L2 per tensor. The conv biases right before an instance norm have a
    // zero gradient in exact arithmetic (the norm removes any per-channel shift); there both
    // sides hold rounding noise, so they are checked against the scale of their weight's.
    let mut worst = (0.0f64, String::new());
    let mut scale = 1.0f64;
    for (spec, got) in grads.to_torch() {
        let (want, shape) = &exp[&format!("grad.{}", spec.name)];
        assert_eq!(shape, &spec.shape, "{}", spec.name);
        let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
        if spec.name.ends_with(".weight") {
            scale = norm;
        }
        let pre_norm_bias = spec.name.ends_with(".bias") && spec.name.contains(".conv");
        if pre_norm_bias {
            let abs = got.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            assert!(
                abs < 1e-5 * scale,
                "{}: |grad| {abs:e} should be ~0",
                spec.name
            );
            continue;
        }
        let e = rel_l2(&got, want);
        if e > worst.0 {
            worst = (e, spec.name.clone());
        }
    }
    eprintln!("worst gradient rel L2 {:e} in {}", worst.0, worst.1);
    assert!(
        worst.0 < 1e-5,
        "worst gradient rel L2 {:e} in {}",
        worst.0,
        worst.1
    );

    let mut opt = Optimizer::sgd(
        &net,
        Sgd {
            momentum: 0.99,
            nesterov: true,
            weight_decay: 3e-5,
        },
    );
    opt.step(&mut net, &grads, 0.01).unwrap();
    let mut worst = (0.0f64, String::new());
    for (spec, got) in net.to_torch() {
        let (want, _) = &exp[&format!("after.{}", spec.name)];
        let e = rel_l2(&got, want);
        if e > worst.0 {
            worst = (e, spec.name.clone());
        }
    }
    assert!(
        worst.0 < 1e-5,
        "worst parameter rel L2 after the step {:e} in {}",
        worst.0,
        worst.1
    );
}

#[test]
fn one_training_step_matches_pytorch_best_isa() {
    run_step(&Ctx::new());
}

#[test]
fn one_training_step_matches_pytorch_scalar() {
    run_step(&Ctx::with_isa(Isa::Scalar).unwrap());
}
