//! `flare info`: what a scan is and where it lies, before you process it.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use flare_io::InputKind;
use flare_model::{ModelCard, card::TargetGrid};
use flare_pipeline::ModelFile;
use flare_volume::Geometry;

/// Show a scan's grid, orientation, datatype and intensity range, or a model's card.
///
/// PATH is a NIfTI file (.nii or .nii.gz) or a folder holding a DICOM series (searched
/// recursively). For a folder, every series found is listed and the one that `flare convert`
/// and `flare segment` would read (the one with the most slices, or --series) is described.
/// A .safetensors model file (two-stage, or one stage from `flare train`), or `builtin` for
/// the model built into flare, shows each network, its grid and its training record.
#[derive(clap::Args)]
pub struct Args {
    /// A .nii/.nii.gz file, a DICOM folder, a .safetensors model file or `builtin`.
    pub path: PathBuf,
    /// For a DICOM folder: describe this series (SeriesInstanceUID) instead of the largest.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
}

/// Prints the description; errors name the file and the problem.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let path = &args.path;
    if path.as_os_str() == ModelFile::BUILTIN
        || path.extension().is_some_and(|e| e == "safetensors")
    {
        return describe_model(path);
    }
    match flare_io::input_kind(path)? {
        InputKind::NiftiFile => {
            let raw = flare_nifti::read_raw(path)?;
            let h = &raw.header;
            let geometry = h
                .geometry()
                .with_context(|| format!("{}: bad geometry", path.display()))?;
            println!("file:         {}", path.display());
            println!(
                "format:       NIfTI-{} ({}-endian)",
                if h.version == flare_nifti::NiftiVersion::One {
                    1
                } else {
                    2
                },
                if h.endian == flare_nifti::Endian::Big {
                    "big"
                } else {
                    "little"
                }
            );
            println!("datatype:     {}", raw.voxels.datatype().name());
            print_geometry(&geometry);
            println!(
                "transform:    {} (qform_code {}, sform_code {})",
                h.transform_source().name(),
                h.qform_code,
                h.sform_code
            );
            if let Some((slope, inter)) = h.scaling() {
                println!("scaling:      value = stored * {slope} + {inter}");
            }
            match raw.intensity_range() {
                Some((lo, hi)) => println!("intensity:    {lo} .. {hi}"),
                None => println!("intensity:    (no voxels)"),
            }
        }
        InputKind::DicomFolder => {
            let scan = flare_dicom::scan_series(path)?;
            println!("folder:       {}", path.display());
            println!(
                "series:       {} found ({} other files skipped)",
                scan.series.len(),
                scan.skipped_files
            );
            let series = scan.read(args.series.as_deref())?;
            for s in &scan.series {
                let mark = if s.uid == series.series.uid { "*" } else { " " };
                println!("  {mark} {s}");
            }
            if let Some(note) = series.choice_note() {
                println!("note:         {note}");
            }
            for w in series.warnings() {
                println!("warning:      {w}");
            }
            println!("reading:      {}", series.series.uid);
            println!("datatype:     float32 (HU, rescale applied)");
            print_geometry(series.volume.geometry());
            let (lo, hi) = series
                .volume
                .data()
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            println!("intensity:    {lo} .. {hi} HU");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a model file's networks and training records.
fn describe_model(path: &Path) -> anyhow::Result<ExitCode> {
    let (title, notes, cards) = match ModelFile::open(path)? {
        ModelFile::TwoStage(m) => {
            let kind = if path.as_os_str() == ModelFile::BUILTIN {
                "the built-in model"
            } else {
                "two-stage model"
            };
            let plan = m.plan();
            let options: String = (plan.stage2_options().iter())
                .map(|o| format!(", {o}"))
                .collect();
            let title = format!("{kind} {} (margin {}{options})", plan.name, plan.roi_margin);
            // Each network's heading, and what it does beyond its card (stage 3's organs).
            let mut cards: Vec<(String, Option<String>, ModelCard)> = m
                .stage_cards()
                .iter()
                .enumerate()
                .map(|(n, &c)| (format!("network {}:", n + 1), None, c.clone()))
                .collect();
            for (i, c) in m.stage2_member_cards().into_iter().enumerate() {
                cards.push((format!("network 2, member {}:", i + 2), None, c.clone()));
            }
            if let (Some(c), Some(r)) = (m.refine_card(), &plan.refine) {
                cards.push(("network 3:".to_string(), Some(r.describe()), c.clone()));
            }
            (title, m.plan().notes.clone(), cards)
        }
        ModelFile::Stage(_, card) => (
            "one network (a stage file from flare train)".to_string(),
            String::new(),
            vec![("network 1:".to_string(), None, card)],
        ),
    };
    println!("model:        {}: {title}", path.display());
    if !notes.is_empty() {
        println!("notes:        {notes}");
    }
    for (heading, role, card) in &cards {
        let a = &card.architecture;
        let params = a.num_params().unwrap_or(0);
        println!(
            "{heading:<14}U-Net widths {:?}, {params} parameters",
            a.widths
        );
        if let Some(r) = role {
            println!("  stage 3:    {r}");
        }
        if let TargetGrid::FixedSize { size: [d, h, w] } = &card.preprocessing.target_grid {
            println!("  grid:       {d} x {h} x {w} (D x H x W)");
        }
        let [lo, hi] = card.preprocessing.hu_window;
        println!("  window:     {lo} .. {hi} HU");
        let t = &card.training;
        println!("  training:   {} ({} steps)", t.status, t.steps);
        println!(
            "  data:       {} cases; validation: {}",
            t.data.len(),
            t.validation.join(", ")
        );
        for (k, v) in &t.metrics {
            println!("  {k}: {v:.3}");
        }
        if !t.notes.is_empty() {
            println!("  notes:      {}", t.notes);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_geometry(g: &Geometry) {
    let [nx, ny, nz] = g.shape();
    let [sx, sy, sz] = g.spacing_mm();
    println!("shape:        {nx} x {ny} x {nz}");
    println!("spacing:      {sx} x {sy} x {sz} mm");
    println!("orientation:  {}", g.orientation());
    let fov: Vec<String> = (0..3)
        .map(|a| format!("{:.1}", g.shape()[a] as f64 * g.spacing_mm()[a]))
        .collect();
    println!("field:        {} mm", fov.join(" x "));
    println!("affine:");
    for line in g.affine().to_string().lines() {
        println!("  {line}");
    }
}
