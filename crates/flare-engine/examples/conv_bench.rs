//! Conv3d throughput against this machine's FMA ceiling, measured in the same run.
//!
//! `cargo run --release -p flare-engine --example conv_bench [-- --size 96 --channels 16]`
//!
//! For each SIMD instruction set and thread count (1 and 2): the 12-chain FMA ceiling, then a
//! 3x3x3 convolution `1 x S^3 x C -> C` forward, backward to the input and backward to the
//! weights, best of 5 (`--reps`) after a warm-up, as GFLOP/s and % of that ceiling. Where the
//! CPU has avx512_bf16, a `bf16` row runs the same convolutions with bf16 operands and fp32
//! sums; its % is of the fp32 ceiling, so up to 200% is possible.

use std::time::Instant;

use flare_engine::{
    Bf16Kernel, Conv3dSpec, Conv3dWeight, Ctx, Isa, Shape5, Tensor, conv3d_backward_data_into,
    conv3d_backward_weight, conv3d_forward, conv3d_forward_into, fma_ceiling,
};
use flare_testkit::bench::arg;

/// Best of `reps` timed runs after one warm-up: (wall seconds, process CPU seconds). CPU time
/// divided by the thread count is the time the work would take on an otherwise idle machine,
/// give or take cache sharing, so it stays meaningful while others compile.
fn best_of<F: FnMut()>(reps: usize, mut f: F) -> (f64, f64) {
    f();
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_time::ProcessTime::now());
        f();
        best.0 = best.0.min(t.elapsed().as_secs_f64());
        best.1 = best.1.min(c.elapsed().as_secs_f64());
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let size = arg("--size", 96);
    let ch = arg("--channels", 16);
    let reps = arg("--reps", 5);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "conv_bench: 1x{size}^3x{ch} -> {ch}, 3x3x3 pad 1; load average at start: {}",
        load.trim()
    );
    let xs = Shape5::new(1, size, size, size, ch);
    let spec = Conv3dSpec::same([3, 3, 3])?;
    let flops = spec.flops(xs, ch)?;
    let mut seed = 1u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    // Engine-allocated (cache-line aligned) tensors, as a network's activations are.
    let mut x = Tensor::zeros(xs)?;
    x.data_mut().iter_mut().for_each(|v| *v = rnd());
    let mut gy = Tensor::zeros(xs)?;
    gy.data_mut().iter_mut().for_each(|v| *v = rnd());
    let w = Conv3dWeight::from_dhwio(
        [3, 3, 3],
        ch,
        ch,
        (0..27 * ch * ch).map(|_| rnd()).collect(),
    )?;
    let b = vec![0.1; ch];
    println!(
        "GF/s = wall-clock GFLOP/s; cpu = GFLOP per (CPU-second / threads), the idle-machine rate;"
    );
    println!(
        "% = cpu rate as a share of the FMA ceiling measured the same way, same ISA and threads"
    );
    println!(
        "{:<7} {:>3} | {:>15} | {:>24} | {:>24} | {:>24} | {:>8}",
        "isa", "thr", "ceiling GF/s", "forward", "backward data", "backward weight", "fwd+alloc"
    );
    let mut rows: Vec<(&str, Ctx)> = Vec::new();
    for isa in Isa::supported().into_iter().filter(|&i| i != Isa::Scalar) {
        rows.push((isa.name(), Ctx::with_isa(isa)?));
    }
    match Bf16Kernel::native() {
        Some(k) => rows.push(("bf16", Ctx::with_isa(Isa::best())?.with_bf16_kernel(k)?)),
        None => println!("no bf16 row: this CPU lacks avx512_bf16"),
    }
    for (name, ctx) in rows {
        let isa = ctx.isa();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            pool.install(|| -> Result<(), flare_engine::EngineError> {
                let nt = threads as f64;
                let iters = 100_000_000 / if isa == Isa::Avx512 { 4 } else { 2 };
                let mut ceil = (0.0f64, 0.0f64);
                for _ in 0..3 {
                    let c = cpu_time::ProcessTime::now();
                    let (f, s) = fma_ceiling(&ctx, iters);
                    let cpu = c.elapsed().as_secs_f64() / nt;
                    ceil = (ceil.0.max(f / s / 1e9), ceil.1.max(f / cpu / 1e9));
                }
                // Into reused buffers: the kernels' own speed, as a network that recycles its
                // activations sees it; the last column adds a fresh output allocation.
                let mut y = Tensor::zeros(xs)?;
                let times = [
                    best_of(reps, || {
                        let r = conv3d_forward_into(&ctx, &x, &w, Some(&b), &spec, &mut y);
                        std::hint::black_box(r.ok());
                    }),
                    best_of(reps, || {
                        let r = conv3d_backward_data_into(&ctx, &gy, &w, &spec, &mut y);
                        std::hint::black_box(r.ok());
                    }),
                    best_of(reps, || {
                        std::hint::black_box(conv3d_backward_weight(&ctx, &x, &gy, &spec).ok());
                    }),
                    best_of(reps, || {
                        std::hint::black_box(conv3d_forward(&ctx, &x, &w, Some(&b), &spec).ok());
                    }),
                ];
                let cells: Vec<String> = times[..3]
                    .iter()
                    .map(|&(wall, cpu)| {
                        let g = flops / (cpu / nt) / 1e9;
                        format!(
                            "{:6.1} cpu {:6.1} {:4.1}%",
                            flops / wall / 1e9,
                            g,
                            100.0 * g / ceil.1
                        )
                    })
                    .collect();
                println!(
                    "{:<7} {:>3} | {:6.1} cpu {:6.1} | {} | {} | {} | {:8.1}",
                    name,
                    threads,
                    ceil.0,
                    ceil.1,
                    cells[0],
                    cells[1],
                    cells[2],
                    flops / times[3].0 / 1e9
                );
                Ok(())
            })?;
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
    Ok(())
}
