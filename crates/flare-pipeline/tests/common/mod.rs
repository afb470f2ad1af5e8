//! Tiny two-stage models for plumbing tests.
//!
//! The networks are randomly initialised: they find no real organs, so tests that use them
//! check geometry, files and control flow only, never accuracy.

#![allow(dead_code)]

use std::{collections::HashMap, path::Path};

use flare_model::{ModelCard, UNet, UNetConfig, card::TargetGrid, file};
use flare_pipeline::{Model, PipelinePlan};
use safetensors::{SafeTensors, tensor::TensorView};

/// A 2-level U-Net (widths 4-8) and its card, on a `grid_dhw` network grid.
pub fn tiny_stage(seed: u64, grid_dhw: [usize; 3]) -> (UNet, ModelCard) {
    let cfg = UNetConfig::standard(1, 5, &[4, 8]);
    let net = UNet::init(&cfg, seed).expect("init");
    let mut card = ModelCard::untrained(cfg);
    card.preprocessing.target_grid = TargetGrid::FixedSize { size: grid_dhw };
    (net, card)
}

/// The plan used by the tests.
pub fn plan() -> PipelinePlan {
    PipelinePlan {
        roi_margin: 0.1,
        name: "tiny-random".into(),
        notes: "randomly initialised, for plumbing tests only".into(),
        refine: None,
        mirror_axes: Vec::new(),
        stage2_members: 1,
        stage2_class_offsets: Vec::new(),
    }
}

/// Two tiny random stages (stage 1 on 8 x 16 x 16, stage 2 on 8 x 12 x 16).
pub fn tiny_model() -> Model {
    Model::from_parts(
        tiny_stage(1, [8, 16, 16]),
        tiny_stage(2, [8, 12, 16]),
        plan(),
    )
    .expect("tiny model")
}

/// `stage` with `f` applied to the values of tensor `name` (through the file format, so
/// only public API is used).
pub fn edit_tensor(
    stage: (UNet, ModelCard),
    name: &str,
    f: impl Fn(&mut [f32]),
) -> (UNet, ModelCard) {
    let bytes = file::to_bytes(&stage.0, &stage.1).expect("to_bytes");
    let edited = rewrite(&bytes, |n, vals| {
        if n == name {
            f(vals)
        }
    });
    file::from_bytes(&edited, Path::new("<edited>")).expect("from_bytes")
}

/// A safetensors file with every f32 tensor passed through `f(name, values)`, metadata kept.
pub fn rewrite(bytes: &[u8], f: impl Fn(&str, &mut [f32])) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).expect("safetensors");
    let (_, meta) = SafeTensors::read_metadata(bytes).expect("metadata");
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let mut vals: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            f(&n, &mut vals);
            let raw = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n, v.shape().to_vec(), raw)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), d).expect("view"),
            )
        })
        .collect();
    safetensors::serialize(views, meta.metadata().clone()).expect("serialize")
}

/// A safetensors file rebuilt from `bytes` with tensors filtered/renamed by `keep` and the
/// metadata edited by `meta`.
pub fn rebuild(
    bytes: &[u8],
    keep: impl Fn(&str) -> Option<String>,
    meta: impl Fn(&mut HashMap<String, String>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).expect("safetensors");
    let (_, header) = SafeTensors::read_metadata(bytes).expect("metadata");
    let mut m = header.metadata().clone().unwrap_or_default();
    meta(&mut m);
    let views: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, v)| keep(&n).map(|k| (k, v)))
        .collect();
    safetensors::serialize(views, Some(m)).expect("serialize")
}
