//! Training data for flare: from a folder of labelled scans to an endless, seeded stream of
//! augmented samples.
//!
//! The pipeline, in the order a training loop calls it:
//! 1. [`Dataset::open`] finds the image/label pairs (FLARE or nnU-Net raw layout);
//!    [`Dataset::check`] names every bad case at once; [`Dataset::split`] holds cases out.
//! 2. [`Cache::build`] preprocesses each case once (HU window, `[0, 1]`, optional smaller
//!    grid, organ boxes) into a cache folder, rebuilding only what changed, and loads it.
//! 3. [`Sampler::batch`] returns batch `step` as flat buffers, `[N, D, H, W, 1]` `f32` images
//!    and `[N, D, H, W]` `u8` labels: a pure function of (seed, step), so resuming is exact.
//!
//! 4. [`Trainer`] runs the loop (see [`trainer`]): Dice + CE, AdamW with warm-up and decay,
//!    validation Dice per organ, best/last model files, exact [`checkpoint`]s, CSV + PNG [`log`].
//!
//! Array axes follow flare's convention (`(i, j, k)`, `i` fastest); in the buffers `W` is `i`,
//! `H` is `j` and `D` is `k`.

//! ```no_run
//! use std::sync::Arc;
//! use flare_train::{Cache, Dataset, PreprocessConfig, SampleConfig, Sampler, SplitSpec};
//!
//! let data = Dataset::open("../shared/data/btcv")?;
//! data.check()?; // every bad case named, before anything else
//! let split = data.split(&SplitSpec::Random { n_val: 2, seed: 0 })?;
//! let (cache, report) = Cache::build(&data, &PreprocessConfig::default(), "cache/btcv")?;
//! println!("preprocessed {:?}, reused {:?}", report.built, report.reused);
//! let train = Arc::new(cache.subset(&split.train)?);
//! let mut sampler = Sampler::new(train, SampleConfig::whole_scan([64, 96, 96]), 2, 42)?;
//! let batch = sampler.next_batch()?; // batch.image: [2, 64, 96, 96, 1], batch.labels: [2, 64, 96, 96]
//! let state = sampler.state(); // save with the checkpoint; `restore` it to resume exactly
//! # let _ = (batch, state);
//! # Ok::<(), flare_train::TrainError>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod augment;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod dataset;
mod error;
pub mod log;
pub mod optim;
pub mod sampler;
pub mod state;
pub mod trainer;
pub mod validate;

pub use crate::{
    augment::{AugmentConfig, Crop, SampleConfig, sample_into},
    cache::{BuildReport, Cache, CachedCase, CaseMeta, PreprocessConfig, preprocess_volumes},
    checkpoint::Checkpoint,
    config::{Stage, TrainConfig},
    dataset::{Case, Dataset, Layout, Split, SplitSpec},
    error::{Problem, ProblemKind, Result, TrainError},
    log::LogRow,
    optim::{AdamWConfig, Decay, LrPlan},
    sampler::{Batch, Sampler, SamplerState},
    state::{Best, RunState},
    trainer::{Event, Outputs, RunLimits, Trainer},
    validate::{ValRegion, ValScore, predict_roi, predict_whole, validate},
};
