//! The whole U-Net in bf16 (issue 11) against fp32: logits of lean inference and of the
//! training forward, and every parameter's gradient from a training backward, within a bf16-sized
//! relative error, on the portable bf16 reference (every CPU) and the native kernel (where the
//! CPU has avx512_bf16; skipped with a printed reason elsewhere).
//!
//! Tolerance: logits within relative L2 3e-2 (and above 1e-4). One bf16 convolution is off by
//! about 0.003 in relative L2 (the engine's tests); the U-Net chains 15 of them, and instance
//! norm rescales each output back to unit size, so the errors add up to about 1e-2 (measured
//! 2026-12-06). Gradients: see the test. The lower bounds prove the bf16 path ran: fp32 paths
//! agree to 1e-5.

use flare_engine::{Bf16Kernel, Ctx, Shape5, Tensor, bf16_round};
use flare_model::{UNet, UNetConfig};

mod common;
use common::{noise, rel_l2};

fn bf16_ctxs() -> Vec<Ctx> {
    let mut v = vec![Ctx::new().with_bf16_kernel(Bf16Kernel::Reference).unwrap()];
    match Bf16Kernel::native() {
        Some(k) => v.push(Ctx::new().with_bf16_kernel(k).unwrap()),
        None => eprintln!("native bf16 kernel skipped: this CPU lacks avx512_bf16"),
    }
    v
}

#[test]
fn unet_in_bf16_stays_within_bf16_error_of_fp32() {
    let cfg = UNetConfig::standard(1, 5, &[8, 16, 32]);
    let net = UNet::init(&cfg, 3).unwrap();
    let x = noise(Shape5::new(1, 16, 16, 24, 1), 5);
    let fp32 = Ctx::new();
    let (want, _) = net.infer(&fp32, x.clone()).unwrap();
    let fwd32 = net.forward_train(&fp32, x.clone()).unwrap();
    let g_logits = noise(fwd32.logits.shape(), 6);
    let flat = |g: &UNet| -> Vec<f32> { g.slots().concat() };
    let grads32 = flat(&net.backward(&fp32, &fwd32, &g_logits, &[]).unwrap());
    // How far the fp32 gradients themselves move when only the input is rounded to bf16 (the
    // logits move by ~0.3%): a random network's weight gradients under a random logit gradient
    // are ill-conditioned (measured 2026-12-06: 0.096 here), so bf16's are held to a few times
    // that, not to the logits' 3e-2. A wrong operand or channel gives errors near 1.
    let x_rounded = x.data().iter().map(|&v| bf16_round(v)).collect();
    let x_rounded = Tensor::from_vec(x.shape(), x_rounded).unwrap();
    let fwd_rounded = net.forward_train(&fp32, x_rounded).unwrap();
    let sensitivity = rel_l2(
        &flat(&net.backward(&fp32, &fwd_rounded, &g_logits, &[]).unwrap()),
        &grads32,
    );
    for ctx in bf16_ctxs() {
        let tag = format!("{:?}", ctx.bf16_kernel());
        let (got, _) = net.infer(&ctx, x.clone()).unwrap();
        let e = rel_l2(got.data(), want.data());
        assert!(
            (1e-4..3e-2).contains(&e),
            "{tag}: inference logits rel L2 {e:e}"
        );
        let fwd = net.forward_train(&ctx, x.clone()).unwrap();
        let e = rel_l2(fwd.logits.data(), fwd32.logits.data());
        assert!(
            (1e-4..3e-2).contains(&e),
            "{tag}: training logits rel L2 {e:e}"
        );
        // Lean inference hands bf16 pairs from each norm to the next convolution; the training
        // forward converts inside each convolution. Same roundings of nearly the same fp32
        // values (the two norms sum in other orders), so the logits agree far inside bf16's
        // error: a misread pair would move them by about their own size.
        let e = rel_l2(got.data(), fwd.logits.data());
        assert!(
            e < 3e-3,
            "{tag}: lean vs training forward logits rel L2 {e:e}"
        );
        let grads = flat(&net.backward(&ctx, &fwd, &g_logits, &[]).unwrap());
        let e = rel_l2(&grads, &grads32);
        assert!(
            e > 1e-4 && e < 0.3 && e < 3.0 * sensitivity,
            "{tag}: parameter gradients rel L2 {e:e} (fp32 with the input rounded: {sensitivity:e})"
        );
        eprintln!("{tag}: parameter gradients rel L2 {e:e}");
    }
}
