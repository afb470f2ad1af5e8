//! Times `flare_dicom::read_series` on a folder (a benchmark, not a test): prints the series
//! found and the best of `N` runs (default 3) of scanning + decoding.
//!
//! Input: e.g. a 512 x 512 x 300 series made by `scripts/fixtures/dicom_bench_series.py`, which
//! also times pydicom and SimpleITK on it for comparison.
//!
//! Usage: `cargo run --release -p flare-dicom --example read_dicom -- DIR [N]`

use std::time::Instant;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: read_dicom DIR [N]")?;
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(3);
    let t = Instant::now();
    let scan = flare_dicom::scan_series(&dir)?;
    let scan_s = t.elapsed().as_secs_f64();
    for s in &scan.series {
        println!("{s}");
    }
    println!(
        "scan (headers only): {scan_s:.3} s; {} files skipped",
        scan.skipped_files
    );
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let t = Instant::now();
        let series = flare_dicom::read_series(&dir, None)?;
        best = best.min(t.elapsed().as_secs_f64());
        let v = &series.volume;
        let (lo, hi) = v
            .data()
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        println!(
            "shape {:?}, spacing {:?} mm, HU {lo}..{hi}",
            v.shape(),
            v.geometry().spacing_mm()
        );
    }
    println!(
        "read_series (scan + decode), best of {runs}: {best:.3} s on {} rayon threads",
        rayon::current_num_threads()
    );
    Ok(())
}
