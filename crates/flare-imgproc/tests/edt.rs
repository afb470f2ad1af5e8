//! The exact distance transform against SciPy: committed fixtures and, where Python is
//! available, larger random masks computed live. Equality is to the bit.

use flare_imgproc::distance_to_nearest;
use flare_testkit::{TempDir, python_with, run_python};

struct Case {
    name: String,
    shape: [usize; 3],
    spacing: [f64; 3],
    mask: Vec<bool>,
    dist: Vec<f64>,
}

fn parse_fixtures(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    while let Some(head) = lines.next() {
        let name = head.strip_prefix("case ").expect("case line").to_string();
        let mut field = |key: &str| -> Vec<String> {
            let line = lines.next().expect("field line");
            let rest = line.strip_prefix(key).expect(key);
            rest.split_whitespace().map(str::to_string).collect()
        };
        let shape: Vec<usize> = field("shape").iter().map(|v| v.parse().unwrap()).collect();
        let spacing: Vec<f64> = field("spacing")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        let idx: Vec<usize> = field("mask").iter().map(|v| v.parse().unwrap()).collect();
        let dist: Vec<f64> = field("dist").iter().map(|v| v.parse().unwrap()).collect();
        let shape = [shape[0], shape[1], shape[2]];
        let mut mask = vec![false; shape.iter().product()];
        for i in idx {
            mask[i] = true;
        }
        cases.push(Case {
            name,
            shape,
            spacing: [spacing[0], spacing[1], spacing[2]],
            mask,
            dist,
        });
    }
    cases
}

fn assert_bits_equal(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let bad: Vec<_> = (0..got.len())
        .filter(|&v| got[v].to_bits() != want[v].to_bits())
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: {} voxels differ, first {:?}: got {:?} want {:?}",
        bad.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    );
}

#[test]
fn equals_scipy_fixtures_bit_for_bit() {
    let text = include_str!("fixtures/edt.txt");
    let cases = parse_fixtures(text);
    assert!(cases.len() > 30, "fixture file lost its cases");
    for c in &cases {
        let got = distance_to_nearest(&c.mask, c.shape, c.spacing).expect(&c.name);
        assert_bits_equal(&c.name, &got, &c.dist);
    }
}

/// Larger random masks than the committed fixtures hold, with SciPy run live.
#[test]
fn equals_scipy_live_on_larger_masks() {
    let Some(py) = python_with("equals_scipy_live_on_larger_masks", &["numpy", "scipy"]) else {
        return;
    };
    let dir = TempDir::new("edt-live");
    let script = r#"
import sys, numpy as np
from scipy import ndimage
out = sys.argv[1]
rng = np.random.default_rng(7)
cases = [((40, 37, 23), (0.7, 0.9, 5.0), 0.002), ((33, 41, 19), (1.6, 1.6, 3.0), 0.01),
         ((48, 48, 12), (0.8, 0.8, 2.5), 0.0005), ((25, 30, 35), (1.0, 1.0, 1.0), 0.05)]
for n, (shape, sp, dens) in enumerate(cases):
    m = rng.random(shape) < dens
    # A blob with a hole, so surfaces and equidistant points appear as in real organs.
    g = np.indices(shape)
    r = np.sqrt(sum((g[a] - shape[a] / 2.0) ** 2 for a in range(3)))
    m |= (r > shape[2] / 4.0) & (r < shape[2] / 3.0)
    d = ndimage.distance_transform_edt(~m, sampling=sp)
    np.asarray(shape + sp, dtype=np.float64).tofile(f"{out}/case{n}.hdr")
    m.ravel(order="F").astype(np.uint8).tofile(f"{out}/case{n}.mask")
    d.ravel(order="F").astype("<f8").tofile(f"{out}/case{n}.dist")
print(len(cases))
"#;
    let n: usize = run_python(&py, script, &[dir.path().to_str().unwrap()])
        .trim()
        .parse()
        .unwrap();
    let f64s = |bytes: Vec<u8>| -> Vec<f64> {
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    for c in 0..n {
        let hdr = f64s(std::fs::read(dir.join(&format!("case{c}.hdr"))).unwrap());
        let shape = [hdr[0] as usize, hdr[1] as usize, hdr[2] as usize];
        let spacing = [hdr[3], hdr[4], hdr[5]];
        let mask: Vec<bool> = std::fs::read(dir.join(&format!("case{c}.mask")))
            .unwrap()
            .iter()
            .map(|&b| b != 0)
            .collect();
        let want = f64s(std::fs::read(dir.join(&format!("case{c}.dist"))).unwrap());
        let got = distance_to_nearest(&mask, shape, spacing).unwrap();
        assert_bits_equal(&format!("live case {c} {shape:?} {spacing:?}"), &got, &want);
    }
}
