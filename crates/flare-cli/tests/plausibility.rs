//! `flare segment`'s plausibility warnings end to end: hostile inputs (an air cube, noise, a
//! head-sized phantom, a chest-only field of view) each get a `flare: warning: CASE: ...` line
//! and a filled `warnings` column in the volumes CSV, an adult-sized phantom abdomen none; the
//! label maps are written all the same.

mod common;

use common::{flare, p, phantom_model, text};

use flare_nifti::DataType;
use flare_testkit::{
    TempDir,
    phantom::{PhantomSpec, phantom},
};
use flare_volume::{Geometry, Roi, Volume};

fn write(path: &std::path::Path, ct: &Volume<f32>) {
    flare_nifti::write_volume(path, ct, Some(DataType::Int16)).unwrap();
}

/// A deterministic uniform number in [0, 1) per index (SplitMix64).
fn unit(i: usize) -> f64 {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// One CSV line split on commas outside quotes.
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn hostile_inputs_are_flagged_in_the_output_and_the_csv() {
    let t = TempDir::new("plausibility");
    let input = t.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let grid = Geometry::axis_aligned([64, 64, 48], [5.0; 3], [0.0; 3]).unwrap();
    write(
        &input.join("air_0000.nii.gz"),
        &Volume::filled(grid, -1024.0),
    );
    let noise = (0..grid.n_voxels())
        .map(|i| (-1024.0 + 4095.0 * unit(i)).round() as f32)
        .collect();
    write(
        &input.join("noise_0000.nii.gz"),
        &Volume::new(grid, noise).unwrap(),
    );
    // An 18 cm ball of brain in a 6 mm bone shell.
    let head_grid = Geometry::axis_aligned([80, 80, 70], [3.0; 3], [0.0; 3]).unwrap();
    let mut head = Vec::with_capacity(head_grid.n_voxels());
    for k in 0..70 {
        for j in 0..80 {
            for i in 0..80 {
                let r = [i, j, k]
                    .iter()
                    .zip([120.0, 120.0, 105.0])
                    .map(|(&v, c)| (v as f64 * 3.0 - c).powi(2))
                    .sum::<f64>()
                    .sqrt();
                head.push(if r <= 84.0 {
                    35.0
                } else if r <= 90.0 {
                    700.0
                } else {
                    -1000.0
                });
            }
        }
    }
    write(
        &input.join("head_0000.nii.gz"),
        &Volume::new(head_grid, head).unwrap(),
    );
    // An adult-sized phantom abdomen (400 x 360 x 400 mm), and its top 25 slices alone: a
    // field of view above the kidneys.
    let (abdomen, _) = phantom(&PhantomSpec::new([100, 90, 100], [4.0; 3], 7)).unwrap();
    write(&input.join("abdomen_0000.nii.gz"), &abdomen);
    let chest = abdomen
        .crop(&Roi::new([0, 0, 75], [100, 90, 100]).unwrap())
        .unwrap();
    write(&input.join("chest_0000.nii.gz"), &chest);

    let out = t.join("out");
    let csv = t.join("volumes.csv");
    let o = flare(&[
        "segment",
        "-i",
        p(&input),
        "-o",
        p(&out),
        "--model",
        p(&phantom_model()),
        "--volumes",
        p(&csv),
    ]);
    let stderr = text(&o.stderr);
    // Warnings are not failures: every map is written, the exit code is 0.
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    for case in ["air", "noise", "head", "abdomen", "chest"] {
        assert!(out.join(format!("{case}.nii.gz")).is_file(), "{case}");
    }
    let warned = |case: &str, what: &str| {
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("flare: warning: {case}: ")) && l.contains(what))
    };
    assert!(warned("air", "the image is uniform"), "{stderr}");
    assert!(warned("noise", "looks like noise"), "{stderr}");
    assert!(warned("head", "narrower than an adult abdomen"), "{stderr}");
    // What the phantom model finds above the organs varies (specks, the top of the liver),
    // but never a plausible set of four organs.
    assert!(warned("chest", ""), "{stderr}");
    assert!(!stderr.contains("warning: abdomen:"), "{stderr}");

    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("case,liver_ml,kidney_ml,spleen_ml,pancreas_ml,warnings")
    );
    for line in lines {
        let f = fields(line);
        assert_eq!(f.len(), 6, "{line}");
        let printed: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("flare: warning: {}: ", f[0])))
            .collect();
        // The column holds exactly the lines printed for the case, joined by "; ".
        assert_eq!(f[5], printed.join("; "), "{line}");
        assert_eq!(f[5].is_empty(), f[0] == "abdomen", "{line}");
    }
}
