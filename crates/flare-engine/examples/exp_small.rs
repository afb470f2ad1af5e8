#![allow(missing_docs)]
use flare_engine::*;
fn main() {
    let s: usize = std::env::args().nth(1).and_then(|v| v.parse().ok()).unwrap_or(16);
    let c: usize = std::env::args().nth(2).and_then(|v| v.parse().ok()).unwrap_or(16);
    let xs = Shape5::new(1, s, s, s, c);
    let x = Tensor::from_vec(xs, (0..xs.len()).map(|i| (i % 7) as f32 * 0.1).collect()).unwrap();
    let w = Conv3dWeight::from_dhwio([3, 3, 3], c, c, vec![0.01; 27 * c * c]).unwrap();
    let spec = Conv3dSpec::same([3, 3, 3]).unwrap();
    let flops = spec.flops(xs, c).unwrap();
    let mut y = Tensor::zeros(xs).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        for isa in [Isa::Avx512, Isa::Avx2] {
            let ctx = Ctx::with_isa(isa).unwrap();
            let reps = (2e9 / flops).max(1.0) as usize;
            let mut best_c: f64 = 0.0;
            let mut best_k: f64 = 0.0;
            for _ in 0..5 {
                let t = cpu_time::ProcessTime::now();
                let (f, _) = fma_ceiling(&ctx, 10_000_000);
                best_c = best_c.max(f / t.elapsed().as_secs_f64() / 1e9);
                let t = cpu_time::ProcessTime::now();
                for _ in 0..reps {
                    conv3d_forward_into(&ctx, &x, &w, None, &spec, &mut y).unwrap();
                }
                best_k = best_k.max(flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9);
            }
            println!("{isa} size {s} ch {c}: ceiling {best_c:.1}, conv {best_k:.1} GF/cpu-s = {:.1}%", 100.0 * best_k / best_c);
        }
    });
}
