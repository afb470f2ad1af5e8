//! Helpers shared by the U-Net integration tests (infer.rs, bf16.rs).

use flare_engine::{Shape5, Tensor};

/// Relative L2 distance of `a` from `b`.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// A deterministic tensor of values in [-0.5, 0.5) (an LCG seeded with `seed`).
pub fn noise(shape: Shape5, seed: u32) -> Tensor {
    let mut s = seed;
    let v = (0..shape.len())
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    Tensor::from_vec(shape, v).unwrap()
}
