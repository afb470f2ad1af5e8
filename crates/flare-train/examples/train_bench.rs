//! Training throughput of each stage's default network on this machine: samples/s and
//! GFLOP/s of a full step (forward, CE + Dice loss with deep supervision, backward, AdamW),
//! and the time the sampler takes to make a batch from a real dataset when one is given.
//!
//! `cargo run --release -p flare-train --example train_bench [-- --threads 1 --steps 3
//!  --data ../shared/data/btcv --cache work-data/cache]`
//!
//! GFLOP/s counts multiply-adds as 2 FLOPs over the convolutions only (forward, and twice
//! that for backward: data and weight gradients), so it is comparable with the engine
//! benchmark's figures. Times are the median of `--steps` steps after one warm-up step.

use std::{sync::Arc, time::Instant};

use flare_engine::{Ctx, Shape5, Tensor};
use flare_model::{Optimizer, UNet, UNetConfig, train_step};
use flare_train::{Cache, Dataset, Sampler, Stage, TrainConfig};

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Convolution FLOPs of one forward pass on `n` samples of `grid_dhw`.
// Level indices are the formula's own.
#[allow(clippy::needless_range_loop)]
fn forward_flops(c: &UNetConfig, grid_dhw: [usize; 3], n: usize) -> f64 {
    let levels = c.levels();
    let mut vox = Vec::with_capacity(levels);
    let mut g = grid_dhw;
    for l in 0..levels {
        g = [0, 1, 2].map(|a| g[a] / c.strides[l][a]);
        vox.push((g[0] * g[1] * g[2] * n) as f64);
    }
    let kv = |l: usize| c.kernels[l].iter().product::<usize>() as f64;
    let w = |l: usize| c.widths[l] as f64;
    let mut f = 0.0;
    for l in 0..levels {
        let cin = if l == 0 {
            c.in_channels as f64
        } else {
            w(l - 1)
        };
        f += 2.0 * kv(l) * cin * w(l) * vox[l];
        f += 2.0 * kv(l) * w(l) * w(l) * vox[l] * (c.convs_per_block - 1) as f64;
    }
    for l in 0..levels.saturating_sub(1) {
        // Transposed conv (kernel = stride): each output voxel gets one tap per input channel.
        f += 2.0 * w(l + 1) * w(l) * vox[l];
        f += 2.0 * kv(l) * 2.0 * w(l) * w(l) * vox[l];
        f += 2.0 * kv(l) * w(l) * w(l) * vox[l] * (c.convs_per_block - 1) as f64;
        if c.deep_supervision && l >= 1 {
            f += 2.0 * w(l) * c.num_classes as f64 * vox[l];
        }
    }
    f + 2.0 * w(0) * c.num_classes as f64 * vox[0]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = arg("--threads").unwrap_or(1);
    let steps: usize = arg("--steps").unwrap_or(3).max(1);
    let data: Option<String> = arg("--data");
    let cache_dir: String = arg("--cache").unwrap_or_else(|| "work-data/cache".into());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "train_bench: {threads} thread(s), median of {steps} steps after a warm-up; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let ctx = Ctx::new();
    for stage in [Stage::Whole, Stage::Roi] {
        let cfg = TrainConfig::default_for(stage, 1000, 0);
        let [d, h, w] = cfg.sample.grid_dhw;
        let n = cfg.batch;
        let mut net = UNet::init(&cfg.architecture, 0)?;
        let mut opt = Optimizer::adamw(&net, cfg.adamw.rule());
        let loss = cfg.loss();
        let per = d * h * w;
        // Labels: a few slabs of each class, so every loss term is exercised.
        let labels: Vec<u8> = (0..n * per).map(|i| ((i / (per / 10)) % 5) as u8).collect();
        let image: Vec<f32> = (0..n * per).map(|i| (i % 97) as f32 / 97.0).collect();
        let mut times = Vec::new();
        for s in 0..=steps {
            let x = Tensor::from_vec(Shape5::new(n, d, h, w, 1), image.clone())?;
            let t = Instant::now();
            pool.install(|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                train_step(&ctx, &mut net, &mut opt, x, &labels, &loss, 1e-3)?;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            if s > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let step = median(times);
        let gflop = 3.0 * forward_flops(&cfg.architecture, cfg.sample.grid_dhw, n) / 1e9;
        let sample_s = if let Some(dir) = &data {
            let ds = Dataset::open(dir)?;
            let (cache, _) = Cache::build(&ds, &cfg.preprocess, format!("{cache_dir}/train"))?;
            let sampler = Sampler::new(Arc::new(cache), cfg.sample.clone(), n, 0)?;
            let mut ts = Vec::new();
            for s in 0..steps as u64 {
                let t = Instant::now();
                pool.install(|| sampler.batch(s))?;
                ts.push(t.elapsed().as_secs_f64());
            }
            format!(", sampler {:.2} s per batch", median(ts))
        } else {
            String::new()
        };
        println!(
            "stage {} grid {d}x{h}x{w} widths {:?} batch {n}: {:.2} s/step, {:.2} samples/s, {:.1} GFLOP/step, {:.1} GFLOP/s{sample_s}",
            if stage == Stage::Whole { 1 } else { 2 },
            cfg.architecture.widths,
            step,
            n as f64 / step,
            gflop,
            gflop / step,
        );
    }
    Ok(())
}
