//! Draws the overlay of one case, to look at a real scan by eye.
//!
//! `cargo run -p flare-report --example overlay -- CT.nii.gz LABELS.nii.gz OUT.png [MAX_PANEL_PX]`

use std::{path::PathBuf, process::ExitCode};

use flare_report::{OverlayOptions, write_overlay_png};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: overlay CT.nii.gz LABELS.nii.gz OUT.png [MAX_PANEL_PX]");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let ct = flare_nifti::read_image(&args[0])?.volume;
    let labels = flare_nifti::read_label_map(&args[1])?.volume;
    let mut options = OverlayOptions::default();
    if let Some(px) = args.get(3) {
        options.max_panel_px = px
            .parse()
            .map_err(|e| format!("MAX_PANEL_PX {px:?}: {e}"))?;
    }
    let out = PathBuf::from(&args[2]);
    let g = ct.geometry();
    let start = std::time::Instant::now();
    let info = write_overlay_png(&ct, &labels, &out, &options)?;
    println!(
        "{}: {} x {} px in {:.0} ms, organs {:?} (scan {:?} voxels of {:?} mm, orientation {})",
        out.display(),
        info.width_px,
        info.height_px,
        start.elapsed().as_secs_f64() * 1e3,
        info.organs_shown,
        g.shape(),
        g.spacing_mm(),
        g.orientation()
    );
    Ok(())
}
