//! Resumable checkpoints: one safetensors file holding the network's parameters, the AdamW
//! moments and, in its header metadata, the run's JSON state (configuration, step, sampler
//! state, best validation, the log so far).
//!
//! Parameters are stored in the engine's in-memory layout (`p.<index>` in [`UNet::slots`]
//! order), not PyTorch's: a checkpoint is for resuming, bit for bit, not for exchange (the
//! model files of `flare_model::file` are). Written through a temporary file renamed into
//! place, so a crash mid-write leaves the previous checkpoint intact.

use std::{collections::HashMap, path::Path};

use flare_engine::AdamState;
use flare_model::{Optimizer, UNet};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{
    error::{Result, TrainError, io_err},
    state::RunState,
};

/// The metadata key that holds the run state's JSON.
pub const STATE_KEY: &str = "flare.train_state";

/// Everything needed to continue a run exactly.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Configuration, step, sampler state, best validation, log.
    pub state: RunState,
    /// The network's parameters.
    pub net: UNet,
    /// The optimiser's state.
    pub opt: Optimizer,
}

fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serialises a checkpoint.
pub fn to_bytes(ck: &Checkpoint) -> Result<Vec<u8>> {
    let state = serde_json::to_string(&ck.state).map_err(|e| TrainError::Serialise {
        what: "the run state",
        detail: e.to_string(),
    })?;
    let mut named: Vec<(String, Vec<u8>, usize)> = Vec::new();
    for (i, s) in ck.net.slots().iter().enumerate() {
        named.push((format!("p.{i}"), le_bytes(s), s.len()));
    }
    let states = ck.opt.adam_states().ok_or_else(|| {
        TrainError::Config("a checkpoint saves AdamW's state; this optimiser is not AdamW".into())
    })?;
    for (i, st) in states.iter().enumerate() {
        let (m, v) = st.moments();
        named.push((format!("m.{i}"), le_bytes(m), m.len()));
        named.push((format!("v.{i}"), le_bytes(v), v.len()));
    }
    let mut views = Vec::with_capacity(named.len());
    for (name, bytes, len) in &named {
        let view =
            TensorView::new(Dtype::F32, vec![*len], bytes).map_err(|e| TrainError::Serialise {
                what: "a checkpoint tensor",
                detail: format!("{name}: {e}"),
            })?;
        views.push((name.clone(), view));
    }
    let meta = HashMap::from([(STATE_KEY.to_string(), state)]);
    safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Serialise {
        what: "the checkpoint",
        detail: e.to_string(),
    })
}

/// Writes a checkpoint all at once or not at all (`flare_atomic`).
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    let bytes = to_bytes(ck)?;
    flare_atomic::write(path, &bytes).map_err(io_err(path))
}

/// Reads a checkpoint, checking every tensor against the architecture in its state.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    from_bytes(&bytes, path)
}

/// Parses checkpoint bytes; `path` only names the source in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(path, e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(path, e.to_string()))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| {
            bad(
                path,
                format!("no `{STATE_KEY}` entry: not a flare checkpoint"),
            )
        })?;
    let state: RunState =
        serde_json::from_str(json).map_err(|e| bad(path, format!("run state: {e}")))?;
    let mut net = UNet::zeros(&state.config.architecture)?;
    let read = |name: &str, out: &mut [f32]| -> Result<()> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(path, format!("tensor {name} is missing")))?;
        if t.dtype() != Dtype::F32 || t.data().len() != out.len() * 4 {
            return Err(bad(
                path,
                format!(
                    "tensor {name}: {:?} of {} bytes, expected F32 x {}",
                    t.dtype(),
                    t.data().len(),
                    out.len()
                ),
            ));
        }
        for (o, c) in out.iter_mut().zip(t.data().chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    };
    for (i, s) in net.slots_mut().into_iter().enumerate() {
        read(&format!("p.{i}"), s)?;
    }
    let mut states = Vec::with_capacity(net.slots().len());
    for (i, len) in net.slots().iter().map(|s| s.len()).enumerate() {
        let (mut m, mut v) = (vec![0.0; len], vec![0.0; len]);
        read(&format!("m.{i}"), &mut m)?;
        read(&format!("v.{i}"), &mut v)?;
        states
            .push(AdamState::from_parts(m, v, state.adam_t).map_err(|e| bad(path, e.to_string()))?);
    }
    let opt = Optimizer::adamw_from_states(&net, state.config.adamw.rule(), states)?;
    let expected = 3 * net.slots().len();
    if st.len() != expected {
        return Err(bad(
            path,
            format!("{} tensors, expected {expected}", st.len()),
        ));
    }
    Ok(Checkpoint { state, net, opt })
}
