//! Times the segmentation post-processing on a full-size label map (512 x 512 x 150): keep the
//! largest component of each organ (two for the kidneys) and fill each organ's holes, on
//! ellipsoid "organs" sprinkled with false-positive specks and pinholes.
//!
//! `cargo run --release -p flare-imgproc --example components_bench`

use std::time::Instant;

use flare_imgproc::{Connectivity, fill_holes, keep_largest_components, label_components};
use flare_volume::{Geometry, Volume};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let g = Geometry::axis_aligned([512, 512, 150], [0.78, 0.78, 2.5], [0.0; 3])?;
    let [nx, ny, nz] = g.shape();
    // (label, centre, radii in voxels)
    let organs = [
        (1u8, [170.0, 250.0, 80.0], [90.0, 80.0, 35.0]),
        (2, [360.0, 300.0, 60.0], [30.0, 35.0, 20.0]),
        (2, [120.0, 300.0, 60.0], [30.0, 35.0, 20.0]),
        (3, [370.0, 200.0, 90.0], [40.0, 45.0, 20.0]),
        (4, [260.0, 260.0, 70.0], [60.0, 15.0, 10.0]),
    ];
    let mut data = vec![0u8; g.n_voxels()];
    let mut x: u64 = 1;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let v = i + nx * (j + ny * k);
                for (label, c, r) in organs {
                    let d = ((i as f64 - c[0]) / r[0]).powi(2)
                        + ((j as f64 - c[1]) / r[1]).powi(2)
                        + ((k as f64 - c[2]) / r[2]).powi(2);
                    if d < 1.0 {
                        data[v] = label;
                    }
                }
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (x >> 40) % 10_000;
                if u < 3 {
                    data[v] = 1 + (u as u8 % 4); // specks
                } else if u < 20 && data[v] != 0 {
                    data[v] = 0; // pinholes
                }
            }
        }
    }
    let labels = Volume::new(g, data)?;
    println!(
        "{} rayon threads, label map {:?}",
        rayon::current_num_threads(),
        g.shape()
    );
    for run in 0..3 {
        let mut l = labels.clone();
        let t = Instant::now();
        let mut removed = 0;
        let mut filled = 0;
        for (label, keep) in [(1, 1), (2, 2), (3, 1), (4, 1)] {
            removed +=
                keep_largest_components(&mut l, label, keep, Connectivity::Full).removed_voxels;
            filled += fill_holes(&mut l, label, Connectivity::Faces).voxels;
        }
        println!(
            "run {run}: keep-largest + fill-holes for 4 organs {:.3} s ({removed} voxels removed, {filled} filled)",
            t.elapsed().as_secs_f64()
        );
    }
    let mask: Vec<bool> = labels.data().iter().map(|&v| v == 1).collect();
    let t = Instant::now();
    let c = label_components(&mask, g.shape(), Connectivity::Full)?;
    println!(
        "label_components of the liver mask, whole volume: {:.3} s ({} components)",
        t.elapsed().as_secs_f64(),
        c.sizes.len()
    );
    Ok(())
}
