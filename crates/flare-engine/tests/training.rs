//! Softmax, losses and optimisers against PyTorch (fixtures from
//! `scripts/fixtures/engine_fixtures.py`), plus finite-difference checks of the loss gradients.

mod common;

use common::{Fixtures, Rng, rel_l2};
use flare_engine::{
    AdamState, AdamW, Ctx, LrSchedule, Sgd, SgdState, Shape5, Tensor, cross_entropy, soft_dice,
    softmax,
};

fn tensor(fx: &Fixtures, case: &serde_json::Value, name: &str) -> Tensor {
    let (s, d) = fx.array(case, name);
    Tensor::from_vec(Shape5::new(s[0], s[1], s[2], s[3], s[4]), d).unwrap()
}

fn labels(fx: &Fixtures, case: &serde_json::Value) -> Vec<u8> {
    fx.array(case, "labels")
        .1
        .iter()
        .map(|&v| v as u8)
        .collect()
}

#[test]
fn losses_match_pytorch() {
    let fx = Fixtures::load("loss");
    let ctx = Ctx::new();
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let logits = tensor(&fx, case, "logits");
        let lab = labels(&fx, case);
        let weighted = case["weighted"].as_bool().unwrap();
        let cew = weighted.then(|| fx.array(case, "ce_weights").1);
        let dw = weighted.then(|| fx.array(case, "dice_weights").1);
        let smooth = case["smooth"].as_f64().unwrap();

        let p = softmax(&ctx, &logits);
        assert!(
            rel_l2(p.data(), &fx.array(case, "softmax").1) < 1e-6,
            "{name}: softmax"
        );

        let ce = cross_entropy(&ctx, &logits, &lab, cew.as_deref()).unwrap();
        let ce_ref = fx.array(case, "ce").1[0] as f64;
        assert!(
            (ce.loss - ce_ref).abs() < 1e-5 * ce_ref.abs(),
            "{name}: ce {}",
            ce.loss
        );
        let e = rel_l2(ce.grad.data(), &fx.array(case, "ce_grad").1);
        assert!(e < 1e-5, "{name}: ce grad {e:e}");

        let d = soft_dice(&ctx, &logits, &lab, dw.as_deref(), smooth).unwrap();
        let d_ref = fx.array(case, "dice").1[0] as f64;
        assert!(
            (d.loss - d_ref).abs() < 1e-5 * d_ref.abs(),
            "{name}: dice {}",
            d.loss
        );
        let e = rel_l2(d.grad.data(), &fx.array(case, "dice_grad").1);
        assert!(e < 1e-5, "{name}: dice grad {e:e}");
    }
}

#[test]
fn loss_gradients_match_finite_differences() {
    let ctx = Ctx::new();
    let mut rng = Rng::new(21);
    let s = Shape5::new(1, 2, 2, 3, 4);
    let logits = Tensor::from_vec(s, rng.vec(s.len()).iter().map(|v| v * 2.0).collect()).unwrap();
    let lab: Vec<u8> = (0..s.voxels()).map(|i| (i * 7 % 4) as u8).collect();
    let w = [0.2f32, 1.0, 2.0, 0.7];
    let h = 1e-2f32;
    type LossFn<'a> = dyn Fn(&Tensor) -> (f64, Tensor) + 'a;
    let ce: Box<LossFn<'_>> = Box::new(|z: &Tensor| {
        let r = cross_entropy(&ctx, z, &lab, Some(&w)).unwrap();
        (r.loss, r.grad)
    });
    let dice: Box<LossFn<'_>> = Box::new(|z: &Tensor| {
        let r = soft_dice(&ctx, z, &lab, Some(&w), 1e-5).unwrap();
        (r.loss, r.grad)
    });
    for f in [ce, dice] {
        let (_, g) = f(&logits);
        for i in (0..s.len()).step_by(3) {
            let (mut zp, mut zm) = (logits.clone(), logits.clone());
            zp.data_mut()[i] += h;
            zm.data_mut()[i] -= h;
            let fd = (f(&zp).0 - f(&zm).0) / (2.0 * h as f64);
            let an = g.data()[i] as f64;
            assert!(
                (fd - an).abs() < 1e-4 + 1e-2 * an.abs(),
                "z[{i}]: fd {fd} vs {an}"
            );
        }
    }
}

#[test]
fn losses_reject_bad_labels() {
    let ctx = Ctx::new();
    let z = Tensor::zeros(Shape5::new(1, 1, 1, 2, 3)).unwrap();
    assert!(cross_entropy(&ctx, &z, &[0, 3], None).is_err());
    assert!(cross_entropy(&ctx, &z, &[0], None).is_err());
    assert!(soft_dice(&ctx, &z, &[0, 1], Some(&[1.0, 1.0]), 1e-5).is_err());
    assert!(cross_entropy(&ctx, &z, &[0, 0], Some(&[0.0, 1.0, 1.0])).is_err());
}

#[test]
fn optimisers_and_schedules_match_pytorch() {
    let fx = Fixtures::load("optim");
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let total = case["total"].as_u64().unwrap() as usize;
        let base = case["base_lr"].as_f64().unwrap();
        let p0 = fx.array(case, "p0").1;
        let grads = fx.array(case, "grads").1;
        let lrs_ref = fx.array(case, "lrs").1;
        let schedule = match case["schedule"].as_str().unwrap() {
            "poly" => LrSchedule::Poly { power: 0.9 },
            "cosine" => LrSchedule::Cosine { min_lr: 1e-5 },
            _ => LrSchedule::Constant,
        };
        let mut p = p0.clone();
        let n = p.len();
        let mut sgd_state = SgdState::new(n);
        let mut adam_state = AdamState::new(n);
        for s in 0..steps {
            let lr = schedule.lr(base, s, total);
            assert!(
                (lr - lrs_ref[s] as f64).abs() < 1e-6 * lr,
                "{name}: lr at {s}"
            );
            let g = &grads[s * n..(s + 1) * n];
            if case["kind"] == "sgd" {
                let opt = Sgd {
                    momentum: case["momentum"].as_f64().unwrap() as f32,
                    nesterov: case["nesterov"].as_bool().unwrap(),
                    weight_decay: case["weight_decay"].as_f64().unwrap() as f32,
                };
                opt.step(&mut p, g, &mut sgd_state, lr as f32).unwrap();
            } else {
                let opt = AdamW {
                    weight_decay: case["weight_decay"].as_f64().unwrap() as f32,
                    ..AdamW::default()
                };
                opt.step(&mut p, g, &mut adam_state, lr as f32).unwrap();
            }
        }
        let p_ref = fx.array(case, "p_final").1;
        assert!(rel_l2(&p, &p_ref) < 1e-6, "{name}: parameters");
        // The update itself, which is small next to the parameters, must match too.
        let d: Vec<f32> = p.iter().zip(&p0).map(|(a, b)| a - b).collect();
        let d_ref: Vec<f32> = p_ref.iter().zip(&p0).map(|(a, b)| a - b).collect();
        let e = rel_l2(&d, &d_ref);
        assert!(e < 1e-4, "{name}: update rel L2 {e:e}");
    }
    let mut st = SgdState::new(2);
    let sgd = Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    assert!(sgd.step(&mut [0.0; 3], &[0.0; 3], &mut st, 0.1).is_err());
}
