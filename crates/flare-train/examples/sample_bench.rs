//! Builds the preprocessing cache for `../shared/data/btcv` and times augmented samples.
//!
//! `cargo run --release -p flare-train --example sample_bench [DATA_DIR] [CACHE_DIR]`
//!
//! Prints: cache build time (cold, then up to date), then samples per second for a whole-scan
//! sample (64 x 96 x 96) and a region-of-interest sample (64 x 128 x 128), with the default
//! augmentation and without, on 1 and 2 threads, in wall time and CPU time (the CPU time per
//! sample depends much less on the machine's load than the wall time).

use std::{sync::Arc, time::Instant};

use flare_train::{AugmentConfig, Cache, Dataset, PreprocessConfig, SampleConfig, Sampler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = flare_testkit_free_root();
    let data = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data/btcv"));
    let cache_dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/tmp/sample_bench_cache"));
    let t = Instant::now();
    let dataset = Dataset::open(&data)?;
    let problems = dataset.check_headers();
    println!(
        "{} cases in {}; header checks {:.3} s, {} problem(s)",
        dataset.cases().len(),
        data.display(),
        t.elapsed().as_secs_f64(),
        problems.len()
    );
    let t = Instant::now();
    dataset.check()?;
    println!(
        "full check (headers, then every image and label decoded): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // Cold build: start from an empty folder.
    let _ = std::fs::remove_dir_all(&cache_dir);
    let cfg = PreprocessConfig::default();
    let t = Instant::now();
    let (_, report) = Cache::build(&dataset, &cfg, &cache_dir)?;
    println!(
        "cache build (decode, check labels, window, write): {:.2} s for {} cases",
        t.elapsed().as_secs_f64(),
        report.built.len()
    );
    let t = Instant::now();
    let (cache, report) = Cache::build(&dataset, &cfg, &cache_dir)?;
    let secs = t.elapsed().as_secs_f64();
    let bytes: usize = cache
        .cases()
        .iter()
        .map(|c| c.image().len() * 2 + c.labels().len())
        .sum();
    println!(
        "cache load (up to date, {} reused): {:.3} s for {:.0} MB ({:.0} MB/s)",
        report.reused.len(),
        secs,
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
    // Stage 1 needs no more than about twice its grid: a reduced cache is smaller and faster.
    let small_cfg = PreprocessConfig {
        max_shape: Some([192, 192, 192]),
        ..cfg.clone()
    };
    let t = Instant::now();
    let (small, _) = Cache::build(&dataset, &small_cfg, cache_dir.join("max192"))?;
    println!(
        "reduced cache (at most 192 per axis, e.g. {:?}): built in {:.2} s",
        small.cases()[0].shape(),
        t.elapsed().as_secs_f64()
    );
    let cache = Arc::new(cache);
    let small = Arc::new(small);
    let whole = SampleConfig::whole_scan([64, 96, 96]);
    let roi = SampleConfig::roi([64, 128, 128]);
    for (name, cache, cfg) in [
        ("whole scan 64x96x96", &cache, whole.clone()),
        ("whole, 192 cache", &small, whole),
        ("ROI 64x128x128", &cache, roi),
    ] {
        for (aug_name, aug) in [
            ("default aug", cfg.augment.clone()),
            ("no aug", AugmentConfig::none()),
        ] {
            let cfg = SampleConfig {
                augment: aug,
                ..cfg.clone()
            };
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()?;
                let sampler = Sampler::new(cache.clone(), cfg.clone(), 1, 7)?;
                let n = 40u64;
                let _ = pool.install(|| sampler.batch(999))?;
                let t = Instant::now();
                let cpu0 = cpu_ns();
                let mut fg = 0usize;
                for step in 0..n {
                    let b = pool.install(|| sampler.batch(step))?;
                    fg += b.labels.iter().filter(|&&l| l > 0).count();
                }
                let secs = t.elapsed().as_secs_f64();
                let cpu_ms = match (cpu0, cpu_ns()) {
                    (Some(a), Some(b)) => format!("{:5.1}", (b - a) as f64 / 1e6 / n as f64),
                    _ => "  n/a".to_string(),
                };
                let vox = (cfg.grid_dhw.iter().product::<usize>() as u64 * n) as f64;
                println!(
                    "{name:<20} {aug_name:<12} {threads} thread(s): {:6.1} samples/s \
                     ({:5.1} ms each, {cpu_ms} ms CPU; {:.1}% foreground)",
                    n as f64 / secs,
                    1e3 * secs / n as f64,
                    100.0 * fg as f64 / vox
                );
            }
        }
    }
    Ok(())
}

/// The workspace root, from this crate's manifest folder.
fn flare_testkit_free_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}

/// CPU time of all this process's threads, in ns (Linux `/proc/self/stat` utime + stime, in
/// ticks of 10 ms): unlike wall time it hardly depends on what else the machine runs.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}
