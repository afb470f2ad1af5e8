//! Finding the image/label pairs of a training set, checking them, and splitting them.
//!
//! Layouts understood by [`Dataset::open`]:
//! - FLARE: one folder of `<case>_0000.nii.gz` images and `<case>.nii.gz` labels;
//! - two folders `images/` and `labels/` (or FLARE21's `TrainingImg/` and `TrainingMask/`)
//!   inside the given folder (or any two folders through
//!   [`Dataset::open_folders`]), images named `<case>_0000.nii.gz` or `<case>.nii.gz`;
//! - nnU-Net raw: `imagesTr/`, `labelsTr/` and optionally `dataset.json`, whose `training` file
//!   list (nnU-Net v1) is used when present and whose `labels` must all lie in 0..=4.
//!
//! [`Dataset::check`] reads every header first (names and grids are judged without decoding a
//! voxel), then decodes what passed to check label values and readability, and reports every
//! problem at once, one line per case.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use flare_nifti::{naming, read_header, read_image, read_label_map};
use flare_volume::{LabelMap, Volume};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Problem, ProblemKind, Result, TrainError, io_err};

/// Largest allowed difference between an image's and its label map's affines, entry by entry
/// (mm). NIfTI stores affines as `f32`, so copies of one grid written by different tools differ
/// by about 1e-5 of the origin's magnitude; real mismatches are a voxel or more.
pub const GRID_TOLERANCE_MM: f64 = 1e-2;

/// The highest organ label (pancreas): training trains FLARE21's label set
/// ([`flare_labels::flare21`]), whose organs its cache, sampler and loss are built around.
pub const MAX_LABEL: u8 = flare_labels::flare21::ORGAN_COUNT as u8;

/// Which on-disk layout a dataset was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// One folder of `<case>_0000.nii.gz` and `<case>.nii.gz`.
    Flare,
    /// Images and labels in two folders.
    TwoFolders,
    /// nnU-Net raw (`imagesTr/`, `labelsTr/`, `dataset.json`).
    NnUnet,
}

/// One training pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The case name (`btcv_0005`): the label file's name without extension.
    pub name: String,
    /// The CT image.
    pub image: PathBuf,
    /// The label map.
    pub label: PathBuf,
}

/// A training set: its pairs (sorted by name) and the files that found no partner.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: PathBuf,
    layout: Layout,
    cases: Vec<Case>,
    unpaired: Vec<Problem>,
}

/// How to hold cases out for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitSpec {
    /// `n_val` cases drawn by a shuffle seeded with `seed` (the same for any listing order).
    Random {
        /// Validation cases.
        n_val: usize,
        /// Shuffle seed.
        seed: u64,
    },
    /// These cases (by name) for validation, the rest for training.
    Named(Vec<String>),
}

/// Case names for training and for validation, each sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training cases.
    pub train: Vec<String>,
    /// Validation cases.
    pub val: Vec<String>,
}

impl Dataset {
    /// Finds the pairs in `dir`, detecting the layout (see the module docs). Fails when the
    /// folder holds no NIfTI file or not one pair; unpaired files are kept for [`Self::check`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(TrainError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            });
        }
        if dir.join("imagesTr").is_dir() || dir.join("dataset.json").is_file() {
            return Self::open_nnunet(dir);
        }
        // `images/` + `labels/`, or the FLARE21 release's `TrainingImg/` + `TrainingMask/`.
        for (i, l) in [("images", "labels"), ("TrainingImg", "TrainingMask")] {
            if dir.join(i).is_dir() && dir.join(l).is_dir() {
                let mut d = Self::open_folders(dir.join(i), dir.join(l))?;
                d.root = dir.to_path_buf();
                return Ok(d);
            }
        }
        let files = nifti_files(dir)?;
        let (mut images, mut labels) = (BTreeMap::new(), BTreeMap::new());
        for (stem, path) in files {
            match ct_case(&stem) {
                Some(case) => images.insert(case.to_string(), path),
                None => labels.insert(stem, path),
            };
        }
        Self::pair(dir, Layout::Flare, images, labels)
    }

    /// Pairs the images in `images` with the labels in `labels` by case name.
    pub fn open_folders(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
        let imgs = nifti_files(images)?
            .into_iter()
            .map(|(stem, p)| (ct_case(&stem).unwrap_or(&stem).to_string(), p))
            .collect();
        let labs = nifti_files(labels)?.into_iter().collect();
        Self::pair(images, Layout::TwoFolders, imgs, labs)
    }

    fn open_nnunet(dir: &Path) -> Result<Dataset> {
        let (img_dir, lab_dir) = (dir.join("imagesTr"), dir.join("labelsTr"));
        let json_path = dir.join("dataset.json");
        let json = if json_path.is_file() {
            let text = std::fs::read_to_string(&json_path).map_err(io_err(&json_path))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| TrainError::DatasetJson {
                    path: json_path.clone(),
                    message: e.to_string(),
                })?;
            check_json_labels(&json_path, &v)?;
            Some(v)
        } else {
            None
        };
        let listed = json
            .as_ref()
            .and_then(|v| v.get("training"))
            .and_then(|t| t.as_array())
            .filter(|a| !a.is_empty());
        let Some(listed) = listed else {
            let mut d = Self::open_folders(&img_dir, &lab_dir)?;
            d.root = dir.to_path_buf();
            d.layout = Layout::NnUnet;
            return Ok(d);
        };
        let ending = json
            .as_ref()
            .and_then(|v| v.get("file_ending"))
            .and_then(|e| e.as_str())
            .unwrap_or(".nii.gz")
            .to_string();
        let (mut cases, mut unpaired) = (Vec::new(), Vec::new());
        for entry in listed {
            let label = entry.get("label").and_then(|l| l.as_str()).ok_or_else(|| {
                TrainError::DatasetJson {
                    path: json_path.clone(),
                    message: format!("training entry without a \"label\" string: {entry}"),
                }
            })?;
            let file = Path::new(label)
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or(label);
            let name = strip_nifti(file).unwrap_or(file).to_string();
            let image = img_dir.join(format!("{name}_{}{ending}", naming::CT_CHANNEL));
            let label = lab_dir.join(format!("{name}{ending}"));
            let mut ok = true;
            for path in [&image, &label] {
                if !path.is_file() {
                    ok = false;
                    unpaired.push(Problem {
                        case: name.clone(),
                        kind: ProblemKind::Listed { path: path.clone() },
                    });
                }
            }
            if ok {
                cases.push(Case { name, image, label });
            }
        }
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        if cases.is_empty() {
            return Err(TrainError::NoPairs {
                dir: dir.to_path_buf(),
                n_files: 0,
                problems: unpaired,
            });
        }
        Ok(Dataset {
            root: dir.to_path_buf(),
            layout: Layout::NnUnet,
            cases,
            unpaired,
        })
    }

    fn pair(
        dir: &Path,
        layout: Layout,
        mut images: BTreeMap<String, PathBuf>,
        labels: BTreeMap<String, PathBuf>,
    ) -> Result<Dataset> {
        let n_files = images.len() + labels.len();
        if n_files == 0 {
            return Err(TrainError::EmptyDataset {
                dir: dir.to_path_buf(),
            });
        }
        let (mut cases, mut unpaired) = (Vec::new(), Vec::new());
        for (name, label) in labels {
            match images.remove(&name) {
                Some(image) => cases.push(Case { name, image, label }),
                None => unpaired.push(Problem {
                    case: name,
                    kind: ProblemKind::MissingImage { label },
                }),
            }
        }
        for (name, image) in images {
            unpaired.push(Problem {
                case: name,
                kind: ProblemKind::MissingLabel { image },
            });
        }
        unpaired.sort_by(|a, b| a.case.cmp(&b.case));
        if cases.is_empty() {
            return Err(TrainError::NoPairs {
                dir: dir.to_path_buf(),
                n_files,
                problems: unpaired,
            });
        }
        Ok(Dataset {
            root: dir.to_path_buf(),
            layout,
            cases,
            unpaired,
        })
    }

    /// The folder the dataset was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout found.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The pairs, sorted by name.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// Files that found no partner (each also reported by [`Self::check`]).
    pub fn unpaired(&self) -> &[Problem] {
        &self.unpaired
    }

    /// Keeps only the named cases (e.g. the training part of a [`Split`]); unknown names fail.
    pub fn subset(&self, names: &[String]) -> Result<Dataset> {
        let mut cases = Vec::with_capacity(names.len());
        for n in names {
            let c = self
                .cases
                .iter()
                .find(|c| &c.name == n)
                .ok_or_else(|| TrainError::Split(format!("no case named {n}")))?;
            cases.push(c.clone());
        }
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Dataset {
            cases,
            unpaired: Vec::new(),
            ..self.clone()
        })
    }

    /// Name and grid problems of every case, from headers alone (no voxel is decoded).
    pub fn check_headers(&self) -> Vec<Problem> {
        let mut problems = self.unpaired.clone();
        let per_case: Vec<Option<Problem>> = self.cases.par_iter().map(header_problem).collect();
        problems.extend(per_case.into_iter().flatten());
        problems
    }

    /// Checks every pair: names, grids (headers first), then readability and label values
    /// (0..=4). All problems are returned together, one per case and kind, sorted by case.
    pub fn check(&self) -> Result<()> {
        let mut problems = self.check_headers();
        let bad: std::collections::HashSet<String> =
            problems.iter().map(|p| p.case.clone()).collect();
        let decoded: Vec<Vec<Problem>> = self
            .cases
            .par_iter()
            .filter(|c| !bad.contains(&c.name))
            .map(|c| match load_pair(c) {
                Ok(_) => Vec::new(),
                Err(p) => p,
            })
            .collect();
        problems.extend(decoded.into_iter().flatten());
        if problems.is_empty() {
            Ok(())
        } else {
            problems.sort_by(|a, b| a.case.cmp(&b.case));
            Err(TrainError::InvalidDataset {
                dir: self.root.clone(),
                problems,
            })
        }
    }

    /// Splits the cases into training and validation, deterministically.
    pub fn split(&self, spec: &SplitSpec) -> Result<Split> {
        let names: Vec<String> = self.cases.iter().map(|c| c.name.clone()).collect();
        let mut val = match spec {
            SplitSpec::Random { n_val, seed } => {
                if *n_val >= names.len() {
                    return Err(TrainError::Split(format!(
                        "{n_val} validation cases leave none of {} for training",
                        names.len()
                    )));
                }
                let mut order = names.clone();
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                // Fisher-Yates with our own bounded draw, so the split never changes with the
                // `rand` version.
                for i in (1..order.len()).rev() {
                    let j = below(&mut rng, i + 1);
                    order.swap(i, j);
                }
                order.truncate(*n_val);
                order
            }
            SplitSpec::Named(v) => {
                for n in v {
                    if !names.contains(n) {
                        return Err(TrainError::Split(format!(
                            "validation case {n} is not in the dataset"
                        )));
                    }
                }
                if v.len() >= names.len() {
                    return Err(TrainError::Split(
                        "every case is held out for validation".into(),
                    ));
                }
                v.clone()
            }
        };
        val.sort();
        val.dedup();
        let train = names.into_iter().filter(|n| !val.contains(n)).collect();
        Ok(Split { train, val })
    }
}

/// A uniform integer in `0..n` (n > 0) from the top bits of one draw (Lemire's multiply).
pub(crate) fn below(rng: &mut impl RngCore, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// The grid problem of one case, if any, from its two headers.
fn header_problem(c: &Case) -> Option<Problem> {
    let problem = |kind| {
        Some(Problem {
            case: c.name.clone(),
            kind,
        })
    };
    let geom = |path: &Path| {
        read_header(path)
            .map_err(|e| e.to_string())
            .and_then(|h| h.geometry().map_err(|e| e.to_string()))
            .map_err(|message| ProblemKind::Unreadable {
                path: path.to_path_buf(),
                message,
            })
    };
    let (gi, gl) = match (geom(&c.image), geom(&c.label)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(k), _) | (_, Err(k)) => return problem(k),
    };
    if gi.same_grid(&gl, GRID_TOLERANCE_MM) {
        None
    } else {
        problem(ProblemKind::GridMismatch {
            image_shape: gi.shape(),
            label_shape: gl.shape(),
            affine_diff_mm: gi.affine().max_abs_diff(&gl.affine()),
        })
    }
}

/// Decodes a pair and checks it (grid, label values); every problem found is returned.
pub(crate) fn load_pair(c: &Case) -> std::result::Result<(Volume<f32>, LabelMap), Vec<Problem>> {
    let problem = |kind| Problem {
        case: c.name.clone(),
        kind,
    };
    let unreadable = |path: &Path, e: flare_nifti::NiftiError| {
        problem(ProblemKind::Unreadable {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    };
    let (img, lab) = rayon::join(|| read_image(&c.image), || read_label_map(&c.label));
    let mut problems = Vec::new();
    let img = img.map_err(|e| problems.push(unreadable(&c.image, e))).ok();
    let lab = lab.map_err(|e| problems.push(unreadable(&c.label, e))).ok();
    let (Some(img), Some(lab)) = (img, lab) else {
        return Err(problems);
    };
    let (gi, gl) = (img.volume.geometry(), lab.volume.geometry());
    if !gi.same_grid(gl, GRID_TOLERANCE_MM) {
        problems.push(problem(ProblemKind::GridMismatch {
            image_shape: gi.shape(),
            label_shape: gl.shape(),
            affine_diff_mm: gi.affine().max_abs_diff(&gl.affine()),
        }));
    }
    let mut seen = [false; 256];
    for &v in lab.volume.data() {
        seen[v as usize] = true;
    }
    let values: Vec<u8> = (MAX_LABEL as usize + 1..256)
        .filter(|&v| seen[v])
        .map(|v| v as u8)
        .collect();
    if !values.is_empty() {
        problems.push(problem(ProblemKind::BadLabels {
            label: c.label.clone(),
            values,
        }));
    }
    if problems.is_empty() {
        Ok((img.volume, lab.volume))
    } else {
        Err(problems)
    }
}

/// The name without `.nii.gz` / `.nii`, or `None` for other files (`flare_nifti::naming`).
fn strip_nifti(file: &str) -> Option<&str> {
    naming::nifti_stem(std::ffi::OsStr::new(file)).and_then(|s| s.to_str())
}

/// The case of a CT image stem `<case>_0000`, `None` for other stems (label maps).
fn ct_case(stem: &str) -> Option<&str> {
    match naming::channel_of(std::ffi::OsStr::new(stem)) {
        Some((case, ch)) if ch == naming::CT_CHANNEL => case.to_str(),
        _ => None,
    }
}

/// `(stem, path)` of every NIfTI file directly in `dir`, sorted by stem.
fn nifti_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(strip_nifti)
        else {
            continue;
        };
        if path.is_file() {
            out.push((stem.to_string(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every label `dataset.json` declares must be a FLARE organ label (0..=4). Both nnU-Net
/// forms are read: v1 `{"0": "background", ...}` and v2 `{"background": 0, ...}`.
fn check_json_labels(path: &Path, v: &serde_json::Value) -> Result<()> {
    let Some(labels) = v.get("labels").and_then(|l| l.as_object()) else {
        return Ok(());
    };
    let mut bad = Vec::new();
    for (k, val) in labels {
        let value = match val {
            serde_json::Value::Number(n) => n.as_i64(),
            // v2 regions are lists of labels; each member must be valid.
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_i64())
                .find(|&x| !(0..=MAX_LABEL as i64).contains(&x))
                .or(Some(0)),
            _ => k.parse::<i64>().ok(),
        };
        match value {
            Some(x) if (0..=MAX_LABEL as i64).contains(&x) => {}
            _ => bad.push(format!("{k}: {val}")),
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(TrainError::DatasetJson {
            path: path.to_path_buf(),
            message: format!(
                "labels outside FLARE's 0..=4 (0 background, 1 liver, 2 kidney, 3 spleen, \
                 4 pancreas): {}",
                bad.join(", ")
            ),
        })
    }
}
