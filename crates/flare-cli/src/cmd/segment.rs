//! `flare segment`: CT in, organ label map out on the input's own grid, one case or a batch.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::Context;
use flare_batch::VolumeRow;
use flare_io::{CtImage, Job, ReadOptions, Source, plan};
use flare_pipeline::{Model, PostProcess, SegmentOptions, Segmentation, Step};
use flare_report::{CaseEntry, CaseStatus, OverlayOptions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::{
    dicom_out,
    util::{OutputLock, atomic_write, check_writable, error_text, same_path, say},
};

/// Arguments of `flare segment` (its description is on the subcommand in main.rs).
#[derive(clap::Args)]
#[command(after_long_help = DETAILS)]
pub struct Args {
    /// A CT: .nii/.nii.gz file, DICOM series folder, or folder of `<case>_0000.nii.gz` files.
    #[arg(short = 'i', long, value_name = "INPUT")]
    pub input: PathBuf,
    /// Where to write: a .nii.gz file for one case, a folder for several.
    #[arg(short = 'o', long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// A two-stage model file (from `flare bundle`) [default: the model built into flare].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Replace outputs that exist (by default those cases are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Write a visual report here: a PNG per case (axial, coronal and sagittal slices through
    /// each organ with coloured outlines) and index.html with volumes and timings.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Write organ volumes (mL) per case to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub volumes: Option<PathBuf>,
    /// For a DICOM folder with several series: the SeriesInstanceUID to segment
    /// (default: the one with the most slices).
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// Keep every connected piece of each organ (by default the liver and spleen keep their
    /// largest piece and the kidneys their two largest; the pancreas is never trimmed).
    #[arg(long)]
    pub keep_all_components: bool,
    /// Leave holes inside organs unfilled.
    #[arg(long)]
    pub no_fill_holes: bool,
    /// One part of a batch on a cluster (cmd/batch.rs).
    #[command(flatten)]
    pub part: crate::cmd::batch::PartArgs,
    /// Also write a DICOM Segmentation object over the source series (DICOM input only;
    /// with --each-series, a folder receiving <SeriesInstanceUID>_seg.dcm).
    #[arg(long, value_name = "FILE.dcm")]
    pub dicom_seg: Option<PathBuf>,
    /// Also write a DICOM RT Structure Set over the source series (DICOM input only; with
    /// --each-series, a folder receiving <SeriesInstanceUID>_rtstruct.dcm).
    #[arg(long, value_name = "FILE.dcm")]
    pub rtstruct: Option<PathBuf>,
    /// INPUT is a DICOM study folder: segment every CT series in it, each written to
    /// OUTPUT/<SeriesInstanceUID>.nii.gz (OUTPUT is a folder).
    #[arg(long, conflicts_with = "series")]
    pub each_series: bool,
    /// Number format of the networks' convolutions: fp32, bf16 (bf16 inputs and weights,
    /// fp32 sums; needs a CPU with avx512_bf16, else flare says so and runs fp32), or auto
    /// (bf16 where the CPU has avx512_bf16, fp32 elsewhere, without a note).
    #[arg(long, default_value = "fp32", value_name = "fp32|bf16|auto")]
    pub precision: flare_pipeline::PrecisionChoice,
}

/// The engine context for `choice`, with a note on stderr when the CPU cannot run the format
/// asked for by name.
pub fn engine_ctx(choice: flare_pipeline::PrecisionChoice) -> flare_engine::Ctx {
    let ctx = choice.ctx();
    if ctx.precision() != choice.requested() {
        eprintln!(
            "flare: note: this CPU has no avx512_bf16 instructions; running the convolutions in {}",
            ctx.precision()
        );
    }
    ctx
}

/// The long help (`flare segment --help`), after the options.
const DETAILS: &str = "\
Output, per case, one line on stdout: the output file, wall time, peak resident memory
(RSS) and the organ volumes in mL. Existing outputs are skipped unless --overwrite. A case
that cannot be read or segmented is reported and skipped; the others go on, and the exit
code is 1 if any case failed (2 for a usage error). A case that does not look plausible (the
input is not like a CT of an adult abdomen; an organ is missing, too small or large for an
adult, or misplaced) gets `flare: warning: CASE: ...` lines on stderr and the same text in
the CSV's last column, `warnings`; the labels are left as they are. Inputs are never modified; every output
is written to a temporary file and renamed. For a folder of cases, each case also leaves a
record in OUTPUT/.flare-records/<case>.json (status, error, seconds, peak RSS, volumes), which
`flare gather` reads; --num-parts/--part-id/--part-from-env do one part of the folder (a
cluster array task, scripts/cluster/).

Examples:
  flare segment -i scan.nii.gz -o scan_organs.nii.gz --report report/
  flare segment -i /data/dicom/CT_series/ -o organs.nii.gz
  flare segment -i FLARE_inputs/ -o FLARE_outputs/ --volumes volumes.csv
  flare segment -i /data/dicom/CT_series/ -o organs.nii.gz --dicom-seg seg.dcm --rtstruct rtss.dcm
  flare segment -i /data/dicom/study/ -o out/ --each-series --dicom-seg out/ --rtstruct out/";

/// What happened to one case.
struct Outcome {
    status: CaseStatus,
    volumes_ml: Option<Vec<f64>>,
    wall_s: Option<f64>,
    peak_rss_mb: Option<f64>,
    png: Option<String>,
    notes: Vec<String>,
    /// Plausibility warnings (flare_pipeline::plausibility).
    warnings: Vec<String>,
    /// Skipped because another flare process holds its lock: that process writes its record.
    busy: bool,
}

/// Seconds of each step of one case, read to write.
#[derive(Debug, Default, Clone, Copy)]
pub struct CaseTimings {
    /// Reading and decoding the CT.
    pub read_s: f64,
    /// The pipeline's own steps.
    pub preprocess_s: f64,
    /// Stage 1 network.
    pub stage1_s: f64,
    /// Stage 2 network.
    pub stage2_s: f64,
    /// Logits back to the input grid.
    pub export_s: f64,
    /// Stage 3 (refinement) network and its export; `None` for a two-stage model.
    pub refine_s: Option<f64>,
    /// Connected components, hole filling.
    pub postprocess_s: f64,
    /// Encoding and writing the label map.
    pub write_s: f64,
}

impl CaseTimings {
    fn from_segmentation(read_s: f64, s: &Segmentation, write_s: f64) -> CaseTimings {
        let t = &s.timings;
        CaseTimings {
            read_s,
            preprocess_s: t.preprocess_s,
            stage1_s: t.stage1_s,
            stage2_s: t.stage2_s,
            export_s: t.export_s,
            refine_s: t.refine_s,
            postprocess_s: t.postprocess_s,
            write_s,
        }
    }

    /// `(name, seconds)` in pipeline order; `stage 3` only for a model that has one.
    pub fn steps(&self) -> Vec<(&'static str, f64)> {
        let mut steps = vec![
            ("read", self.read_s),
            ("preprocess", self.preprocess_s),
            ("stage 1", self.stage1_s),
            ("stage 2", self.stage2_s),
            ("export", self.export_s),
        ];
        steps.extend(self.refine_s.map(|s| (step_name(Step::Refine), s)));
        steps.extend([
            ("post-process", self.postprocess_s),
            ("write", self.write_s),
        ]);
        steps
    }
}

/// Reads, segments and writes one case with the engine context `ctx`; `on_step` hears each
/// step's name.
pub fn segment_file(
    ctx: &flare_engine::Ctx,
    model: &Model,
    input: &Path,
    output: &Path,
    read: &ReadOptions,
    options: &SegmentOptions,
    on_step: &mut dyn FnMut(&'static str),
) -> anyhow::Result<(CtImage, Segmentation, CaseTimings)> {
    on_step("read");
    let t = Instant::now();
    let image = flare_io::read_ct(input, read)?;
    let read_s = t.elapsed().as_secs_f64();
    let seg = flare_pipeline::segment(ctx, model, &image.volume, options, &mut |s| {
        on_step(step_name(s))
    })
    .with_context(|| format!("{}: segmenting", input.display()))?;
    on_step("write");
    let t = Instant::now();
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    }
    image.write_label_map(output, &seg.labels)?;
    let write_s = t.elapsed().as_secs_f64();
    let timings = CaseTimings::from_segmentation(read_s, &seg, write_s);
    Ok((image, seg, timings))
}

fn step_name(s: Step) -> &'static str {
    match s {
        Step::Preprocess => "preprocess",
        Step::Stage1 => "stage 1",
        Step::Stage2 => "stage 2",
        Step::Export => "export",
        Step::Refine => "stage 3",
        Step::PostProcess => "post-process",
    }
}

/// Loads `--model` or the built-in model.
pub fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        Some(p) => Model::load(p).with_context(|| format!("loading the model {}", p.display())),
        None => Model::bundled().context("loading the built-in model"),
    }
}

/// Runs `flare segment`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut plan = if args.each_series {
        dicom_out::plan_series(&args.input, &args.output)?
    } else {
        plan(&args.input, &args.output)?
    };
    let dicom = dicom_out::Request::from_args(args, &plan)?;
    // One series: a source the DICOM outputs cannot refer to is bad input, refused up front.
    let mut early = match plan.jobs.first() {
        Some(job) if !plan.batch => dicom.prepare(job, args.series.as_deref(), args.overwrite)?,
        _ => None,
    };
    plan.check_outputs()?;
    // Side outputs must not land on an input either.
    for side in [&args.volumes, &args.report].into_iter().flatten() {
        if plan.jobs.iter().any(|j| same_path(side, &j.input)) || same_path(side, &args.input) {
            anyhow::bail!("{}: is an input; refusing to write there", side.display());
        }
    }
    // ... and must be writable, found out now rather than after the whole batch.
    if let Some(csv) = &args.volumes {
        if csv.is_dir() {
            anyhow::bail!(
                "{}: is a folder; --volumes takes a file name",
                csv.display()
            );
        }
        let dir = csv.parent().filter(|p| !p.as_os_str().is_empty());
        check_writable(dir.unwrap_or(Path::new(".")), false)
            .with_context(|| format!("{}: cannot write the volumes here", csv.display()))?;
    }
    if let Some(dir) = &args.report {
        check_writable(dir, true)?;
    }
    let model = load_model(args.model.as_deref())?;
    eprintln!("flare segment: model {}", model.describe());
    for n in &plan.notes {
        eprintln!("flare: note: {n}");
    }
    if plan.jobs.is_empty() {
        anyhow::bail!("{}: no case to segment", args.input.display());
    }
    let batch = crate::cmd::batch::Batch::start(
        &args.part,
        &mut plan,
        &args.output,
        model.describe(),
        model.labels().clone(),
    )?;
    if let Some(note) = plan.notes.last().filter(|_| batch.part.is_split()) {
        eprintln!("flare: note: {note}");
    }
    if plan.batch {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("{}: cannot create the folder", args.output.display()))?;
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the report folder", dir.display()))?;
    }
    // Says once, up front, when bf16 was asked for and this CPU cannot run it.
    engine_ctx(args.precision);
    let options = SegmentOptions {
        postprocess: PostProcess {
            largest_components: !args.keep_all_components,
            fill_holes: !args.no_fill_holes,
        },
    };

    let n = plan.jobs.len() as u64;
    let bar = if n > 1 {
        ProgressBar::new(n)
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template(if n > 1 {
            "{bar:30} {pos}/{len} cases [{elapsed_precise}<{eta_precise}] {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {msg}"
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else if n == 1 {
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }

    let mut entries = Vec::with_capacity(plan.jobs.len());
    let mut volume_rows: Vec<VolumeRow> = Vec::new();
    let mut failed = 0usize;
    for job in &plan.jobs {
        bar.set_message(job.name.clone());
        let read = ReadOptions {
            series_uid: job.series.clone().or_else(|| args.series.clone()),
        };
        let prepared = match early.take() {
            Some(p) => Ok(Some(p)),
            None => dicom.prepare(job, read.series_uid.as_deref(), args.overwrite),
        };
        let mut outcome = run_case(job, &model, &read, &options, args, &bar, prepared);
        let busy = outcome.busy;
        if matches!(outcome.status, CaseStatus::Skipped(_)) {
            // An existing output keeps the warnings its run recorded, so a rerun's CSV and
            // report still show them.
            outcome.warnings = batch.recorded_warnings(&job.name);
        }
        match &outcome.status {
            CaseStatus::Failed(msg) => {
                failed += 1;
                say(&bar, format!("flare: error: {}: {msg}", job.name));
            }
            CaseStatus::Skipped(msg) => say(&bar, format!("{}: skipped ({msg})", job.name)),
            CaseStatus::Done => {}
        }
        if let Some(v) = &outcome.volumes_ml {
            volume_rows.push(VolumeRow {
                case: job.name.clone(),
                volumes_ml: v.clone(),
                warnings: outcome.warnings.clone(),
            });
        }
        entries.push(CaseEntry {
            name: job.name.clone(),
            input: job.input.display().to_string(),
            output: Some(job.output.display().to_string()),
            status: outcome.status,
            volumes_ml: outcome.volumes_ml,
            wall_s: outcome.wall_s,
            peak_rss_mb: outcome.peak_rss_mb,
            png: outcome.png,
            notes: outcome.notes,
            warnings: outcome.warnings,
        });
        // A case another process holds is that process's to record.
        if let Some(entry) = entries.last().filter(|_| !busy)
            && let Err(e) = batch.record(entry, &job.input, &job.output, args.report.as_deref())
        {
            failed += 1;
            say(&bar, format!("flare: error: {}", error_text(&e)));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    if let Some(csv) = &args.volumes {
        write_volumes_csv(csv, model.labels(), &volume_rows)?;
        eprintln!("flare segment: volumes in {}", csv.display());
    }
    if let Some(dir) = &args.report
        && batch.part.is_split()
    {
        eprintln!(
            "flare segment: pictures in {}; `flare gather` writes the index of all parts",
            dir.display()
        );
    } else if let Some(dir) = &args.report {
        let title = format!("flare segment: {}", args.input.display());
        let index = flare_report::write_index_html(
            dir,
            &title,
            &model.describe(),
            model.labels(),
            &entries,
        )
        .with_context(|| format!("{}: writing the report", dir.display()))?;
        eprintln!("flare segment: report in {}", index.display());
    }
    let done = entries
        .iter()
        .filter(|e| matches!(e.status, CaseStatus::Done))
        .count();
    let skipped = entries.len() - done - failed;
    if plan.batch || failed > 0 {
        eprintln!("flare segment: {done} segmented, {skipped} skipped, {failed} failed");
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_case(
    job: &Job,
    model: &Model,
    read: &ReadOptions,
    options: &SegmentOptions,
    args: &Args,
    bar: &ProgressBar,
    dicom: anyhow::Result<Option<dicom_out::Prepared>>,
) -> Outcome {
    let existing = || {
        // Still report the existing map's volumes, so a rerun's CSV covers every case.
        let volumes_ml = flare_nifti::read_label_map(&job.output)
            .ok()
            .map(|m| flare_pipeline::organ_volumes_ml(&m.volume, model.labels()));
        Outcome {
            status: CaseStatus::Skipped(format!(
                "{} exists; --overwrite replaces it",
                job.output.display()
            )),
            volumes_ml,
            wall_s: None,
            peak_rss_mb: None,
            png: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            busy: false,
        }
    };
    if job.output.exists() && !args.overwrite {
        return existing();
    }
    let failed = |msg: String| Outcome {
        status: CaseStatus::Failed(msg),
        volumes_ml: None,
        wall_s: None,
        peak_rss_mb: None,
        png: None,
        notes: Vec::new(),
        warnings: Vec::new(),
        busy: false,
    };
    let dicom = match dicom {
        Ok(d) => d,
        Err(e) => return failed(error_text(&e)),
    };
    // The lock file lives beside the output.
    if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        return failed(format!(
            "{}: cannot create the folder: {e}",
            parent.display()
        ));
    }
    // One process per output at a time: a second `flare segment` on the same folder skips the
    // cases the first is doing rather than redoing them and replacing its outputs. Skipping,
    // not waiting: once the first is done the output exists, and waiting would only end in
    // skipping it (or, with --overwrite, in doing the same work twice).
    let _lock = match OutputLock::try_acquire(&job.output) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return Outcome {
                status: CaseStatus::Skipped(format!(
                    "another flare process is writing {} now",
                    job.output.display()
                )),
                busy: true,
                ..failed(String::new())
            };
        }
        Err(e) => return failed(error_text(&e)),
    };
    // It may have finished this case between our first look and the lock.
    if job.output.exists() && !args.overwrite {
        return existing();
    }
    flare_measure::reset_own_peak_rss();
    let ctx = args.precision.ctx();
    let start = Instant::now();
    let name = job.name.clone();
    let result = segment_file(
        &ctx,
        model,
        &job.input,
        &job.output,
        read,
        options,
        &mut |step| bar.set_message(format!("{name}: {step}")),
    );
    let wall_s = start.elapsed().as_secs_f64();
    let peak_rss_mb = flare_measure::own_peak_rss_bytes().map(|b| b as f64 / 1048576.0);
    let (image, seg, timings) = match result {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                status: CaseStatus::Failed(error_text(&e)),
                volumes_ml: None,
                wall_s: Some(wall_s),
                peak_rss_mb,
                png: None,
                notes: Vec::new(),
                warnings: Vec::new(),
                busy: false,
            };
        }
    };
    let volumes = flare_pipeline::organ_volumes_ml(&seg.labels, model.labels());
    // Warnings only: the labels stay as the model made them.
    let warnings: Vec<String> =
        flare_pipeline::plausibility::check_with(&image.volume, &seg.labels, model.labels())
            .iter()
            .map(ToString::to_string)
            .collect();
    for w in &warnings {
        say(bar, format!("flare: warning: {}: {w}", job.name));
    }
    let mut notes = seg.notes.clone();
    if let Source::Dicom {
        choice_note,
        warnings,
        ..
    } = &image.source
    {
        notes.extend(choice_note.iter().cloned());
        for w in warnings {
            say(bar, format!("flare: warning: {}: {w}", job.name));
        }
    }
    if let Some(d) = &dicom {
        notes.extend(d.notes().iter().cloned());
    }
    for n in &notes {
        say(bar, format!("flare: note: {}: {n}", job.name));
    }
    if let Some(d) = &dicom {
        match dicom_out::write(d, &seg.labels, model) {
            Ok(line) => say(bar, format!("{}: {line}", job.name)),
            Err(e) => return failed(error_text(&e)),
        }
    }
    let steps = timings
        .steps()
        .iter()
        .map(|(s, t)| format!("{s} {t:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    // FLARE21: "liver 1523 mL, kidneys 301 mL, spleen 180 mL, pancreas 62 mL".
    let organ_ml = (model.labels().organs().iter())
        .zip(&volumes)
        .map(|(o, v)| format!("{} {v:.0} mL", o.display_name))
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!(
        "{}: wrote {} in {wall_s:.2} s, peak RSS {} | {organ_ml} | {steps} s",
        job.name,
        job.output.display(),
        peak_rss_mb.map_or("n/a".to_string(), |m| format!("{m:.0} MB")),
    );
    // The per-case line is the command's output: stdout, above the bar.
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.suspend(|| println!("{line}"));
    }
    let mut png = None;
    if let Some(dir) = &args.report {
        let file = format!("{}.png", job.name);
        match flare_report::write_overlay_png(
            &image.volume,
            &seg.labels,
            &dir.join(&file),
            &OverlayOptions {
                labels: model.labels().clone(),
                ..OverlayOptions::default()
            },
        ) {
            Ok(_) => png = Some(file),
            Err(e) => {
                // A case whose picture is missing has failed (exit 1), as one whose DICOM
                // outputs could not be written: a full disk must not pass for success.
                return Outcome {
                    status: CaseStatus::Failed(format!(
                        "report picture not written: {e} (the label map was written; \
                         --overwrite redoes the case)"
                    )),
                    volumes_ml: Some(volumes),
                    wall_s: Some(wall_s),
                    peak_rss_mb,
                    png: None,
                    notes,
                    warnings,
                    busy: false,
                };
            }
        }
    }
    Outcome {
        status: CaseStatus::Done,
        volumes_ml: Some(volumes),
        wall_s: Some(wall_s),
        peak_rss_mb,
        png,
        notes,
        warnings,
        busy: false,
    }
}

/// `case`, `NAME_ml` per organ of `labels` (FLARE21: `liver_ml,kidney_ml,spleen_ml,pancreas_ml`),
/// `warnings`; one row per case, atomically.
fn write_volumes_csv(
    path: &Path,
    labels: &flare_labels::LabelSet,
    rows: &[VolumeRow],
) -> anyhow::Result<()> {
    atomic_write(path, flare_batch::volumes_csv(labels, rows).as_bytes())
}
