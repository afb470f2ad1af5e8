//! Times `score_case` alone on one ground-truth/prediction pair (NIfTI files), for the
//! side-by-side benchmark `scripts/bench/evaluate_bench.py`.
//!
//! Usage: `cargo run --release -p flare-metrics --example score_bench -- GT.nii.gz PRED.nii.gz [REPEATS]`
//! Prints the read time, the best scoring time over the repeats, and the eight scores.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(gt_path), Some(pred_path)) = (args.get(1), args.get(2)) else {
        return Err("usage: score_bench GT.nii.gz PRED.nii.gz [REPEATS]".into());
    };
    let repeats: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let t0 = Instant::now();
    let gt = flare_nifti::read_label_map(gt_path)?;
    let pred = flare_nifti::read_label_map(pred_path)?;
    let read_s = t0.elapsed().as_secs_f64();
    let spacing = gt.header.spatial_pixdim().map(f64::abs);
    let shape = gt.volume.shape();
    let tol = flare_metrics::Tolerances::default();
    let mut best = f64::INFINITY;
    let mut score = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let s =
            flare_metrics::score_case(gt.volume.data(), pred.volume.data(), shape, spacing, &tol)?;
        best = best.min(t.elapsed().as_secs_f64());
        score = Some(s);
    }
    let threads = rayon::current_num_threads();
    println!("shape {shape:?} spacing {spacing:?} threads {threads}");
    println!("read_s {read_s:.4}");
    println!("score_s {best:.4}");
    if let Some(s) = score {
        let v: Vec<String> = s
            .organs
            .iter()
            .map(|o| format!("{:?} {:?}", o.dsc, o.nsd))
            .collect();
        println!("scores {}", v.join(" "));
    }
    Ok(())
}
