//! Times the exact distance transform on a full-size CT grid (512 x 512 x 150, spacing
//! 0.8 x 0.8 x 2.5 mm) for the surface of a liver-sized ellipsoid.
//!
//! `cargo run --release -p flare-imgproc --example edt_bench`

use std::time::Instant;

use flare_imgproc::distance_to_nearest;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shape = [512usize, 512, 150];
    let spacing = [0.8, 0.8, 2.5];
    let n = shape.iter().product::<usize>();
    let mut mask = vec![false; n];
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let (x, y, z) = (
                    (i as f64 - 300.0) * spacing[0] / 90.0,
                    (j as f64 - 220.0) * spacing[1] / 70.0,
                    (k as f64 - 80.0) * spacing[2] / 80.0,
                );
                let r = x * x + y * y + z * z;
                mask[i + shape[0] * (j + shape[1] * k)] = (0.97..=1.0).contains(&r);
            }
        }
    }
    println!(
        "{} threads, {} mask voxels of {n}",
        rayon::current_num_threads(),
        mask.iter().filter(|m| **m).count()
    );
    for run in 0..3 {
        let t = Instant::now();
        let d = distance_to_nearest(&mask, shape, spacing)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "run {run}: {s:.3} s ({:.1} Mvoxel/s), max distance {:.1} mm",
            n as f64 / s / 1e6,
            d.iter().cloned().fold(0.0, f64::max)
        );
    }
    Ok(())
}
