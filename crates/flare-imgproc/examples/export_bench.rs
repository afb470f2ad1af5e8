//! Times the lean export (`argmax_on_grid`) at full CT size: 5 class scores on a 64 x 128 x 128
//! network grid (channels-last, as the engine's logits) to a 512 x 512 x 150 label map, for the
//! whole scan as the region and for a typical organ region, on an LPS scan (the pipeline's
//! network grid is RAS: the fast per-row path) and with the grid slightly rotated (the general
//! path). For comparison, side by side, the naive export nnU-Net-style tools do (every class
//! resampled to the full scan with `resample_linear`, then the argmax). Prints the best of 5
//! runs (3 for the naive one) in ms.
//!
//! `cargo run --release -p flare-imgproc --example export_bench`

use std::time::Instant;

use flare_imgproc::{argmax_on_grid, resample_linear};
use flare_volume::{Geometry, Roi, Volume};

fn time(what: &str, f: impl Fn() -> usize) -> f64 {
    time_n(what, 5, f)
}

fn time_n(what: &str, runs: usize, f: impl Fn() -> usize) -> f64 {
    let mut best = f64::INFINITY;
    let mut fg = 0;
    for _ in 0..runs {
        let t = Instant::now();
        fg = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{what:<52} {:>8.1} ms  ({fg} foreground voxels)",
        best * 1e3
    );
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lps = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
    let scan = Geometry::new(
        [512, 512, 150],
        [0.78, 0.78, 2.5],
        [200.0, 180.0, -400.0],
        lps,
    )?;
    let (axes, flips) = scan.orientation().to_ras();
    let classes = 5;
    // Network grid `[w, h, d] = [128, 128, 64]`.
    let scores_on = |g: &Geometry| -> Vec<f32> {
        let [nx, ny, nz] = g.shape();
        let mut out = Vec::with_capacity(g.n_voxels() * classes);
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let (x, y, z) = (
                        i as f32 / nx as f32,
                        j as f32 / ny as f32,
                        k as f32 / nz as f32,
                    );
                    for c in 0..classes {
                        let cx = 0.2 + 0.15 * c as f32;
                        let d = (x - cx).powi(2) + (y - 0.5).powi(2) + (z - 0.5).powi(2);
                        out.push(if c == 0 { 0.05 } else { 0.2 - d });
                    }
                }
            }
        }
        out
    };
    println!(
        "target {:?} u8, source {classes} x 64 x 128 x 128 f32, {} threads",
        scan.shape(),
        rayon::current_num_threads()
    );
    let whole = scan.reorient(axes, flips)?.resized([128, 128, 64])?;
    let s = scores_on(&whole);
    let full = Roi::full(scan.shape());
    let count = |l: &flare_volume::LabelMap| l.data().iter().filter(|&&v| v > 0).count();
    let lean = time("whole scan as region (fast path)", || {
        count(&argmax_on_grid(&s, classes, &whole, &scan, &full).expect("export"))
    });
    // The naive export: `classes` full-size f32 volumes (here 5 x 157 MB), then the argmax.
    let per_class: Vec<Volume<f32>> = (0..classes)
        .map(|c| {
            Volume::new(whole, s.iter().skip(c).step_by(classes).copied().collect())
                .expect("class volume")
        })
        .collect();
    let naive = time_n("naive: per-class resample_linear + argmax", 3, || {
        let full: Vec<Volume<f32>> = per_class
            .iter()
            .map(|v| resample_linear(v, &scan, 0.0).expect("resample"))
            .collect();
        (0..scan.n_voxels())
            .filter(|&n| {
                let mut best = 0;
                for c in 1..classes {
                    if full[c].data()[n] > full[best].data()[n] {
                        best = c;
                    }
                }
                best > 0
            })
            .count()
    });
    println!(
        "lean export {:.1}x faster than naive; naive holds {} MB of class volumes, lean {} MB of output",
        naive / lean,
        classes * scan.n_voxels() * 4 / 1_000_000,
        scan.n_voxels() / 1_000_000
    );
    // A typical organ region: about 60% x 55% x 70% of the scan.
    let roi = Roi::new([100, 130, 20], [410, 410, 125])?;
    let region = scan
        .crop(&roi)?
        .reorient(axes, flips)?
        .resized([128, 128, 64])?;
    let s2 = scores_on(&region);
    time("organ region 310 x 280 x 105 (fast path)", || {
        count(&argmax_on_grid(&s2, classes, &region, &scan, &roi).expect("export"))
    });
    // The same region grid, rotated by 3 degrees about z: no axis correspondence.
    let (c, sn) = (3f64.to_radians().cos(), 3f64.to_radians().sin());
    let d = region.direction();
    let rz = [[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]];
    let mut rd = [[0.0; 3]; 3];
    for r in 0..3 {
        for q in 0..3 {
            rd[r][q] = (0..3).map(|t| rz[r][t] * d[t][q]).sum();
        }
    }
    let rotated = Geometry::new(region.shape(), region.spacing_mm(), region.origin_mm(), rd)?;
    time("organ region, rotated source grid (general path)", || {
        count(&argmax_on_grid(&s2, classes, &rotated, &scan, &roi).expect("export"))
    });
    Ok(())
}
