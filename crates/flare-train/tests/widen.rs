//! `scripts/train/widen.py` (Net2WiderNet for flare's U-Net) keeps the network's function: a
//! small U-Net with non-trivial parameters, widened x2 and x1.5, gives the same logits and deep
//! supervision outputs as before, through flare's own model loader and forward pass.

use flare_engine::{Ctx, Shape5, Tensor};
use flare_model::{ModelCard, UNet, UNetConfig, file};
use flare_testkit::{TempDir, bench::noise, python_with, rel_l2, run_python, workspace_root};

#[test]
fn widening_keeps_the_networks_outputs() {
    let Some(py) = python_with(
        "widening_keeps_the_networks_outputs",
        &["numpy", "safetensors"],
    ) else {
        return;
    };
    let mut cfg = UNetConfig::standard(1, 5, &[4, 6, 10]);
    cfg.deep_supervision = true;
    let mut net = UNet::init(&cfg, 3).unwrap();
    // Non-trivial biases and norm affines, so that a copy that lost its share would show.
    for (i, slot) in net.slots_mut().into_iter().enumerate() {
        for (j, v) in slot.iter_mut().enumerate() {
            *v += 0.1 * (((i * 7 + j * 3) % 11) as f32 - 5.0) / 5.0;
        }
    }
    let dir = TempDir::new("widen");
    let src = dir.join("narrow.safetensors");
    file::save(&src, &net, &ModelCard::untrained(cfg.clone())).unwrap();
    let script = workspace_root().join("scripts/train/widen.py");
    let shape = Shape5::new(1, 16, 16, 16, 1);
    let x = Tensor::from_vec(shape, noise(shape.len(), 11)).unwrap();
    let ctx = Ctx::new();
    let want = net.forward_train(&ctx, x.clone()).unwrap();
    for (factor, widths) in [("2", [8, 12, 20]), ("1.5", [6, 9, 15])] {
        let dst = dir.join(&format!("wide{factor}.safetensors"));
        let runner = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')";
        run_python(
            &py,
            runner,
            &[
                script.to_str().unwrap(),
                src.to_str().unwrap(),
                dst.to_str().unwrap(),
                "--factor",
                factor,
                "--seed",
                "4",
            ],
        );
        let (wide, card) = file::load(&dst).unwrap();
        assert_eq!(card.architecture.widths, widths, "factor {factor}");
        let got = wide.forward_train(&ctx, x.clone()).unwrap();
        let e = rel_l2(got.logits.data(), want.logits.data());
        assert!(e < 1e-5, "factor {factor}: logits rel L2 {e:e}");
        assert_eq!(got.ds_logits.len(), want.ds_logits.len());
        for ((l, g), (_, w)) in got.ds_logits.iter().zip(&want.ds_logits) {
            let e = rel_l2(g.data(), w.data());
            assert!(
                e < 1e-5,
                "factor {factor}: deep supervision {l} rel L2 {e:e}"
            );
        }
        // The two copies of one input channel read it with different weights (random
        // shares), or training could never pull them apart. In x2, input channels 0 and 1 of
        // a convolution are the copies of channel 0.
        if factor == "2" {
            let params = wide.to_torch();
            let (spec, w) = params
                .iter()
                .find(|(s, _)| s.name == "encoder.1.conv2.weight")
                .unwrap();
            let taps: usize = spec.shape[2..].iter().product();
            let (copy_a, copy_b) = (&w[..taps], &w[taps..2 * taps]);
            assert!(copy_a.iter().zip(copy_b).all(|(a, b)| a != b));
        }
    }
}
