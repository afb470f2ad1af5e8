//! flare-metrics against the independent oracle: fixtures written by
//! `scripts/fixtures/metrics_oracle.py` with the PyPI `surface-distance` package and SciPy.

use flare_metrics::{
    NUM_ORGANS, Tolerances, neighbour_codes, score_case, surface_area_table, surface_overlap,
};
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_oracle.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn shape(v: &Value) -> [usize; 3] {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    [s[0], s[1], s[2]]
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn spacing(v: &Value) -> [f64; 3] {
    let s = floats(v);
    [s[0], s[1], s[2]]
}

/// Decodes the fixture's run-length encoding ([value, count, value, count, ...]).
fn unrle(v: &Value) -> Vec<i64> {
    let runs = v.as_array().unwrap();
    let mut out = Vec::new();
    for pair in runs.chunks(2) {
        let (value, n) = (pair[0].as_i64().unwrap(), pair[1].as_u64().unwrap());
        out.extend(std::iter::repeat_n(value, n as usize));
    }
    out
}

#[test]
fn every_case_matches_the_oracle_to_1e_9() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let shape = shape(&case["shape"]);
        let spacing = spacing(&case["spacing"]);
        let tol: [f64; NUM_ORGANS] = floats(&case["tolerances"]).try_into().unwrap();
        let tolerances = Tolerances::per_organ(tol).unwrap();
        // Stored as i16 like a NIfTI label map may be, so negative and >255 values are possible.
        let gt: Vec<i16> = unrle(&case["gt"]).into_iter().map(|v| v as i16).collect();
        let pred: Vec<i16> = unrle(&case["pred"]).into_iter().map(|v| v as i16).collect();
        let got = score_case(&gt, &pred, shape, spacing, &tolerances).unwrap();
        // The same maps as bytes (the fast path of byte label maps): values outside 0..=255
        // become 255, still outside 0..4.
        let byte = |v: &Vec<i16>| -> Vec<u8> {
            v.iter().map(|&x| u8::try_from(x).unwrap_or(255)).collect()
        };
        let got_u8 = score_case(&byte(&gt), &byte(&pred), shape, spacing, &tolerances).unwrap();
        assert_eq!(
            got_u8.organs, got.organs,
            "{name}: byte labels score differently"
        );
        assert_eq!(got_u8.counts, got.counts, "{name}");
        for (o, want) in case["organs"].as_array().unwrap().iter().enumerate() {
            let (dsc, nsd) = (want["dsc"].as_f64().unwrap(), want["nsd"].as_f64().unwrap());
            let g = got.organs[o];
            assert!(
                (g.dsc - dsc).abs() <= TOL,
                "{name} organ {}: DSC {} vs oracle {dsc}",
                o + 1,
                g.dsc
            );
            assert!(
                (g.nsd - nsd).abs() <= TOL,
                "{name} organ {}: NSD {} vs oracle {nsd}",
                o + 1,
                g.nsd
            );
            if let Some(area) = want.get("area_gt").and_then(Value::as_f64) {
                let s = got.surfaces[o];
                assert!(
                    (s.area_gt - area).abs() <= 1e-9 * area.max(1.0),
                    "{name} {o}: area {}",
                    s.area_gt
                );
                let ap = want["area_pred"].as_f64().unwrap();
                assert!(
                    (s.area_pred - ap).abs() <= 1e-9 * ap.max(1.0),
                    "{name} {o}: area {}",
                    s.area_pred
                );
            }
        }
    }
}

#[test]
fn bool_mask_entry_point_matches_the_oracle() {
    let fx = fixture();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (shape, spacing) = (shape(&case["shape"]), spacing(&case["spacing"]));
        let tol = floats(&case["tolerances"]);
        let gt = unrle(&case["gt"]);
        let pred = unrle(&case["pred"]);
        for (o, want) in case["organs"].as_array().unwrap().iter().enumerate() {
            let Some(area_gt) = want.get("area_gt").and_then(Value::as_f64) else {
                continue;
            };
            let label = (o + 1) as i64;
            let g: Vec<bool> = gt.iter().map(|&v| v == label).collect();
            let p: Vec<bool> = pred.iter().map(|&v| v == label).collect();
            let s = surface_overlap(&g, &p, shape, spacing, tol[o]).unwrap();
            assert!(
                (s.area_gt - area_gt).abs() <= 1e-9 * area_gt,
                "{name} {label}"
            );
            let nsd = want["nsd"].as_f64().unwrap();
            assert!(
                (s.surface_dice() - nsd).abs() <= TOL,
                "{name} {label}: {} vs {nsd}",
                s.surface_dice()
            );
        }
    }
}

#[test]
fn required_situations_are_covered() {
    // The list: both empty, gt empty, pred empty, border organs, one-voxel organs,
    // anisotropic 0.7 x 0.9 x 5 mm spacing. Guard against the fixture losing any of them.
    let fx = fixture();
    let names: Vec<&str> = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for needed in [
        "empty_organs",
        "border_organs",
        "single_voxels",
        "aniso_blobs",
        "all_empty",
        "tolerance_ties",
    ] {
        assert!(names.contains(&needed), "fixture lacks {needed}");
    }
    let aniso = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "aniso_blobs")
        .unwrap();
    assert_eq!(spacing(&aniso["spacing"]), [0.7, 0.9, 5.0]);
}

#[test]
fn area_tables_match_the_package() {
    let fx = fixture();
    for t in fx["area_tables"].as_array().unwrap() {
        let s = spacing(&t["spacing"]);
        let want = floats(&t["areas"]);
        let got = surface_area_table(s);
        for code in 0..256 {
            assert!(
                (got[code] - want[code]).abs() <= 1e-12,
                "spacing {s:?} code {code}: {} vs {}",
                got[code],
                want[code]
            );
        }
    }
}

#[test]
fn neighbour_codes_match_scipy_correlate() {
    let fx = fixture();
    for c in fx["codes"].as_array().unwrap() {
        let shape = shape(&c["shape"]);
        let mask: Vec<bool> = unrle(&c["mask"]).into_iter().map(|v| v != 0).collect();
        let want: Vec<u8> = c["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(
            neighbour_codes(&mask, shape).unwrap(),
            want,
            "shape {shape:?}"
        );
    }
}

#[test]
fn degenerate_inputs_are_answered_not_panicked() {
    // Empty grids and both-empty masks: the package's NaN surface Dice, FLARE's 1 per organ.
    let s = surface_overlap(&[], &[], [0, 4, 4], [1.0; 3], 1.0).unwrap();
    assert!(s.surface_dice().is_nan());
    let s = surface_overlap(&[false; 8], &[false; 8], [2, 2, 2], [1.0; 3], 1.0).unwrap();
    assert!(s.surface_dice().is_nan());
    let c = score_case::<u8, u8>(&[], &[], [0, 3, 3], [1.0; 3], &Tolerances::default()).unwrap();
    assert!(c.organs.iter().all(|o| o.dsc == 1.0 && o.nsd == 1.0));
    // Mismatched lengths and bad spacings are errors naming the problem.
    let e = score_case(
        &[0u8; 8],
        &[0u8; 7],
        [2, 2, 2],
        [1.0; 3],
        &Tolerances::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs 8 voxels"), "{e}");
    let e = score_case(
        &[0u8; 8],
        &[0u8; 8],
        [2, 2, 2],
        [1.0, 0.0, 1.0],
        &Tolerances::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("spacing"), "{e}");
    assert!(neighbour_codes(&[true; 5], [2, 2, 2]).is_err());
    assert!(surface_overlap(&[true; 8], &[true; 8], [2, 2, 2], [1.0; 3], -1.0).is_err());
}
