//! Lean inference equals the training forward (which the PyTorch fixtures pin down) and
//! PyTorch's logits, across slab boundaries, anisotropic kernels and strides, and a batch of 2.

use flare_engine::{Bf16Kernel, Ctx, Isa, Shape5, Tensor};
use flare_model::{InferWorkspace, UNet, UNetConfig, argmax_labels, file};

mod common;
use common::{noise, rel_l2};

#[test]
fn lean_inference_equals_the_training_forward() {
    let mut cfg = UNetConfig::standard(1, 5, &[4, 8, 16]);
    cfg.kernels = vec![[3, 3, 1], [3, 3, 3], [1, 3, 3]];
    cfg.strides[2] = [2, 1, 2];
    cfg.deep_supervision = true;
    let mut net = UNet::init(&cfg, 5).unwrap();
    // Non-trivial biases and affines so every parameter shows in the output.
    for (i, slot) in net.slots_mut().into_iter().enumerate() {
        if slot.len() < 20 {
            for (j, v) in slot.iter_mut().enumerate() {
                *v += 0.05 * (((i * 7 + j * 3) % 11) as f32 - 5.0);
            }
        }
    }
    // Depth 40 crosses the 16-plane slabs of the decoder's accumulating convolution.
    let x = noise(Shape5::new(2, 40, 8, 12, 1), 9);
    for isa in [Isa::Scalar, Isa::best()] {
        let ctx = Ctx::with_isa(isa).unwrap();
        let want = net.forward_train(&ctx, x.clone()).unwrap().logits;
        let (got, stats) = net.infer(&ctx, x.clone()).unwrap();
        assert_eq!(got.shape(), want.shape());
        let e = rel_l2(got.data(), want.data());
        assert!(e < 1e-5, "{isa}: rel L2 {e:e}");
        assert!(stats.peak_activation_bytes > 0);
    }
}

#[test]
fn lean_inference_matches_pytorch_logits() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (net, _) = file::load(&dir.join("model_unet_step_init.safetensors")).unwrap();
    let bytes = std::fs::read(dir.join("model_unet_step_expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let x = Tensor::from_vec(Shape5::new(1, 16, 16, 16, 1), f32s("x")).unwrap();
    let (got, _) = net.infer(&Ctx::new(), x).unwrap();
    // PyTorch's logits are [1, 5, 16, 16, 16]: move channels last.
    let torch = f32s("logits");
    let sp = 16 * 16 * 16;
    let want: Vec<f32> = (0..sp * 5).map(|k| torch[(k % 5) * sp + k / 5]).collect();
    let e = rel_l2(got.data(), &want);
    assert!(e < 1e-5, "rel L2 {e:e}");
    let labels = argmax_labels(&got);
    let ref_labels = argmax_labels(&Tensor::from_vec(got.shape(), want).unwrap());
    let differ = labels
        .iter()
        .zip(&ref_labels)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differ <= 2,
        "{differ} voxels get another class than PyTorch's"
    );
}

#[test]
fn bad_inputs_are_refused() {
    let net = UNet::init(&UNetConfig::standard(1, 5, &[4, 8]), 1).unwrap();
    let ctx = Ctx::new();
    assert!(
        net.infer(&ctx, noise(Shape5::new(1, 8, 8, 7, 1), 1))
            .is_err()
    );
    assert!(
        net.infer(&ctx, noise(Shape5::new(1, 8, 8, 8, 2), 1))
            .is_err()
    );
    assert!(
        net.forward_train(&ctx, noise(Shape5::new(1, 8, 8, 7, 1), 1))
            .is_err()
    );
}

#[test]
fn a_reused_workspace_gives_the_same_logits_without_fresh_buffers() {
    let net = UNet::init(&UNetConfig::standard(1, 5, &[4, 8, 16]), 3).unwrap();
    let x = noise(Shape5::new(1, 16, 12, 8, 1), 4);
    // fp32, and bf16 (whose norms write half-size pair buffers beside the fp32 ones).
    let mut ctxs = vec![
        Ctx::new(),
        Ctx::new().with_bf16_kernel(Bf16Kernel::Reference).unwrap(),
    ];
    match Bf16Kernel::native() {
        Some(k) => ctxs.push(Ctx::new().with_bf16_kernel(k).unwrap()),
        None => eprintln!("native bf16 kernel skipped: this CPU lacks avx512_bf16"),
    }
    for ctx in ctxs {
        let tag = format!("{:?}", ctx.bf16_kernel());
        let (want, stats) = net.infer(&ctx, x.clone()).unwrap();
        let mut ws = InferWorkspace::new();
        for run in 0..4 {
            let (got, s) = net.infer_with(&ctx, x.clone(), &mut ws).unwrap();
            assert_eq!(got.data(), want.data(), "{tag} run {run}");
            assert_eq!(s.peak_activation_bytes, stats.peak_activation_bytes);
            // Poison the spares so a buffer the forward did not fully overwrite would show.
            let mut poisoned = got;
            poisoned.data_mut().fill(f32::NAN);
            ws.recycle(poisoned);
            // At most one buffer per tensor that was alive at once (here under 2x the peak).
            assert!(
                ws.held_bytes() < 2 * stats.peak_activation_bytes,
                "{tag} run {run}"
            );
            if run >= 2 {
                assert_eq!(
                    s.fresh_bytes, 0,
                    "{tag} run {run}: every buffer from the workspace"
                );
            }
        }
    }
}
