//! `flare bundle`: two single-stage model files (from `flare train`) into one two-stage model.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use flare_pipeline::{Model, PipelinePlan};

use crate::cmd::util::check_new_output;

/// Combine a stage-1 and a stage-2 model (each written by `flare train`) into the one file
/// `flare segment --model` reads.
#[derive(clap::Args)]
pub struct Args {
    /// Stage 1 (whole scan, localisation), e.g. run.stage1.best.safetensors.
    #[arg(long, value_name = "FILE")]
    pub stage1: PathBuf,
    /// Stage 2 (organ region, fine), e.g. run.stage2.best.safetensors.
    #[arg(long, value_name = "FILE")]
    pub stage2: PathBuf,
    /// The two-stage model to write (.safetensors).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Margin around stage 1's organ box, as a fraction of its size per side; use the margin
    /// stage 2 was trained with.
    #[arg(long, default_value_t = 0.1)]
    pub margin: f64,
    /// A name for the model (shown by `flare segment`).
    #[arg(long, default_value = "flare")]
    pub name: String,
    /// Free-form notes stored in the model (data, commit, validation).
    #[arg(long, default_value = "")]
    pub notes: String,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Loads both stages, checks them, writes the bundle atomically.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    check_new_output(&args.out, &[&args.stage1, &args.stage2], args.overwrite)?;
    let plan = PipelinePlan {
        roi_margin: args.margin,
        name: args.name.clone(),
        notes: args.notes.clone(),
    };
    let model = Model::from_stage_files(&args.stage1, &args.stage2, plan)
        .context("combining the stages")?;
    model
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}: {}", args.out.display(), model.describe());
    Ok(ExitCode::SUCCESS)
}
