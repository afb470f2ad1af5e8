//! Validation shows the network what training showed it: with augmentation off, the
//! validation input of a case equals the sampler's whole-scan sample of that case. Both
//! interpolate through `flare_imgproc::interp`; what remains is the cache's 16-bit intensities
//! (1 / 65535 of the window) and rounding. (Stage 2's organ region: `validate.rs`'s unit test.)

mod common;

use std::sync::Arc;

use common::write_case;
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
