//! Shared helpers for the engine's integration tests: fixture loading, comparisons, random data.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// One fixture group (`tests/fixtures/engine_<name>.{json,bin}`) made by
/// `scripts/fixtures/engine_fixtures.py`.
pub struct Fixtures {
    pub cases: Vec<Value>,
    blob: Vec<u8>,
}

impl Fixtures {
    pub fn load(group: &str) -> Fixtures {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let json = std::fs::read_to_string(dir.join(format!("engine_{group}.json")))
            .unwrap_or_else(|e| panic!("fixture {group}: {e}"));
        let blob = std::fs::read(dir.join(format!("engine_{group}.bin"))).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        Fixtures {
            cases: v["cases"].as_array().unwrap().clone(),
            blob,
        }
    }

    /// The named array of a case, as f32, with its shape.
    pub fn array(&self, case: &Value, name: &str) -> (Vec<usize>, Vec<f32>) {
        let a = &case["arrays"][name];
        let off = a["offset"].as_u64().unwrap() as usize;
        let shape: Vec<usize> = a["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let n: usize = shape.iter().product();
        let data = match a["dtype"].as_str().unwrap() {
            "f32" => self.blob[off..off + 4 * n]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            "f64" => self.blob[off..off + 8 * n]
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            d => panic!("dtype {d}"),
        };
        (shape, data)
    }
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

pub fn arr3(v: &Value) -> [usize; 3] {
    let u = usizes(v);
    [u[0], u[1], u[2]]
}

pub use flare_testkit::rel_l2;

/// `max |a - b| / max |b|`: a per-element check scaled by the data's magnitude.
pub fn rel_max(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, &y| m.max((y as f64).abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    if scale == 0.0 { err } else { err / scale }
}

/// A small deterministic generator (SplitMix64) for test data in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

pub fn usizes_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
