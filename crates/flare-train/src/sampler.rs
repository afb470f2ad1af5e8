//! Batches of augmented samples, each a pure function of (seed, step, slot in the batch).
//!
//! Each sample picks its case uniformly, then (with [`SampleConfig::foreground_p`]) centres its
//! crop on a voxel of an organ drawn uniformly among those present, so that spleen and
//! pancreas are seen as often as the liver from the first step. The sampler's whole state is
//! [`SamplerState`] (seed and next step): saving it with a checkpoint makes `--resume` exact.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    augment::{SampleConfig, sample_into},
    cache::Cache,
    dataset::below,
    error::{Result, TrainError},
};

/// Everything needed to continue a sampler exactly where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// The run's seed.
    pub seed: u64,
    /// The step [`Sampler::next_batch`] returns next.
    pub next_step: u64,
}

/// One batch: `n` samples on a `[D, H, W]` grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The step it belongs to.
    pub step: u64,
    /// Samples in the batch.
    pub n: usize,
    /// Grid `[D, H, W]`.
    pub grid_dhw: [usize; 3],
    /// Images, `[N, D, H, W, C]` channels-last with `C = 1`.
    pub image: Vec<f32>,
    /// Labels 0..=4, `[N, D, H, W]`.
    pub labels: Vec<u8>,
    /// Index (into the cache's cases) of each sample's case.
    pub cases: Vec<usize>,
}

/// Draws batches from a [`Cache`].
#[derive(Debug, Clone)]
pub struct Sampler {
    cache: Arc<Cache>,
    config: SampleConfig,
    batch_size: usize,
    state: SamplerState,
}

/// splitmix64: a well-mixed 64-bit function, to turn (seed, step, slot) into a seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Sampler {
    /// A sampler of `batch_size` samples per step, starting at step 0.
    pub fn new(
        cache: Arc<Cache>,
        config: SampleConfig,
        batch_size: usize,
        seed: u64,
    ) -> Result<Sampler> {
        config.validate()?;
        if batch_size == 0 {
            return Err(TrainError::Config("batch size 0".into()));
        }
        if cache.cases().is_empty() {
            return Err(TrainError::Config("the cache holds no case".into()));
        }
        Ok(Sampler {
            cache,
            config,
            batch_size,
            state: SamplerState { seed, next_step: 0 },
        })
    }

    /// The state to save with a checkpoint.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Continues from a saved state.
    pub fn restore(&mut self, state: SamplerState) {
        self.state = state;
    }

    /// The sample configuration.
    pub fn config(&self) -> &SampleConfig {
        &self.config
    }

    /// The random generator of sample `slot` of batch `step`.
    fn rng(&self, step: u64, slot: usize) -> ChaCha8Rng {
        let a = mix(self.state.seed ^ mix(step ^ mix(slot as u64)));
        let mut seed = [0u8; 32];
        for (n, chunk) in seed.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&mix(a.wrapping_add(n as u64)).to_le_bytes());
        }
        ChaCha8Rng::from_seed(seed)
    }

    /// Batch `step`: the same bytes for the same seed, step, configuration and cache, whatever
    /// the thread count or the batches drawn before.
    pub fn batch(&self, step: u64) -> Result<Batch> {
        let shape = self.config.shape_ijk();
        let per: usize = shape.iter().product();
        let n = self.batch_size;
        let mut image = vec![0.0f32; n * per];
        let mut labels = vec![0u8; n * per];
        let cases: Vec<usize> = image
            .par_chunks_mut(per)
            .zip(labels.par_chunks_mut(per))
            .enumerate()
            .map(|(slot, (img, lab))| {
                let mut rng = self.rng(step, slot);
                let c = below(&mut rng, self.cache.cases().len());
                sample_into(&self.cache.cases()[c], &self.config, &mut rng, img, lab).map(|_| c)
            })
            .collect::<Result<_>>()?;
        Ok(Batch {
            step,
            n,
            grid_dhw: self.config.grid_dhw,
            image,
            labels,
            cases,
        })
    }

    /// The next batch in sequence (then advances the state).
    pub fn next_batch(&mut self) -> Result<Batch> {
        let b = self.batch(self.state.next_step)?;
        self.state.next_step += 1;
        Ok(b)
    }
}
