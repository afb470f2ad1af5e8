//! What the benchmark examples share: their `--name value` arguments and their input data.

/// The value after `name` on the command line, parsed, or `default` (absent or unparsable).
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `len` values in `[-0.5, 0.5)` from a 32-bit linear congruential generator seeded with
/// `seed`: cheap, and the same on every machine, so benchmark inputs repeat exactly.
pub fn noise(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_in_range_and_repeats_per_seed() {
        let a = noise(1000, 7);
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
        assert_eq!(a, noise(1000, 7));
        assert_ne!(a, noise(1000, 8));
        // The generator's first step from seed 0 is its increment: 1013904223 >> 8, scaled.
        assert_eq!(
            noise(1, 0)[0],
            (1_013_904_223u32 >> 8) as f32 / 16_777_216.0 - 0.5
        );
    }
}
