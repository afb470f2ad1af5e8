//! `flare convert`: a DICOM series (or any readable volume) to NIfTI.

use std::{path::PathBuf, process::ExitCode};

use flare_io::{ReadOptions, Source};
use flare_nifti::DataType;

/// Convert a DICOM series folder (or any volume flare reads) to NIfTI.
///
/// Slices are sorted along the slice normal, the rescale is applied (Hounsfield units), and the
/// grid's affine is written to both qform and sform (code 1, scanner). The voxels are stored as
/// int16 when every value is a whole number that fits, else as float32. This is the grid that
/// `flare segment` writes its label map on for a DICOM input.
#[derive(clap::Args)]
pub struct Args {
    /// A DICOM folder or a .nii/.nii.gz file.
    pub input: PathBuf,
    /// The NIfTI file to write (.nii.gz or .nii).
    pub output: PathBuf,
    /// For a DICOM folder with several series: the SeriesInstanceUID to convert
    /// (default: the one with the most slices).
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// Stored datatype of the output.
    #[arg(long, value_enum, default_value_t = OutputType::Auto)]
    pub datatype: OutputType,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Stored datatype choices for `flare convert`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputType {
    /// int16 when every voxel is a whole number in range, else float32.
    Auto,
    /// 16-bit signed integers (fails if a value does not fit exactly).
    Int16,
    /// 32-bit floats.
    Float32,
}

/// Reads, converts and writes atomically; prints one summary line.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    flare_io::check_output(&args.output, &[&args.input])?;
    if args.output.exists() && !args.overwrite {
        anyhow::bail!(
            "{}: already exists (use --overwrite to replace it)",
            args.output.display()
        );
    }
    let image = flare_io::read_ct(
        &args.input,
        &ReadOptions {
            series_uid: args.series.clone(),
        },
    )?;
    if let Source::Dicom {
        choice_note,
        warnings,
        ..
    } = &image.source
    {
        if let Some(note) = choice_note {
            eprintln!("flare: note: {note}");
        }
        for w in warnings {
            eprintln!("flare: warning: {w}");
        }
    }
    let datatype = match args.datatype {
        OutputType::Auto => None,
        OutputType::Int16 => Some(DataType::Int16),
        OutputType::Float32 => Some(DataType::Float32),
    };
    image.write_nifti(&args.output, datatype)?;
    let g = image.volume.geometry();
    let [nx, ny, nz] = g.shape();
    println!(
        "wrote {} ({nx} x {ny} x {nz}, {} mm, {})",
        args.output.display(),
        g.spacing_mm().map(|s| format!("{s:.4}")).join(" x "),
        g.orientation()
    );
    Ok(ExitCode::SUCCESS)
}
