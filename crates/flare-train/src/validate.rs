//! Validation: a whole case through one stage's network at its training grid, the labels
//! back on the case's grid, scored with FLARE21's Dice (`flare_metrics::score_case`).
//!
//! The inference itself is `flare_pipeline::stages`, the code `flare segment` runs: stage 1
//! on the whole scan ([`predict_whole`]), stage 2 on the organ box grown by the training
//! margin and exported onto the case's grid ([`predict_roi`]). Cached cases are already
//! windowed to `[0, 1]`, so the pipeline's intensity mapping is the identity window followed
//! by the sampler's `intensity_range`.

use flare_engine::Ctx;
use flare_metrics::{Tolerances, score_case};
use flare_model::UNet;
use flare_pipeline::{
    PipelineError,
    stages::{self, IndexBox, Intensity},
};
use flare_volume::{Geometry, LabelMap, Volume};
use serde::{Deserialize, Serialize};

use crate::{
    cache::CachedCase,
    error::{Result, TrainError},
};

/// Dice per organ (the label set's organs in order: liver, kidney, spleen, pancreas for
/// FLARE21) of each validation case, and their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValScore {
    /// `(case, DSC per organ)`.
    pub cases: Vec<(String, Vec<f64>)>,
    /// Mean over cases, per organ.
    pub mean: Vec<f64>,
    /// The organs (label values) the stage is judged by: its region's organs (a refinement
    /// stage sees the others only in part). Empty: all four.
    #[serde(default)]
    pub organs: Vec<u8>,
}

impl ValScore {
    /// Mean over the judged organs of the per-organ means (what "best" is chosen by).
    pub fn overall(&self) -> f64 {
        // Organ o has value o + 1: a model's labels are its output channels in order.
        let judged: Vec<f64> = (0..self.mean.len())
            .filter(|&o| self.organs.is_empty() || self.organs.contains(&(o as u8 + 1)))
            .map(|o| self.mean[o])
            .collect();
        judged.iter().sum::<f64>() / judged.len().max(1) as f64
    }
}

/// Keeps the pipeline's typed causes where this crate has the same variants.
fn pipeline_err(e: PipelineError) -> TrainError {
    match e {
        PipelineError::Model(m) => TrainError::Model(m),
        PipelineError::Imgproc(i) => TrainError::Imgproc(i),
        PipelineError::Geometry(g) => TrainError::Geometry(g),
        other => TrainError::Inference(other),
    }
}

/// What the network sees of `image` (normalised intensities) on `grid`: trilinear
/// resampling, then `[0, 1]` mapped to `intensity_range`, in voxel order (`[D, H, W]` with
/// `W` fastest, as the sampler's batches).
pub fn network_input(
    image: &Volume<f32>,
    grid: &Geometry,
    intensity_range: [f32; 2],
) -> Result<Vec<f32>> {
    let x = stages::network_input(image, grid, &Intensity::unit_to_range(intensity_range))
        .map_err(pipeline_err)?;
    Ok(x.into_vec())
}

/// Stage 1: the whole scan `image` (normalised intensities) on the RAS-canonical grid of
/// `grid_dhw` voxels, then the labels back on the image's grid.
pub fn predict_whole(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    grid_dhw: [usize; 3],
    intensity_range: [f32; 2],
) -> Result<LabelMap> {
    stages::predict_whole(
        ctx,
        net,
        image,
        grid_dhw,
        &Intensity::unit_to_range(intensity_range),
    )
    .map_err(pipeline_err)
}

/// Stage 2: the organ box `bbox` (`[start, end)` voxels of `image`) grown by `margin` of its
/// size per side, as training cropped it, on a grid of `grid_dhw` voxels; the labels exported
/// onto the image's grid (background outside the region).
pub fn predict_roi(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    bbox: [[usize; 3]; 2],
    margin: f64,
    grid_dhw: [usize; 3],
    intensity_range: [f32; 2],
) -> Result<LabelMap> {
    let region = IndexBox::of_voxels(bbox[0], bbox[1]).grown(margin);
    let (labels, _) = stages::predict_region(
        ctx,
        net,
        image,
        &region,
        grid_dhw,
        &Intensity::unit_to_range(intensity_range),
    )
    .map_err(pipeline_err)?;
    Ok(labels)
}

/// Which region of a validation case a stage sees.
#[derive(Debug, Clone, PartialEq)]
pub enum ValRegion {
    /// The whole scan (stage 1).
    WholeScan,
    /// The ground truth's organ box grown by this margin (stage 2 judged on its own, given a
    /// perfect stage 1).
    OrganBox {
        /// Fraction of the box size added on each side.
        margin: f64,
        /// The organs whose union box it is (empty: all; `[4]`: a pancreas refinement stage).
        organs: Vec<u8>,
    },
}

/// Scores `net` on `cases` (Dice per organ, FLARE21 rules: both empty scores 1).
pub fn validate(
    ctx: &Ctx,
    net: &UNet,
    cases: &[CachedCase],
    region: ValRegion,
    grid_dhw: [usize; 3],
    intensity_range: [f32; 2],
) -> Result<ValScore> {
    let mut out = Vec::with_capacity(cases.len());
    for c in cases {
        let image = c.image_volume()?;
        let pred = match &region {
            ValRegion::WholeScan => predict_whole(ctx, net, &image, grid_dhw, intensity_range)?,
            &ValRegion::OrganBox { margin, ref organs } => match c.meta().region_box(organs) {
                Some(b) => predict_roi(ctx, net, &image, b, margin, grid_dhw, intensity_range)?,
                // No organ at all: nothing for stage 2 to find; an empty map is exact.
                None => Volume::filled(*image.geometry(), 0u8),
            },
        };
        let g = image.geometry();
        let score = score_case(
            c.labels(),
            pred.data(),
            g.shape(),
            g.spacing_mm(),
            &Tolerances::default(),
        )?;
        let dsc: Vec<f64> = score.organs.iter().map(|o| o.dsc).collect();
        out.push((c.meta().name.clone(), dsc));
    }
    let n = out.len().max(1) as f64;
    let organs = out.first().map_or(0, |(_, d)| d.len());
    let mean = (0..organs)
        .map(|o| out.iter().map(|(_, d)| d[o]).sum::<f64>() / n)
        .collect();
    let organs = match region {
        ValRegion::OrganBox { organs, .. } => organs,
        ValRegion::WholeScan => Vec::new(),
    };
    Ok(ValScore {
        cases: out,
        mean,
        organs,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{
        AugmentConfig, Crop, PreprocessConfig, SampleConfig, preprocess_volumes, sample_into,
    };

    /// Stage 2's validation (and `flare segment`'s stage 2) shows the network what training
    /// showed it: with augmentation off, the pipeline's region grid around the organ box
    /// gives the sampler's region sample, including where the margin leaves the scan.
    #[test]
    fn stage_2_input_matches_an_unaugmented_region_sample() {
        // An LPS scan: the cache reorients it to RAS, as the pipeline's grids do.
        let g = Geometry::new(
            [30, 26, 14],
            [0.9, 1.1, 2.5],
            [10.0, 20.0, -30.0],
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        )
        .unwrap();
        let [nx, ny, nz] = g.shape();
        let mut img = Vec::new();
        let mut lab = Vec::new();
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    img.push(((i * 7 + j * 3 + k * 11) % 50) as f32 * 8.0 - 150.0);
                    // An organ box touching the scan's edge in k, so the margin leaves it.
                    let organ = (4..19).contains(&i) && (6..15).contains(&j) && k < 9;
                    lab.push(if organ { 1 + (i % 2) as u8 } else { 0 });
                }
            }
        }
        let image = Volume::new(g, img).unwrap();
        let labels = Volume::new(g, lab).unwrap();
        let case = preprocess_volumes("a", image, labels, &PreprocessConfig::default()).unwrap();
        let grid_dhw = [8, 12, 16];
        let margin = 0.25;
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
        let n: usize = grid_dhw.iter().product();
        let (mut want, mut want_lab) = (vec![0.0; n], vec![0u8; n]);
        sample_into(
            &case,
            &cfg,
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut want,
            &mut want_lab,
        )
        .unwrap();
        let image = case.image_volume().unwrap();
        let b = case.meta().union_box().unwrap();
        let region = IndexBox::of_voxels(b[0], b[1]).grown(margin);
        let grid = stages::region_grid(image.geometry(), &region, grid_dhw).unwrap();
        let got = network_input(&image, &grid, [0.0, 1.0]).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Both interpolate through `flare_imgproc::interp`: what remains is the cache's 16-bit
        // step (1 / 65535); a margin 2% off gives 0.27 (tried, 2026-12-06).
        assert!(worst < 2e-5, "largest difference {worst}");
        assert!(want_lab.contains(&2));
    }
}
