//! The training loop: batches from a [`Sampler`] prepared one step ahead on a background
//! thread, Dice + cross-entropy, AdamW with warm-up and cosine or poly decay, validation Dice
//! per organ every N steps, best and last model files, resumable checkpoints, a CSV log and a
//! PNG of the curves.
//!
//! Reproducibility: the network's initial weights come from the seed, batch `s` is a pure
//! function of (seed, `s`) (see [`crate::sampler`]), and a step's arithmetic depends only on
//! the batch, the weights and the thread count. A checkpoint holds the weights, the AdamW
//! moments, the step and the sampler state, so a resumed run repeats the uninterrupted one
//! bit for bit (same thread count).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use flare_engine::{Ctx, Shape5, Tensor};
use flare_labels::LabelSet;
use flare_model::{ModelCard, ModelError, Optimizer, UNet, card::TargetGrid, file, train_step};

use crate::{
    cache::{Cache, CachedCase},
    checkpoint::{self, Checkpoint},
    config::{Stage, TrainConfig},
    error::{Result, TrainError},
    log::{LogRow, append_csv, write_csv, write_plot},
    sampler::{Sampler, SamplerState},
    state::{Best, RunState},
    validate::{ValScore, validate},
};

/// Where a run writes, all derived from the model path `X.safetensors`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// The last weights as a model file (`X.safetensors`).
    pub model: PathBuf,
    /// The best weights by mean validation Dice (`X.best.safetensors`).
    pub best_model: PathBuf,
    /// The resumable checkpoint of the last step saved (`X.ckpt`).
    pub checkpoint: PathBuf,
    /// The log (`X.log.csv`).
    pub csv: PathBuf,
    /// The curves (`X.curves.png`).
    pub plot: PathBuf,
}

impl Outputs {
    /// The files next to model path `model`.
    pub fn for_model(model: &Path) -> Outputs {
        let stem = model.with_extension("");
        let with = |suffix: &str| {
            let mut s = stem.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        Outputs {
            model: model.to_path_buf(),
            best_model: with(".best.safetensors"),
            checkpoint: with(".ckpt"),
            csv: with(".log.csv"),
            plot: with(".curves.png"),
        }
    }
}

/// What the loop reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step finished.
    Step(&'a LogRow),
    /// Validation ran after `step`.
    Validated {
        /// The step.
        step: u64,
        /// The scores.
        score: &'a ValScore,
        /// Whether this is the best so far.
        best: bool,
    },
    /// A checkpoint was written after `step` steps.
    Checkpointed {
        /// Steps done.
        step: u64,
        /// The file.
        path: &'a Path,
    },
}

/// When to stop and save.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimits {
    /// Stop (checkpoint, model file) once this many steps are done, before the schedule's
    /// end; `None`: run the whole schedule.
    pub stop_at: Option<u64>,
    /// Write a checkpoint when this much wall time passed since the last one.
    pub checkpoint_every: Duration,
}

/// A training run in memory.
pub struct Trainer {
    state: RunState,
    net: UNet,
    opt: Optimizer,
    train: Arc<Cache>,
    val: Vec<CachedCase>,
    outputs: Outputs,
    /// The training steps' context, in the run's precision (validation runs fp32, see
    /// [`Trainer::validate`]).
    ctx: Ctx,
    /// FLARE21's: the data checks, cache, sampler and loss know labels 0..=4 only.
    labels: LabelSet,
}

impl Trainer {
    /// A fresh run: weights initialised from the seed, step 0. Writes the CSV header.
    pub fn new(
        config: TrainConfig,
        train: Arc<Cache>,
        val: Vec<CachedCase>,
        outputs: Outputs,
    ) -> Result<Trainer> {
        config.validate()?;
        let net = UNet::init(&config.architecture, config.seed)?;
        Trainer::start(config, net, train, val, outputs)
    }

    /// A fresh run (step 0, fresh optimiser) that starts from trained weights instead of
    /// random ones: fine-tuning on new data, at a new grid or with a new schedule. The
    /// network's architecture must be the configuration's; `config.init_from` should say where
    /// the weights came from (it goes into the model card).
    pub fn fine_tune(
        config: TrainConfig,
        initial: UNet,
        train: Arc<Cache>,
        val: Vec<CachedCase>,
        outputs: Outputs,
    ) -> Result<Trainer> {
        config.validate()?;
        if initial.config() != &config.architecture {
            return Err(TrainError::Config(
                "the initial weights' architecture differs from the run's (a --config \
                 architecture cannot change a network being fine-tuned)"
                    .into(),
            ));
        }
        Trainer::start(config, initial, train, val, outputs)
    }

    /// Step 0 of a run whose configuration was validated and whose weights fit it.
    fn start(
        config: TrainConfig,
        net: UNet,
        train: Arc<Cache>,
        val: Vec<CachedCase>,
        outputs: Outputs,
    ) -> Result<Trainer> {
        let opt = Optimizer::adamw(&net, config.adamw.rule());
        let precision = config.precision;
        let state = RunState {
            sampler: SamplerState {
                seed: config.seed,
                next_step: 0,
            },
            config,
            step: 0,
            adam_t: 0,
            best: None,
            log: Vec::new(),
        };
        let t = Trainer {
            state,
            net,
            opt,
            train,
            val,
            outputs,
            ctx: Ctx::new().with_precision(precision),
            labels: LabelSet::flare21(),
        };
        t.check_data()?;
        write_csv(&t.outputs.csv, t.labels(), &t.state.log)?;
        Ok(t)
    }

    /// Continues a run from a checkpoint; rewrites the CSV to the checkpoint's rows, so the
    /// log of a resumed run equals the uninterrupted one's.
    pub fn resume(
        ck: Checkpoint,
        train: Arc<Cache>,
        val: Vec<CachedCase>,
        outputs: Outputs,
    ) -> Result<Trainer> {
        ck.state.config.validate()?;
        let precision = ck.state.config.precision;
        let t = Trainer {
            state: ck.state,
            net: ck.net,
            opt: ck.opt,
            train,
            val,
            outputs,
            ctx: Ctx::new().with_precision(precision),
            labels: LabelSet::flare21(),
        };
        t.check_data()?;
        write_csv(&t.outputs.csv, t.labels(), &t.state.log)?;
        Ok(t)
    }

    fn check_data(&self) -> Result<()> {
        if self.train.cases().is_empty() {
            return Err(TrainError::Config("no training case".into()));
        }
        Ok(())
    }

    /// The run's state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The network.
    pub fn net(&self) -> &UNet {
        &self.net
    }

    /// The labels the run trains, whose names its log, cards and messages use: FLARE21's
    /// (training data is checked to hold labels 0..=4).
    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    /// The outputs.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// The model card for the current weights, with `metrics` (validation Dice).
    pub fn model_card(&self, dsc: Option<&[f64]>, steps: u64) -> ModelCard {
        let c = &self.state.config;
        let mut card = ModelCard::untrained(c.architecture.clone());
        card.labels = self.labels.clone();
        card.preprocessing.hu_window = c.preprocess.window_hu;
        card.preprocessing.target_grid = TargetGrid::FixedSize {
            size: c.sample.grid_dhw,
        };
        card.training.status = format!("{} of {} steps", steps, c.lr.total);
        card.training.data = c.train_cases.clone();
        card.training.validation = c.val_cases.clone();
        card.training.steps = steps;
        if let Some(d) = dsc {
            for (organ, &v) in card.labels.organs().iter().zip(d) {
                card.training
                    .metrics
                    .insert(format!("val_dice_{}", organ.name), v);
            }
        }
        let region = match c.stage {
            Stage::Whole => "stage 1 (localisation): the whole scan on the fixed grid".to_string(),
            Stage::Roi => format!(
                "stage 2 (fine): the organs' union box with margin on the fixed grid ({:?})",
                c.sample.crop
            ),
        };
        let init = match &c.init_from {
            Some(from) => format!("; fine-tuned from {from}"),
            None => String::new(),
        };
        card.training.notes = format!(
            "{region}{init}; flare train, CE + soft Dice (deep supervision {}), AdamW {:?}, lr {:?}, batch {}, seed {}, sample {}",
            c.architecture.deep_supervision,
            c.adamw,
            c.lr,
            c.batch,
            c.seed,
            serde_json::to_string(&c.sample).unwrap_or_default()
        );
        card
    }

    fn save_checkpoint(&mut self) -> Result<()> {
        // Every parameter's state has taken the same updates; the run state records the count.
        self.state.adam_t = self
            .opt
            .adam_states()
            .and_then(|st| st.first())
            .map_or(0, |st| st.steps());
        self.state.sampler.next_step = self.state.step;
        let ck = Checkpoint {
            state: self.state.clone(),
            net: self.net.clone(),
            opt: self.opt.clone(),
        };
        checkpoint::save(&self.outputs.checkpoint, &ck)?;
        let last_val = self.state.log.iter().rev().find_map(|r| r.val.as_deref());
        let card = self.model_card(last_val, self.state.step);
        save_model(&self.outputs.model, &self.net, &card)?;
        write_plot(&self.outputs.plot, self.labels(), &self.state.log)
    }

    /// Validation Dice of the current weights on the held-out cases. Always fp32 inference,
    /// whatever the run's precision, so that the curves of an fp32 and a bf16 run compare the
    /// weights each trained, not two inference precisions.
    pub fn validate(&self) -> Result<ValScore> {
        let c = &self.state.config;
        validate(
            &Ctx::new(),
            &self.net,
            &self.val,
            c.val_region(),
            c.sample.grid_dhw,
            c.sample.intensity_range,
        )
    }

    /// Trains until the schedule ends or `limits.stop_at`, then checkpoints.
    pub fn run(&mut self, limits: RunLimits, on: &mut dyn FnMut(Event<'_>)) -> Result<()> {
        let total = self.state.config.lr.total;
        let end = limits.stop_at.map_or(total, |s| s.min(total));
        if self.state.step >= end {
            return Ok(());
        }
        let cfg = self.state.config.clone();
        let sampler = Sampler::new(
            Arc::clone(&self.train),
            cfg.sample.clone(),
            cfg.batch,
            cfg.seed,
        )?;
        let loss_cfg = cfg.loss();
        let [d, h, w] = cfg.sample.grid_dhw;
        let start = self.state.step;
        std::thread::scope(|scope| -> Result<()> {
            // A rendezvous channel: the producer prepares step s + 1 while step s trains,
            // never more than one batch ahead (memory stays at two batches).
            let (tx, rx) = mpsc::sync_channel(0);
            let sampler = &sampler;
            scope.spawn(move || {
                for s in start..end {
                    if tx.send(sampler.batch(s)).is_err() {
                        break;
                    }
                }
            });
            let mut last_ckpt = Instant::now();
            for s in start..end {
                let t0 = Instant::now();
                let batch = rx.recv().map_err(|_| TrainError::SamplerStopped)??;
                let lr = cfg.lr.lr(s);
                let x = Tensor::from_vec(Shape5::new(batch.n, d, h, w, 1), batch.image)?;
                let loss = train_step(
                    &self.ctx,
                    &mut self.net,
                    &mut self.opt,
                    x,
                    &batch.labels,
                    &loss_cfg,
                    lr as f32,
                )
                .map_err(|e| match e {
                    ModelError::NonFiniteLoss(loss) => TrainError::Diverged { step: s, loss },
                    e => e.into(),
                })?;
                self.state.step = s + 1;
                let dt = t0.elapsed().as_secs_f64();
                let mut row = LogRow {
                    step: s,
                    loss,
                    lr,
                    samples_per_s: batch.n as f64 / dt.max(1e-9),
                    val: None,
                };
                let due = cfg.val_every > 0 && (s + 1) % cfg.val_every == 0;
                if !self.val.is_empty() && (due || s + 1 == end) {
                    let score = self.validate()?;
                    row.val = Some(score.mean.clone());
                    let better =
                        (self.state.best.as_ref()).is_none_or(|b| score.overall() > b.mean_dsc);
                    if better {
                        self.state.best = Some(Best {
                            step: s,
                            mean_dsc: score.overall(),
                            dsc: score.mean.clone(),
                        });
                        let card = self.model_card(Some(&score.mean), s + 1);
                        save_model(&self.outputs.best_model, &self.net, &card)?;
                    }
                    on(Event::Validated {
                        step: s,
                        score: &score,
                        best: better,
                    });
                }
                append_csv(&self.outputs.csv, self.labels(), &row)?;
                on(Event::Step(&row));
                self.state.log.push(row);
                if row_has_val(&self.state.log) {
                    write_plot(&self.outputs.plot, self.labels(), &self.state.log)?;
                }
                if s + 1 < end && last_ckpt.elapsed() >= limits.checkpoint_every {
                    self.save_checkpoint()?;
                    last_ckpt = Instant::now();
                    on(Event::Checkpointed {
                        step: s + 1,
                        path: &self.outputs.checkpoint,
                    });
                }
            }
            drop(rx);
            Ok(())
        })?;
        self.save_checkpoint()?;
        on(Event::Checkpointed {
            step: self.state.step,
            path: &self.outputs.checkpoint,
        });
        Ok(())
    }
}

fn row_has_val(log: &[LogRow]) -> bool {
    log.last().is_some_and(|r| r.val.is_some())
}

/// Writes a model file atomically.
fn save_model(path: &Path, net: &UNet, card: &ModelCard) -> Result<()> {
    let bytes = file::to_bytes(net, card)?;
    flare_atomic::write(path, &bytes).map_err(crate::error::io_err(path))
}
