//! Writes a FLARE-layout dataset of synthetic phantoms: `<case>_0000.nii.gz` (CT, int16 HU) and
//! `<case>.nii.gz` (labels) for `phantom_000`, `phantom_001`, ...
//!
//! ```sh
//! cargo run --release -p flare-testkit --example phantoms -- OUT_DIR [N] [FIRST_SEED]
//! ```
//!
//! Case `n` uses seed `FIRST_SEED + n`; its grid varies with the seed (in-plane spacing
//! 1.5-3 mm, slices 3-5 mm, 64-96 voxels in-plane and 40-48 slices) and every third case is
//! stored LPS instead of RAS, so a model trained on them has seen both layouts.

use std::path::PathBuf;

use flare_nifti::{DataType, write_label_map, write_volume};
use flare_testkit::phantom::{PhantomSpec, phantom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The grid of case `seed`: drawn from its own stream so that the anatomy's stream is untouched.
fn spec_for(seed: u64, lps: bool) -> PhantomSpec {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6772_6964);
    let nx = rng.random_range(64..=96usize);
    let ny = rng.random_range(64..=96usize);
    let nz = rng.random_range(40..=48usize);
    let sxy = rng.random_range(1.5..=3.0f64);
    let sz = rng.random_range(3.0..=5.0f64);
    let spec = PhantomSpec::new([nx, ny, nz], [sxy, sxy, sz], seed);
    if lps { spec.lps() } else { spec }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: phantoms OUT_DIR [N] [FIRST_SEED]")?,
    );
    let n: u64 = args.next().map_or(Ok(24), |s| s.parse())?;
    let first: u64 = args.next().map_or(Ok(0), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;
    for c in 0..n {
        let seed = first + c;
        let spec = spec_for(seed, c % 3 == 2);
        let (ct, labels) = phantom(&spec)?;
        let name = format!("phantom_{c:03}");
        write_volume(
            out.join(format!("{name}_0000.nii.gz")),
            &ct,
            Some(DataType::Int16),
        )?;
        write_label_map(out.join(format!("{name}.nii.gz")), &labels)?;
        println!(
            "{name}: seed {seed}, {:?} voxels of {:.2} x {:.2} x {:.2} mm, {}",
            spec.shape,
            spec.spacing_mm[0],
            spec.spacing_mm[1],
            spec.spacing_mm[2],
            labels.geometry().orientation()
        );
    }
    Ok(())
}
