//! The whole-U-Net benchmark of issue 4: flare against PyTorch and ONNX Runtime, same run.
//!
//! `cargo run --release -p flare-model --example engine_bench [-- --size 128 --threads 2
//!  --reps 3 --train-reps 2 --no-python --no-layers --no-train --out DIR]`
//! (`--only SUBSTR` times only the layers whose name contains it, `--fwd-only` skips their
//! backward: for quick kernel work, not for the tracked summary).
//!
//! 4-level U-Net, widths 16-32-64-128, input 1 x 1 x S^3, fixed thread count. Prints: the FMA
//! ceiling measured now; every convolution layer alone (GFLOP, ms, GFLOP/s, % of ceiling);
//! the lean inference forward and one training step (forward + CE/Dice loss + backward +
//! SGD update) of flare; then runs `scripts/bench/engine_pytorch_ort.py` on the weights this
//! run saved (PyTorch forward and train step, ONNX Runtime forward, same threads), and ends
//! with the summary line
//! `engine: unet forward flare=<s> onnxruntime=<s> pytorch=<s> train_step flare=<s> pytorch=<s> ceiling_pct=<n>`.
//! Times are the best of `--reps` after a warm-up; the load average is printed at start.
//!
//! Where the CPU has avx512_bf16 (unless `--no-bf16`), the per-layer table gains bf16 columns
//! (forward, backward to the input and backward to the weights on the bf16 kernels, and each
//! pass's total against fp32's), and flare's forward and train step run again with bf16
//! convolutions from the same weights, PyTorch's under
//! `torch.autocast("cpu", dtype=torch.bfloat16)`; after the summary line comes
//! `engine-bf16: unet forward flare=<s> pytorch=<s> train_step flare=<s> pytorch=<s>` (issue 11).

use std::{path::PathBuf, process::Command, time::Instant};

use flare_engine::{
    Conv3dSpec, Conv3dWeight, Ctx, Precision, Sgd, Shape5, Tensor, conv_transpose3d_backward_data,
    conv_transpose3d_backward_weight, conv_transpose3d_forward, conv_transpose3d_forward_into,
    conv_transpose3d_output_shape, conv3d_backward_data, conv3d_backward_weight, conv3d_forward,
    conv3d_forward_into, fma_ceiling,
};
use flare_model::{
    InferWorkspace, LossConfig, ModelCard, Optimizer, UNet, UNetConfig, file, train_step,
};
use flare_testkit::bench::arg;

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn opt_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Best wall time of `reps` runs after one warm-up.
type BoxErr = Box<dyn std::error::Error + Send + Sync>;

fn best_of<F: FnMut() -> Result<(), BoxErr>>(reps: usize, mut f: F) -> Result<f64, BoxErr> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn noise(shape: Shape5, seed: u32) -> Result<Tensor, flare_engine::EngineError> {
    Tensor::from_vec(shape, flare_testkit::bench::noise(shape.len(), seed))
}

/// Times one layer's passes in a context.
type TimePasses<'a> = Box<dyn FnMut(&Ctx) -> Result<Passes, BoxErr> + 'a>;

/// Seconds of one layer's three convolution passes (or their sums over layers); NaN where a
/// pass was not run.
#[derive(Clone, Copy, Default)]
struct Passes {
    fwd: f64,
    data: f64,
    wgt: f64,
}

impl Passes {
    fn not_run() -> Passes {
        Passes {
            fwd: f64::NAN,
            data: f64::NAN,
            wgt: f64::NAN,
        }
    }

    fn add(&mut self, p: &Passes) {
        self.fwd += p.fwd;
        self.data += p.data;
        self.wgt += p.wgt;
    }
}

/// One convolution of the network: name, input shape, weights, spec.
struct Layer {
    name: String,
    input: Shape5,
    weight: Conv3dWeight,
    spec: Conv3dSpec,
    transposed: bool,
}

/// Every convolution of the forward pass with its input shape (decoder conv1 over the
/// concatenation, as PyTorch runs it).
fn layers(net: &UNet, size: usize) -> Vec<Layer> {
    let cfg = net.config();
    let mut out = Vec::new();
    let mut shape = Shape5::new(1, size, size, size, cfg.in_channels);
    let mut level_shapes = Vec::new();
    for (l, units) in net.encoder.iter().enumerate() {
        for (i, u) in units.iter().enumerate() {
            out.push(Layer {
                name: format!("encoder.{l}.conv{}", i + 1),
                input: shape,
                weight: u.conv.weight.clone(),
                spec: u.conv.spec,
                transposed: false,
            });
            shape = u
                .conv
                .spec
                .output_shape(shape, u.conv.weight.cout())
                .unwrap_or(shape);
        }
        level_shapes.push(shape);
    }
    for l in (0..net.decoder.len()).rev() {
        let d = &net.decoder[l];
        out.push(Layer {
            name: format!("decoder.{l}.up"),
            input: shape,
            weight: d.up.weight.clone(),
            spec: Conv3dSpec {
                kernel: d.up.weight.kernel(),
                stride: d.up.weight.kernel(),
                padding: [0; 3],
            },
            transposed: true,
        });
        shape = level_shapes[l].with_channels(2 * cfg.widths[l]);
        for (i, u) in d.units.iter().enumerate() {
            out.push(Layer {
                name: format!("decoder.{l}.conv{}", i + 1),
                input: shape,
                weight: u.conv.weight.clone(),
                spec: u.conv.spec,
                transposed: false,
            });
            shape = shape.with_channels(cfg.widths[l]);
        }
    }
    out.push(Layer {
        name: "head".into(),
        input: shape,
        weight: net.head.weight.clone(),
        spec: net.head.spec,
        transposed: false,
    });
    out
}

fn main() -> Result<(), BoxErr> {
    // As the `flare` binary does, so the train step is timed as `flare train` runs it.
    flare_engine::retain_freed_memory();
    let size = arg("--size", 128);
    let threads = arg("--threads", 2);
    let reps = arg("--reps", 3);
    let train_reps = arg("--train-reps", 2);
    let out_dir = opt_str("--out")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "engine_bench: 4-level U-Net 16-32-64-128, input 1x1x{size}^3, {threads} threads; \
         load average at start: {}",
        load.trim()
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let ctx = Ctx::new();
    // The bf16 context, where the CPU has the instructions and `--no-bf16` is not given.
    let bctx = Some(ctx.with_precision(Precision::Bf16))
        .filter(|c| c.precision() == Precision::Bf16 && !flag("--no-bf16"));
    println!(
        "isa: {}; bf16 kernel: {}",
        ctx.isa(),
        bctx.and_then(|c| c.bf16_kernel())
            .map_or("none".to_string(), |k| k.to_string())
    );
    let cfg = UNetConfig::standard(1, 5, &[16, 32, 64, 128]);
    let net = UNet::init(&cfg, 2026)?;
    let model = out_dir.join("flare_engine_bench.safetensors");
    file::save(&model, &net, &ModelCard::untrained(cfg.clone()))?;

    let ceiling = pool.install(|| {
        (0..3)
            .map(|_| {
                let (f, s) = fma_ceiling(&ctx, 100_000_000);
                f / s / 1e9
            })
            .fold(0.0f64, f64::max)
    });
    println!("FMA ceiling: {ceiling:.1} GFLOP/s ({threads} threads)");

    println!(
        "per layer: forward, backward to the input (data) and to the weights; ms and % of the \
         ceiling (GFLOP counted as for the forward)"
    );
    println!(
        "{:<16} {:>21} {:>6} | {:>7} {:>5} | {:>7} {:>5} | {:>7} {:>5} | {:>8} {:>9} {:>8}",
        "layer",
        "input",
        "GFLOP",
        "fwd ms",
        "%",
        "data ms",
        "%",
        "wgt ms",
        "%",
        "bf16 fwd",
        "bf16 data",
        "bf16 wgt"
    );
    // Totals over the layers, fp32 and bf16.
    let (mut f32_total, mut bf16_total) = (Passes::default(), Passes::default());
    let mut conv_flops = 0.0f64;
    let layer_list = if flag("--no-layers") {
        Vec::new()
    } else {
        let only = opt_str("--only");
        layers(&net, size)
            .into_iter()
            .filter(|l| only.as_ref().is_none_or(|o| l.name.contains(o.as_str())))
            .collect()
    };
    let fwd_only = flag("--fwd-only");
    let t = |f: &mut (dyn FnMut() -> Result<(), BoxErr> + Send)| pool.install(|| best_of(reps, f));
    for layer in layer_list {
        let x = noise(layer.input, 3)?;
        let bias = vec![0.01f32; layer.weight.cout()];
        let w = &layer.weight;
        // The layer's three passes timed in one context (the backward ones unless --fwd-only),
        // the forward into a buffer allocated once, as the lean forward reuses its buffers.
        let (flops, mut time): (f64, TimePasses) = if layer.transposed {
            let f = 2.0 * layer.input.voxels() as f64 * (w.taps() * w.cout() * w.cin()) as f64;
            let gy = noise(
                conv_transpose3d_output_shape(layer.input, w.kernel(), w.cout()),
                5,
            )?;
            let mut y = conv_transpose3d_forward(&ctx, &x, w, Some(&bias))?;
            let (x, bias) = (&x, &bias);
            (
                f,
                Box::new(move |c: &Ctx| {
                    let mut p = Passes {
                        fwd: t(&mut || {
                            conv_transpose3d_forward_into(c, x, w, Some(bias), &mut y)?;
                            Ok(())
                        })?,
                        ..Passes::not_run()
                    };
                    if !fwd_only {
                        p.data = t(&mut || {
                            conv_transpose3d_backward_data(c, &gy, w, layer.input)?;
                            Ok(())
                        })?;
                        p.wgt = t(&mut || {
                            conv_transpose3d_backward_weight(c, x, &gy, w.kernel())?;
                            Ok(())
                        })?;
                    }
                    Ok(p)
                }),
            )
        } else {
            let spec = &layer.spec;
            let f = spec.flops(layer.input, w.cout())?;
            let gy = noise(spec.output_shape(layer.input, w.cout())?, 5)?;
            let mut y = conv3d_forward(&ctx, &x, w, Some(&bias), spec)?;
            let (x, bias) = (&x, &bias);
            (
                f,
                Box::new(move |c: &Ctx| {
                    let mut p = Passes {
                        fwd: t(&mut || {
                            conv3d_forward_into(c, x, w, Some(bias), spec, &mut y)?;
                            Ok(())
                        })?,
                        ..Passes::not_run()
                    };
                    if !fwd_only {
                        p.data = t(&mut || {
                            conv3d_backward_data(c, &gy, w, spec, layer.input)?;
                            Ok(())
                        })?;
                        p.wgt = t(&mut || {
                            conv3d_backward_weight(c, x, &gy, spec)?;
                            Ok(())
                        })?;
                    }
                    Ok(p)
                }),
            )
        };
        let fp = time(&ctx)?;
        let bp = match bctx {
            Some(bctx) => time(&bctx)?,
            None => Passes::not_run(),
        };
        drop(time);
        conv_flops += flops;
        f32_total.add(&fp);
        bf16_total.add(&bp);
        let pct = |s: f64| 100.0 * flops / s / 1e9 / ceiling;
        println!(
            "{:<16} {:>21} {:>6.2} | {:>7.1} {:>5.1} | {:>7.1} {:>5.1} | {:>7.1} {:>5.1} | {:>8.1} {:>9.1} {:>8.1}",
            layer.name,
            layer.input.to_string(),
            flops / 1e9,
            fp.fwd * 1e3,
            pct(fp.fwd),
            fp.data * 1e3,
            pct(fp.data),
            fp.wgt * 1e3,
            pct(fp.wgt),
            bp.fwd * 1e3,
            bp.data * 1e3,
            bp.wgt * 1e3
        );
    }
    if bctx.is_some() {
        println!(
            "all convolutions in bf16: forward {:.3} s ({:.2}x fp32), backward to the input {:.3} \
             s ({:.2}x), to the weights {:.3} s ({:.2}x)",
            bf16_total.fwd,
            f32_total.fwd / bf16_total.fwd,
            bf16_total.data,
            f32_total.data / bf16_total.data,
            bf16_total.wgt,
            f32_total.wgt / bf16_total.wgt
        );
    }
    let bwd_secs = f32_total.data + f32_total.wgt;
    if bwd_secs > 0.0 {
        println!(
            "all convolutions, backward (data + weights): {:.1} GFLOP in {:.3} s = {:.1}% of the \
             ceiling",
            2.0 * conv_flops / 1e9,
            bwd_secs,
            200.0 * conv_flops / bwd_secs / 1e9 / ceiling
        );
    }
    let conv_secs = f32_total.fwd;
    let conv_rate = conv_flops / conv_secs / 1e9;
    let ceiling_pct = 100.0 * conv_rate / ceiling;
    println!(
        "all convolutions, forward (ceiling_pct): {:.1} GFLOP in {:.3} s = {conv_rate:.1} GFLOP/s \
         = {ceiling_pct:.1}% of the ceiling",
        conv_flops / 1e9,
        conv_secs
    );

    let x = noise(Shape5::new(1, size, size, size, 1), 11)?;
    // One workspace across runs (as ONNX Runtime's session keeps its arena): after the warm-up
    // the activations reuse its buffers instead of faulting in fresh pages.
    let mut ws = InferWorkspace::new();
    let fwd = pool.install(|| {
        best_of(reps, || {
            let (logits, _) = net.infer_with(&ctx, x.clone(), &mut ws)?;
            ws.recycle(logits);
            Ok(())
        })
    })?;
    println!(
        "flare forward (lean inference, reused workspace): {fwd:.3} s; workspace holds {:.0} MiB",
        ws.held_bytes() as f64 / (1 << 20) as f64
    );
    // One more run for its per-step breakdown (includes in-place norm and slabs).
    let (_, stats) = pool.install(|| net.infer_with(&ctx, x.clone(), &mut ws))?;
    print_steps("lean forward", &stats);

    // Labels: blobs of all 5 classes.
    let labels: Vec<u8> = (0..size * size * size)
        .map(|v| {
            let (z, y, xx) = (v / (size * size), (v / size) % size, v % size);
            ((z * 5 / size + y * 3 / size + xx * 2 / size) % 5) as u8
        })
        .collect();
    let mut tnet = net.clone();
    let mut opt = Optimizer::sgd(
        &tnet,
        Sgd {
            momentum: 0.99,
            nesterov: true,
            weight_decay: 3e-5,
        },
    );
    let loss_cfg = LossConfig::default();
    let train = if flag("--no-train") {
        f64::NAN
    } else {
        pool.install(|| {
            best_of(train_reps, || {
                train_step(
                    &ctx,
                    &mut tnet,
                    &mut opt,
                    x.clone(),
                    &labels,
                    &loss_cfg,
                    0.01,
                )?;
                Ok(())
            })
        })?
    };
    println!("flare train step (forward + loss + backward + SGD): {train:.3} s");
    // The same forward and train step with bf16 convolutions, from the same weights.
    let (mut fwd16, mut train16) = (f64::NAN, f64::NAN);
    if let Some(bctx) = bctx {
        let mut ws16 = InferWorkspace::new();
        fwd16 = pool.install(|| {
            best_of(reps, || {
                let (logits, _) = net.infer_with(&bctx, x.clone(), &mut ws16)?;
                ws16.recycle(logits);
                Ok(())
            })
        })?;
        println!("flare bf16 forward (lean inference, reused workspace): {fwd16:.3} s");
        let (_, stats) = pool.install(|| net.infer_with(&bctx, x.clone(), &mut ws16))?;
        print_steps("lean bf16 forward", &stats);
        if !flag("--no-train") {
            let mut tnet = net.clone();
            let mut opt = Optimizer::sgd(
                &tnet,
                Sgd {
                    momentum: 0.99,
                    nesterov: true,
                    weight_decay: 3e-5,
                },
            );
            train16 = pool.install(|| {
                best_of(train_reps, || {
                    train_step(
                        &bctx,
                        &mut tnet,
                        &mut opt,
                        x.clone(),
                        &labels,
                        &loss_cfg,
                        0.01,
                    )?;
                    Ok(())
                })
            })?;
            println!("flare bf16 train step (forward + loss + backward + SGD): {train16:.3} s");
        }
    }
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN);
    println!(
        "flare peak RSS of this process so far (VmHWM, training dominates): {:.0} MiB",
        hwm / 1024.0
    );

    let (mut ort, mut torch_fwd, mut torch_train) = (f64::NAN, f64::NAN, f64::NAN);
    let (mut torch_fwd16, mut torch_train16) = (f64::NAN, f64::NAN);
    if !flag("--no-python") {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = root.join("scripts/bench/engine_pytorch_ort.py");
        let py = std::env::var("FLARE_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(py)
            .arg(&script)
            .args(["--model", &model.to_string_lossy()])
            .args([
                "--size",
                &size.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .args([
                "--reps",
                &reps.to_string(),
                "--train-reps",
                &train_reps.to_string(),
            ])
            .args([
                "--onnx",
                &out_dir.join("flare_engine_bench.onnx").to_string_lossy(),
            ])
            .args(bctx.map(|_| "--bf16"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let head = it.next();
            for kv in it {
                if let Some((k, v)) = kv.split_once('=') {
                    let v: f64 = v.parse().unwrap_or(f64::NAN);
                    match (head, k) {
                        (Some("result:"), "onnxruntime_forward") => ort = v,
                        (Some("result:"), "pytorch_forward") => torch_fwd = v,
                        (Some("result:"), "pytorch_train_step") => torch_train = v,
                        (Some("result_bf16:"), "pytorch_forward") => torch_fwd16 = v,
                        (Some("result_bf16:"), "pytorch_train_step") => torch_train16 = v,
                        _ => {}
                    }
                }
            }
        }
    }
    println!(
        "ratios: forward ORT/flare {:.2}x, PyTorch/flare {:.2}x; train step PyTorch/flare {:.2}x",
        ort / fwd,
        torch_fwd / fwd,
        torch_train / train
    );
    if bctx.is_some() {
        println!(
            "ratios bf16: forward flare fp32/bf16 {:.2}x, PyTorch bf16/flare bf16 {:.2}x; train \
             step flare fp32/bf16 {:.2}x, PyTorch bf16/flare bf16 {:.2}x",
            fwd / fwd16,
            torch_fwd16 / fwd16,
            train / train16,
            torch_train16 / train16
        );
    }
    println!(
        "engine: unet forward flare={fwd:.3} onnxruntime={ort:.3} pytorch={torch_fwd:.3} \
         train_step flare={train:.3} pytorch={torch_train:.3} ceiling_pct={ceiling_pct:.0}"
    );
    if bctx.is_some() {
        println!(
            "engine-bf16: unet forward flare={fwd16:.3} pytorch={torch_fwd16:.3} train_step \
             flare={train16:.3} pytorch={torch_train16:.3}"
        );
    }
    Ok(())
}

/// The per-step breakdown of one lean inference.
fn print_steps(what: &str, stats: &flare_model::InferenceStats) {
    println!(
        "{what} steps (one run, peak live activations {:.0} MiB, fresh allocations {:.0} MiB):",
        stats.peak_activation_bytes as f64 / (1 << 20) as f64,
        stats.fresh_bytes as f64 / (1 << 20) as f64
    );
    let total: f64 = stats.step_secs.iter().map(|s| s.1).sum();
    for (name, secs) in &stats.step_secs {
        println!(
            "  {name:<28} {:>9.1} ms {:>5.1}%",
            secs * 1e3,
            100.0 * secs / total
        );
    }
}
