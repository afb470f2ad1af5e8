//! Connected components, keep-largest and hole filling against SciPy: committed fixtures and,
//! where Python is available, a larger random volume labelled live.

use std::collections::HashMap;

use flare_imgproc::{Connectivity, fill_holes, keep_largest_components, label_components};
use flare_testkit::{TempDir, python_with, run_python};
use flare_volume::{Geometry, Volume};

fn connectivity(n: u32) -> Connectivity {
    match n {
        6 => Connectivity::Faces,
        26 => Connectivity::Full,
        other => panic!("connectivity {other}"),
    }
}

fn parse(text: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut cases: Vec<(String, HashMap<String, String>)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, rest) = line.split_once(' ').unwrap();
        if key == "case" {
            cases.push((rest.to_string(), HashMap::new()));
        } else {
            cases.last_mut().unwrap().1.insert(key.into(), rest.into());
        }
    }
    cases
}

fn nums<T: std::str::FromStr>(s: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    s.split_whitespace().map(|v| v.parse().unwrap()).collect()
}

#[test]
fn matches_scipy_fixtures() {
    let cases = parse(include_str!("fixtures/components.txt"));
    let mut kinds = HashMap::new();
    for (name, f) in &cases {
        let shape: Vec<usize> = nums(&f["shape"]);
        let shape = [shape[0], shape[1], shape[2]];
        let conn = connectivity(nums::<u32>(&f["connectivity"])[0]);
        let input: Vec<u8> = nums(&f["input"]);
        *kinds.entry(f["kind"].clone()).or_insert(0) += 1;
        match f["kind"].as_str() {
            "label" => {
                let mask: Vec<bool> = input.iter().map(|&v| v != 0).collect();
                let got = label_components(&mask, shape, conn).unwrap();
                let want: Vec<u32> = nums(&f["want"]);
                assert_eq!(got.labels, want, "{name}");
                let count = want.iter().copied().max().unwrap_or(0) as usize;
                assert_eq!(got.sizes.len(), count, "{name}");
                for (c, &size) in got.sizes.iter().enumerate() {
                    let n = want.iter().filter(|&&v| v as usize == c + 1).count();
                    assert_eq!(size, n, "{name}: size of component {}", c + 1);
                }
            }
            kind => {
                let g = Geometry::axis_aligned(shape, [1.0; 3], [0.0; 3]).unwrap();
                let mut labels = Volume::new(g, input).unwrap();
                let label: u8 = nums(&f["label"])[0];
                if kind == "keep" {
                    let n: usize = nums(&f["n"])[0];
                    keep_largest_components(&mut labels, label, n, conn);
                } else {
                    fill_holes(&mut labels, label, conn);
                }
                assert_eq!(labels.data(), &nums::<u8>(&f["want"])[..], "{name}");
            }
        }
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(cases.len() >= 30, "fixture file lost its cases");
}

#[test]
fn matches_scipy_label_live_near_percolation() {
    let Some(py) = python_with(
        "matches_scipy_label_live_near_percolation",
        &["numpy", "scipy"],
    ) else {
        return;
    };
    let dir = TempDir::new("components-live");
    // Densities near the percolation thresholds (about 0.31 for 6-, 0.10 for 26-connectivity)
    // give long, branching components: the hardest case for run merging.
    let script = r#"
import sys, numpy as np
from scipy import ndimage
d = sys.argv[1]
rng = np.random.default_rng(5)
shape = (70, 45, 33)
for conn, dens in [(6, 0.31), (26, 0.1)]:
    m = rng.random(shape) < dens
    s = ndimage.generate_binary_structure(3, 1 if conn == 6 else 3)
    lab, n = ndimage.label(m.transpose(2, 1, 0), s)
    m.ravel(order='F').astype(np.uint8).tofile(f'{d}/mask{conn}')
    lab.ravel().astype('<u4').tofile(f'{d}/want{conn}')
"#;
    run_python(&py, script, &[dir.path().to_str().unwrap()]);
    for conn in [6, 26] {
        let mask: Vec<bool> = std::fs::read(dir.join(&format!("mask{conn}")))
            .unwrap()
            .iter()
            .map(|&b| b != 0)
            .collect();
        let want: Vec<u32> = std::fs::read(dir.join(&format!("want{conn}")))
            .unwrap()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let got = label_components(&mask, [70, 45, 33], connectivity(conn)).unwrap();
        assert!(
            got.sizes.len() > 100,
            "{conn}: only {} components",
            got.sizes.len()
        );
        assert!(
            got.labels == want,
            "connectivity {conn}: labels differ from SciPy"
        );
    }
}

#[test]
fn wrong_length_is_refused() {
    let err = label_components(&[true; 5], [2, 3, 1], Connectivity::Faces).unwrap_err();
    assert!(err.to_string().contains("needs 6"), "{err}");
}
