//! Tiny synthetic phantoms written through flare-nifti, shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use flare_nifti::{DataType, write_label_map, write_volume};
use flare_volume::{Affine, Geometry, LabelMap, Volume};

/// A BTCV-like grid: axis 0 to the patient's left, 1 posterior, 2 superior (LPS voxel axes).
pub fn lps_grid(shape: [usize; 3]) -> Geometry {
    let a = Affine::from_rows([
        [-1.6, 0.0, 0.0, 20.0],
        [0.0, -1.6, 0.0, 15.0],
        [0.0, 0.0, 3.0, -40.0],
    ]);
    Geometry::from_affine(shape, &a).unwrap()
}

/// Organ centres (fractions of the shape) and radii (voxels): liver big, the rest small.
pub const ORGANS: [(u8, [f64; 3], [f64; 3], f32); 5] = [
    (1, [0.35, 0.45, 0.55], [5.0, 5.0, 4.0], 60.0),
    (2, [0.7, 0.6, 0.4], [2.0, 2.0, 2.0], 150.0),
    (2, [0.25, 0.6, 0.4], [2.0, 2.0, 2.0], 150.0),
    (3, [0.7, 0.35, 0.6], [2.5, 2.0, 2.0], 45.0),
    (4, [0.5, 0.3, 0.35], [3.0, 1.5, 1.5], 35.0),
];

/// A phantom: air (-1000 HU) outside an elliptic body (0 HU) holding ellipsoid organs, with
/// a deterministic texture. Intensities in HU; labels FLARE-numbered.
pub fn phantom(g: Geometry) -> (Volume<f32>, LabelMap) {
    let s = g.shape();
    let mut img = Volume::filled(g, -1000.0f32);
    let mut lab = Volume::filled(g, 0u8);
    for k in 0..s[2] {
        for j in 0..s[1] {
            for i in 0..s[0] {
                let idx = g.linear_index([i, j, k]);
                let f = [i, j, k].map(|v| v as f64);
                let body = ((f[0] - s[0] as f64 / 2.0) / (0.45 * s[0] as f64)).powi(2)
                    + ((f[1] - s[1] as f64 / 2.0) / (0.45 * s[1] as f64)).powi(2);
                if body > 1.0 {
                    continue;
                }
                img.data_mut()[idx] = ((i * 7 + j * 3 + k * 5) % 11) as f32 - 5.0;
                for (l, c, r, hu) in ORGANS {
                    let d: f64 = (0..3)
                        .map(|a| ((f[a] - c[a] * s[a] as f64) / r[a]).powi(2))
                        .sum();
                    if d <= 1.0 {
                        img.data_mut()[idx] = hu;
                        lab.data_mut()[idx] = l;
                    }
                }
            }
        }
    }
    (img, lab)
}

/// Writes a phantom case `<name>_0000.nii.gz` + `<name>.nii.gz` into `dir`.
pub fn write_case(dir: &Path, name: &str, shape: [usize; 3]) {
    let (img, lab) = phantom(lps_grid(shape));
    write_pair(dir, dir, name, &img, &lab);
}

/// Writes an image and label map under the FLARE names into `img_dir` and `lab_dir`.
pub fn write_pair(img_dir: &Path, lab_dir: &Path, name: &str, img: &Volume<f32>, lab: &LabelMap) {
    write_volume(
        img_dir.join(format!("{name}_0000.nii.gz")),
        img,
        Some(DataType::Int16),
    )
    .unwrap();
    write_label_map(lab_dir.join(format!("{name}.nii.gz")), lab).unwrap();
}
