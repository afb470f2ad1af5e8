//! `flare segment`'s DICOM outputs (`--dicom-seg`, `--rtstruct`) and its study form
//! (`--each-series`): the glue between the command and `flare_dicom::write`.
//!
//! One series: `--dicom-seg FILE` and `--rtstruct FILE` name the files. A study folder with
//! `--each-series -o OUTDIR`: every CT series becomes a case named by its SeriesInstanceUID,
//! `OUTDIR/<uid>.nii.gz`, and the two options name folders that receive `<uid>_seg.dcm` and
//! `<uid>_rtstruct.dcm` (they may be OUTDIR itself). The source series' headers are read and
//! checked (UIDs, frames of reference) before the case is segmented, so a series the outputs
//! cannot refer to costs no segmentation and leaves no file; that is a second pass over the
//! headers (the reader's own pass stays untouched), a fraction of the pixel decoding's time.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context;
use flare_dicom::write::{self, Algorithm, SourceSeries};
use flare_io::{Job, Plan};
use flare_pipeline::Model;
use flare_volume::LabelMap;

use crate::cmd::{
    segment::Args,
    util::{atomic_write, same_path},
};

/// What DICOM outputs were asked for, checked against the input.
#[derive(Debug, Clone, Default)]
pub struct Request {
    seg: Option<PathBuf>,
    rtstruct: Option<PathBuf>,
    /// Whether the paths are folders (the study form).
    per_series: bool,
}

/// The source series of one case and where its DICOM outputs go.
#[derive(Debug)]
pub struct Prepared {
    source: SourceSeries,
    seg: Option<PathBuf>,
    rtstruct: Option<PathBuf>,
}

impl Request {
    /// Checks the options against the input: DICOM outputs need DICOM series input.
    pub fn from_args(args: &Args, plan: &Plan) -> anyhow::Result<Request> {
        let request = Request {
            seg: args.dicom_seg.clone(),
            rtstruct: args.rtstruct.clone(),
            per_series: args.each_series,
        };
        if !request.wanted() {
            return Ok(request);
        }
        let dicom_folder = args.input.is_dir() && (args.each_series || !plan.batch);
        if !dicom_folder {
            anyhow::bail!(
                "{}: --dicom-seg and --rtstruct need a DICOM series folder as input (a NIfTI image has no DICOM series for them to refer to)",
                args.input.display()
            );
        }
        for p in request.paths() {
            if same_path(p, &args.input) {
                anyhow::bail!("{}: is the input; refusing to write there", p.display());
            }
            if request.per_series {
                std::fs::create_dir_all(p)
                    .with_context(|| format!("{}: cannot create the folder", p.display()))?;
            }
        }
        if let (Some(a), Some(b)) = (&request.seg, &request.rtstruct)
            && !request.per_series
            && same_path(a, b)
        {
            anyhow::bail!("{}: given for both --dicom-seg and --rtstruct", a.display());
        }
        Ok(request)
    }

    /// Whether any DICOM output was asked for.
    pub fn wanted(&self) -> bool {
        self.seg.is_some() || self.rtstruct.is_some()
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.seg.iter().chain(self.rtstruct.iter())
    }

    /// Reads and checks the case's source series and settles its output files; `None` when no
    /// DICOM output was asked for. Existing outputs are refused unless `overwrite`.
    pub fn prepare(
        &self,
        job: &Job,
        series_uid: Option<&str>,
        overwrite: bool,
    ) -> anyhow::Result<Option<Prepared>> {
        // A case whose label map exists is skipped without --overwrite: nothing to prepare.
        if !self.wanted() || (job.output.exists() && !overwrite) {
            return Ok(None);
        }
        let place = |p: &Option<PathBuf>, suffix: &str| {
            p.as_ref().map(|p| {
                if self.per_series {
                    p.join(format!("{}_{suffix}.dcm", job.name))
                } else {
                    p.clone()
                }
            })
        };
        let seg = place(&self.seg, "seg");
        let rtstruct = place(&self.rtstruct, "rtstruct");
        for p in seg.iter().chain(rtstruct.iter()) {
            if p.exists() && !overwrite {
                anyhow::bail!(
                    "{}: already exists (use --overwrite to replace it)",
                    p.display()
                );
            }
        }
        let source =
            flare_dicom::scan_series(&job.input).and_then(|scan| scan.source_series(series_uid))?;
        for p in seg.iter().chain(rtstruct.iter()) {
            if source.slices.iter().any(|s| same_path(p, &s.file)) {
                anyhow::bail!("{}: is an input; refusing to write there", p.display());
            }
        }
        Ok(Some(Prepared {
            source,
            seg,
            rtstruct,
        }))
    }
}

/// The study form's cases: every CT series of the folder, named by its SeriesInstanceUID.
pub fn plan_series(input: &Path, output: &Path) -> anyhow::Result<Plan> {
    if !input.is_dir() {
        anyhow::bail!(
            "{}: --each-series needs a folder of DICOM series",
            input.display()
        );
    }
    if output
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".nii.gz") || n.ends_with(".nii"))
    {
        anyhow::bail!(
            "{}: with --each-series OUTPUT is a folder (one <SeriesInstanceUID>.nii.gz per series)",
            output.display()
        );
    }
    let scan = flare_dicom::scan_series(input)?;
    let mut plan = Plan {
        batch: true,
        ..Plan::default()
    };
    for s in &scan.series {
        if s.modality != "CT" {
            plan.notes
                .push(format!("{}: series {s} ignored (not CT)", input.display()));
            continue;
        }
        let name = if s.uid.is_empty() {
            "no-series-uid".to_string()
        } else {
            s.uid.clone()
        };
        plan.jobs.push(Job {
            output: output.join(format!("{name}.nii.gz")),
            name,
            input: input.to_path_buf(),
            series: Some(s.uid.clone()),
        });
    }
    Ok(plan)
}

/// Writes the case's DICOM outputs from its label map; returns the line to print.
pub fn write(prepared: &Prepared, labels: &LabelMap, model: &Model) -> anyhow::Result<String> {
    let t = Instant::now();
    // The SNOMED CT codes the outputs need are known for FLARE21's four organs only.
    let set = model.labels();
    if !set.has_flare21_organs() {
        anyhow::bail!(
            "DICOM-SEG and RTSTRUCT outputs know the codes of FLARE21's organs (liver, kidney, \
             spleen, pancreas) only; the model's organs are {}",
            set.organ_names().join(", ")
        );
    }
    let organs = write::flare_organs(std::array::from_fn(|o| set.organs()[o].colour_rgb));
    let algorithm = Algorithm {
        name: "flare".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        model: model.plan().name.clone(),
    };
    let mut parts = Vec::new();
    // Build both (side by side) before writing either, so that a failure leaves neither.
    let (seg, rt) = rayon::join(
        || {
            prepared
                .seg
                .as_ref()
                .map(|p| {
                    write::seg::segmentation(&prepared.source, labels, &organs, &algorithm)
                        .map(|o| (p, o))
                })
                .transpose()
        },
        || {
            prepared
                .rtstruct
                .as_ref()
                .map(|p| {
                    write::rtstruct::structure_set(&prepared.source, labels, &organs, &algorithm)
                        .map(|o| (p, o))
                })
                .transpose()
        },
    );
    let (seg, rt) = (seg?, rt?);
    if let Some((p, o)) = &seg {
        create_parent(p)?;
        atomic_write(p, &o.bytes)?;
        parts.push(format!(
            "{} (DICOM-SEG, {} segments, {} frames)",
            p.display(),
            o.labels.len(),
            o.items
        ));
    }
    if let Some((p, o)) = &rt {
        create_parent(p)?;
        atomic_write(p, &o.bytes)?;
        parts.push(format!(
            "{} (RTSTRUCT, {} ROIs, {} contours)",
            p.display(),
            o.labels.len(),
            o.items
        ));
    }
    Ok(format!(
        "wrote {} in {:.2} s",
        parts.join(" and "),
        t.elapsed().as_secs_f64()
    ))
}

impl Prepared {
    /// Notes about the source (UIDs that had to be generated).
    pub fn notes(&self) -> &[String] {
        &self.source.notes
    }
}

fn create_parent(p: &Path) -> anyhow::Result<()> {
    if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    }
    Ok(())
}
