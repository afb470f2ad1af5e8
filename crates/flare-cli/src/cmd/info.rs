//! `flare info`: what a scan is and where it lies, before you process it.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use flare_io::InputKind;
use flare_volume::Geometry;

/// Show a scan's grid, orientation, datatype and intensity range.
///
/// PATH is a NIfTI file (.nii or .nii.gz) or a folder holding a DICOM series (searched
/// recursively). For a folder, every series found is listed and the one that `flare convert`
/// and `flare segment` would read (the one with the most slices, or --series) is described.
#[derive(clap::Args)]
pub struct Args {
    /// A .nii/.nii.gz file or a DICOM folder.
    pub path: PathBuf,
    /// For a DICOM folder: describe this series (SeriesInstanceUID) instead of the largest.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
}

/// Prints the description; errors name the file and the problem.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let path = &args.path;
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
