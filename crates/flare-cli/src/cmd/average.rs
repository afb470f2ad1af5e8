//! `flare average`: the weight average of several single-stage model files of one run
//! (checkpoint averaging), as one model file.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use flare_model::UNet;

use crate::cmd::util::{atomic_write, check_new_output};

/// Average the weights of model files of one training run (e.g. the `X.safetensors` written at
/// several steps, or the last of runs fine-tuned from one network) into one model file.
#[derive(clap::Args)]
pub struct Args {
    /// The model files (single stage, one architecture), at least two.
    #[arg(required = true, num_args = 2.., value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// The averaged model file to write (.safetensors).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Loads every input, averages, writes the result atomically with the last input's card.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let inputs: Vec<&std::path::Path> = args.inputs.iter().map(PathBuf::as_path).collect();
    check_new_output(&args.out, &inputs, args.overwrite)?;
    let mut nets: Vec<UNet> = Vec::with_capacity(args.inputs.len());
    let mut steps = Vec::with_capacity(args.inputs.len());
    let mut card = None;
    for input in &args.inputs {
        let (net, c) = flare_model::file::load(input)
            .with_context(|| format!("reading {}", input.display()))?;
        if let Some(first) = nets.first()
            && first.config() != net.config()
        {
            bail!(
                "{}: its architecture differs from {}'s; only networks of one run average",
                input.display(),
                args.inputs[0].display()
            );
        }
        steps.push(c.training.steps);
        nets.push(net);
        card = Some(c);
    }
    let mut card = card.context("no input")?;
    let refs: Vec<&UNet> = nets.iter().collect();
    let avg = UNet::average(&refs).context("averaging")?;
    // The validation figures belong to the last input, not to the average.
    card.training.metrics.clear();
    card.training.notes = format!(
        "weights averaged over {} model files at steps {:?}; the last: {}",
        nets.len(),
        steps,
        card.training.notes
    );
    let bytes = flare_model::file::to_bytes(&avg, &card).context("serialising the average")?;
    atomic_write(&args.out, &bytes)?;
    println!(
        "wrote {}: the mean of {} networks (steps {:?})",
        args.out.display(),
        nets.len(),
        steps
    );
    Ok(ExitCode::SUCCESS)
}
