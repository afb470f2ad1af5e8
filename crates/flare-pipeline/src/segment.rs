//! [`segment`]: a CT in HU to a label map on its own grid.

use std::time::Instant;

use flare_engine::Ctx;
use flare_imgproc::{Connectivity, fill_holes, keep_largest_components};
use flare_labels::LabelSet;
use flare_volume::{LabelMap, Roi, Volume};

use crate::{
    Model,
    error::Result,
    model::{RefinePlan, RefineRegion},
    stages::{IndexBox, export_labels, organ_box, region_logits, whole_scan_grid},
};

/// Post-processing on the scan's grid, inside the region stage 2 wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostProcess {
    /// Keep the largest connected components of each organ whose label says so
    /// ([`flare_labels::Label::keep_largest_components`], as many as its `components`: two for
    /// FLARE21's kidneys; its pancreas, often predicted in several true pieces, is left whole).
    pub largest_components: bool,
    /// Fill background pockets an organ encloses (organs whose label says so).
    pub fill_holes: bool,
}

impl Default for PostProcess {
    /// Both on. Measured (2026-11-27, BTCV 0031 and 0033 and the TotalSegmentator example):
    /// keeping the largest components raised kidney DSC by up to 0.03 and spleen by up to
    /// 0.010 and lowered nothing except the pancreas, which is therefore left out of it (see
    /// [`flare_labels::flare21::KEEP_LARGEST_COMPONENTS`]); filling holes changed no DSC there. Organs are solid bodies, so a pocket
    /// inside one is an error.
    fn default() -> Self {
        PostProcess {
            largest_components: true,
            fill_holes: true,
        }
    }
}

/// Options of [`segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentOptions {
    /// What to do after the export.
    pub postprocess: PostProcess,
}

/// The steps of [`segment`], in order, as reported to its `on_step` callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Stage 1's input: window, normalise, resample onto its grid.
    Preprocess,
    /// Stage 1's network and the organ box.
    Stage1,
    /// Stage 2's input and network on the organ region.
    Stage2,
    /// Stage 2's probabilities onto the scan's grid.
    Export,
    /// Stage 3 (models with a refinement stage): some organs segmented again in their region.
    Refine,
    /// Largest components and hole filling.
    PostProcess,
}

/// Wall time of each step, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimings {
    /// [`Step::Preprocess`].
    pub preprocess_s: f64,
    /// [`Step::Stage1`].
    pub stage1_s: f64,
    /// [`Step::Stage2`].
    pub stage2_s: f64,
    /// [`Step::Export`].
    pub export_s: f64,
    /// [`Step::Refine`], its export included; `None` for a model without stage 3.
    pub refine_s: Option<f64>,
    /// [`Step::PostProcess`].
    pub postprocess_s: f64,
}

/// What [`segment`] produced.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// Labels on the image's grid (0 background, then the model's labels: 1 liver, 2 kidney,
    /// 3 spleen, 4 pancreas for FLARE).
    pub labels: LabelMap,
    /// The voxels stage 2 segmented, in the image's index space (`None` when stage 1 found no
    /// organ).
    pub roi: Option<Roi>,
    /// Time per step.
    pub timings: StageTimings,
    /// Things worth telling the user (e.g. "stage 1 found no organ").
    pub notes: Vec<String>,
}

/// Segments `image_hu` (a CT in Hounsfield units, any orientation) with `model`: stage 1
/// localises the organs on the whole scan, stage 2 segments their region, the probabilities
/// come back onto the image's own grid inside that region, then post-processing. `on_step`
/// is called before each step (for progress display).
///
/// Memory beyond the input and the output label map is the networks' small grids: the scan
/// is windowed while it is resampled (no full-size float copy), and the export never builds a
/// full-size volume per class.
pub fn segment(
    ctx: &Ctx,
    model: &Model,
    image_hu: &Volume<f32>,
    options: &SegmentOptions,
    on_step: &mut dyn FnMut(Step),
) -> Result<Segmentation> {
    let [s1, s2] = &model.stages;
    let scan = image_hu.geometry();
    let mut timings = StageTimings::default();
    let mut notes = Vec::new();

    on_step(Step::Preprocess);
    let t = Instant::now();
    let grid1 = whole_scan_grid(scan, s1.grid_dhw)?;
    let x = crate::stages::network_input(image_hu, &grid1, &s1.intensity)?;
    timings.preprocess_s = t.elapsed().as_secs_f64();

    on_step(Step::Stage1);
    let t = Instant::now();
    let (logits, _) = s1.net.infer(ctx, x)?;
    let mut small = Volume::new(grid1, flare_model::argmax_labels(&logits))?;
    drop(logits);
    let found = organ_box(&mut small, &s1.card, scan);
    drop(small);
    let region = found.map(|b| b.grown(model.plan().roi_margin));
    let roi = region.and_then(|r| r.voxels(image_hu.shape()));
    timings.stage1_s = t.elapsed().as_secs_f64();
    let (Some(region), Some(roi)) = (region, roi) else {
        notes.push("stage 1 found no organ: the label map is empty".to_string());
        return Ok(Segmentation {
            labels: Volume::filled(*scan, 0u8),
            roi: None,
            timings,
            notes,
        });
    };

    on_step(Step::Stage2);
    let t = Instant::now();
    let members: Vec<&flare_model::UNet> = model.members.iter().map(|m| &m.net).collect();
    let (grid2, mut logits) = region_logits(
        ctx,
        &s2.net,
        &members,
        image_hu,
        &region,
        s2.grid_dhw,
        &s2.intensity,
        &model.plan().mirror_axes,
    )?;
    add_class_offsets(&mut logits, &model.plan().stage2_class_offsets);
    timings.stage2_s = t.elapsed().as_secs_f64();

    on_step(Step::Export);
    let t = Instant::now();
    let mut labels = export_labels(logits, &grid2, scan, &roi)?;
    timings.export_s = t.elapsed().as_secs_f64();

    if let Some((s3, plan)) = model.refine.as_ref().zip(model.plan().refine.as_ref()) {
        on_step(Step::Refine);
        let t = Instant::now();
        if !refine_organs(ctx, s3, plan, image_hu, &region, &mut labels)? {
            notes.push(format!(
                "stage 2 found no label {:?}: stage 3 had nothing to refine",
                plan.labels
            ));
        }
        timings.refine_s = Some(t.elapsed().as_secs_f64());
    }

    on_step(Step::PostProcess);
    let t = Instant::now();
    postprocess(&mut labels, model, &options.postprocess, &mut notes);
    timings.postprocess_s = t.elapsed().as_secs_f64();
    if labels.data().iter().all(|&l| l == 0) {
        notes.push("stage 2 found no organ in the region stage 1 located".to_string());
    }
    Ok(Segmentation {
        labels,
        roi: Some(roi),
        timings,
        notes,
    })
}

/// Adds `offsets[c]` to every voxel's score of class `c` (channels last; nothing when
/// `offsets` is empty). The model's checks made it one value per class.
fn add_class_offsets(logits: &mut flare_engine::Tensor, offsets: &[f32]) {
    if offsets.is_empty() {
        return;
    }
    for v in logits.data_mut().chunks_exact_mut(offsets.len()) {
        for (x, b) in v.iter_mut().zip(offsets) {
            *x += b;
        }
    }
}

/// Stage 3: a region segmented again by `stage` on its own grid, and inside it stage 3
/// decides the organs `plan.labels`: a voxel it calls one of them becomes that organ, and a
/// voxel stage 2 called one of them that stage 3 does not takes stage 3's label there (another
/// organ or background). Other voxels keep stage 2's label, so stage 3 changes nothing but
/// those organs' extent. The region is the box of stage 2's voxels of those organs grown by
/// `plan.margin` ([`RefineRegion::OrganBox`]), or `stage2_region` itself
/// ([`RefineRegion::Stage2Region`]). Returns whether there was anything to refine (an organ
/// box needs one of the organs found).
///
/// Why a third network (2026-12-02): stage 2 sees the organs' union box (about 300 x 200 x
/// 230 mm) on 128 x 128 x 64 voxels, 2.3-4 mm each; the pancreas is 50-100 mm long and thin,
/// and was under-segmented with boundaries 1-2 mm off. Its own box (+25%) on stage 3's grid
/// is seen at about 1.6 mm. Why stage 2's region (2026-12-08): a stage 2 trained on a finer
/// grid of the same region drew the liver's and spleen's boundaries closer on every
/// evaluation scan but lost the kidneys and pancreas of a cut scan (TRAINING.md, session 14),
/// so it is trusted for some organs only.
fn refine_organs(
    ctx: &Ctx,
    stage: &crate::model::StageModel,
    plan: &RefinePlan,
    image: &Volume<f32>,
    stage2_region: &IndexBox,
    labels: &mut LabelMap,
) -> Result<bool> {
    let refined_label = |v: u8| plan.labels.contains(&v);
    let region = match plan.region {
        RefineRegion::Stage2Region => *stage2_region,
        RefineRegion::OrganBox => {
            let Some(bbox) = labels.bounding_box(refined_label) else {
                return Ok(false);
            };
            IndexBox::of_voxels(bbox.start(), bbox.end()).grown(plan.margin)
        }
    };
    let Some(roi) = region.voxels(image.shape()) else {
        return Ok(false);
    };
    let (grid, logits) = region_logits(
        ctx,
        &stage.net,
        &[],
        image,
        &region,
        stage.grid_dhw,
        &stage.intensity,
        &[],
    )?;
    let refined = export_labels(logits, &grid, image.geometry(), &roi)?;
    let [nx, ny, _] = image.shape();
    let (start, end) = (roi.start(), roi.end());
    let out = labels.data_mut();
    let new = refined.data();
    for k in start[2]..end[2] {
        for j in start[1]..end[1] {
            let row = nx * (j + ny * k);
            for i in row + start[0]..row + end[0] {
                if refined_label(new[i]) || refined_label(out[i]) {
                    out[i] = new[i];
                }
            }
        }
    }
    Ok(true)
}

/// Post-processing of the exported labels. Both operations work inside each organ's bounding
/// box, which lies inside the region stage 2 wrote.
fn postprocess(labels: &mut LabelMap, model: &Model, pp: &PostProcess, notes: &mut Vec<String>) {
    let card = &model.stages[1].card;
    for l in card.labels.organs() {
        // Chosen per label value by the card's label set, never by the organ's name.
        if pp.largest_components && l.keep_largest_components {
            let k = keep_largest_components(
                labels,
                l.value,
                usize::from(l.components),
                Connectivity::Full,
            );
            if k.removed_voxels > 0 {
                notes.push(format!(
                    "{}: removed {} stray component(s), {} voxels",
                    l.name, k.removed_components, k.removed_voxels
                ));
            }
        }
        if pp.fill_holes && l.fill_holes {
            // Background 6-connected against the organ's 26-connectivity: the usual dual pair,
            // so a pocket touching the outside only through an edge still counts as a hole.
            fill_holes(labels, l.value, Connectivity::Faces);
        }
    }
}

/// Volume of each organ of `set` in millilitres, in the set's order (FLARE21: liver, kidneys,
/// spleen, pancreas).
pub fn organ_volumes_ml(labels: &LabelMap, set: &LabelSet) -> Vec<f64> {
    let mut counts = [0u64; 256];
    for &l in labels.data() {
        counts[usize::from(l)] += 1;
    }
    let ml = labels.geometry().voxel_volume_ml();
    (set.organs().iter())
        .map(|o| counts[usize::from(o.value)] as f64 * ml)
        .collect()
}
