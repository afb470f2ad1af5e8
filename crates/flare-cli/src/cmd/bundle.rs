//! `flare bundle`: two single-stage model files (from `flare train`) into one two-stage model.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use flare_model::{ModelCard, UNet};
use flare_pipeline::{Model, ModelFile, PipelinePlan, RefinePlan, RefineRegion};

use crate::cmd::util::check_new_output;

/// Combine a stage-1 and a stage-2 model (each written by `flare train`) into the one file
/// `flare segment --model` reads.
#[derive(clap::Args)]
pub struct Args {
    /// Stage 1 (whole scan, localisation), e.g. run.stage1.best.safetensors, or a two-stage
    /// model (or `builtin`) whose stage 1 to take.
    #[arg(long, value_name = "FILE")]
    pub stage1: PathBuf,
    /// Stage 2 (organ region, fine), e.g. run.stage2.best.safetensors, or a two-stage model
    /// (or `builtin`) whose stage 2 to take.
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
    /// A third, refinement stage: a region stage trained on some organs' box (e.g.
    /// run.stage3.best.safetensors, with `--refine-region organ-box`), or trained like stage 2
    /// on another grid (`--refine-region stage2-region`). In its region it decides the organs
    /// `--refine-label` names; every other voxel keeps stage 2's label.
    #[arg(long, value_name = "FILE", requires = "refine_label")]
    pub stage3: Option<PathBuf>,
    /// The organs stage 3 refines (label values, e.g. 4 for the pancreas, or 1,3).
    #[arg(
        long,
        value_name = "LABEL,...",
        value_delimiter = ',',
        requires = "stage3"
    )]
    pub refine_label: Vec<u8>,
    /// The region stage 3 segments: `organ-box` (the box of stage 2's voxels of those organs,
    /// grown by --refine-margin) or `stage2-region` (the region stage 2 segmented).
    #[arg(long, value_enum, default_value_t = RegionArg::OrganBox, requires = "stage3")]
    pub refine_region: RegionArg,
    /// With `organ-box`: the margin around stage 2's box of those organs, as a fraction of
    /// its size per side; use the margin stage 3 was trained with [default: 0.25].
    #[arg(long, requires = "stage3")]
    pub refine_margin: Option<f64>,
    /// Test-time mirroring of stage 2: the axes of its grid (0 = i, 1 = j, 2 = k) whose
    /// mirror images it also segments, averaging the probabilities of all 2^n combinations
    /// (2^n times stage 2's time). Only for a stage 2 trained with mirrored samples.
    #[arg(long, value_name = "AXIS,...", value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=2))]
    pub mirror: Vec<u8>,
    /// A further stage-2 network (repeat for more, up to 7): stage 2 becomes an ensemble
    /// whose probabilities are averaged, each member adding one stage-2 pass. Each must share
    /// stage 2's labels, grid and intensity mapping (a single-stage file, or a two-stage
    /// model whose stage 2 to take).
    #[arg(long, value_name = "FILE")]
    pub stage2_member: Vec<PathBuf>,
    /// Calibration of stage 2: one value per class (background, then each label value),
    /// added to its log-probabilities before the classes are compared, e.g.
    /// `0,0,0,0,0.5` to let the pancreas win where it is nearly as probable as its
    /// neighbours (each value within +-10). Choose them on scans the model was not trained on.
    #[arg(
        long,
        value_name = "B0,B1,...",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub class_offsets: Vec<f32>,
}

/// `--refine-region`: which region stage 3 segments ([`RefineRegion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RegionArg {
    /// The box of stage 2's voxels of the refined organs, grown by --refine-margin.
    OrganBox,
    /// The region stage 2 segmented.
    Stage2Region,
}

/// Loads both stages, checks them, writes the bundle atomically.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut inputs = vec![args.stage1.as_path(), args.stage2.as_path()];
    inputs.extend(args.stage3.as_deref());
    inputs.extend(args.stage2_member.iter().map(PathBuf::as_path));
    check_new_output(&args.out, &inputs, args.overwrite)?;
    let plan = PipelinePlan {
        roi_margin: args.margin,
        name: args.name.clone(),
        notes: args.notes.clone(),
        refine: None,
        mirror_axes: args.mirror.clone(),
        stage2_members: 1,
        stage2_class_offsets: Vec::new(),
    };
    let mut model = Model::from_parts(stage_of(&args.stage1, 1)?, stage_of(&args.stage2, 2)?, plan)
        .context("combining the stages")?;
    if let Some(path) = &args.stage3 {
        let (net, card) = flare_model::file::load(path)
            .with_context(|| format!("reading stage 3 {}", path.display()))?;
        let (region, margin) = match (args.refine_region, args.refine_margin) {
            (RegionArg::OrganBox, m) => (RefineRegion::OrganBox, m.unwrap_or(0.25)),
            (RegionArg::Stage2Region, None) => (RefineRegion::Stage2Region, 0.0),
            (RegionArg::Stage2Region, Some(_)) => anyhow::bail!(
                "--refine-margin applies to --refine-region organ-box only (stage 2's region has stage 2's margin)"
            ),
        };
        let refine = RefinePlan {
            labels: args.refine_label.clone(),
            margin,
            region,
        };
        model = model
            .with_refinement(net, card, refine)
            .with_context(|| format!("adding stage 3 {}", path.display()))?;
    }
    if !args.stage2_member.is_empty() {
        let members = args
            .stage2_member
            .iter()
            .map(|p| stage_of(p, 2))
            .collect::<anyhow::Result<Vec<_>>>()?;
        model = model
            .with_stage2_members(members)
            .context("adding the stage-2 members")?;
    }
    if !args.class_offsets.is_empty() {
        model = model
            .with_stage2_class_offsets(args.class_offsets.clone())
            .context("setting the stage-2 class offsets")?;
    }
    model
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}: {}", args.out.display(), model.describe());
    Ok(ExitCode::SUCCESS)
}

/// Stage `n`'s network and card from `path`: a single-stage file (`flare train`), or the
/// stage of that number of a two-stage model (`builtin` names the built-in one), so that a
/// new stage can be bundled with the stages of an existing model.
fn stage_of(path: &Path, n: usize) -> anyhow::Result<(UNet, ModelCard)> {
    let file =
        ModelFile::open(path).with_context(|| format!("reading stage {n} {}", path.display()))?;
    Ok(match file {
        ModelFile::Stage(net, card) => (net, card),
        ModelFile::TwoStage(m) => (m.networks()[n - 1].clone(), m.stage_cards()[n - 1].clone()),
    })
}
