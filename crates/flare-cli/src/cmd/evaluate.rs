//! `flare evaluate`: score a folder of predictions exactly as FLARE21 did (DSC and NSD).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::Context;
use flare_metrics::{CaseOutcome, CaseResult, Summary, Tolerances, evaluate_folders, write_csv};

/// Arguments of `flare evaluate`; its behaviour is described in [`DETAILS`] (the long help).
#[derive(clap::Args)]
#[command(after_long_help = DETAILS)]
pub struct Args {
    /// Folder of predicted label maps (<case>.nii.gz, named like the ground truth).
    #[arg(long, value_name = "DIR")]
    pub pred: PathBuf,
    /// Folder of ground-truth label maps (<case>.nii.gz).
    #[arg(long, value_name = "DIR")]
    pub gt: PathBuf,
    /// Write the official CSV here (Name,DSC_1,NSD-1mm_1,...,DSC_4,NSD-1mm_4).
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
    /// NSD tolerance in millimetres for every organ (FLARE21: 1).
    #[arg(
        long,
        value_name = "MM",
        default_value_t = 1.0,
        conflicts_with = "tolerances"
    )]
    pub tolerance: f64,
    /// NSD tolerance per label, e.g. 1=5,2=3,3=3,4=5 (later FLARE editions); unlisted labels
    /// keep 1 mm.
    #[arg(long, value_name = "LABEL=MM,...")]
    pub tolerances: Option<String>,
}

/// The long help (`flare evaluate --help`), after the options.
const DETAILS: &str = "\
For every ground-truth file <case>.nii.gz in --gt, the prediction <case>.nii.gz in --pred is
scored: Dice (DSC) and normalised surface Dice (NSD) for labels 1 liver, 2 kidney, 3 spleen and
4 pancreas, with FLARE's rules (both masks empty: 1; organ predicted where the ground truth has
none: 0). Voxel spacing comes from the ground truth's header (pixdim), as in the official code.

A missing prediction is named and scored as an empty one (0 for every organ present); the exit
code is then 1. A prediction on another grid (shape or affine) than its ground truth is an error
for that case, with both grids shown, and the exit code is 1. Label values outside 0..4 are
reported and count as background, as in the official code. Folder problems exit with 2.

Prints one line per case and a summary table (per organ mean ± std, and the per-case mean over
organs that FLARE ranked); --out saves the official CSV.

Example: flare evaluate --pred out/ --gt labels/ --out scores.csv";

/// Scores the folder; exit code 0 when every case was scored, 1 when a prediction was missing
/// or a case could not be scored.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let tolerances = match &args.tolerances {
        Some(text) => Tolerances::parse_per_label(text, 1.0)?,
        None => Tolerances::uniform(args.tolerance)?,
    };
    if let Some(out) = &args.out {
        check_csv_not_an_input(out, &[&args.pred, &args.gt])?;
    }
    let start = Instant::now();
    let results =
        evaluate_folders(&args.pred, &args.gt, &tolerances, print_case).with_context(|| {
            format!(
                "evaluating {} against {}",
                args.pred.display(),
                args.gt.display()
            )
        })?;
    let missing: Vec<&CaseResult> = results
        .iter()
        .filter(|r| matches!(r.outcome, CaseOutcome::MissingPrediction(_)))
        .collect();
    let failed = results
        .iter()
        .filter(|r| matches!(r.outcome, CaseOutcome::Failed(_)))
        .count();
    if let Some(out) = &args.out {
        write_csv(out, &results, &tolerances)
            .with_context(|| format!("writing the CSV {}", out.display()))?;
    }
    let summary = Summary::of(&results, &tolerances);
    println!();
    println!("{summary}");
    if let Some(out) = &args.out {
        println!("CSV: {}", out.display());
    }
    eprintln!(
        "{} case(s) in {:.3} s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "flare: {} prediction(s) missing, scored as empty: {}",
            missing.len(),
            names.join(", ")
        );
    }
    if failed > 0 {
        eprintln!(
            "flare: {failed} case(s) could not be scored (see the errors above); they are not in the CSV or the summary"
        );
    }
    Ok(if missing.is_empty() && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Refuses a `--out` path that is an input of the run: one of the folders, a file already in
/// either (a prediction or a ground truth), or a NIfTI name there (it would become a case).
fn check_csv_not_an_input(out: &Path, folders: &[&Path]) -> anyhow::Result<()> {
    let target = flare_io::file_target(out);
    for folder in folders {
        let Ok(dir) = folder.canonicalize() else {
            continue; // reading it fails later with its own message
        };
        let nifti = out
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".nii.gz") || n.ends_with(".nii"));
        let inside = target.as_ref().is_some_and(|t| t.parent() == Some(&*dir));
        if target.as_deref() == Some(&*dir) || (inside && (out.exists() || nifti)) {
            anyhow::bail!(
                "{}: is in the input folder {}; refusing to write the CSV there",
                out.display(),
                folder.display()
            );
        }
    }
    Ok(())
}

/// One line per case on stdout; warnings and errors on stderr.
fn print_case(r: &CaseResult) {
    for w in &r.warnings {
        eprintln!("flare: warning: {w}");
    }
    match &r.outcome {
        CaseOutcome::Scored(s) | CaseOutcome::MissingPrediction(s) => {
            if matches!(r.outcome, CaseOutcome::MissingPrediction(_)) {
                eprintln!(
                    "flare: warning: {}: no prediction {}; scored as an empty prediction",
                    r.name,
                    r.pred_path.display()
                );
            }
            let organs: Vec<String> = s
                .organs
                .iter()
                .map(|o| format!("{:.4}/{:.4}", o.dsc, o.nsd))
                .collect();
            println!(
                "{}: DSC {:.4} NSD {:.4}  (DSC/NSD per organ: {})",
                r.name,
                s.mean_dsc(),
                s.mean_nsd(),
                organs.join(" ")
            );
        }
        CaseOutcome::Failed(msg) => eprintln!("flare: error: {}: {msg}", r.name),
    }
}
