//! Model files: one safetensors file holding the weights (f32, PyTorch names and layouts) and,
//! in its header metadata under [`CARD_KEY`], the JSON model card.
//!
//! PyTorch reads the weights with `safetensors.torch.load_file(path)` and the card with
//! `json.loads(safe_open(path, "pt").metadata()["flare.model_card"])`. Loading here checks
//! everything before a network is built: the file is a complete safetensors file, the card
//! parses and has a known version, the architecture is valid, and every tensor's name, dtype,
//! shape and values match the architecture (missing, unexpected, wrong shape, wrong dtype and
//! non-finite tensors are each their own error naming the tensor).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{
    ModelCard, ModelError, Result, UNet,
    card::{CARD_KEY, FORMAT_VERSION},
};

/// Serialises a network and its card to safetensors bytes (the card's architecture must be
/// the network's).
pub fn to_bytes(net: &UNet, card: &ModelCard) -> Result<Vec<u8>> {
    if &card.architecture != net.config() {
        return Err(ModelError::Input(
            "the model card's architecture differs from the network's".into(),
        ));
    }
    let card_json = serde_json::to_string(card).map_err(|e| ModelError::BadCard {
        path: PathBuf::from("<memory>"),
        detail: e.to_string(),
    })?;
    let tensors = net.to_torch();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((spec, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, spec.shape.clone(), b)
            .map_err(|e| ModelError::Input(format!("tensor `{}`: {e}", spec.name)))?;
        views.push((spec.name.clone(), view));
    }
    let meta = HashMap::from([
        (CARD_KEY.to_string(), card_json),
        // Hugging Face tooling expects a framework tag; "pt" makes the file look native there.
        ("format".to_string(), "pt".to_string()),
    ]);
    safetensors::serialize(views, Some(meta)).map_err(|e| ModelError::Corrupt {
        path: PathBuf::from("<memory>"),
        detail: e.to_string(),
    })
}

/// Writes a model file (see the module doc).
pub fn save(path: &Path, net: &UNet, card: &ModelCard) -> Result<()> {
    let bytes = to_bytes(net, card)?;
    std::fs::write(path, bytes).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and validates a model file.
pub fn load(path: &Path) -> Result<(UNet, ModelCard)> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Reads only the model card of a file (no tensor is checked).
pub fn read_card(bytes: &[u8], path: &Path) -> Result<ModelCard> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(path, e))?;
    parse_card(meta.metadata().as_ref(), path)
}

fn corrupt(path: &Path, e: safetensors::SafeTensorError) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn parse_card(meta: Option<&HashMap<String, String>>, path: &Path) -> Result<ModelCard> {
    let json = meta
        .and_then(|m| m.get(CARD_KEY))
        .ok_or_else(|| ModelError::MissingCard {
            path: path.to_path_buf(),
            key: CARD_KEY,
        })?;
    // Check the version first, so that a newer card's unknown fields read as a version error.
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| ModelError::BadCard {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if let Some(v) = value.get("format_version").and_then(|v| v.as_u64())
        && v != FORMAT_VERSION as u64
    {
        return Err(ModelError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: u32::try_from(v).unwrap_or(u32::MAX),
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| ModelError::BadCard {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Parses and validates model-file bytes; `path` only names the source in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(UNet, ModelCard)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(path, e))?;
    let card = read_card(bytes, path)?;
    card.architecture
        .validate()
        .map_err(|e| ModelError::BadCard {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    // The architecture comes from the file: its parameters must fit in the file and, as the
    // network plus one tensor's values while copying, in memory, before anything is allocated.
    // (The file's length, not its tensors' bytes: a file that merely lacks a tensor gets the
    // error naming that tensor below.)
    let needed = card.architecture.param_bytes().unwrap_or(u64::MAX);
    let len = bytes.len() as u64;
    if needed > len {
        return Err(ModelError::ArchitectureExceedsFile {
            path: path.to_path_buf(),
            needed,
            len,
        });
    }
    flare_volume::memory::ensure_fits(needed.saturating_mul(2)).map_err(|source| {
        ModelError::TooLarge {
            what: format!("{}: the network of its model card", path.display()),
            source,
        }
    })?;
    let mut net = UNet::zeros(&card.architecture)?;
    let specs = card.architecture.specs_of_valid();
    let mut found: HashMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    for (index, spec) in specs.iter().enumerate() {
        let t = found
            .remove(&spec.name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: spec.name.clone(),
                expected: spec.shape.clone(),
            })?;
        if t.dtype() != Dtype::F32 {
            return Err(ModelError::WrongDtype {
                path: path.to_path_buf(),
                name: spec.name.clone(),
                found: format!("{:?}", t.dtype()),
            });
        }
        if t.shape() != spec.shape.as_slice() {
            return Err(ModelError::WrongShape {
                path: path.to_path_buf(),
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: t.shape().to_vec(),
            });
        }
        let vals: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let bad = vals.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(ModelError::NonFinite {
                path: path.to_path_buf(),
                name: spec.name.clone(),
                count: bad,
            });
        }
        net.set_from_torch(index, &vals)?;
    }
    // Report the first unexpected name in sorted order, so the message is reproducible.
    let mut extra: Vec<_> = found.into_iter().collect();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((name, t)) = extra.into_iter().next() {
        return Err(ModelError::UnexpectedTensor {
            path: path.to_path_buf(),
            name,
            shape: t.shape().to_vec(),
        });
    }
    Ok((net, card))
}
