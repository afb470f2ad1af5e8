//! `flare segment` as one part of a batch on a cluster: the part options, the choice of cases,
//! and the per-case records that `flare gather` reads (the logic is in flare-batch).

use std::path::{Path, PathBuf};

use anyhow::Context;
use flare_batch::{CaseRecord, Engine, OrganVolumes, Part, RecordStatus, Records};
use flare_report::{CaseEntry, CaseStatus};

use flare_io::Plan;

/// The options that give `flare segment` one part of a folder of cases.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "One part of a batch (cluster job arrays)")]
pub struct PartArgs {
    /// Split the folder's cases into N parts and do one (nnU-Net's --num_parts). A case belongs
    /// to part SHA-256(case name) mod N, so cases added later never move the others.
    #[arg(long, value_name = "N")]
    pub num_parts: Option<u32>,
    /// The part to do, 0 to N-1 (nnU-Net's --part_id); needs --num-parts.
    #[arg(
        long,
        value_name = "K",
        requires = "num_parts",
        conflicts_with = "part_from_env"
    )]
    pub part_id: Option<u32>,
    /// Take the part from the cluster engine: `slurm` reads SLURM_ARRAY_TASK_ID (and N from
    /// SLURM_ARRAY_TASK_COUNT unless --num-parts), `k8s` reads JOB_COMPLETION_INDEX of an
    /// Indexed Job (needs --num-parts). A missing variable is an error.
    #[arg(long, value_name = "ENGINE", value_enum)]
    pub part_from_env: Option<EngineArg>,
}

/// `--part-from-env` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EngineArg {
    /// A Slurm job array.
    Slurm,
    /// A Kubernetes Indexed Job.
    K8s,
}

impl PartArgs {
    /// The part asked for, `None` when none of the options is given.
    pub fn part(&self) -> anyhow::Result<Option<Part>> {
        let env = |k: &str| std::env::var(k).ok();
        Ok(match (self.part_from_env, self.part_id, self.num_parts) {
            (Some(engine), _, count) => {
                let engine = match engine {
                    EngineArg::Slurm => Engine::Slurm,
                    EngineArg::K8s => Engine::Kubernetes,
                };
                Some(Part::from_env(engine, count, &env)?)
            }
            (None, Some(k), Some(n)) => Some(Part::new(k, n)?),
            (None, None, Some(_)) => {
                anyhow::bail!("--num-parts needs the part to do: --part-id K or --part-from-env")
            }
            (None, _, None) => None,
        })
    }
}

/// The records of a batch run (nothing for one case into one file).
pub struct Batch {
    /// The part this process does (the whole batch when not split).
    pub part: Part,
    records: Option<Records>,
    job: Option<String>,
    model: String,
    labels: flare_labels::LabelSet,
}

impl Batch {
    /// Resolves the part options and keeps the plan's cases of this part. Records are kept
    /// whenever OUTPUT is a folder of cases.
    /// `model` describes the model, for the records; `labels` are its labels, whose organs'
    /// volumes the records hold.
    pub fn start(
        args: &PartArgs,
        plan: &mut Plan,
        output: &Path,
        model: String,
        labels: flare_labels::LabelSet,
    ) -> anyhow::Result<Batch> {
        let part = args.part()?;
        if let Some(part) = part {
            if !plan.batch {
                anyhow::bail!(
                    "--num-parts/--part-id/--part-from-env split a folder of cases, and INPUT is one case"
                );
            }
            let all = plan.jobs.len();
            plan.jobs.retain(|j| part.contains(&j.name));
            plan.notes.push(format!(
                "{part}: {} of the {all} cases (SHA-256 of the case name mod {})",
                plan.jobs.len(),
                part.count()
            ));
        }
        let env = |k: &str| std::env::var(k).ok();
        Ok(Batch {
            part: part.unwrap_or_else(Part::whole),
            records: plan.batch.then(|| Records::of_output(output)),
            job: flare_batch::engine_job(&env),
            model,
            labels,
        })
    }

    /// The plausibility warnings the record of `case` holds (none without a readable record,
    /// or outside a batch).
    pub fn recorded_warnings(&self, case: &str) -> Vec<String> {
        match &self.records {
            Some(records) => match records.read(case) {
                Ok(Some(r)) => r.warnings,
                _ => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    /// Writes the record of a case that just ended. An existing output whose record already
    /// says complete keeps its record untouched, so reruns rewrite nothing that is done.
    pub fn record(
        &self,
        entry: &CaseEntry,
        input: &Path,
        output: &Path,
        report: Option<&Path>,
    ) -> anyhow::Result<()> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        let status = match &entry.status {
            CaseStatus::Done => RecordStatus::Done,
            CaseStatus::Failed(_) => RecordStatus::Failed,
            CaseStatus::Skipped(_) => {
                if matches!(records.read(&entry.name), Ok(Some(r)) if r.is_complete()) {
                    return Ok(());
                }
                RecordStatus::Existing
            }
        };
        let mut r = CaseRecord::new(&entry.name, input, output, status, self.part);
        if let CaseStatus::Failed(e) = &entry.status {
            r.error = Some(e.clone());
        }
        r.seconds = entry.wall_s;
        r.peak_rss_mb = entry.peak_rss_mb;
        r.volumes_ml = (entry.volumes_ml.as_ref()).map(|v| OrganVolumes::new(&self.labels, v));
        r.png = match (report, &entry.png) {
            (Some(dir), Some(png)) => Some(absolute(&dir.join(png)).display().to_string()),
            _ => None,
        };
        r.notes = entry.notes.clone();
        r.warnings = entry.warnings.clone();
        r.job = self.job.clone();
        r.model = Some(self.model.clone());
        records
            .write(&r)
            .with_context(|| format!("{}: record not written", entry.name))?;
        Ok(())
    }
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}
