//! Validation shows the network what training showed it: with augmentation off, the
//! inference input of a case (whole scan, or an organ region as stage 2 sees it) equals the
//! sampler's sample of the same region. Both interpolate through `flare_imgproc::interp`; what
//! remains is the cache's 16-bit intensities (1 / 65535 of the window) and rounding.

mod common;

use std::sync::Arc;

use common::write_case;
use flare_pipeline::stages::{IndexBox, region_grid};
use flare_testkit::TempDir;
use flare_train::{
    AugmentConfig, Cache, Crop, Dataset, PreprocessConfig, SampleConfig, Sampler,
    validate::network_input,
};

/// The largest difference between two equally long inputs.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn validation_input_matches_an_unaugmented_training_sample() {
    let t = TempDir::new("train-validate-input");
    let data = t.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_case(&data, "a", [20, 18, 12]);
    let ds = Dataset::open(&data).unwrap();
    let (cache, _) = Cache::build(&ds, &PreprocessConfig::default(), t.join("cache")).unwrap();
    let grid_dhw = [8, 12, 16];
    let cfg = SampleConfig {
        crop: Crop::WholeScan {
            z_fraction: [1.0, 1.0],
        },
        augment: AugmentConfig::none(),
        foreground_p: 0.0,
        ..SampleConfig::whole_scan(grid_dhw)
    };
    let case = cache.cases()[0].clone();
    let sampler = Sampler::new(Arc::new(cache), cfg, 1, 3).unwrap();
    let batch = sampler.batch(0).unwrap();
    let image = case.image_volume().unwrap();
    let [d, h, w] = grid_dhw;
    let grid = image.geometry().resized([w, h, d]).unwrap();
    let input = network_input(&image, &grid, [0.0, 1.0]).unwrap();
    let worst = worst(&input, &batch.image);
    assert!(worst < 2e-5, "largest difference {worst}");
    // The labels line up too: the organ voxels of the sample are organ voxels of the case.
    assert!(batch.labels.contains(&1));
}

/// Stage 2: the organ box grown by the plan's margin, as training crops it and as inference
/// (`predict_roi`, the pipeline's `region_grid`) sees it, gives the same numbers.
#[test]
fn an_organ_region_is_the_same_numbers_in_training_and_inference() {
    let t = TempDir::new("train-validate-roi");
    let data = t.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_case(&data, "a", [30, 26, 14]);
    let ds = Dataset::open(&data).unwrap();
    let (cache, _) = Cache::build(&ds, &PreprocessConfig::default(), t.join("cache")).unwrap();
    let grid_dhw = [10, 14, 12];
    let margin = 0.3;
    let cfg = SampleConfig {
        crop: Crop::Roi {
            margin,
            fraction: 1.0,
            jitter: 0.0,
            organs: Vec::new(),
        },
        augment: AugmentConfig::none(),
        foreground_p: 0.0,
        ..SampleConfig::roi(grid_dhw)
    };
    let case = cache.cases()[0].clone();
    let [s, e] = case.meta().region_box(&[]).unwrap();
    let sampler = Sampler::new(Arc::new(cache), cfg, 1, 5).unwrap();
    let batch = sampler.batch(0).unwrap();
    let image = case.image_volume().unwrap();
    let region = IndexBox::of_voxels(s, e).grown(margin);
    let grid = region_grid(image.geometry(), &region, grid_dhw).unwrap();
    let input = network_input(&image, &grid, [0.0, 1.0]).unwrap();
    let worst = worst(&input, &batch.image);
    // 16-bit cache levels are 1.5e-5 apart; a grid shifted by a tenth of a voxel would differ
    // by far more on the phantom's edges (intensities 0 to 1 within a voxel).
    assert!(worst < 2e-5, "largest difference {worst}");
    assert!(batch.labels.iter().any(|&l| l > 0));
}
