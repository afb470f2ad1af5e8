//! The machine's f32 FMA ceiling, measured the way the kernels would reach it: 12 independent
//! FMA chains per thread (enough to cover the FMA latency on current x86 cores), no memory
//! traffic. Benchmarks report kernel throughput as a percentage of this.

mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use rayon::prelude::*;

use crate::Ctx;

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;

/// Runs `iters` rounds of 12 chained FMAs on every thread of the current rayon pool with
/// `ctx`'s instruction set; returns the FLOPs done (2 per lane per FMA) and the seconds taken.
pub fn fma_ceiling(ctx: &Ctx, iters: u64) -> (f64, f64) {
    let threads = rayon::current_num_threads();
    let start = std::time::Instant::now();
    let sink: f32 = (0..threads)
        .into_par_iter()
        .with_max_len(1)
        .map(|t| run(ctx, iters, t as f32 * 1e-3))
        .sum();
    let secs = start.elapsed().as_secs_f64();
    let lanes = match ctx.isa() {
        crate::Isa::Avx512 => 16.0,
        crate::Isa::Avx2 => 8.0,
        _ => 1.0,
    };
    // Keep the result observable so the loop cannot be optimised away.
    std::hint::black_box(sink);
    let flops = 2.0 * lanes * CHAINS as f64 * iters as f64 * threads as f64;
    (flops, secs)
}

fn run(ctx: &Ctx, iters: u64, seed: f32) -> f32 {
    match ctx.isa() {
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx512 => avx512::run(iters, seed),
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx2 => avx2::run(iters, seed),
        _ => scalar::run(iters, seed),
    }
}
