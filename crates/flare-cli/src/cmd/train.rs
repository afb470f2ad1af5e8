//! `flare train`: train stage 1 (whole scan) and/or stage 2 (organ region) of the two-stage
//! model on a labelled dataset, with validation, checkpoints and exact resume.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use flare_model::{UNet, UNetConfig};
use flare_pipeline::ModelFile;
use flare_train::{
    AdamWConfig, Cache, CachedCase, Checkpoint, Dataset, Decay, Event, Outputs, PreprocessConfig,
    RunLimits, SampleConfig, SplitSpec, Stage, TrainConfig, Trainer, checkpoint,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::util::say;
use serde::Deserialize;

/// Arguments of `flare train`; its behaviour is described in [`DETAILS`] (the long help).
#[derive(clap::Args)]
#[command(after_long_help = DETAILS)]
pub struct Args {
    /// Training data: a FLARE folder (<case>_0000.nii.gz + <case>.nii.gz) or an nnU-Net raw
    /// folder (imagesTr/, labelsTr/, dataset.json).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Labels in their own folder (then --data holds only the images).
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,
    /// Validation data in its own folder (same layouts as --data).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["val_cases", "val_names"])]
    pub val: Option<PathBuf>,
    /// Hold out N cases of --data for validation, drawn with --seed.
    #[arg(long, value_name = "N", conflicts_with = "val_names")]
    pub val_cases: Option<usize>,
    /// Hold out these cases of --data for validation (comma-separated names).
    #[arg(long, value_name = "CASE,...", value_delimiter = ',')]
    pub val_names: Vec<String>,
    /// The model file to write (X.safetensors); next to it: X.best.safetensors, X.ckpt,
    /// X.log.csv, X.curves.png. With --stage both, X.stage1.* and X.stage2.*.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// Which stage to train: 1 (whole scan), 2 (organ region) or both (1 then 2).
    #[arg(long, default_value = "1", value_parser = ["1", "2", "both"])]
    pub stage: String,
    /// Steps of the schedule (warm-up and decay span them) [default: 2000; a resumed run
    /// keeps its own unless this is given].
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Stop after this many steps (checkpoint written), before the schedule ends; resume
    /// later with --resume.
    #[arg(long, value_name = "N")]
    pub stop_at: Option<u64>,
    /// Continue a run from its checkpoint (X.ckpt); its configuration is used, and only
    /// --steps (when given explicitly), --stop-at and the output paths apply.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Start from trained weights instead of random ones (fine-tuning): a stage file written
    /// by flare train, a two-stage model file (its network for each stage trained), or
    /// `builtin` (the built-in model). The network's architecture comes from it.
    #[arg(long, value_name = "MODEL", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Seed of the weights, the sampler and the random split.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Preprocessed-case cache (default: flare-cache/ next to --out).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Samples per step.
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Peak learning rate (AdamW).
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Warm-up steps.
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// The network's grid, D x H x W (e.g. 64x96x96); each must divide by the network's
    /// total stride.
    #[arg(long, value_name = "DxHxW", value_parser = parse_grid)]
    pub grid: Option<[usize; 3]>,
    /// Validate every N steps (and at the end).
    #[arg(long, value_name = "N")]
    pub val_every: Option<u64>,
    /// Write a checkpoint every this many minutes (and at the end).
    #[arg(long, value_name = "MIN", default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// A JSON plan overriding the stage defaults: any of "architecture" (UNetConfig),
    /// "sample" (grid, crop, augmentation), "preprocess", "adamw", "decay",
    /// "ce_class_weights".
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Number format of the training convolutions: fp32 (default), or bf16 (bf16 operands,
    /// fp32 sums; fp32 master weights, norms, losses and optimiser; needs avx512_bf16).
    /// Recorded in the checkpoint, which a resumed run follows.
    #[arg(long, value_name = "fp32|bf16", conflicts_with = "resume")]
    pub precision: Option<flare_engine::Precision>,
}

/// The long help (`flare train --help`), after the options.
const DETAILS: &str = "\
Every image/label pair is checked first (names paired, same grid, labels 0..4); all bad cases
are named and nothing is trained. Cases are preprocessed once into the cache (HU window
[-125, 275] to [0, 1]); a changed file or preprocessing rebuilds only what changed.

Stage 1 sees the whole scan resampled to a fixed grid (default 64 x 96 x 96, D x H x W); stage 2
the organs' union box plus a 10% margin on a fixed grid (default 64 x 128 x 128). Loss: cross-
entropy + soft Dice over the 4 organs with deep supervision (stage 2 weighs pancreas 3x in the
cross-entropy); AdamW (default 2e-3) with linear warm-up then cosine decay.

--init fine-tunes: the weights (and architecture) come from a model file, everything else (data,
grid, schedule, augmentation) from this run; e.g. the built-in model's stage 2 on your own
labelled cases: --init builtin --stage 2 --lr 5e-4 --steps 500.

Validation: each held-out case through the network at the training grid, labels back on the
case's grid, Dice per organ as FLARE21 scores it.

A run is deterministic for a given seed and thread count (--threads), and --resume continues
it bit for bit: the checkpoint holds the weights, the AdamW moments, the step, the sampler
state and the log.";

/// Steps of a new run's schedule when --steps is not given.
const DEFAULT_STEPS: u64 = 2000;

/// Overrides read from --config.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Plan {
    architecture: Option<UNetConfig>,
    sample: Option<SampleConfig>,
    preprocess: Option<PreprocessConfig>,
    adamw: Option<AdamWConfig>,
    decay: Option<Decay>,
    ce_class_weights: Option<Vec<f32>>,
}

/// Cases of one run, checked and cached.
struct Data {
    train: Arc<Cache>,
    val: Vec<CachedCase>,
    train_names: Vec<String>,
    val_names: Vec<String>,
}

fn open_dataset(images: &Path, labels: Option<&Path>) -> anyhow::Result<Dataset> {
    let ds = match labels {
        Some(l) => Dataset::open_folders(images, l),
        None => Dataset::open(images),
    }
    .with_context(|| format!("reading the dataset in {}", images.display()))?;
    ds.check()
        .with_context(|| format!("checking the dataset in {}", images.display()))?;
    Ok(ds)
}

fn prepare(args: &Args, pre: &PreprocessConfig) -> anyhow::Result<Data> {
    let ds = open_dataset(&args.data, args.labels.as_deref())?;
    let cache_dir = match &args.cache {
        Some(c) => c.clone(),
        None => args
            .out
            .parent()
            .unwrap_or(Path::new("."))
            .join("flare-cache"),
    };
    let (cache, _) = Cache::build(&ds, pre, cache_dir.join("train"))
        .with_context(|| format!("preprocessing into {}", cache_dir.display()))?;
    if let Some(vdir) = &args.val {
        let vds = open_dataset(vdir, None)?;
        let (vcache, _) = Cache::build(&vds, pre, cache_dir.join("val"))
            .with_context(|| format!("preprocessing into {}", cache_dir.display()))?;
        let names = cache
            .cases()
            .iter()
            .map(|c| c.meta().name.clone())
            .collect();
        let val_names = vcache
            .cases()
            .iter()
            .map(|c| c.meta().name.clone())
            .collect();
        return Ok(Data {
            train: Arc::new(cache),
            val: vcache.cases().to_vec(),
            train_names: names,
            val_names,
        });
    }
    let spec = if !args.val_names.is_empty() {
        SplitSpec::Named(args.val_names.clone())
    } else {
        SplitSpec::Random {
            n_val: args.val_cases.unwrap_or(0),
            seed: args.seed,
        }
    };
    let split = ds.split(&spec).context("splitting the dataset")?;
    let train = cache.subset(&split.train).context("training cases")?;
    let val = cache.subset(&split.val).context("validation cases")?;
    Ok(Data {
        train: Arc::new(train),
        val: val.cases().to_vec(),
        train_names: split.train,
        val_names: split.val,
    })
}

fn config_for(args: &Args, stage: Stage, plan: &Plan) -> TrainConfig {
    let mut c = TrainConfig::default_for(stage, args.steps.unwrap_or(DEFAULT_STEPS), args.seed);
    if let Some(a) = &plan.architecture {
        c.architecture = a.clone();
    }
    if let Some(s) = &plan.sample {
        c.sample = s.clone();
    }
    if let Some(p) = &plan.preprocess {
        c.preprocess = p.clone();
    }
    if let Some(a) = plan.adamw {
        c.adamw = a;
    }
    if let Some(d) = plan.decay {
        c.lr.decay = d;
    }
    if plan.ce_class_weights.is_some() {
        c.ce_class_weights = plan.ce_class_weights.clone();
    }
    if let Some(b) = args.batch {
        c.batch = b;
    }
    if let Some(p) = args.precision {
        c.precision = p;
    }
    if let Some(lr) = args.lr {
        c.lr.base = lr;
    }
    if let Some(w) = args.warmup {
        c.lr.warmup = w;
    }
    if let Some(g) = args.grid {
        c.sample.grid_dhw = g;
    }
    if let Some(v) = args.val_every {
        c.val_every = v;
    }
    c
}

fn parse_grid(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(['x', 'X'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s}: {e} (expected DxHxW, e.g. 64x96x96)"))?;
    match v[..] {
        [d, h, w] if d > 0 && h > 0 && w > 0 => Ok([d, h, w]),
        _ => Err(format!(
            "{s}: expected three positive sizes DxHxW, e.g. 64x96x96"
        )),
    }
}

fn stage_out(out: &Path, tag: &str) -> PathBuf {
    let mut s = out.with_extension("").into_os_string();
    s.push(format!(".{tag}.safetensors"));
    PathBuf::from(s)
}

/// Runs `flare train`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let plan: Plan = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => Plan::default(),
    };
    if !(args.checkpoint_minutes.is_finite() && args.checkpoint_minutes > 0.0) {
        bail!("--checkpoint-minutes must be positive");
    }
    let limits = RunLimits {
        stop_at: args.stop_at,
        checkpoint_every: Duration::from_secs_f64(args.checkpoint_minutes * 60.0),
    };
    if let Some(path) = &args.resume {
        let mut ck = checkpoint::load(path)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        if let Some(steps) = args.steps {
            ck.state.config.lr.total = steps;
        }
        let pre = ck.state.config.preprocess.clone();
        let data = prepare(args, &pre)?;
        if data.train_names != ck.state.config.train_cases {
            bail!(
                "the checkpoint was trained on {:?}, this dataset gives {:?}",
                ck.state.config.train_cases,
                data.train_names
            );
        }
        return train_one(ck_trainer(ck, data, &args.out)?, limits, "resumed");
    }
    let stages: Vec<(Stage, PathBuf)> = match args.stage.as_str() {
        "1" => vec![(Stage::Whole, args.out.clone())],
        "2" => vec![(Stage::Roi, args.out.clone())],
        _ => vec![
            (Stage::Whole, stage_out(&args.out, "stage1")),
            (Stage::Roi, stage_out(&args.out, "stage2")),
        ],
    };
    let init = match &args.init {
        Some(path) => {
            let w = InitWeights::load(path)?;
            if stages.len() > 1 && matches!(w, InitWeights::Stage { .. }) {
                bail!(
                    "--init {} is a single stage: it can start --stage 1 or --stage 2, not both (give a two-stage model file for both)",
                    path.display()
                );
            }
            Some(w)
        }
        None => None,
    };
    // Every configuration is checked before any data is read or any step runs.
    let mut configs = Vec::new();
    for (stage, out) in &stages {
        let mut c = config_for(args, *stage, &plan);
        let initial = match &init {
            Some(w) => {
                let (net, from) = w.for_stage(*stage);
                if plan.architecture.is_some() && plan.architecture.as_ref() != Some(net.config()) {
                    bail!(
                        "--config sets an architecture that differs from the --init network's ({from})"
                    );
                }
                c.architecture = net.config().clone();
                c.init_from = Some(from);
                Some(net)
            }
            None => None,
        };
        c.validate()
            .with_context(|| format!("the training plan for {}", out.display()))?;
        configs.push((c, initial));
    }
    for ((mut cfg, initial), (_, out)) in configs.into_iter().zip(stages) {
        let data = prepare(args, &cfg.preprocess)?;
        if args.val.is_none() && data.val.is_empty() {
            eprintln!(
                "flare: warning: no validation cases (--val, --val-cases or --val-names): the best model is not tracked"
            );
        }
        cfg.train_cases = data.train_names.clone();
        cfg.val_cases = data.val_names.clone();
        create_parent(&out)?;
        let outputs = Outputs::for_model(&out);
        let trainer = match initial {
            Some(net) => Trainer::fine_tune(cfg, net, data.train, data.val, outputs),
            None => Trainer::new(cfg, data.train, data.val, outputs),
        }
        .with_context(|| format!("starting the run for {}", out.display()))?;
        train_one(trainer, limits, "started")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The weights --init names: one stage's network or a two-stage model's pair.
// One value per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum InitWeights {
    /// A single-stage file: the network serves whichever stage is trained.
    Stage { net: UNet, from: String },
    /// A two-stage model: each stage starts from its own network.
    Pair { nets: [UNet; 2], from: String },
}

impl InitWeights {
    fn load(path: &Path) -> anyhow::Result<InitWeights> {
        let from = path.display().to_string();
        let file =
            ModelFile::open(path).with_context(|| format!("reading the --init model {from}"))?;
        Ok(match file {
            ModelFile::TwoStage(m) => {
                let [a, b] = m.networks();
                let from = if path.as_os_str() == ModelFile::BUILTIN {
                    format!("the built-in model ({})", m.plan().name)
                } else {
                    from
                };
                InitWeights::Pair {
                    nets: [a.clone(), b.clone()],
                    from,
                }
            }
            ModelFile::Stage(net, _card) => InitWeights::Stage { net, from },
        })
    }

    /// The starting network of `stage` and a description of where it came from.
    fn for_stage(&self, stage: Stage) -> (UNet, String) {
        match self {
            InitWeights::Stage { net, from } => (net.clone(), from.clone()),
            InitWeights::Pair { nets, from } => {
                let (i, n) = match stage {
                    Stage::Whole => (0, 1),
                    Stage::Roi => (1, 2),
                };
                (nets[i].clone(), format!("{from}, stage {n}"))
            }
        }
    }
}

fn create_parent(out: &Path) -> anyhow::Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}

fn ck_trainer(ck: Checkpoint, data: Data, out: &Path) -> anyhow::Result<Trainer> {
    create_parent(out)?;
    Trainer::resume(ck, data.train, data.val, Outputs::for_model(out)).context("resuming the run")
}

fn train_one(mut t: Trainer, limits: RunLimits, how: &str) -> anyhow::Result<ExitCode> {
    let total = t.state().config.lr.total;
    let end = limits.stop_at.map_or(total, |s| s.min(total));
    let start = t.state().step;
    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "flare train: {how} at step {start} of {total} (stopping at {end}); {} training, {} validation cases; {} parameters; writing {}",
        t.state().config.train_cases.len(),
        t.state().config.val_cases.len(),
        t.net().num_params(),
        t.outputs().model.display()
    );
    let bar = ProgressBar::new(end);
    bar.set_position(start);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut ema: Option<f64> = None;
    // "liver 0.950 kidney 0.930 spleen 0.940 pancreas 0.700" for FLARE21.
    let labels = t.labels().clone();
    let per_organ = |dsc: &[f64]| -> String {
        (labels.organs().iter())
            .zip(dsc)
            .map(|(o, d)| format!("{} {d:.3}", o.name))
            .collect::<Vec<_>>()
            .join(" ")
    };
    t.run(limits, &mut |ev| match ev {
        Event::Step(r) => {
            let e = ema.map_or(r.loss, |e| 0.95 * e + 0.05 * r.loss);
            ema = Some(e);
            bar.set_position(r.step + 1);
            bar.set_message(format!(
                "loss {:.4} (avg {e:.4}) lr {:.2e} {:.2} samples/s",
                r.loss, r.lr, r.samples_per_s
            ));
            // Without a terminal (a background run), a line every 10 steps instead.
            if !tty && (r.step + 1) % 10 == 0 {
                eprintln!(
                    "step {} loss {:.4} avg {e:.4} lr {:.2e} {:.2} samples/s",
                    r.step + 1,
                    r.loss,
                    r.lr,
                    r.samples_per_s
                );
            }
        }
        Event::Validated { step, score, best } => {
            let per_case: Vec<String> = score
                .cases
                .iter()
                .map(|(n, d)| {
                    let d: Vec<String> = d.iter().map(|v| format!("{v:.3}")).collect();
                    format!("{n} {}", d.join("/"))
                })
                .collect();
            say(
                &bar,
                format!(
                    "validation after step {}: {} (mean {:.3}{}) [{}]",
                    step + 1,
                    per_organ(&score.mean),
                    score.overall(),
                    if best { ", best so far" } else { "" },
                    per_case.join("; ")
                ),
            );
        }
        Event::Checkpointed { step, path } => {
            say(
                &bar,
                format!("checkpoint after step {step}: {}", path.display()),
            );
        }
    })
    .with_context(|| format!("training {}", t.outputs().model.display()))?;
    bar.finish_and_clear();
    if let Some(b) = &t.state().best {
        eprintln!(
            "flare train: done at step {}; best validation after step {}: {}",
            t.state().step,
            b.step + 1,
            per_organ(&b.dsc)
        );
    } else {
        eprintln!("flare train: done at step {}", t.state().step);
    }
    Ok(ExitCode::SUCCESS)
}
