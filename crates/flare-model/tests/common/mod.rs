//! Helpers shared by the U-Net integration tests (infer.rs, bf16.rs).

use flare_engine::{Shape5, Tensor};

pub use flare_testkit::rel_l2;

/// A deterministic tensor of values in [-0.5, 0.5) (`flare_testkit::bench::noise`).
pub fn noise(shape: Shape5, seed: u32) -> Tensor {
    Tensor::from_vec(shape, flare_testkit::bench::noise(shape.len(), seed)).unwrap()
}
