//! Instance norm + LeakyReLU throughput at the U-Net's activation shapes: the training forward,
//! its backward, and the inference pass in place, with the bytes each moves per second.
//!
//! `cargo run --release -p flare-engine --example norm_bench [-- --threads 2 --reps 5]`
//!
//! Shapes: 128^3 x 16, 64^3 x 32, 32^3 x 64, 16^3 x 128 (the 4-level U-Net at 128^3). Prints
//! the best of `--reps` after a warm-up, in ms, and GB/s counting each tensor read or written
//! once per pass (forward: 2 reads + 1 write; backward: 5 reads + 1 write; in place: 2 reads
//! + 1 write), so a figure near the machine's copy bandwidth means the pass is memory-bound.

use std::time::Instant;

use flare_engine::{
    Ctx, NormAct, Shape5, Tensor, instance_norm_act_backward, instance_norm_act_forward,
    instance_norm_act_inplace,
};
use flare_testkit::bench::arg;

/// Best wall seconds of `reps` runs after one warm-up.
fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn noise(shape: Shape5, seed: u32) -> Result<Tensor, flare_engine::EngineError> {
    Tensor::from_vec(shape, flare_testkit::bench::noise(shape.len(), seed))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    flare_engine::retain_freed_memory();
    let threads = arg("--threads", 2);
    let reps = arg("--reps", 5);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "norm_bench: {threads} threads, best of {reps}; load average at start: {}",
        load.trim()
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let ctx = Ctx::new();
    println!(
        "{:<20} {:>9} {:>7} {:>9} {:>7} {:>9} {:>7}",
        "shape", "fwd ms", "GB/s", "bwd ms", "GB/s", "inpl ms", "GB/s"
    );
    let (mut fwd_total, mut bwd_total, mut inpl_total) = (0.0, 0.0, 0.0);
    for (side, c) in [(128, 16), (64, 32), (32, 64), (16, 128)] {
        let shape = Shape5::new(1, side, side, side, c);
        let x = noise(shape, 1)?;
        let ga = noise(shape, 2)?;
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / c as f32).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 / c as f32 - 0.5).collect();
        let norm = NormAct {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
            slope: 0.01,
        };
        let (a, stats) = instance_norm_act_forward(&ctx, &x, &norm)?;
        let fwd = pool.install(|| {
            best_of(reps, || {
                std::hint::black_box(instance_norm_act_forward(&ctx, &x, &norm).ok());
            })
        });
        let bwd = pool.install(|| {
            best_of(reps, || {
                std::hint::black_box(
                    instance_norm_act_backward(&ctx, &x, &a, &stats, &gamma, &ga, 0.01).ok(),
                );
            })
        });
        let mut y = x.clone();
        let inpl = pool.install(|| {
            best_of(reps, || {
                y.data_mut().copy_from_slice(x.data());
                std::hint::black_box(instance_norm_act_inplace(&ctx, &mut y, &norm).ok());
            })
        });
        let bytes = (shape.len() * 4) as f64;
        println!(
            "{:<20} {:>9.1} {:>7.1} {:>9.1} {:>7.1} {:>9.1} {:>7.1}",
            format!("{side}^3 x {c}"),
            fwd * 1e3,
            3.0 * bytes / fwd / 1e9,
            bwd * 1e3,
            6.0 * bytes / bwd / 1e9,
            inpl * 1e3,
            3.0 * bytes / inpl / 1e9
        );
        fwd_total += fwd;
        bwd_total += bwd;
        inpl_total += inpl;
    }
    println!(
        "norm_bench: training forward {:.1} ms, backward {:.1} ms, in place {:.1} ms (sum of the shapes; in place includes a copy)",
        fwd_total * 1e3,
        bwd_total * 1e3,
        inpl_total * 1e3
    );
    Ok(())
}
