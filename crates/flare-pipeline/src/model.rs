//! The two-stage model and its file.
//!
//! # File format
//! One safetensors file: every tensor of stage 1 named `stage1.<name>`, of stage 2
//! `stage2.<name>` (`<name>` as in a single-stage file of `flare-model`), and three metadata
//! entries: [`CARD_KEY_STAGE1`] and [`CARD_KEY_STAGE2`] (each stage's model card JSON) and
//! [`PLAN_KEY`] (the [`PipelinePlan`] JSON). A model with a refinement stage (the plan's
//! [`PipelinePlan::refine`]) also holds `stage3.<name>` tensors and [`CARD_KEY_STAGE3`]; files
//! without it read as before. A stage 2 that is an ensemble (the plan's
//! [`PipelinePlan::stage2_members`] > 1) holds its further members as `stage2m<k>.<name>`
//! (`k` = 2, 3, ...) with their cards under [`member_card_key`]. Each stage is written and validated by
//! `flare_model::file` itself: saving renames the tensors of `to_bytes`'s output; loading
//! rebuilds each stage's single-stage bytes and hands them to `from_bytes`, so every check of
//! a model file (card version, architecture, every tensor's name, dtype, shape and values)
//! applies to both stages, with errors naming the file and the stage's prefix.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use flare_labels::LabelSet;
use flare_model::{ModelCard, UNet, card::CARD_KEY, file};
use safetensors::{SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::{
    error::{PipelineError, Result},
    stages::{Intensity, grid_dhw},
};

/// Metadata key of stage 1's model card.
pub const CARD_KEY_STAGE1: &str = "flare.model_card.stage1";
/// Metadata key of stage 2's model card.
pub const CARD_KEY_STAGE2: &str = "flare.model_card.stage2";
/// Metadata key of the refinement stage's model card (models with [`PipelinePlan::refine`]).
pub const CARD_KEY_STAGE3: &str = "flare.model_card.stage3";
/// Metadata key of the pipeline plan.
pub const PLAN_KEY: &str = "flare.pipeline";

/// The default model, built into the binary so that `flare segment` works with no download.
static BUNDLED: &[u8] = include_bytes!("../models/default.safetensors");

/// How the two stages are chained.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PipelinePlan {
    /// Stage 1's organ box is grown by this fraction of its size on each side before stage 2
    /// (stage 2's training margin; 0.1 by default).
    pub roi_margin: f64,
    /// A short name (e.g. `flare-default`).
    pub name: String,
    /// Free text: provenance, status.
    pub notes: String,
    /// A third network that re-segments some organs (stage 3); `None` in
    /// two-stage models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<RefinePlan>,
    /// Test-time mirroring of stage 2: the axes of its grid (0 = i, 1 = j, 2 = k) whose
    /// mirror images it also segments; the probabilities of every combination (2^n passes)
    /// are averaged. Empty (older plans): one pass. Only for a stage 2 trained with mirrored
    /// samples (`p_mirror`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_axes: Vec<u8>,
    /// How many stage-2 networks segment the region, their probabilities averaged (an
    /// ensemble; each also mirrored where `mirror_axes` asks): 1 (older plans) is one network.
    /// Stage 2's time grows by the same factor.
    #[serde(default = "one_member", skip_serializing_if = "is_one_member")]
    pub stage2_members: u8,
    /// Added to stage 2's log-probability of each class (one value per class, in label-value
    /// order, background first) before the export takes the most probable class: a
    /// calibration of the network's class balance, e.g. a positive pancreas offset where it
    /// under-segments scans it has not seen. Multiplies the class's probability by
    /// `exp(offset)` before the classes are compared. Empty (older plans): none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage2_class_offsets: Vec<f32>,
}

/// Largest |offset| a plan may give a class (a factor of about 22 000 on its probability:
/// beyond that an offset only forces or forbids the class).
pub const MAX_CLASS_OFFSET: f32 = 10.0;

/// Most stage-2 members a plan may name (each costs a stage-2 pass).
pub const MAX_STAGE2_MEMBERS: u8 = 8;

fn one_member() -> u8 {
    1
}

fn is_one_member(n: &u8) -> bool {
    *n == 1
}

/// Metadata key of stage-2 member `k`'s card (`k` >= 2; member 1 is [`CARD_KEY_STAGE2`]).
pub fn member_card_key(k: usize) -> String {
    format!("{CARD_KEY_STAGE2}.m{k}")
}

/// How stage 3 refines organs: a region of the scan is segmented again on stage 3's own grid,
/// and inside that region stage 3 decides which voxels are each of `labels` (see
/// [`crate::segment`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RefinePlan {
    /// The organs refined (label values of stage 2's card, e.g. `[4]` for the pancreas).
    /// Plans written before 2026-12-08 name one organ as `"label": 4`; they read as `[4]`.
    #[serde(alias = "label", deserialize_with = "one_or_many_labels")]
    pub labels: Vec<u8>,
    /// With [`RefineRegion::OrganBox`], stage 3's training margin around the organs' box, as
    /// a fraction of its size per side; with [`RefineRegion::Stage2Region`] it must be 0
    /// (the region is stage 2's, grown by the plan's `roi_margin`).
    pub margin: f64,
    /// Which region stage 3 segments; older plans: the organs' box.
    #[serde(default, skip_serializing_if = "RefineRegion::is_organ_box")]
    pub region: RefineRegion,
}

/// The region a refinement stage segments.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefineRegion {
    /// The box of stage 2's voxels of the refined organs, grown by the plan's margin: a
    /// stage 3 trained on one organ's box (`Crop::Roi` with those organs).
    #[default]
    OrganBox,
    /// The region stage 2 segmented (stage 1's organ box grown by `roi_margin`): a stage 3
    /// trained like stage 2 but on a finer grid, trusted for some organs only.
    Stage2Region,
}

impl RefineRegion {
    fn is_organ_box(&self) -> bool {
        *self == RefineRegion::OrganBox
    }
}

/// `labels` as a list, or as the single number of plans from before multi-organ refinement.
fn one_or_many_labels<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<u8>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u8),
        Many(Vec<u8>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(l) => vec![l],
        OneOrMany::Many(ls) => ls,
    })
}

impl RefinePlan {
    /// Why this refinement cannot be run, if it cannot: no organ, background or a repeated
    /// label, a margin outside [0, 2], or a margin with the stage-2 region.
    fn problem(&self) -> Option<String> {
        let mut seen = [false; 256];
        if self.labels.is_empty() {
            return Some("refine: no label".into());
        }
        for &l in &self.labels {
            if l == 0 || std::mem::replace(&mut seen[usize::from(l)], true) {
                return Some(format!(
                    "refine: labels {:?} must be organs (> 0), each once",
                    self.labels
                ));
            }
        }
        if !(self.margin.is_finite() && (0.0..=2.0).contains(&self.margin)) {
            return Some(format!("refine: margin {} is not in [0, 2]", self.margin));
        }
        if self.region == RefineRegion::Stage2Region && self.margin != 0.0 {
            return Some(format!(
                "refine: margin {} with stage 2's region (it has stage 2's margin; use 0)",
                self.margin
            ));
        }
        None
    }

    /// One phrase for `flare info` and [`Model::describe`].
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(u8::to_string).collect();
        let which = if self.labels.len() == 1 {
            "label"
        } else {
            "labels"
        };
        match self.region {
            RefineRegion::OrganBox => format!("refines {which} {}", labels.join(", ")),
            RefineRegion::Stage2Region => {
                format!("refines {which} {} on stage 2's region", labels.join(", "))
            }
        }
    }
}

impl PipelinePlan {
    /// What the plan asks of stage 2 beyond one plain pass, one phrase each (test-time
    /// mirroring, class offsets), for `flare info` and [`Model::describe`]; empty when nothing.
    pub fn stage2_options(&self) -> Vec<String> {
        let mut options = Vec::new();
        if !self.mirror_axes.is_empty() {
            options.push(format!(
                "stage 2 mirrored along axes {:?}: {} passes",
                self.mirror_axes,
                1u32 << self.mirror_axes.len()
            ));
        }
        if !self.stage2_class_offsets.is_empty() {
            options.push(format!(
                "stage-2 class offsets {:?}",
                self.stage2_class_offsets
            ));
        }
        options
    }

    fn check(&self, path: &Path) -> Result<()> {
        if !(self.roi_margin.is_finite() && (0.0..=2.0).contains(&self.roi_margin)) {
            return Err(PipelineError::BadPlan {
                path: path.to_path_buf(),
                detail: format!("roi_margin {} is not in [0, 2]", self.roi_margin),
            });
        }
        let mut seen = [false; 3];
        for &a in &self.mirror_axes {
            if a > 2 || std::mem::replace(&mut seen[usize::from(a)], true) {
                return Err(PipelineError::BadPlan {
                    path: path.to_path_buf(),
                    detail: format!(
                        "mirror_axes {:?}: each axis (0, 1, 2) at most once",
                        self.mirror_axes
                    ),
                });
            }
        }
        if let Some(b) = (self.stage2_class_offsets.iter())
            .find(|b| !(b.is_finite() && b.abs() <= MAX_CLASS_OFFSET))
        {
            return Err(PipelineError::BadPlan {
                path: path.to_path_buf(),
                detail: format!(
                    "stage2_class_offsets: {b} is not a number in [-{MAX_CLASS_OFFSET}, {MAX_CLASS_OFFSET}]"
                ),
            });
        }
        if !(1..=MAX_STAGE2_MEMBERS).contains(&self.stage2_members) {
            return Err(PipelineError::BadPlan {
                path: path.to_path_buf(),
                detail: format!(
                    "stage2_members {} is not in 1..={MAX_STAGE2_MEMBERS}",
                    self.stage2_members
                ),
            });
        }
        if let Some(detail) = self.refine.as_ref().and_then(RefinePlan::problem) {
            return Err(PipelineError::BadPlan {
                path: path.to_path_buf(),
                detail,
            });
        }
        Ok(())
    }
}

/// One stage: its network and card, with what the pipeline derives from the card.
#[derive(Debug, Clone)]
pub(crate) struct StageModel {
    pub(crate) net: UNet,
    pub(crate) card: ModelCard,
    pub(crate) grid_dhw: [usize; 3],
    pub(crate) intensity: Intensity,
}

impl StageModel {
    /// A stage built from a network and card in memory: the card must describe the network
    /// (a file's stages are checked against their cards by `flare_model::file` instead).
    fn in_memory(net: UNet, card: ModelCard, stage: u8) -> Result<StageModel> {
        let mem = Path::new("<memory>");
        if net.config() != &card.architecture {
            return Err(PipelineError::Unusable {
                path: mem.to_path_buf(),
                stage,
                detail: "the card's architecture differs from the network's".into(),
            });
        }
        StageModel::new(net, card, stage, mem)
    }

    fn new(net: UNet, card: ModelCard, stage: u8, path: &Path) -> Result<StageModel> {
        let unusable = |detail: String| PipelineError::Unusable {
            path: path.to_path_buf(),
            stage,
            detail,
        };
        let arch = &card.architecture;
        if arch.in_channels != 1 {
            return Err(unusable(format!(
                "the network takes {} input channels; CT has 1",
                arch.in_channels
            )));
        }
        if !(2..=256).contains(&arch.num_classes) {
            return Err(unusable(format!(
                "{} output classes (need background and at least one organ, at most 256)",
                arch.num_classes
            )));
        }
        let values: Vec<usize> = card.labels.all().iter().map(|l| l.value as usize).collect();
        if values != (0..arch.num_classes).collect::<Vec<_>>() {
            return Err(unusable(format!(
                "the card's labels {values:?} are not the {} output channels in order",
                arch.num_classes
            )));
        }
        let relabel = |e: PipelineError| match e {
            PipelineError::Unusable { detail, .. } => unusable(detail),
            e => e,
        };
        let grid_dhw = grid_dhw(&card, stage).map_err(|e| match e {
            PipelineError::Model(m) => unusable(format!("network grid: {m}")),
            e => relabel(e),
        })?;
        let intensity = Intensity::from_card(&card, stage).map_err(relabel)?;
        Ok(StageModel {
            net,
            card,
            grid_dhw,
            intensity,
        })
    }
}

/// The two-stage model: stage 1 finds the organs on the whole scan, stage 2 segments their
/// region finely (see [`crate::segment`]); optionally a third stage refines some organs.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) stages: [StageModel; 2],
    /// Stage 3, present exactly when the plan has [`PipelinePlan::refine`].
    pub(crate) refine: Option<StageModel>,
    /// Stage 2's further ensemble members (`plan.stage2_members - 1` of them).
    pub(crate) members: Vec<StageModel>,
    plan: PipelinePlan,
}

impl Model {
    /// Builds a model from networks and cards already in memory (checked as a loaded file is).
    pub fn from_parts(
        stage1: (UNet, ModelCard),
        stage2: (UNet, ModelCard),
        plan: PipelinePlan,
    ) -> Result<Model> {
        let mem = Path::new("<memory>");
        let stages = [
            StageModel::in_memory(stage1.0, stage1.1, 1)?,
            StageModel::in_memory(stage2.0, stage2.1, 2)?,
        ];
        plan.check(mem)?;
        check_parts_plan(&plan, mem)?;
        check_class_offsets(&plan, &stages[1], mem)?;
        Ok(Model {
            stages,
            refine: None,
            members: Vec::new(),
            plan,
        })
    }

    /// This model with a refinement stage (stage 3) added or replaced: `net` re-segments
    /// the organs `refine.labels` in its region (see [`RefinePlan`]). Its card's labels must be stage
    /// 2's.
    pub fn with_refinement(
        mut self,
        net: UNet,
        card: ModelCard,
        refine: RefinePlan,
    ) -> Result<Model> {
        let mem = Path::new("<memory>");
        let stage = StageModel::in_memory(net, card, 3)?;
        check_refinement(&self.stages[1].card, &stage.card, &refine, mem)?;
        self.plan.refine = Some(refine);
        self.plan.check(mem)?;
        self.refine = Some(stage);
        Ok(self)
    }

    /// This model with `members` added to stage 2 as an ensemble: each segments the region
    /// too and the probabilities of all are averaged. Each must share stage 2's labels, grid
    /// and intensity mapping (its width and depth may differ).
    pub fn with_stage2_members(mut self, members: Vec<(UNet, ModelCard)>) -> Result<Model> {
        let mem = Path::new("<memory>");
        for (net, card) in members {
            let k = self.members.len() + 2;
            let member = StageModel::in_memory(net, card, 2).map_err(|e| match e {
                PipelineError::Unusable {
                    path,
                    stage,
                    detail,
                } => PipelineError::Unusable {
                    path,
                    stage,
                    detail: format!("member {k}: {detail}"),
                },
                e => e,
            })?;
            check_member(&self.stages[1], &member, k, mem)?;
            self.members.push(member);
        }
        self.plan.stage2_members = u8::try_from(self.members.len() + 1).unwrap_or(u8::MAX);
        self.plan.check(mem)?;
        Ok(self)
    }

    /// This model with stage 2's class offsets set (see
    /// [`PipelinePlan::stage2_class_offsets`]): one per class of stage 2, or none to clear them.
    pub fn with_stage2_class_offsets(mut self, offsets: Vec<f32>) -> Result<Model> {
        let mem = Path::new("<memory>");
        self.plan.stage2_class_offsets = offsets;
        self.plan.check(mem)?;
        check_class_offsets(&self.plan, &self.stages[1], mem)?;
        Ok(self)
    }

    /// Reads and validates a two-stage model file.
    pub fn load(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Model::from_bytes(&bytes, path)
    }

    /// Parses and validates two-stage model bytes; `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Model> {
        let not_model = |detail: String| PipelineError::NotAModel {
            path: origin.to_path_buf(),
            detail,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| not_model(format!("not a valid safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| not_model(format!("not a valid safetensors file: {e}")))?;
        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let Some(plan_json) = meta.get(PLAN_KEY) else {
            if meta.contains_key(CARD_KEY) {
                return Err(PipelineError::SingleStage {
                    path: origin.to_path_buf(),
                });
            }
            return Err(not_model(format!(
                "no `{PLAN_KEY}` entry in the safetensors metadata"
            )));
        };
        let plan: PipelinePlan =
            serde_json::from_str(plan_json).map_err(|e| PipelineError::BadPlan {
                path: origin.to_path_buf(),
                detail: e.to_string(),
            })?;
        plan.check(origin)?;
        let mut parts: [Vec<(String, TensorView<'_>)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut member_parts: Vec<Vec<(String, TensorView<'_>)>> =
            vec![Vec::new(); usize::from(plan.stage2_members).saturating_sub(1)];
        let mut tensors = st.tensors();
        // Sorted, so that the first unexpected name reported is reproducible.
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in tensors {
            if let Some(rest) = name.strip_prefix("stage1.") {
                parts[0].push((rest.to_string(), view));
            } else if let Some(rest) = name.strip_prefix("stage2.") {
                parts[1].push((rest.to_string(), view));
            } else if let Some(rest) = name.strip_prefix("stage3.")
                && plan.refine.is_some()
            {
                parts[2].push((rest.to_string(), view));
            } else if let Some((k, rest)) = member_tensor(&name)
                && let Some(part) = k.checked_sub(2).and_then(|i| member_parts.get_mut(i))
            {
                part.push((rest.to_string(), view));
            } else {
                return Err(PipelineError::UnexpectedTensor {
                    path: origin.to_path_buf(),
                    name,
                });
            }
        }
        let [p1, p2, p3] = parts;
        let s1 = load_stage(meta, p1, 1, CARD_KEY_STAGE1, origin)?;
        let s2 = load_stage(meta, p2, 2, CARD_KEY_STAGE2, origin)?;
        let refine = match &plan.refine {
            Some(r) => {
                let s3 = load_stage(meta, p3, 3, CARD_KEY_STAGE3, origin)?;
                check_refinement(&s2.card, &s3.card, r, origin)?;
                Some(s3)
            }
            None => None,
        };
        let mut members = Vec::with_capacity(member_parts.len());
        for (i, part) in member_parts.into_iter().enumerate() {
            let k = i + 2;
            let m = load_stage(meta, part, 2, &member_card_key(k), origin)?;
            check_member(&s2, &m, k, origin)?;
            members.push(m);
        }
        check_class_offsets(&plan, &s2, origin)?;
        Ok(Model {
            stages: [s1, s2],
            refine,
            members,
            plan,
        })
    }

    /// Combines two single-stage files (as `flare train` writes them) with a plan.
    pub fn from_stage_files(stage1: &Path, stage2: &Path, plan: PipelinePlan) -> Result<Model> {
        let read = |p: &Path, n: u8| -> Result<StageModel> {
            let bytes = std::fs::read(p).map_err(|source| PipelineError::Io {
                path: p.to_path_buf(),
                source,
            })?;
            // A combined file given as a stage: say so rather than "no model card".
            if let Ok((_, h)) = SafeTensors::read_metadata(&bytes)
                && h.metadata()
                    .as_ref()
                    .is_some_and(|m| m.contains_key(PLAN_KEY))
            {
                return Err(PipelineError::Unusable {
                    path: p.to_path_buf(),
                    stage: n,
                    detail: "this is already a two-stage model, not a single stage".into(),
                });
            }
            let (net, card) = file::from_bytes(&bytes, p)?;
            StageModel::new(net, card, n, p)
        };
        plan.check(Path::new("<plan>"))?;
        check_parts_plan(&plan, Path::new("<plan>"))?;
        let stages = [read(stage1, 1)?, read(stage2, 2)?];
        check_class_offsets(&plan, &stages[1], Path::new("<plan>"))?;
        Ok(Model {
            stages,
            refine: None,
            members: Vec::new(),
            plan,
        })
    }

    /// The model as file bytes (see the module doc).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mem = PathBuf::from("<memory>");
        // (tensor prefix, card key, stage) of every network in the file.
        let mut parts: Vec<(String, String, &StageModel)> = vec![
            ("stage1".into(), CARD_KEY_STAGE1.into(), &self.stages[0]),
            ("stage2".into(), CARD_KEY_STAGE2.into(), &self.stages[1]),
        ];
        if let Some(s3) = &self.refine {
            parts.push(("stage3".into(), CARD_KEY_STAGE3.into(), s3));
        }
        for (i, m) in self.members.iter().enumerate() {
            parts.push((format!("stage2m{}", i + 2), member_card_key(i + 2), m));
        }
        let per_stage: Vec<Vec<u8>> = parts
            .iter()
            .map(|(_, _, s)| file::to_bytes(&s.net, &s.card))
            .collect::<std::result::Result<_, _>>()?;
        let mut views = Vec::new();
        let mut meta = HashMap::new();
        for (bytes, (prefix, _, _)) in per_stage.iter().zip(&parts) {
            let st = SafeTensors::deserialize(bytes).map_err(|e| PipelineError::NotAModel {
                path: mem.clone(),
                detail: format!("{prefix}: {e}"),
            })?;
            for (name, view) in st.tensors() {
                // Re-wrap: the view borrows `bytes`, which outlives `views`.
                let v = TensorView::new(view.dtype(), view.shape().to_vec(), view.data()).map_err(
                    |e| PipelineError::NotAModel {
                        path: mem.clone(),
                        detail: format!("tensor `{name}`: {e}"),
                    },
                )?;
                views.push((format!("{prefix}.{name}"), v));
            }
        }
        for (_, key, s) in &parts {
            let json = serde_json::to_string(&s.card).map_err(|e| PipelineError::NotAModel {
                path: mem.clone(),
                detail: format!("model card: {e}"),
            })?;
            meta.insert(key.clone(), json);
        }
        let plan = serde_json::to_string(&self.plan).map_err(|e| PipelineError::BadPlan {
            path: mem.clone(),
            detail: e.to_string(),
        })?;
        meta.insert(PLAN_KEY.to_string(), plan);
        meta.insert("format".to_string(), "pt".to_string());
        safetensors::serialize(views, Some(meta)).map_err(|e| PipelineError::NotAModel {
            path: mem,
            detail: e.to_string(),
        })
    }

    /// Writes the model to `path` through a temporary file in the same folder renamed into
    /// place, so a crash never leaves half a model under the name.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        flare_atomic::write(path, &bytes).map_err(|source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The default model shipped inside the program.
    pub fn bundled() -> Result<Model> {
        Model::from_bytes(BUNDLED, Path::new("<bundled default model>"))
    }

    /// One line: the name, the training steps of each stage, and the validation Dice per organ
    /// where the cards record it.
    pub fn describe(&self) -> String {
        let stage = |n: usize, c: &ModelCard| {
            let dsc: Vec<String> = c
                .labels
                .organs()
                .iter()
                .filter_map(|l| {
                    let v = c.training.metrics.get(&format!("val_dice_{}", l.name))?;
                    Some(format!("{} {v:.3}", l.name))
                })
                .collect();
            let dsc = if dsc.is_empty() {
                String::new()
            } else {
                format!(", val DSC {}", dsc.join(" "))
            };
            format!("stage {} {} steps{dsc}", n + 1, c.training.steps)
        };
        let stages: Vec<String> = (self.stages.iter().chain(&self.refine))
            .enumerate()
            .map(|(n, s)| stage(n, &s.card))
            .collect();
        let refines = match &self.plan.refine {
            Some(r) => format!(" ({})", r.describe()),
            None => String::new(),
        };
        let members = match self.members.len() {
            0 => String::new(),
            n => format!(" (stage 2 an ensemble of {} networks)", n + 1),
        };
        let options: String = (self.plan.stage2_options().iter())
            .map(|o| format!(" ({o})"))
            .collect();
        format!(
            "{}: {}{refines}{members}{options}",
            self.plan.name,
            stages.join("; ")
        )
    }

    /// The model cards of stage 1 and stage 2.
    pub fn stage_cards(&self) -> [&ModelCard; 2] {
        [&self.stages[0].card, &self.stages[1].card]
    }

    /// The labels the model writes and how each is post-processed: stage 2's card's set.
    pub fn labels(&self) -> &LabelSet {
        &self.stages[1].card.labels
    }

    /// The networks of stage 1 and stage 2 (stage 2's first member).
    pub fn networks(&self) -> [&UNet; 2] {
        [&self.stages[0].net, &self.stages[1].net]
    }

    /// The cards of stage 2's further ensemble members (members 2, 3, ...; empty for one
    /// network).
    pub fn stage2_member_cards(&self) -> Vec<&ModelCard> {
        self.members.iter().map(|m| &m.card).collect()
    }

    /// The refinement stage's card (`None` for a model without stage 3).
    pub fn refine_card(&self) -> Option<&ModelCard> {
        self.refine.as_ref().map(|s| &s.card)
    }

    /// Every stage-2 network, in order: stage 2 itself, then its further ensemble members.
    pub fn stage2_networks(&self) -> Vec<&UNet> {
        std::iter::once(&self.stages[1])
            .chain(&self.members)
            .map(|s| &s.net)
            .collect()
    }

    /// How the stages are chained.
    pub fn plan(&self) -> &PipelinePlan {
        &self.plan
    }
}

/// What a model file holds: a two-stage model, or one network as `flare train` writes it.
// Read once per command: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ModelFile {
    /// A two-stage model (`flare bundle`, the built-in model).
    TwoStage(Model),
    /// One stage's network and its card.
    Stage(UNet, ModelCard),
}

impl ModelFile {
    /// The path that names the built-in model wherever a model file is asked for.
    pub const BUILTIN: &'static str = "builtin";

    /// Reads `path` as whichever kind it is; [`ModelFile::BUILTIN`] is the built-in model.
    pub fn open(path: &Path) -> Result<ModelFile> {
        if path.as_os_str() == Self::BUILTIN {
            return Model::bundled().map(ModelFile::TwoStage);
        }
        match Model::load(path) {
            Ok(m) => Ok(ModelFile::TwoStage(m)),
            Err(PipelineError::SingleStage { .. }) => {
                let (net, card) = file::load(path)?;
                Ok(ModelFile::Stage(net, card))
            }
            Err(e) => Err(e),
        }
    }
}

/// A plan for [`Model::from_parts`] or [`Model::from_stage_files`]: the stages beyond the
/// two given are added with their own calls, which set the plan's fields for them.
fn check_parts_plan(plan: &PipelinePlan, path: &Path) -> Result<()> {
    let detail = if plan.refine.is_some() {
        "the plan has a refinement stage: add it with Model::with_refinement"
    } else if plan.stage2_members != 1 {
        "the plan has stage-2 members: add them with Model::with_stage2_members"
    } else {
        return Ok(());
    };
    Err(PipelineError::BadPlan {
        path: path.to_path_buf(),
        detail: detail.into(),
    })
}

/// The plan's stage-2 class offsets, if any, are one per class of `stage2`.
fn check_class_offsets(plan: &PipelinePlan, stage2: &StageModel, path: &Path) -> Result<()> {
    let (n, classes) = (
        plan.stage2_class_offsets.len(),
        stage2.card.architecture.num_classes,
    );
    if n == 0 || n == classes {
        return Ok(());
    }
    Err(PipelineError::BadPlan {
        path: path.to_path_buf(),
        detail: format!("stage2_class_offsets has {n} values for stage 2's {classes} classes"),
    })
}

/// `stage2m<k>.<rest>` -> `(k, rest)`.
fn member_tensor(name: &str) -> Option<(usize, &str)> {
    let (k, rest) = name.strip_prefix("stage2m")?.split_once('.')?;
    Some((k.parse().ok()?, rest))
}

/// What a stage-2 ensemble member `k` must share with stage 2: the labels, the grid and the
/// intensity mapping (their probabilities are averaged voxel by voxel on one grid).
fn check_member(stage2: &StageModel, member: &StageModel, k: usize, path: &Path) -> Result<()> {
    let unusable = |detail: String| PipelineError::Unusable {
        path: path.to_path_buf(),
        stage: 2,
        detail: format!("member {k}: {detail}"),
    };
    if member.card.labels != stage2.card.labels {
        return Err(unusable("its labels differ from stage 2's".into()));
    }
    if member.grid_dhw != stage2.grid_dhw {
        return Err(unusable(format!(
            "its grid {:?} differs from stage 2's {:?}",
            member.grid_dhw, stage2.grid_dhw
        )));
    }
    if member.intensity != stage2.intensity {
        return Err(unusable(
            "its intensity mapping differs from stage 2's".into(),
        ));
    }
    Ok(())
}

/// The checks a stage 3 must pass against stage 2, whether added in memory or read from a file:
/// the same labels, and each refined label one of its organs.
fn check_refinement(
    stage2: &ModelCard,
    stage3: &ModelCard,
    refine: &RefinePlan,
    path: &Path,
) -> Result<()> {
    let unusable = |detail: String| PipelineError::Unusable {
        path: path.to_path_buf(),
        stage: 3,
        detail,
    };
    // Values and names: post-processing follows stage 2's rules, whatever stage 3's card says.
    let named = |c: &ModelCard| -> Vec<(u8, String)> {
        c.labels
            .all()
            .iter()
            .map(|l| (l.value, l.name.clone()))
            .collect()
    };
    if named(stage3) != named(stage2) {
        return Err(unusable("its labels differ from stage 2's".into()));
    }
    if let Some(l) =
        (refine.labels.iter()).find(|&&l| !stage3.labels.organs().iter().any(|o| o.value == l))
    {
        return Err(unusable(format!("label {l} is not an organ of the model")));
    }
    Ok(())
}

/// Rebuilds one stage's single-stage file bytes and validates them with `flare_model::file`.
fn load_stage(
    meta: &HashMap<String, String>,
    tensors: Vec<(String, TensorView<'_>)>,
    stage: u8,
    card_key: &str,
    origin: &Path,
) -> Result<StageModel> {
    let card = meta.get(card_key).ok_or_else(|| PipelineError::NotAModel {
        path: origin.to_path_buf(),
        detail: format!("no `{card_key}` entry (stage {stage}'s model card) in the metadata"),
    })?;
    // Errors of flare-model name this pseudo-path: the file and the tensors' prefix.
    let named = PathBuf::from(format!("{} [stage{stage}.*]", origin.display()));
    let single = safetensors::serialize(
        tensors,
        Some(HashMap::from([(CARD_KEY.to_string(), card.clone())])),
    )
    .map_err(|e| PipelineError::NotAModel {
        path: named.clone(),
        detail: e.to_string(),
    })?;
    let (net, card) = file::from_bytes(&single, &named)?;
    StageModel::new(net, card, stage, origin)
}
