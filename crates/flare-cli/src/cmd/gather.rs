//! `flare gather`: the parts of a batch (cluster array tasks) brought together into one volumes
//! CSV and one HTML index, naming every case that is missing or failed.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use flare_batch::{CaseState, PlannedCase, gather};

use flare_io::plan;

use crate::cmd::util::{atomic_write, same_path};

/// Arguments of `flare gather`.
#[derive(clap::Args)]
#[command(after_long_help = DETAILS)]
pub struct Args {
    /// The folder of cases the parts segmented (their `flare segment -i`).
    #[arg(short = 'i', long, value_name = "INPUT")]
    pub input: PathBuf,
    /// The folder the parts wrote into (their `flare segment -o`).
    #[arg(short = 'o', long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Write the organ volumes (mL) of every complete case to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub volumes: Option<PathBuf>,
    /// Write index.html here: every case's status, volumes, time and memory, with the
    /// pictures the parts wrote (give the parts the same --report folder).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// The number of parts, to name the part of each missing case [default: the one the
    /// records agree on].
    #[arg(long, value_name = "N")]
    pub num_parts: Option<u32>,
}

const DETAILS: &str = "\
Reads OUTPUT (the label maps) and OUTPUT/.flare-records/ (one JSON record per case, written by
each part) for every case of INPUT, and prints one line per case that is not complete:
  missing: CASE (part K of N): why
  failed: CASE (part K of N): the error
then a summary on stderr. A case is complete when its label map exists (flare only ever renames
a finished file into place); volumes come from its record, or from the map itself. Exit code 0
when every case is complete, 1 when any is missing or failed, 2 for a usage error. Reads the
parts' files, writes only --volumes and --report.

Rerun what is missing by resubmitting its part, e.g. for part 2 of a 4-task array:
  FLARE_NUM_PARTS=4 sbatch --array=2 scripts/cluster/slurm-array.sbatch INPUT OUTPUT
(a part does only its cases whose label map is not there yet).

Example: flare gather -i cases/ -o labels/ --volumes volumes.csv --report report/";

/// Runs `flare gather`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let plan = plan(&args.input, &args.output)?;
    if !plan.batch {
        anyhow::bail!(
            "{}: not a folder of cases (<case>_0000.nii.gz): flare gather brings together the parts of a batch",
            args.input.display()
        );
    }
    for side in [&args.volumes, &args.report].into_iter().flatten() {
        if plan
            .jobs
            .iter()
            .any(|j| same_path(side, &j.input) || same_path(side, &j.output))
            || same_path(side, &args.input)
            || same_path(side, &args.output)
        {
            anyhow::bail!(
                "{}: is an input or a label map; refusing to write there",
                side.display()
            );
        }
    }
    let cases: Vec<PlannedCase> = plan
        .jobs
        .iter()
        .map(|j| PlannedCase {
            name: j.name.clone(),
            input: j.input.clone(),
            output: j.output.clone(),
        })
        .collect();
    // The parts' records name their model but not its label set: gathering reads FLARE21's.
    let labels = flare_labels::LabelSet::flare21();
    let gathered = gather(&cases, &args.output, &labels, &mut |path| {
        flare_nifti::read_label_map(path)
            .map(|m| flare_pipeline::organ_volumes_ml(&m.volume, &labels))
            .map_err(|e| e.to_string())
    })?;
    let count = args.num_parts.or(gathered.part_count);
    for case in &gathered.cases {
        let part = count
            .map(|n| format!(" (part {} of {n})", case.part(n)))
            .unwrap_or_default();
        match &case.state {
            CaseState::Complete => {}
            CaseState::Missing(why) => println!("missing: {}{part}: {why}", case.case.name),
            CaseState::Failed(e) => println!("failed: {}{part}: {e}", case.case.name),
        }
    }
    for name in &gathered.stray_records {
        eprintln!(
            "flare gather: note: a record of {name}, which is not a case of {}",
            args.input.display()
        );
    }
    if !gathered.leftovers.is_empty() {
        eprintln!(
            "flare gather: note: {} temporary file(s) left by killed writes (never under a final name; delete them once no part is running), e.g. {}",
            gathered.leftovers.len(),
            gathered.leftovers[0].display()
        );
    }
    let mut models: Vec<&str> = gathered
        .cases
        .iter()
        .filter_map(|c| c.record.as_ref()?.model.as_deref())
        .collect();
    models.sort_unstable();
    models.dedup();
    if models.len() > 1 {
        eprintln!(
            "flare gather: warning: the cases were segmented by {} different models",
            models.len()
        );
    }
    if let Some(csv) = &args.volumes {
        atomic_write(
            csv,
            flare_batch::volumes_csv(&labels, &gathered.volume_rows()).as_bytes(),
        )?;
        eprintln!("flare gather: volumes in {}", csv.display());
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the report folder", dir.display()))?;
        let title = format!("flare: {}", args.output.display());
        let model = if models.is_empty() {
            "not recorded".to_string()
        } else {
            models.join("; ")
        };
        let entries = gathered.report_entries(Some(dir));
        let index = flare_report::write_index_html(dir, &title, &model, &labels, &entries)
            .with_context(|| format!("{}: writing the report", dir.display()))?;
        eprintln!("flare gather: report in {}", index.display());
    }
    let (complete, failed, missing) = (gathered.complete(), gathered.failed(), gathered.missing());
    eprintln!(
        "flare gather: {} cases: {complete} complete, {failed} failed, {missing} missing",
        gathered.cases.len()
    );
    Ok(if failed + missing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
