//! The preprocessing cache: every case decoded, windowed, normalised and (optionally) reduced
//! once, stored as raw little-endian files with a JSON index, and loaded back with one plain
//! read per file.
//!
//! # What is stored
//! - Intensities as `u16` fixed point: the HU value clipped to the config's window and mapped
//!   to `[0, 1]`, times 65535. The quantisation step is 1/65535 of the window (0.006 HU for
//!   the 400 HU abdominal window), far below CT noise and below `f16`'s step near 1 (about 0.2
//!   HU), at the same 2 bytes per voxel and with no conversion library.
//! - Labels as `u8`, and per organ its bounding box and voxel count (in the index).
//! - Optionally the scan reoriented to RAS (array axis `k` superior, `i` toward the patient's
//!   right), so that "axial" is always axis `k` for augmentation; inference must present scans
//!   the same way.
//!
//! # Keys
//! A case's key hashes the format version, the [`PreprocessConfig`], and the size and
//! modification time of its image and label files. A changed file rebuilds only its case; a
//! changed config rebuilds every case. Files are named `<case>-<key>.img` / `.lab`, so entries
//! of other datasets sharing the folder are left alone.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use flare_imgproc::{LabelInterp, resample_labels, resample_linear};
use flare_volume::{Geometry, LabelMap, Orientation, Volume};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    dataset::{Case, Dataset, MAX_LABEL, load_pair},
    error::{Problem, Result, TrainError, io_err},
};

/// Bumped whenever the stored format or the preprocessing code changes meaning.
const CACHE_VERSION: u32 = 1;
/// The index file inside the cache folder.
const INDEX_FILE: &str = "index.json";
/// Multiply a stored intensity by this to get the normalised value in `[0, 1]`.
pub const INTENSITY_SCALE: f32 = 1.0 / 65535.0;

/// How cases are preprocessed before caching. Part of every cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// HU window `[low, high]`: values are clipped to it and mapped to `[0, 1]`. BTCV was
    /// clipped upstream to the default `[-125, 275]`; real scans are not, so this matters.
    pub window_hu: [f32; 2],
    /// Largest cache grid per axis `(i, j, k)`: a larger scan is resampled (one factor for all
    /// axes, keeping the aspect ratio of its voxel grid) so that every axis fits.
    pub max_shape: Option<[usize; 3]>,
    /// Reorient every scan to RAS before caching.
    pub canonical_ras: bool,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            window_hu: [-125.0, 275.0],
            max_shape: None,
            canonical_ras: true,
        }
    }
}

impl PreprocessConfig {
    fn validate(&self) -> Result<()> {
        let [lo, hi] = self.window_hu;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(TrainError::Config(format!(
                "HU window [{lo}, {hi}] must be finite and increasing"
            )));
        }
        if self.max_shape.is_some_and(|m| m.contains(&0)) {
            return Err(TrainError::Config("max_shape must be positive".into()));
        }
        Ok(())
    }
}

/// What the index records about one cached case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseMeta {
    /// Case name.
    pub name: String,
    /// Cache key (hex).
    pub key: String,
    /// Cache grid shape `(i, j, k)`.
    pub shape: [usize; 3],
    /// Cache grid spacing (mm).
    pub spacing_mm: [f64; 3],
    /// Cache grid origin (mm, RAS+).
    pub origin_mm: [f64; 3],
    /// Cache grid direction (`direction[row][axis]`).
    pub direction: [[f64; 3]; 3],
    /// Shape of the source scan.
    pub source_shape: [usize; 3],
    /// Bounding box `[start, end)` on the cache grid of organs 1..=4 (index 0 is liver).
    pub organ_boxes: [Option<[[usize; 3]; 2]>; 4],
    /// Voxels per label 0..=4 on the cache grid.
    pub label_counts: [u64; 5],
}

impl CaseMeta {
    /// The cache grid.
    pub fn geometry(&self) -> Result<Geometry> {
        Ok(Geometry::new(
            self.shape,
            self.spacing_mm,
            self.origin_mm,
            self.direction,
        )?)
    }

    /// The union of the organ boxes, or `None` for a case with no organ.
    pub fn union_box(&self) -> Option<[[usize; 3]; 2]> {
        self.region_box(&[])
    }

    /// The union of the boxes of `organs` (label values 1..=4; empty: every organ), or `None`
    /// when the case holds none of them. A refinement stage's region (e.g. `[4]`, the
    /// pancreas) is this box.
    pub fn region_box(&self, organs: &[u8]) -> Option<[[usize; 3]; 2]> {
        let wanted = |o: usize| organs.is_empty() || organs.contains(&(o as u8 + 1));
        let boxes = self.organ_boxes.iter().enumerate();
        boxes
            .filter(|(o, _)| wanted(*o))
            .filter_map(|(_, b)| *b)
            .reduce(|a, b| {
                [
                    [0, 1, 2].map(|d| a[0][d].min(b[0][d])),
                    [0, 1, 2].map(|d| a[1][d].max(b[1][d])),
                ]
            })
    }
}

/// One preprocessed case in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedCase {
    meta: CaseMeta,
    image: Vec<u16>,
    labels: Vec<u8>,
}

impl CachedCase {
    /// What the index says about it.
    pub fn meta(&self) -> &CaseMeta {
        &self.meta
    }
    /// Shape `(i, j, k)`.
    pub fn shape(&self) -> [usize; 3] {
        self.meta.shape
    }
    /// Intensities, `i` fastest, as `u16` fixed point (times [`INTENSITY_SCALE`] is `[0, 1]`).
    pub fn image(&self) -> &[u16] {
        &self.image
    }
    /// Labels, `i` fastest.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
    /// The normalised image as a volume on the cache grid (for validation and tests).
    pub fn image_volume(&self) -> Result<Volume<f32>> {
        let data = self
            .image
            .iter()
            .map(|&v| v as f32 * INTENSITY_SCALE)
            .collect();
        Ok(Volume::new(self.meta.geometry()?, data)?)
    }
    /// The labels as a volume on the cache grid.
    pub fn label_volume(&self) -> Result<LabelMap> {
        Ok(Volume::new(self.meta.geometry()?, self.labels.clone())?)
    }
}

/// Which cases a [`Cache::build`] preprocessed and which it found up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// Cases preprocessed now.
    pub built: Vec<String>,
    /// Cases loaded from the cache as they were.
    pub reused: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    entries: BTreeMap<String, CaseMeta>,
}

/// Every case of a dataset, preprocessed and in memory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    config: PreprocessConfig,
    cases: Vec<CachedCase>,
}

impl Cache {
    /// Brings the cache in `dir` up to date for `dataset` and loads it. Headers of every case
    /// are checked first; cases whose key changed are decoded (their labels checked) and
    /// preprocessed; if any case is bad, nothing is written and every problem is reported.
    pub fn build(
        dataset: &Dataset,
        config: &PreprocessConfig,
        dir: impl AsRef<Path>,
    ) -> Result<(Cache, BuildReport)> {
        config.validate()?;
        let dir = dir.as_ref();
        let problems = dataset.check_headers();
        if !problems.is_empty() {
            return Err(invalid(dataset, problems));
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut index = read_index(dir)?;
        let config_json = serde_json::to_string(config).map_err(|e| TrainError::Serialise {
            what: "the preprocessing configuration",
            detail: e.to_string(),
        })?;
        let keys: Vec<String> = dataset
            .cases()
            .iter()
            .map(|c| case_key(&config_json, c))
            .collect::<Result<_>>()?;
        let fresh: Vec<bool> = dataset
            .cases()
            .iter()
            .zip(&keys)
            .map(|(c, k)| {
                index.entries.get(&c.name).is_some_and(|m| {
                    // Files of the wrong size (a crash, a concurrent writer) are rebuilt.
                    let n: u64 = m.shape.iter().map(|&v| v as u64).product();
                    &m.key == k
                        && file_len(&data_path(dir, &c.name, k, "img")) == Some(2 * n)
                        && file_len(&data_path(dir, &c.name, k, "lab")) == Some(n)
                })
            })
            .collect();
        // Decode and preprocess stale cases, but write nothing until all are known good.
        let results: Vec<(usize, std::result::Result<CachedCase, Vec<Problem>>)> = dataset
            .cases()
            .par_iter()
            .enumerate()
            .filter(|(n, _)| !fresh[*n])
            .map(|(n, c)| (n, preprocess_case(c, &keys[n], config)))
            .collect();
        let mut problems = Vec::new();
        let mut built = BTreeMap::new();
        for (n, r) in results {
            match r {
                Ok(c) => {
                    built.insert(n, c);
                }
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            problems.sort_by(|a, b| a.case.cmp(&b.case));
            return Err(invalid(dataset, problems));
        }
        let mut report = BuildReport::default();
        for c in built.values() {
            write_case(dir, c)?;
            if let Some(old) = index.entries.insert(c.meta.name.clone(), c.meta.clone())
                && old.key != c.meta.key
            {
                for ext in ["img", "lab"] {
                    // A leftover file only wastes disk; failing to remove it is harmless.
                    let _ = std::fs::remove_file(data_path(dir, &old.name, &old.key, ext));
                }
            }
            report.built.push(c.meta.name.clone());
        }
        write_index(dir, &index)?;
        let mut cases = Vec::with_capacity(dataset.cases().len());
        for (n, c) in dataset.cases().iter().enumerate() {
            match built.remove(&n) {
                Some(b) => cases.push(b),
                None => {
                    let meta =
                        index
                            .entries
                            .get(&c.name)
                            .cloned()
                            .ok_or_else(|| TrainError::Cache {
                                path: dir.join(INDEX_FILE),
                                message: format!("no entry for {}", c.name),
                            })?;
                    cases.push(load_case(dir, meta)?);
                    report.reused.push(c.name.clone());
                }
            }
        }
        Ok((
            Cache {
                dir: dir.to_path_buf(),
                config: config.clone(),
                cases,
            },
            report,
        ))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The preprocessing it was built with.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }
    /// The cases, in the dataset's order (sorted by name).
    pub fn cases(&self) -> &[CachedCase] {
        &self.cases
    }
    /// The case called `name`.
    pub fn case(&self, name: &str) -> Option<&CachedCase> {
        self.cases.iter().find(|c| c.meta.name == name)
    }
    /// Only the named cases (e.g. a training split), in the given order; unknown names fail.
    pub fn subset(&self, names: &[String]) -> Result<Cache> {
        let cases = names
            .iter()
            .map(|n| {
                self.case(n)
                    .cloned()
                    .ok_or_else(|| TrainError::Split(format!("no cached case named {n}")))
            })
            .collect::<Result<_>>()?;
        Ok(Cache {
            dir: self.dir.clone(),
            config: self.config.clone(),
            cases,
        })
    }
}

fn invalid(dataset: &Dataset, problems: Vec<Problem>) -> TrainError {
    TrainError::InvalidDataset {
        dir: dataset.root().to_path_buf(),
        problems,
    }
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn case_key(config_json: &str, c: &Case) -> Result<String> {
    let mut h = fnv1a(&CACHE_VERSION.to_le_bytes(), 0xcbf2_9ce4_8422_2325);
    h = fnv1a(config_json.as_bytes(), h);
    for path in [&c.image, &c.label] {
        let md = std::fs::metadata(path).map_err(io_err(path))?;
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h = fnv1a(path.as_os_str().as_encoded_bytes(), h);
        h = fnv1a(&md.len().to_le_bytes(), h);
        h = fnv1a(&mtime.to_le_bytes(), h);
    }
    Ok(format!("{h:016x}"))
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

fn data_path(dir: &Path, name: &str, key: &str, ext: &str) -> PathBuf {
    dir.join(format!("{name}-{key}.{ext}"))
}

fn read_index(dir: &Path) -> Result<Index> {
    let path = dir.join(INDEX_FILE);
    if !path.is_file() {
        return Ok(Index {
            version: CACHE_VERSION,
            ..Index::default()
        });
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    match serde_json::from_str::<Index>(&text) {
        Ok(i) if i.version == CACHE_VERSION => Ok(i),
        // An unreadable or older index only means everything is rebuilt.
        _ => Ok(Index {
            version: CACHE_VERSION,
            ..Index::default()
        }),
    }
}

/// Writes all at once or not at all (`flare_atomic`: unique temporary names, since two runs
/// sharing a cache once swapped an image and a label file through a shared `X.tmp`).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    flare_atomic::write(path, bytes).map_err(io_err(path))
}

fn write_index(dir: &Path, index: &Index) -> Result<()> {
    let text = serde_json::to_string_pretty(index).map_err(|e| TrainError::Cache {
        path: dir.join(INDEX_FILE),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join(INDEX_FILE), text.as_bytes())
}

fn write_case(dir: &Path, c: &CachedCase) -> Result<()> {
    let (name, key) = (&c.meta.name, &c.meta.key);
    let bytes: Vec<u8> = c.image.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(&data_path(dir, name, key, "img"), &bytes)?;
    write_atomic(&data_path(dir, name, key, "lab"), &c.labels)
}

fn load_case(dir: &Path, meta: CaseMeta) -> Result<CachedCase> {
    let n: usize = meta.shape.iter().product();
    let img_path = data_path(dir, &meta.name, &meta.key, "img");
    let lab_path = data_path(dir, &meta.name, &meta.key, "lab");
    // The index is a file anyone can edit: the sampler indexes voxels through these boxes.
    meta.geometry()?;
    let boxes_ok = meta
        .organ_boxes
        .iter()
        .flatten()
        .all(|[lo, hi]| (0..3).all(|a| lo[a] < hi[a] && hi[a] <= meta.shape[a]));
    if !boxes_ok {
        return Err(TrainError::Cache {
            path: dir.join(INDEX_FILE),
            message: format!("organ boxes of {} lie outside its grid", meta.name),
        });
    }
    let bytes = std::fs::read(&img_path).map_err(io_err(&img_path))?;
    if bytes.len() != 2 * n {
        return Err(TrainError::Cache {
            path: img_path,
            message: format!("{} bytes, expected {}", bytes.len(), 2 * n),
        });
    }
    let image = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let labels = std::fs::read(&lab_path).map_err(io_err(&lab_path))?;
    if labels.len() != n || labels.iter().any(|&l| l > MAX_LABEL) {
        return Err(TrainError::Cache {
            path: lab_path,
            message: format!("not {n} labels in 0..=4"),
        });
    }
    Ok(CachedCase {
        meta,
        image,
        labels,
    })
}

/// Decodes, checks and preprocesses one case.
fn preprocess_case(
    c: &Case,
    key: &str,
    config: &PreprocessConfig,
) -> std::result::Result<CachedCase, Vec<Problem>> {
    let (img, lab) = load_pair(c)?;
    let source_shape = img.shape();
    match preprocess(img, lab, config) {
        Ok((geometry, image, labels)) => {
            let mut meta = describe(&c.name, key, &geometry, &labels);
            meta.source_shape = source_shape;
            Ok(CachedCase {
                meta,
                image,
                labels,
            })
        }
        Err(e) => Err(vec![Problem {
            case: c.name.clone(),
            kind: crate::error::ProblemKind::Unreadable {
                path: c.image.clone(),
                message: format!("preprocessing failed: {e}"),
            },
        }]),
    }
}

/// Reorients, windows, normalises, reduces and quantises one pair.
fn preprocess(
    img: Volume<f32>,
    lab: LabelMap,
    config: &PreprocessConfig,
) -> Result<(Geometry, Vec<u16>, Vec<u8>)> {
    let (img, lab) = if config.canonical_ras {
        let (axes, flips) = Orientation::from_direction(&img.geometry().direction()).to_ras();
        let lab = lab.with_geometry(*img.geometry())?;
        (img.reorient(axes, flips)?, lab.reorient(axes, flips)?)
    } else {
        let lab = lab.with_geometry(*img.geometry())?;
        (img, lab)
    };
    let [lo, hi] = config.window_hu;
    let inv = 1.0 / (hi - lo);
    let unit = img.map(|&v| (v.clamp(lo, hi) - lo) * inv);
    let (unit, lab) = match config.max_shape {
        Some(max) => {
            let shape = unit.shape();
            let factor = (0..3)
                .map(|a| shape[a] as f64 / max[a] as f64)
                .fold(1.0f64, f64::max);
            if factor > 1.0 {
                let new = [0, 1, 2]
                    .map(|a| ((shape[a] as f64 / factor).round() as usize).clamp(1, max[a]));
                let grid = unit.geometry().resized(new)?;
                (
                    resample_linear(&unit, &grid, 0.0)?,
                    resample_labels(&lab, &grid, LabelInterp::Linear)?,
                )
            } else {
                (unit, lab)
            }
        }
        None => (unit, lab),
    };
    let (geometry, data) = unit.into_parts();
    let image = data
        .iter()
        .map(|&u| (u.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    let (_, labels) = lab.into_parts();
    Ok((geometry, image, labels))
}

/// Preprocesses an image and label map as the cache would (same window, reorientation,
/// reduction and quantisation) and returns it as a [`CachedCase`] named `name`, without
/// touching the disk: for tests, and for training on volumes that are already in memory.
pub fn preprocess_volumes(
    name: &str,
    image: Volume<f32>,
    labels: LabelMap,
    config: &PreprocessConfig,
) -> Result<CachedCase> {
    config.validate()?;
    if !image
        .geometry()
        .same_grid(labels.geometry(), crate::dataset::GRID_TOLERANCE_MM)
    {
        return Err(TrainError::Config(format!(
            "{name}: image and labels are on different grids"
        )));
    }
    if let Some(&bad) = labels.data().iter().find(|&&l| l > MAX_LABEL) {
        return Err(TrainError::Config(format!(
            "{name}: label value {bad} outside 0..=4"
        )));
    }
    let source_shape = image.shape();
    let (geometry, image, labels) = preprocess(image, labels, config)?;
    let mut meta = describe(name, "in-memory", &geometry, &labels);
    meta.source_shape = source_shape;
    Ok(CachedCase {
        meta,
        image,
        labels,
    })
}

fn describe(name: &str, key: &str, g: &Geometry, labels: &[u8]) -> CaseMeta {
    let s = g.shape();
    let mut lo = [[usize::MAX; 3]; 4];
    let mut hi = [[0usize; 3]; 4];
    let mut counts = [0u64; 5];
    for k in 0..s[2] {
        for j in 0..s[1] {
            let row = &labels[s[0] * (j + s[1] * k)..][..s[0]];
            for (i, &l) in row.iter().enumerate() {
                counts[l.min(MAX_LABEL) as usize] += 1;
                if l == 0 || l > MAX_LABEL {
                    continue;
                }
                let o = l as usize - 1;
                for (a, v) in [i, j, k].into_iter().enumerate() {
                    lo[o][a] = lo[o][a].min(v);
                    hi[o][a] = hi[o][a].max(v + 1);
                }
            }
        }
    }
    let organ_boxes = [0, 1, 2, 3].map(|o| (counts[o + 1] > 0).then_some([lo[o], hi[o]]));
    CaseMeta {
        name: name.to_string(),
        key: key.to_string(),
        shape: s,
        spacing_mm: g.spacing_mm(),
        origin_mm: g.origin_mm(),
        direction: g.direction(),
        source_shape: s,
        organ_boxes,
        label_counts: counts,
    }
}
