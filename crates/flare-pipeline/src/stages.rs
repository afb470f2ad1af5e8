//! The steps of the two-stage inference, each usable on its own: [`crate::segment`] chains
//! them, and `flare train`'s validation calls the same functions, so that the Dice training
//! reports is the Dice of the code that segments.
//!
//! # Grids
//! Training reoriented every scan to RAS before caching, so the networks saw RAS-ordered
//! arrays. Network grids are therefore built from the scan's grid reoriented to RAS
//! ([`ras_canonical`]) and then resized; resampling goes through world coordinates, so the
//! scan's voxels are never copied into RAS order.
//!
//! # Regions
//! A region is an [`IndexBox`]: a continuous box in the scan's voxel index space, bounded by
//! voxel faces (voxels `s..e` are the box `[s - 0.5, e - 0.5]`). Stage 2 was trained on the
//! organs' union box grown by a margin of its size per side, *not clamped to the scan* (the
//! sampler pads outside the scan with the bottom of the HU window), resized to its grid; the
//! network grid of a region is built the same way here. Only the voxels of the scan the
//! label map is written to (a [`Roi`]) are clamped to the scan.

use flare_engine::{Ctx, Shape5, Tensor};
use flare_imgproc::{
    Connectivity, LabelInterp, argmax_on_grid,
    interp::{Tap, lerp},
    keep_largest_components, resample_labels,
};
use flare_model::{
    ModelCard, UNet, argmax_labels,
    card::{Normalisation, TargetGrid},
};
use flare_volume::{Geometry, LabelMap, Roi, Volume};
use rayon::prelude::*;

use crate::error::{PipelineError, Result};

/// Slack when deciding which voxel centres a box holds (boxes come through affine round trips).
const BOX_TOL: f64 = 1e-6;

/// The intensity mapping in front of a network: clip to `window`, then `v * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intensity {
    /// Values are clipped to `[low, high]` first (NaN becomes `low`).
    pub window: [f32; 2],
    /// Multiplies the clipped value.
    pub scale: f32,
    /// Added after scaling.
    pub offset: f32,
}

impl Intensity {
    /// The mapping a model card prescribes for scans in HU (stage `stage` names errors).
    pub fn from_card(card: &ModelCard, stage: u8) -> Result<Intensity> {
        let p = &card.preprocessing;
        let [lo, hi] = p.hu_window;
        let unusable = |detail: String| PipelineError::Unusable {
            path: "<model card>".into(),
            stage,
            detail,
        };
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(unusable(format!(
                "HU window [{lo}, {hi}] is not increasing"
            )));
        }
        match p.normalisation {
            Normalisation::WindowToUnit => Ok(Intensity {
                window: [lo, hi],
                scale: 1.0 / (hi - lo),
                offset: -lo / (hi - lo),
            }),
            Normalisation::ZScore { mean, std } if std.is_finite() && std > 0.0 => Ok(Intensity {
                window: [lo, hi],
                scale: 1.0 / std,
                offset: -mean / std,
            }),
            ref other => Err(unusable(format!("unsupported normalisation {other:?}"))),
        }
    }

    /// For an image already windowed to `[0, 1]` (training's cache), mapped to `range`.
    pub fn unit_to_range(range: [f32; 2]) -> Intensity {
        Intensity {
            window: [0.0, 1.0],
            scale: range[1] - range[0],
            offset: range[0],
        }
    }

    /// The network value of one voxel.
    #[inline(always)]
    pub fn apply(&self, v: f32) -> f32 {
        // `max` first: `f32::max(NaN, low)` is `low`, so a NaN voxel reads as air.
        v.max(self.window[0]).min(self.window[1]) * self.scale + self.offset
    }

    /// The value outside the scan: the bottom of the window, as the training sampler pads.
    pub fn fill(&self) -> f32 {
        self.apply(self.window[0])
    }
}

/// The network grid size `[d, h, w]` a card prescribes (only fixed-size grids are supported).
pub fn grid_dhw(card: &ModelCard, stage: u8) -> Result<[usize; 3]> {
    match card.preprocessing.target_grid {
        TargetGrid::FixedSize { size } => {
            card.architecture.check_input(size, 1)?;
            Ok(size)
        }
        ref other => Err(PipelineError::Unusable {
            path: "<model card>".into(),
            stage,
            detail: format!("target grid {other:?} is not supported (fixed size only)"),
        }),
    }
}

/// The same grid with its array axes permuted and flipped to RAS (voxels stay in place).
pub fn ras_canonical(g: &Geometry) -> Result<Geometry> {
    let (axes, flips) = g.orientation().to_ras();
    Ok(g.reorient(axes, flips)?)
}

/// Stage 1's grid: the whole scan, RAS-canonical, resized to `grid_dhw` voxels.
pub fn whole_scan_grid(scan: &Geometry, grid_dhw: [usize; 3]) -> Result<Geometry> {
    let [d, h, w] = grid_dhw;
    Ok(ras_canonical(scan)?.resized([w, h, d])?)
}

/// A continuous box in a grid's voxel index space, between voxel faces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexBox {
    /// Low corner (continuous index).
    pub lo: [f64; 3],
    /// High corner (continuous index).
    pub hi: [f64; 3],
}

impl IndexBox {
    /// The box covering voxels `start..end` (a bounding box `[start, end)`).
    pub fn of_voxels(start: [usize; 3], end: [usize; 3]) -> IndexBox {
        IndexBox {
            lo: start.map(|s| s as f64 - 0.5),
            hi: end.map(|e| e as f64 - 0.5),
        }
    }

    /// Grown by `margin` of its size on each side (the stage-2 region around the organs).
    pub fn grown(&self, margin: f64) -> IndexBox {
        let mut b = *self;
        for a in 0..3 {
            let g = (self.hi[a] - self.lo[a]) * margin;
            b.lo[a] -= g;
            b.hi[a] += g;
        }
        b
    }

    /// The same box in another grid's index space: the smallest box there holding its eight
    /// corners (exact for grids that differ by axis permutations, flips and scaling).
    pub fn mapped(&self, from: &Geometry, to: &Geometry) -> IndexBox {
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for n in 0..8 {
            let c = [0, 1, 2].map(|a| {
                if n >> a & 1 == 0 {
                    self.lo[a]
                } else {
                    self.hi[a]
                }
            });
            let p = to.world_to_index(from.index_to_world(c));
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        IndexBox { lo, hi }
    }

    /// The voxels of a grid of `shape` whose centres lie in the box, or `None` if none does.
    pub fn voxels(&self, shape: [usize; 3]) -> Option<Roi> {
        let mut start = [0; 3];
        let mut end = [0; 3];
        for a in 0..3 {
            let (lo, hi) = (self.lo[a], self.hi[a]);
            if !(lo.is_finite() && hi.is_finite()) {
                return None;
            }
            // Centres `i` with `lo <= i <= hi`.
            let s = (lo - BOX_TOL).ceil().max(0.0);
            let e = ((hi + BOX_TOL).floor() + 1.0).min(shape[a] as f64);
            if e <= s {
                return None;
            }
            (start[a], end[a]) = (s as usize, e as usize);
        }
        Roi::new(start, end).ok()
    }
}

/// Stage 2's grid for `region` (a box in `scan`'s index space): RAS-canonical, `grid_dhw`
/// voxels exactly covering the box (the box's faces are the grid's outer faces, as
/// [`Geometry::resized`] covers a whole scan). The box may extend beyond the scan.
pub fn region_grid(scan: &Geometry, region: &IndexBox, grid_dhw: [usize; 3]) -> Result<Geometry> {
    let ras = ras_canonical(scan)?;
    let b = region.mapped(scan, &ras);
    let [d, h, w] = grid_dhw;
    let shape = [w, h, d];
    let sp = ras.spacing_mm();
    let mut spacing = [0.0; 3];
    let mut first = [0.0; 3];
    for a in 0..3 {
        let extent = b.hi[a] - b.lo[a];
        // An empty or inverted box has no grid; `Geometry::new` names the bad spacing.
        let step = extent / shape[a] as f64;
        spacing[a] = sp[a] * step;
        first[a] = b.lo[a] + 0.5 * step;
    }
    Ok(Geometry::new(
        shape,
        spacing,
        ras.index_to_world(first),
        ras.direction(),
    )?)
}

/// What a network sees of `image` on `grid`: every voxel clipped and mapped by `intensity`
/// *before* trilinear interpolation (training windowed at full resolution, then resampled),
/// the bottom of the window outside the scan. Returned as a `[1, D, H, W, 1]` tensor.
///
/// Windowing on the fly, instead of windowing a copy of the scan first, keeps a full-size
/// float volume out of memory.
pub fn network_input(
    image: &Volume<f32>,
    grid: &Geometry,
    intensity: &Intensity,
) -> Result<Tensor> {
    let map = image.geometry().index_map_from(grid)?;
    let [sx, sy, sz] = image.shape();
    let [tnx, tny, tnz] = grid.shape();
    let fill = intensity.fill();
    let data = image.data();
    let mut out = vec![fill; grid.n_voxels()];
    out.par_chunks_mut(tnx * tny)
        .enumerate()
        .for_each(|(kt, slice)| {
            for (jt, row) in slice.chunks_mut(tnx).enumerate() {
                for (it, o) in row.iter_mut().enumerate() {
                    let t = [it as f64, jt as f64, kt as f64];
                    let p = [0, 1, 2].map(|a| {
                        let r = &map[a];
                        r[0] * t[0] + r[1] * t[1] + r[2] * t[2] + r[3]
                    });
                    let (x, y, z) = (Tap::new(p[0], sx), Tap::new(p[1], sy), Tap::new(p[2], sz));
                    if !(x.inside && y.inside && z.inside) {
                        continue; // outside the scan: `fill`
                    }
                    let at =
                        |i: usize, j: usize, k: usize| intensity.apply(data[i + sx * (j + sy * k)]);
                    let c00 = lerp(at(x.i0, y.i0, z.i0), at(x.i1, y.i0, z.i0), x.w);
                    let c10 = lerp(at(x.i0, y.i1, z.i0), at(x.i1, y.i1, z.i0), x.w);
                    let c01 = lerp(at(x.i0, y.i0, z.i1), at(x.i1, y.i0, z.i1), x.w);
                    let c11 = lerp(at(x.i0, y.i1, z.i1), at(x.i1, y.i1, z.i1), x.w);
                    *o = lerp(lerp(c00, c10, y.w), lerp(c01, c11, y.w), z.w);
                }
            }
        });
    Ok(Tensor::from_vec(Shape5::new(1, tnz, tny, tnx, 1), out)?)
}

/// Runs `net` on what it sees of `image` on `grid`: logits `[1, D, H, W, classes]`.
pub fn run_network(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    grid: &Geometry,
    intensity: &Intensity,
) -> Result<Tensor> {
    let x = network_input(image, grid, intensity)?;
    let (logits, _) = net.infer(ctx, x)?;
    Ok(logits)
}

/// The network's labels on `grid` itself (argmax of the logits).
pub fn predict_on_grid(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    grid: &Geometry,
    intensity: &Intensity,
) -> Result<LabelMap> {
    let logits = run_network(ctx, net, image, grid, intensity)?;
    Ok(Volume::new(*grid, argmax_labels(&logits))?)
}

/// Stage 1 judged on its own (validation): the whole scan on the stage-1 grid, its labels
/// back on the scan's grid (one-hot trilinear, so the coarse boundary follows the
/// interpolated surface rather than a staircase).
pub fn predict_whole(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    grid_dhw: [usize; 3],
    intensity: &Intensity,
) -> Result<LabelMap> {
    let grid = whole_scan_grid(image.geometry(), grid_dhw)?;
    let small = predict_on_grid(ctx, net, image, &grid, intensity)?;
    Ok(resample_labels(
        &small,
        image.geometry(),
        LabelInterp::Linear,
    )?)
}

/// Stage 1's localisation: the organs on the stage-1 grid, each cut to its largest
/// component(s) there (a stray blob must not inflate the box; as many as the card's label set
/// says the organ has, e.g. two kidneys), their union box mapped to the scan's index space. `None` when no organ is found. `small` is modified in place.
pub fn organ_box(small: &mut LabelMap, card: &ModelCard, scan: &Geometry) -> Option<IndexBox> {
    for l in card.labels.organs() {
        keep_largest_components(
            small,
            l.value,
            usize::from(l.components),
            Connectivity::Full,
        );
    }
    let bbox = small.bounding_box(|v| v > 0)?;
    Some(IndexBox::of_voxels(bbox.start(), bbox.end()).mapped(small.geometry(), scan))
}

/// Stage 2's network `net` (and its ensemble members `more`) on `region` (a box in `image`'s
/// index space, margin included): the network grid and the logits `[1, D, H, W, classes]`,
/// averaged over the networks and the mirror images of `mirror_axes` (see
/// [`infer_averaged`]; no members and no axes: one plain pass).
#[allow(clippy::too_many_arguments)]
pub fn region_logits(
    ctx: &Ctx,
    net: &UNet,
    more: &[&UNet],
    image: &Volume<f32>,
    region: &IndexBox,
    grid_dhw: [usize; 3],
    intensity: &Intensity,
    mirror_axes: &[u8],
) -> Result<(Geometry, Tensor)> {
    let grid = region_grid(image.geometry(), region, grid_dhw)?;
    let x = network_input(image, &grid, intensity)?;
    let logits = infer_averaged(ctx, net, more, x, mirror_axes)?;
    Ok((grid, logits))
}

/// An ensemble with test-time mirroring: `net` and each network of `more` on `x` and on its
/// mirror images along every combination of `mirror_axes` (grid axes, 0 = i, 1 = j, 2 = k;
/// 2^n passes per network), each output mirrored back and turned into probabilities, their
/// mean returned as log-probabilities (so the export's softmax gives back the mean). No
/// further networks and no axes: the plain logits of one pass.
///
/// Probabilities are averaged, not logits, as nnU-Net does: one confident pass must not
/// outvote the others.
pub fn infer_averaged(
    ctx: &Ctx,
    net: &UNet,
    more: &[&UNet],
    x: Tensor,
    mirror_axes: &[u8],
) -> Result<Tensor> {
    if more.is_empty() && mirror_axes.is_empty() {
        return Ok(net.infer(ctx, x)?.0);
    }
    let per_net = 1u32 << mirror_axes.len();
    // The first network's plain pass starts the sum; the loop adds every other pass.
    let (mut mean, _) = net.infer(ctx, x.clone())?;
    flare_engine::softmax_inplace(ctx, &mut mean);
    let passes = std::iter::once(net)
        .chain(more.iter().copied())
        .flat_map(|n| (0..per_net).map(move |mask| (n, mask)))
        .skip(1);
    for (n, mask) in passes {
        let mut axes = [false; 3];
        for (bit, &a) in mirror_axes.iter().enumerate() {
            if mask >> bit & 1 == 1 {
                axes[usize::from(a.min(2))] = true;
            }
        }
        let mut out = if mask == 0 {
            n.infer(ctx, x.clone())?.0
        } else {
            let (out, _) = n.infer(ctx, flare_engine::flip_spatial(ctx, &x, axes)?)?;
            flare_engine::flip_spatial(ctx, &out, axes)?
        };
        flare_engine::softmax_inplace(ctx, &mut out);
        flare_engine::add_inplace(ctx, &mut mean, &out)?;
    }
    let k = 1.0 / (per_net as f32 * (1 + more.len()) as f32);
    for v in mean.data_mut() {
        *v = (*v * k).max(f32::MIN_POSITIVE).ln();
    }
    Ok(mean)
}

/// The lean export of stage 2's logits on `grid` to a label map on `scan` (background outside
/// `roi`): softmax on the small grid, then per-voxel trilinear probabilities and argmax.
///
/// Probabilities, not logits, are interpolated (as nnU-Net does): they are bounded, so one
/// very confident neighbour does not drag the boundary, which then follows each class's
/// interpolated probability surface. Measured (2026-11-27, stage-1 network of step 600 as
/// both stages, BTCV 0031 and 0033, no post-processing): interpolating logits instead lowered
/// every organ's DSC by 0.004-0.006; the softmax costs one pass over the small grid.
pub fn export_labels(
    mut logits: Tensor,
    grid: &Geometry,
    scan: &Geometry,
    roi: &Roi,
) -> Result<LabelMap> {
    let classes = logits.shape().c;
    flare_engine::softmax_inplace(&Ctx::new(), &mut logits);
    Ok(argmax_on_grid(logits.data(), classes, grid, scan, roi)?)
}

/// Stage 2 on `region` with the export: the labels on `image`'s grid and the voxels written
/// (`None` when the region holds no voxel centre of the scan: an all-background map).
pub fn predict_region(
    ctx: &Ctx,
    net: &UNet,
    image: &Volume<f32>,
    region: &IndexBox,
    grid_dhw: [usize; 3],
    intensity: &Intensity,
) -> Result<(LabelMap, Option<Roi>)> {
    let Some(roi) = region.voxels(image.shape()) else {
        return Ok((Volume::filled(*image.geometry(), 0u8), None));
    };
    let (grid, logits) = region_logits(ctx, net, &[], image, region, grid_dhw, intensity, &[])?;
    let labels = export_labels(logits, &grid, image.geometry(), &roi)?;
    Ok((labels, Some(roi)))
}
