//! Scoring a folder of predictions against a folder of ground truths, as FLARE did.
//!
//! Every ground-truth `<case>.nii.gz` (or `.nii`) in the ground-truth folder is a case; its
//! prediction is the file of the same name in the prediction folder. A missing prediction is
//! scored as an empty one (0 for every organ present). A prediction on another grid than its
//! ground truth (shape or affine) is an error for that case: FLARE's code would compare
//! mismatched voxels without noticing. Spacing comes from the ground truth's `pixdim`, in array
//! axis order, as the official code takes it from `header.get_zooms()`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use flare_nifti::{NiftiError, NiftiHeader, RawVoxels, read_header, read_image, read_raw};
use rayon::prelude::*;

use crate::{
    CaseScore, LabelValue, MetricsError, Tolerances, labels::ClassMap, organ_voxel_counts,
    score_case,
};

/// Largest difference, entry by entry, between two affines still taken as the same grid (mm).
/// Affines written through single-precision header fields differ by about 1e-5 mm.
pub const GRID_TOLERANCE_MM: f64 = 1e-3;

/// What happened to one case.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseOutcome {
    /// Scored normally.
    Scored(CaseScore),
    /// No prediction file: scored as an empty prediction.
    MissingPrediction(CaseScore),
    /// Not scored: unreadable file, or prediction and ground truth on different grids.
    Failed(String),
}

/// One case of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The ground truth's file name (e.g. `train_000.nii.gz`), as FLARE's CSV names a case.
    pub name: String,
    /// The ground-truth file.
    pub gt_path: PathBuf,
    /// The prediction file looked for.
    pub pred_path: PathBuf,
    /// Its outcome.
    pub outcome: CaseOutcome,
    /// Warnings (values that are neither 0 nor an organ's, e.g. outside 0..=4), one line each.
    pub warnings: Vec<String>,
}

impl CaseResult {
    /// The scores, when the case was scored (normally or as a missing prediction).
    pub fn score(&self) -> Option<&CaseScore> {
        match &self.outcome {
            CaseOutcome::Scored(s) | CaseOutcome::MissingPrediction(s) => Some(s),
            CaseOutcome::Failed(_) => None,
        }
    }
}

/// The ground-truth cases of a folder: `(file name, case name, path)` sorted by file name.
pub fn ground_truth_cases(gt_dir: &Path) -> Result<Vec<(String, PathBuf)>, MetricsError> {
    let io = |source| MetricsError::Io {
        path: gt_dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(gt_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if case_stem(&name).is_some() && entry.path().is_file() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(MetricsError::NoCases {
            dir: gt_dir.to_path_buf(),
        });
    }
    Ok(out)
}

/// The case name of a NIfTI file name (`train_000.nii.gz` -> `train_000`), or `None`
/// (`flare_nifti::naming`'s rule).
pub fn case_stem(file_name: &str) -> Option<&str> {
    flare_nifti::naming::nifti_stem(std::ffi::OsStr::new(file_name)).and_then(|s| s.to_str())
}

/// The prediction for ground-truth file `gt_name`: same name, or the other of `.nii`/`.nii.gz`.
fn prediction_path(pred_dir: &Path, gt_name: &str) -> PathBuf {
    let same = pred_dir.join(gt_name);
    if same.is_file() {
        return same;
    }
    if let Some(stem) = case_stem(gt_name) {
        for ext in [".nii.gz", ".nii"] {
            let p = pred_dir.join(format!("{stem}{ext}"));
            if p.is_file() {
                return p;
            }
        }
    }
    same
}

/// Checks that some prediction matches a ground-truth name, explaining the naming otherwise.
pub fn check_names_match(pred_dir: &Path, cases: &[(String, PathBuf)]) -> Result<(), MetricsError> {
    if !pred_dir.is_dir() {
        return Err(MetricsError::Io {
            path: pred_dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    if cases
        .iter()
        .any(|(name, _)| prediction_path(pred_dir, name).is_file())
    {
        return Ok(());
    }
    let mut found: Vec<String> = std::fs::read_dir(pred_dir)
        .map_err(|source| MetricsError::Io {
            path: pred_dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    Err(MetricsError::NoMatchingPredictions {
        pred_dir: pred_dir.to_path_buf(),
        expected: cases.iter().take(3).map(|(n, _)| n.clone()).collect(),
        found: found.into_iter().take(3).collect(),
    })
}

/// Scores every ground-truth case of `gt_dir` against `pred_dir`, calling `progress` after each.
///
/// Folder-level problems (unreadable folder, no ground truth, no prediction matching any name)
/// are errors; a case's problems are in its [`CaseOutcome`].
pub fn evaluate_folders(
    pred_dir: &Path,
    gt_dir: &Path,
    tolerances: &Tolerances,
    mut progress: impl FnMut(&CaseResult),
) -> Result<Vec<CaseResult>, MetricsError> {
    let cases = ground_truth_cases(gt_dir)?;
    check_names_match(pred_dir, &cases)?;
    let mut out = Vec::with_capacity(cases.len());
    for (name, gt_path) in cases {
        let pred_path = prediction_path(pred_dir, &name);
        let r = evaluate_case(&name, &gt_path, &pred_path, tolerances);
        progress(&r);
        out.push(r);
    }
    Ok(out)
}

/// Scores one case (see [`evaluate_folders`]).
pub fn evaluate_case(
    name: &str,
    gt_path: &Path,
    pred_path: &Path,
    tolerances: &Tolerances,
) -> CaseResult {
    let mut warnings = Vec::new();
    let outcome = match score_files(gt_path, pred_path, tolerances, &mut warnings) {
        Ok(o) => o,
        Err(msg) => CaseOutcome::Failed(msg),
    };
    CaseResult {
        name: name.to_string(),
        gt_path: gt_path.to_path_buf(),
        pred_path: pred_path.to_path_buf(),
        outcome,
        warnings,
    }
}

fn score_files(
    gt_path: &Path,
    pred_path: &Path,
    tolerances: &Tolerances,
    warnings: &mut Vec<String>,
) -> Result<CaseOutcome, String> {
    let what = |e: NiftiError| e.to_string();
    let map = ClassMap::new(tolerances.labels());
    if !pred_path.exists() {
        let gt = read_classes(gt_path, &map).map_err(what)?;
        warn_other(&gt, "ground truth", gt_path, &map, warnings);
        let counts = organ_voxel_counts(&gt.classes, tolerances.labels());
        return Ok(CaseOutcome::MissingPrediction(
            CaseScore::missing_prediction(&counts),
        ));
    }
    // Grids first, from the headers alone, so a mismatch costs no voxel decoding.
    let gt_header = read_header(gt_path).map_err(what)?;
    let pred_header = read_header(pred_path).map_err(what)?;
    check_same_grid(gt_path, &gt_header, pred_path, &pred_header)?;
    let (gt, pred) = rayon::join(
        || read_classes(gt_path, &map),
        || read_classes(pred_path, &map),
    );
    let (gt, pred) = (gt.map_err(what)?, pred.map_err(what)?);
    warn_other(&gt, "ground truth", gt_path, &map, warnings);
    warn_other(&pred, "prediction", pred_path, &map, warnings);
    let spacing = spacing_of(&gt_header).map_err(|e| format!("{}: {e}", gt_path.display()))?;
    let shape = gt_header.shape();
    score_case(&gt.classes, &pred.classes, shape, spacing, tolerances)
        .map(CaseOutcome::Scored)
        .map_err(|e| format!("{}: {e}", gt_path.display()))
}

/// The voxel spacing FLARE used: the ground truth's `pixdim[1..=3]` (array axis order). A
/// negative pixdim acts as its absolute value in every formula, so it is taken as such.
fn spacing_of(header: &NiftiHeader) -> Result<[f64; 3], MetricsError> {
    let s = header.spatial_pixdim().map(f64::abs);
    if s.iter().all(|v| v.is_finite() && *v > 0.0) {
        Ok(s)
    } else {
        Err(MetricsError::BadSpacing {
            what: "ground truth pixdim".into(),
            spacing_mm: header.spatial_pixdim(),
        })
    }
}

/// A grid as people read it: shape, spacing and affine.
struct GridText<'a>(&'a NiftiHeader);

impl fmt::Display for GridText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.0;
        writeln!(
            f,
            "    shape {:?}, pixdim {:?} mm, affine from {}:",
            h.shape(),
            h.spatial_pixdim(),
            h.transform_source().name()
        )?;
        match h.best_affine() {
            Some(a) => {
                for line in a.to_string().lines() {
                    writeln!(f, "      {line}")?;
                }
                Ok(())
            }
            None => writeln!(f, "      (invalid)"),
        }
    }
}

fn check_same_grid(
    gt_path: &Path,
    gt: &NiftiHeader,
    pred_path: &Path,
    pred: &NiftiHeader,
) -> Result<(), String> {
    let (ga, pa) = (gt.best_affine(), pred.best_affine());
    let affine_diff = match (ga, pa) {
        (Some(a), Some(b)) => a.max_abs_diff(&b),
        _ => f64::INFINITY,
    };
    if gt.shape() == pred.shape() && affine_diff <= GRID_TOLERANCE_MM {
        return Ok(());
    }
    let why = if gt.shape() != pred.shape() {
        "shapes differ".to_string()
    } else {
        format!("affines differ by up to {affine_diff:.3e} mm")
    };
    Err(format!(
        "prediction and ground truth are on different grids ({why}); resample the prediction \
         onto the ground truth's grid\n  ground truth {}:\n{}  prediction {}:\n{}",
        gt_path.display(),
        GridText(gt),
        pred_path.display(),
        GridText(pred)
    )
    .trim_end()
    .to_string())
}

/// A label file's values as bytes that score the same (background and organ values kept, one
/// "other" byte for anything else: [`crate::OTHER`] for FLARE21) and what the other values were.
struct Classes {
    classes: Vec<u8>,
    other_voxels: usize,
    other_examples: Vec<f64>,
}

/// Reads a label map as classes, keeping the stored values' meaning: values equal to an organ's
/// (after any scaling, as nibabel's `get_fdata`; 1..4 for FLARE21) are organs, anything else
/// is "other".
fn read_classes(path: &Path, map: &ClassMap) -> Result<Classes, NiftiError> {
    fn of_values<T: LabelValue + Into<f64>>(v: &[T], map: &ClassMap) -> Classes {
        let other = map.other_value();
        let classes: Vec<u8> = v.par_iter().map(|&x| map.canonical(x)).collect();
        let other_voxels = classes.par_iter().filter(|&&c| c == other).count();
        let mut other_examples: Vec<f64> = Vec::new();
        if other_voxels > 0 {
            for (x, _) in v.iter().zip(&classes).filter(|&(_, &c)| c == other) {
                let x: f64 = (*x).into();
                if !other_examples.iter().any(|e| e.to_bits() == x.to_bits()) {
                    other_examples.push(x);
                    if other_examples.len() == 5 {
                        break;
                    }
                }
            }
        }
        Classes {
            classes,
            other_voxels,
            other_examples,
        }
    }
    let header = read_header(path)?;
    if header.scaling().is_some() {
        // Scaled label maps are rare; read them as nibabel would, through the scaling.
        return Ok(of_values(read_image(path)?.volume.data(), map));
    }
    Ok(match read_raw(path)?.voxels {
        RawVoxels::UInt8(v) => of_values(&v, map),
        RawVoxels::Int8(v) => of_values(&v, map),
        RawVoxels::Int16(v) => of_values(&v, map),
        RawVoxels::UInt16(v) => of_values(&v, map),
        RawVoxels::Int32(v) => of_values(&v, map),
        RawVoxels::UInt32(v) => of_values(&v, map),
        RawVoxels::Float32(v) => of_values(&v, map),
        RawVoxels::Float64(v) => of_values(&v, map),
        other => {
            // A datatype added to flare-nifti later: go through its float reader.
            let _ = other;
            of_values(read_image(path)?.volume.data(), map)
        }
    })
}

fn warn_other(c: &Classes, which: &str, path: &Path, map: &ClassMap, warnings: &mut Vec<String>) {
    if c.other_voxels == 0 {
        return;
    }
    let examples: Vec<String> = c.other_examples.iter().map(|v| format!("{v}")).collect();
    warnings.push(format!(
        "{}: {which} has {} voxel(s) with labels outside {} (e.g. {}); they count as background",
        path.display(),
        c.other_voxels,
        map.describe(),
        examples.join(", ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_follow_flare_naming() {
        assert_eq!(case_stem("train_000.nii.gz"), Some("train_000"));
        assert_eq!(case_stem("validation_001.nii"), Some("validation_001"));
        assert_eq!(case_stem(".nii.gz"), None);
        assert_eq!(case_stem(".hidden.nii.gz"), None);
        assert_eq!(case_stem("notes.txt"), None);
        assert_eq!(case_stem("scores.csv"), None);
    }
}
