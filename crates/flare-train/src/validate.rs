//! Validation: a whole case through one stage's network at its training grid, the labels
//! back on the case's grid, scored with FLARE21's Dice (`flare_metrics::score_case`).
//!
//! [`predict_whole`] and [`predict_roi`] are the inference path of each stage from a
//! normalised image on its own grid to a label map on that grid; validation uses them as is.

use flare_engine::{Ctx, Shape5, Tensor};
use flare_imgproc::{LabelInterp, resample_labels, resample_linear};
use flare_metrics::{Tolerances, score_case};
use flare_model::{UNet, argmax_labels};
use flare_volume::{Geometry, LabelMap, Roi, Volume};
use serde::{Deserialize, Serialize};

use crate::{
    cache::CachedCase,
    error::{Result, TrainError},
};

/// Dice per organ (liver, kidney, spleen, pancreas) of each validation case, and their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValScore {
    /// `(case, [DSC liver, kidney, spleen, pancreas])`.
    pub cases: Vec<(String, [f64; 4])>,
    /// Mean over cases, per organ.
    pub mean: [f64; 4],
}

impl ValScore {
    /// Mean over the four organs of the per-organ means (what "best" is chosen by).
    pub fn overall(&self) -> f64 {
        self.mean.iter().sum::<f64>() / 4.0
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
    // Outside the scan is below the window, as the sampler pads: normalised 0.
    let small = resample_linear(image, grid, 0.0)?;
    let [lo, hi] = intensity_range;
    Ok(small.data().iter().map(|&v| lo + v * (hi - lo)).collect())
}

/// Runs `net` on `image` resampled to `grid` (a grid of `grid_dhw` voxels covering the
/// region `grid` describes) and returns its labels on `grid`.
fn run_on_grid(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    grid: &Geometry,
    intensity_range: [f32; 2],
) -> Result<LabelMap> {
    let data = network_input(image, grid, intensity_range)?;
    let [w, h, d] = grid.shape();
    let x = Tensor::from_vec(Shape5::new(1, d, h, w, 1), data)
        .map_err(|e| TrainError::Config(format!("network input: {e}")))?;
    let (logits, _) = net.infer(ctx, x)?;
    Ok(Volume::new(*grid, argmax_labels(&logits))?)
}

/// Stage 1: the whole scan `image` (normalised intensities) on a fixed grid of `grid_dhw`
/// voxels, then the labels back on the image's grid (one-hot trilinear, so the coarse
/// boundary follows the interpolated surface rather than a staircase).
pub fn predict_whole(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    grid_dhw: [usize; 3],
    intensity_range: [f32; 2],
) -> Result<LabelMap> {
    let [d, h, w] = grid_dhw;
    let grid = image.geometry().resized([w, h, d])?;
    let small = run_on_grid(ctx, net, image, &grid, intensity_range)?;
    Ok(resample_labels(
        &small,
        image.geometry(),
        LabelInterp::Linear,
    )?)
}

/// Stage 2: the region `roi` of `image` on a fixed grid of `grid_dhw` voxels, the labels
/// back on the image's grid (background outside the region).
pub fn predict_roi(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    roi: &Roi,
    grid_dhw: [usize; 3],
    intensity_range: [f32; 2],
) -> Result<LabelMap> {
    let [d, h, w] = grid_dhw;
    let region = image.geometry().crop(roi)?;
    let grid = region.resized([w, h, d])?;
    let small = run_on_grid(ctx, net, image, &grid, intensity_range)?;
    let inside = resample_labels(&small, &region, LabelInterp::Linear)?;
    let mut full = Volume::filled(*image.geometry(), 0u8);
    full.paste(&inside, roi.start());
    Ok(full)
}

/// The organs' union box `[start, end)` grown by `margin` of its size on each side, clamped
/// to a grid of `shape` (the region stage 2 trains on, centred, without jitter).
pub fn roi_with_margin(bbox: [[usize; 3]; 2], margin: f64, shape: [usize; 3]) -> Result<Roi> {
    let [s, e] = bbox;
    let mut start = [0; 3];
    let mut end = [0; 3];
    for a in 0..3 {
        let grow = ((e[a] - s[a]) as f64 * margin).round() as usize;
        start[a] = s[a].saturating_sub(grow);
        end[a] = (e[a] + grow).min(shape[a]);
    }
    Ok(Roi::new(start, end)?)
}

/// Which region of a validation case a stage sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValRegion {
    /// The whole scan (stage 1).
    WholeScan,
    /// The ground truth's organ box grown by this margin (stage 2 judged on its own, given a
    /// perfect stage 1).
    OrganBox {
        /// Fraction of the box size added on each side.
        margin: f64,
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
        let pred = match region {
            ValRegion::WholeScan => predict_whole(ctx, net, &image, grid_dhw, intensity_range)?,
            ValRegion::OrganBox { margin } => match c.meta().union_box() {
                Some(b) => {
                    let roi = roi_with_margin(b, margin, c.shape())?;
                    predict_roi(ctx, net, &image, &roi, grid_dhw, intensity_range)?
                }
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
        out.push((
            c.meta().name.clone(),
            [0, 1, 2, 3].map(|o| score.organs[o].dsc),
        ));
    }
    let n = out.len().max(1) as f64;
    let mean = [0, 1, 2, 3].map(|o| out.iter().map(|(_, d)| d[o]).sum::<f64>() / n);
    Ok(ValScore { cases: out, mean })
}
