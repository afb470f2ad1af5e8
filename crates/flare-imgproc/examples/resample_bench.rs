//! Times resampling at full CT size: a 512 x 512 x 150 f32 scan to a 160³ grid and back
//! (the separable path), a 160³ label map up to 512 x 512 x 150 (nearest and per-label linear),
//! and, for comparison, the scan onto a slightly rotated 160³ grid (the general path).
//!
//! `cargo run --release -p flare-imgproc --example resample_bench`

use std::time::Instant;

use flare_imgproc::{LabelInterp, resample_labels, resample_linear};
use flare_volume::{Geometry, Volume};

fn time<T>(what: &str, voxels_out: usize, f: impl Fn() -> T) -> T {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..3 {
        let t = Instant::now();
        out = Some(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{what:<44} {best:>7.3} s  {:>7.1} Mvoxel/s out",
        voxels_out as f64 / best / 1e6
    );
    out.unwrap_or_else(|| unreachable!("ran at least once"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lps = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
    let scan = Geometry::new(
        [512, 512, 150],
        [0.78, 0.78, 2.5],
        [200.0, 180.0, -400.0],
        lps,
    )?;
    let [nx, ny, _] = scan.shape();
    let data: Vec<f32> = (0..scan.n_voxels())
        .map(|v| {
            let (i, j, k) = (v % nx, (v / nx) % ny, v / (nx * ny));
            ((i as f32 * 0.05).sin() * 400.0 + (j as f32 * 0.03).cos() * 300.0) - k as f32
        })
        .collect();
    let img = Volume::new(scan, data)?;
    let fixed = scan.resized([160, 160, 160])?;
    println!(
        "{} rayon threads; scan {:?}, fixed grid {:?}",
        rayon::current_num_threads(),
        scan.shape(),
        fixed.shape()
    );
    let down = time(
        "image 512x512x150 -> 160^3 (trilinear)",
        fixed.n_voxels(),
        || resample_linear(&img, &fixed, -1024.0),
    )?;
    time(
        "image 160^3 -> 512x512x150 (trilinear)",
        scan.n_voxels(),
        || resample_linear(&down, &scan, -1024.0),
    )?;
    let labels = down.map(|&v| ((v + 800.0) / 300.0).clamp(0.0, 4.0) as u8);
    time(
        "labels 160^3 -> 512x512x150 (nearest)",
        scan.n_voxels(),
        || resample_labels(&labels, &scan, LabelInterp::Nearest),
    )?;
    time(
        "labels 160^3 -> 512x512x150 (linear)",
        scan.n_voxels(),
        || resample_labels(&labels, &scan, LabelInterp::Linear),
    )?;
    let (c, s) = (0.05f64.cos(), 0.05f64.sin());
    let rotated = Geometry::new(
        fixed.shape(),
        fixed.spacing_mm(),
        fixed.origin_mm(),
        [[-c, s, 0.0], [-s, -c, 0.0], [0.0, 0.0, 1.0]],
    )?;
    time(
        "image 512x512x150 -> rotated 160^3 (general)",
        fixed.n_voxels(),
        || resample_linear(&img, &rotated, -1024.0),
    )?;
    time(
        "image 160^3 -> rotated 512x512x150 (general)",
        scan.n_voxels(),
        || {
            resample_linear(
                &down,
                &scan
                    .resized([512, 512, 150])
                    .and_then(|g| {
                        Geometry::new(
                            g.shape(),
                            g.spacing_mm(),
                            g.origin_mm(),
                            rotated.direction(),
                        )
                    })
                    .unwrap_or(scan),
                -1024.0,
            )
        },
    )?;
    Ok(())
}
