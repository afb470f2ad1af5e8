//! Model files: round trip, readability by Python's safetensors, and one typed error per kind
//! of damage (missing, unexpected, wrong shape, wrong dtype, non-finite, truncated, corrupt
//! header, missing or bad card, unknown version), each naming the tensor or field.

use std::{collections::HashMap, path::Path};

use flare_model::{ModelCard, ModelError, UNet, UNetConfig, card::CARD_KEY, file};
use flare_testkit::{TempDir, python_with, run_python};
use safetensors::{Dtype, tensor::TensorView};

fn small() -> (UNet, ModelCard) {
    let mut cfg = UNetConfig::standard(1, 5, &[4, 8, 16]);
    cfg.deep_supervision = true;
    cfg.kernels[2] = [1, 3, 3];
    let net = UNet::init(&cfg, 42).unwrap();
    (net, ModelCard::untrained(cfg))
}

/// A safetensors file from the network's tensors after `edit` changed the list, with `meta`.
fn craft(
    net: &UNet,
    meta: Option<HashMap<String, String>>,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let mut list: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = net
        .to_torch()
        .into_iter()
        .map(|(s, v)| {
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (s.name, Dtype::F32, s.shape, b)
        })
        .collect();
    edit(&mut list);
    let views: Vec<(String, TensorView<'_>)> = list
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

fn card_meta(card: &ModelCard) -> Option<HashMap<String, String>> {
    Some(HashMap::from([(
        CARD_KEY.to_string(),
        serde_json::to_string(card).unwrap(),
    )]))
}

fn load(bytes: &[u8]) -> Result<(UNet, ModelCard), ModelError> {
    file::from_bytes(bytes, Path::new("m.safetensors"))
}

#[test]
fn round_trip_keeps_every_value_and_the_card() {
    let (net, mut card) = small();
    card.training.status = "trained".into();
    card.training.steps = 1234;
    card.training.metrics.insert("val_dice_liver".into(), 0.95);
    let dir = TempDir::new("model_round_trip");
    let path = dir.join("m.safetensors");
    file::save(&path, &net, &card).unwrap();
    let (back, back_card) = file::load(&path).unwrap();
    assert_eq!(back, net);
    assert_eq!(back_card, card);
}

#[test]
fn card_must_match_the_network() {
    let (net, _) = small();
    let other = ModelCard::untrained(UNetConfig::standard(1, 5, &[4, 8]));
    assert!(matches!(
        file::to_bytes(&net, &other),
        Err(ModelError::Input(_))
    ));
}

#[test]
fn python_safetensors_reads_our_file() {
    let Some(py) = python_with(
        "python_safetensors_reads_our_file",
        &["safetensors", "numpy"],
    ) else {
        return;
    };
    let (net, card) = small();
    let dir = TempDir::new("model_python");
    let path = dir.join("m.safetensors");
    file::save(&path, &net, &card).unwrap();
    let script = r#"
import json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], "np") as f:
    card = json.loads(f.metadata()["flare.model_card"])
w = t["encoder.1.conv1.weight"]
print(len(t), card["architecture"]["widths"], list(w.shape), repr(float(w[3, 2, 1, 0, 2])),
      list(t["decoder.0.up.weight"].shape), repr(float(t["decoder.0.up.weight"][5, 1, 0, 1, 1])))
"#;
    let out = run_python(&py, script, &[path.to_str().unwrap()]);
    let specs = net.config().param_specs().unwrap();
    let torch = net.to_torch();
    let val = |name: &str, idx: usize| {
        let (_, v) = torch.iter().find(|(s, _)| s.name == name).unwrap();
        v[idx] as f64
    };
    // Row-major PyTorch indices: [3, 2, 1, 0, 2] of [8, 4, 3, 3, 3]; [5, 1, 0, 1, 1] of
    // [8, 4, 2, 2, 2] (ConvTranspose3d is [ci, co, kd, kh, kw]).
    let w = val(
        "encoder.1.conv1.weight",
        (((3 * 4 + 2) * 3 + 1) * 3) * 3 + 2,
    );
    let u = val("decoder.0.up.weight", (((5 * 4 + 1) * 2) * 2 + 1) * 2 + 1);
    let want = format!(
        "{} [4, 8, 16] [8, 4, 3, 3, 3] {w:?} [8, 4, 2, 2, 2] {u:?}",
        specs.len()
    );
    assert_eq!(out.trim(), want);
}

#[test]
fn missing_tensor_is_named() {
    let (net, card) = small();
    let b = craft(&net, card_meta(&card), |l| {
        l.retain(|t| t.0 != "decoder.1.norm2.bias")
    });
    let e = load(&b).unwrap_err();
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "decoder.1.norm2.bias"),
        "{e}"
    );
    assert!(e.to_string().contains("decoder.1.norm2.bias"));
}

#[test]
fn unexpected_tensor_is_named() {
    let (net, card) = small();
    let b = craft(&net, card_meta(&card), |l| {
        l.push((
            "encoder.9.conv1.weight".into(),
            Dtype::F32,
            vec![2],
            vec![0; 8],
        ))
    });
    let e = load(&b).unwrap_err();
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { name, .. } if name == "encoder.9.conv1.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let (net, card) = small();
    let b = craft(&net, card_meta(&card), |l| {
        let t = l
            .iter_mut()
            .find(|t| t.0 == "encoder.0.conv2.weight")
            .unwrap();
        // Same element count, transposed kernel: only the shape check can catch it.
        t.2 = vec![4, 4, 3, 9, 1];
    });
    let e = load(&b).unwrap_err();
    match &e {
        ModelError::WrongShape {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "encoder.0.conv2.weight");
            assert_eq!(expected, &vec![4, 4, 3, 3, 3]);
            assert_eq!(found, &vec![4, 4, 3, 9, 1]);
        }
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("[4, 4, 3, 9, 1]"));
}

#[test]
fn wrong_dtype_is_named() {
    let (net, card) = small();
    let b = craft(&net, card_meta(&card), |l| {
        let t = l.iter_mut().find(|t| t.0 == "head.bias").unwrap();
        t.1 = Dtype::F64;
        t.3 = t.3.repeat(2);
    });
    let e = load(&b).unwrap_err();
    assert!(
        matches!(&e, ModelError::WrongDtype { name, found, .. } if name == "head.bias" && found == "F64"),
        "{e}"
    );
}

#[test]
fn non_finite_values_are_named() {
    let (net, card) = small();
    let b = craft(&net, card_meta(&card), |l| {
        let t = l.iter_mut().find(|t| t.0 == "ds.1.weight").unwrap();
        t.3[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let e = load(&b).unwrap_err();
    assert!(
        matches!(&e, ModelError::NonFinite { name, count: 1, .. } if name == "ds.1.weight"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_files_are_reported() {
    let (net, card) = small();
    let good = file::to_bytes(&net, &card).unwrap();
    for cut in [0, 5, 8, 100, good.len() - 1] {
        let e = load(&good[..cut]).unwrap_err();
        assert!(matches!(e, ModelError::Corrupt { .. }), "cut at {cut}: {e}");
    }
    let mut bad = good.clone();
    bad[10] = b'!';
    assert!(matches!(
        load(&bad).unwrap_err(),
        ModelError::Corrupt { .. }
    ));
    let dir = TempDir::new("model_missing_file");
    let e = file::load(&dir.join("nope.safetensors")).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e}");
    assert!(e.to_string().contains("nope.safetensors"));
}

#[test]
fn card_problems_are_reported() {
    let (net, card) = small();
    let e = load(&craft(&net, None, |_| {})).unwrap_err();
    assert!(matches!(e, ModelError::MissingCard { .. }), "{e}");

    let meta = Some(HashMap::from([(
        CARD_KEY.to_string(),
        "{\"format_version\": 1,".to_string(),
    )]));
    let e = load(&craft(&net, meta, |_| {})).unwrap_err();
    assert!(matches!(e, ModelError::BadCard { .. }), "{e}");

    let mut v = serde_json::to_value(&card).unwrap();
    v["format_version"] = 7.into();
    let meta = Some(HashMap::from([(CARD_KEY.to_string(), v.to_string())]));
    let e = load(&craft(&net, meta, |_| {})).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::UnsupportedVersion {
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );

    // A card field of the wrong type names the field.
    let mut v = serde_json::to_value(&card).unwrap();
    v["architecture"]["widths"] = "wide".into();
    let meta = Some(HashMap::from([(CARD_KEY.to_string(), v.to_string())]));
    let e = load(&craft(&net, meta, |_| {})).unwrap_err();
    assert!(matches!(e, ModelError::BadCard { .. }), "{e}");
    assert!(
        e.to_string().contains("widths") || e.to_string().contains("sequence"),
        "{e}"
    );

    // A parseable but inconsistent architecture.
    let mut v = serde_json::to_value(&card).unwrap();
    v["architecture"]["kernels"] = serde_json::json!([[3, 3, 3]]);
    let meta = Some(HashMap::from([(CARD_KEY.to_string(), v.to_string())]));
    let e = load(&craft(&net, meta, |_| {})).unwrap_err();
    assert!(matches!(e, ModelError::BadCard { .. }), "{e}");
    assert!(e.to_string().contains("kernels"), "{e}");
}

/// Issue 12: an architecture read from a card is checked against the file's length before a
/// network is allocated (a card declaring a width of 10^6 in a small file had its network
/// allocated first).
#[test]
fn an_architecture_larger_than_the_file_is_refused_before_allocating() {
    let (net, card) = small();
    let mut v = serde_json::to_value(&card).unwrap();
    v["architecture"]["widths"] = serde_json::json!([1_000_000, 8, 16]);
    let meta = Some(HashMap::from([(CARD_KEY.to_string(), v.to_string())]));
    let bytes = craft(&net, meta, |_| {});
    let e = load(&bytes).unwrap_err();
    let len = bytes.len() as u64;
    assert!(
        matches!(e, ModelError::ArchitectureExceedsFile { len: l, .. } if l == len),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("m.safetensors: the model card's architecture has ")
            && e.to_string()
                .ends_with(&format!("but the file has only {len} bytes")),
        "{e}"
    );
    // Counts that overflow are an invalid architecture, not a panic.
    v["architecture"]["widths"] = serde_json::json!([u64::MAX / 2 + 1, 8, 16]);
    let meta = Some(HashMap::from([(CARD_KEY.to_string(), v.to_string())]));
    let e = load(&craft(&net, meta, |_| {})).unwrap_err();
    assert!(
        e.to_string()
            .contains("more parameters than any file can hold"),
        "{e}"
    );
}
