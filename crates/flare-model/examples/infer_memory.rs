//! Peak memory of lean inference: a 4-level U-Net (widths 16-32-64-128) over a 1 x S^3 input.
//!
//! `cargo run --release -p flare-model --example infer_memory [-- --size 160 --threads 2]`
//!
//! Prints the peak of live activation bytes the network reports and the process's peak RSS
//! (`VmHWM` from /proc/self/status), which also counts the binary, weights and scratch.

use std::time::Instant;

use flare_engine::{Ctx, Shape5, Tensor};
use flare_model::{UNet, UNetConfig, argmax_labels};
use flare_testkit::bench::arg;

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let size = arg("--size", 160);
    let threads = arg("--threads", 2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let cfg = UNetConfig::standard(1, 5, &[16, 32, 64, 128]);
    let net = UNet::init(&cfg, 1)?;
    let shape = Shape5::new(1, size, size, size, 1);
    let mut s = 7u32;
    let x = Tensor::from_vec(
        shape,
        (0..shape.len())
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32
            })
            .collect(),
    )?;
    let before = status_kib("VmHWM:").unwrap_or(0);
    let t = Instant::now();
    let (logits, stats) = pool.install(|| net.infer(&Ctx::new(), x))?;
    let secs = t.elapsed().as_secs_f64();
    let labels = argmax_labels(&logits);
    let hwm = status_kib("VmHWM:").unwrap_or(0);
    println!(
        "infer_memory: 1x{size}^3, widths 16-32-64-128, {threads} threads: {secs:.2} s, {} labels",
        labels.len()
    );
    println!(
        "peak live activations {:.1} MiB; peak RSS (VmHWM) {:.1} MiB (before inference {:.1} MiB)",
        stats.peak_activation_bytes as f64 / (1 << 20) as f64,
        hwm as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}
