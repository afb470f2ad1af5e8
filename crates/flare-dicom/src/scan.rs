//! Finding the DICOM images under a folder and grouping them into series, from headers only.
//!
//! Every file is opened and parsed up to (not including) the pixel data, in parallel. Files that
//! are not DICOM, or DICOM objects without an image (DICOMDIR, reports), are skipped and counted.

use std::{
    fmt,
    io::Read,
    path::{Path, PathBuf},
};

use dicom_core::header::HasLength;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, Tag};
use rayon::prelude::*;

use crate::DicomError;

/// Media Storage Directory Storage: the SOP class of a DICOMDIR.
const DICOMDIR_SOP_CLASS: &str = "1.2.840.10008.1.3.10";

/// CT Image, Enhanced CT Image and Legacy Converted Enhanced CT Image Storage.
const CT_IMAGE_SOP_CLASSES: [&str; 3] = [
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
];

/// A header value: absent (`Ok(None)`), usable (`Ok(Some)`), or present but unparsable (`Err`
/// holding the text found), so that only the chosen series' bad values become errors.
pub(crate) type Attr<T> = Result<Option<T>, String>;

/// What the reader needs from one image file's header.
#[derive(Debug, Clone)]
pub(crate) struct SliceHeader {
    pub path: PathBuf,
    pub series_uid: String,
    pub description: String,
    pub modality: String,
    pub series_number: Option<i64>,
    pub transfer_syntax: String,
    pub rows: Attr<i64>,
    pub columns: Attr<i64>,
    pub samples_per_pixel: Attr<i64>,
    pub bits_allocated: Attr<i64>,
    pub bits_stored: Attr<i64>,
    pub high_bit: Attr<i64>,
    pub pixel_representation: Attr<i64>,
    pub number_of_frames: Attr<i64>,
    pub photometric: Option<String>,
    pub orientation: Attr<Vec<f64>>,
    pub position: Attr<Vec<f64>>,
    pub pixel_spacing: Attr<Vec<f64>>,
    pub rescale_slope: Attr<f64>,
    pub rescale_intercept: Attr<f64>,
    pub has_float_pixels: bool,
    /// Bytes parsing the whole file may hold ([`crate::guard::FileLayout::parse_bytes`]); `None`
    /// when the walk found its pixel data damaged (reading the pixels refuses the file).
    pub parse_bytes: Option<u64>,
}

impl SliceHeader {
    /// Columns and rows, `None` where unreadable.
    pub(crate) fn size(&self) -> Option<[usize; 2]> {
        let c = usize::try_from(self.columns.clone().ok()??).ok()?;
        let r = usize::try_from(self.rows.clone().ok()??).ok()?;
        Some([c, r])
    }
}

/// One series found in a folder, as `flare info` lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SeriesSummary {
    /// SeriesInstanceUID (empty when the files lack one).
    pub uid: String,
    /// SeriesDescription (empty when absent).
    pub description: String,
    /// Modality, e.g. `CT` (empty when absent).
    pub modality: String,
    /// SeriesNumber, when present.
    pub series_number: Option<i64>,
    /// Number of image files (slices) in the series.
    pub n_slices: usize,
    /// Columns and rows of the first slice (by path); `None` when unreadable.
    pub size: Option<[usize; 2]>,
    /// Transfer syntax UID of the first slice.
    pub transfer_syntax: String,
}

impl fmt::Display for SeriesSummary {
    /// One line: `UID  CT  512x512x300  #3 "venous"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uid = if self.uid.is_empty() {
            "(no SeriesInstanceUID)"
        } else {
            &self.uid
        };
        let modality = if self.modality.is_empty() {
            "(no modality)"
        } else {
            &self.modality
        };
        write!(f, "{uid}  {modality}  ")?;
        match self.size {
            Some([c, r]) => write!(f, "{c}x{r}x{}", self.n_slices)?,
            None => write!(f, "{} slices", self.n_slices)?,
        }
        if let Some(n) = self.series_number {
            write!(f, "  #{n}")?;
        }
        if !self.description.is_empty() {
            write!(f, "  {:?}", self.description)?;
        }
        Ok(())
    }
}

/// The series found under a folder, from their headers (no pixels decoded).
#[derive(Debug, Clone)]
pub struct FolderScan {
    /// The folder scanned.
    pub dir: PathBuf,
    /// Every series found, the one with the most slices first (ties by UID).
    pub series: Vec<SeriesSummary>,
    /// Files skipped: not DICOM, unreadable DICOM, or DICOM without an image (DICOMDIR, reports).
    pub skipped_files: usize,
    /// Files that start like DICOM but could not be parsed (`"path: reason"`), among those
    /// skipped: worth a warning, since a damaged slice would otherwise go unnoticed.
    pub unreadable: Vec<String>,
    /// The slices of each series, in the order of `series`.
    pub(crate) groups: Vec<Vec<SliceHeader>>,
    /// The files of `unreadable`, with the SeriesInstanceUID read before the damage, if any.
    pub(crate) damaged: Vec<DamagedFile>,
}

/// A file that starts like DICOM but could not be parsed.
#[derive(Debug, Clone)]
pub(crate) struct DamagedFile {
    pub path: PathBuf,
    /// The series it claims to belong to, when that was read before the damage.
    pub series_uid: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// What one file turned out to be.
enum Found {
    Image(Box<SliceHeader>),
    NotImage,
    Unreadable(DamagedFile),
}

/// Scans `dir` (recursively) and groups its DICOM images by SeriesInstanceUID, reading headers only.
///
/// Fails when the folder cannot be listed or holds no DICOM image.
pub fn scan_series(dir: impl AsRef<Path>) -> Result<FolderScan, DicomError> {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    list_files(dir, &mut files)?;
    files.sort();
    let found: Vec<Found> = files.par_iter().map(|p| scan_file(p)).collect();

    let mut skipped = 0;
    let mut damaged = Vec::new();
    let mut by_uid: std::collections::BTreeMap<String, Vec<SliceHeader>> = Default::default();
    for f in found {
        match f {
            Found::Image(h) => by_uid.entry(h.series_uid.clone()).or_default().push(*h),
            Found::NotImage => skipped += 1,
            Found::Unreadable(d) => {
                skipped += 1;
                damaged.push(d);
            }
        }
    }
    let unreadable: Vec<String> = damaged
        .iter()
        .map(|d: &DamagedFile| format!("{}: {}", d.path.display(), d.reason))
        .collect();
    if by_uid.is_empty() {
        return Err(DicomError::NoDicom {
            dir: dir.to_path_buf(),
            skipped,
            unreadable: unreadable.into_iter().next(),
        });
    }
    let mut groups: Vec<Vec<SliceHeader>> = by_uid.into_values().collect();
    // Most slices first; BTreeMap order already sorted ties by UID, and the sort is stable.
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let series = groups.iter().map(|g| summarize(g)).collect();
    Ok(FolderScan {
        dir: dir.to_path_buf(),
        series,
        skipped_files: skipped,
        unreadable,
        groups,
        damaged,
    })
}

fn summarize(group: &[SliceHeader]) -> SeriesSummary {
    // Groups are never empty; fall back to blanks rather than panic all the same.
    let first = group.first();
    SeriesSummary {
        uid: first.map(|h| h.series_uid.clone()).unwrap_or_default(),
        description: first.map(|h| h.description.clone()).unwrap_or_default(),
        modality: first.map(|h| h.modality.clone()).unwrap_or_default(),
        series_number: first.and_then(|h| h.series_number),
        n_slices: group.len(),
        size: first.and_then(SliceHeader::size),
        transfer_syntax: first.map(|h| h.transfer_syntax.clone()).unwrap_or_default(),
    }
}

/// Lists regular files under `dir`, descending into sub-folders but not into symbolic links to
/// folders (which could loop).
fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DicomError> {
    let io = |source| DicomError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io)?;
        if ft.is_dir() {
            list_files(&path, out)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether the file starts like a DICOM Part 10 file (preamble + `DICM`, or `DICM` alone),
/// checked on 132 bytes so that junk is skipped without running the parser on it.
fn looks_like_dicom(path: &Path) -> bool {
    let mut buf = [0u8; 132];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    (n >= 132 && &buf[128..132] == b"DICM") || (n >= 4 && &buf[0..4] == b"DICM")
}

fn scan_file(path: &Path) -> Found {
    if !looks_like_dicom(path) {
        return Found::NotImage;
    }
    let (obj, layout) = match crate::guard::open_header(path) {
        Ok(o) => o,
        Err(d) => {
            return Found::Unreadable(DamagedFile {
                path: path.to_path_buf(),
                series_uid: d.series_uid,
                reason: d.message,
            });
        }
    };
    let sop_class = obj.meta().media_storage_sop_class_uid();
    let sop_class = sop_class.trim_end_matches(['\0', ' ']);
    if sop_class == DICOMDIR_SOP_CLASS {
        return Found::NotImage;
    }
    if obj.element_opt(tags::ROWS).ok().flatten().is_none() {
        // A CT image without Rows was cut short at an element boundary (dicom-rs then ends the
        // data set quietly): damaged, not "no image".
        if CT_IMAGE_SOP_CLASSES.contains(&sop_class) {
            return Found::Unreadable(DamagedFile {
                path: path.to_path_buf(),
                series_uid: text(&obj, tags::SERIES_INSTANCE_UID),
                reason: "a CT image without Rows or pixel data (truncated file?)".into(),
            });
        }
        return Found::NotImage;
    }
    Found::Image(Box::new(SliceHeader {
        path: path.to_path_buf(),
        series_uid: text(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        description: text(&obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
        modality: text(&obj, tags::MODALITY).unwrap_or_default(),
        series_number: int(&obj, tags::SERIES_NUMBER).ok().flatten(),
        transfer_syntax: obj.meta().transfer_syntax().to_string(),
        rows: int(&obj, tags::ROWS),
        columns: int(&obj, tags::COLUMNS),
        samples_per_pixel: int(&obj, tags::SAMPLES_PER_PIXEL),
        bits_allocated: int(&obj, tags::BITS_ALLOCATED),
        bits_stored: int(&obj, tags::BITS_STORED),
        high_bit: int(&obj, tags::HIGH_BIT),
        pixel_representation: int(&obj, tags::PIXEL_REPRESENTATION),
        number_of_frames: int(&obj, tags::NUMBER_OF_FRAMES),
        photometric: text(&obj, tags::PHOTOMETRIC_INTERPRETATION),
        orientation: floats(&obj, tags::IMAGE_ORIENTATION_PATIENT),
        position: floats(&obj, tags::IMAGE_POSITION_PATIENT),
        pixel_spacing: floats(&obj, tags::PIXEL_SPACING),
        rescale_slope: float(&obj, tags::RESCALE_SLOPE),
        rescale_intercept: float(&obj, tags::RESCALE_INTERCEPT),
        has_float_pixels: [tags::FLOAT_PIXEL_DATA, tags::DOUBLE_FLOAT_PIXEL_DATA]
            .iter()
            .any(|&t| obj.element_opt(t).ok().flatten().is_some()),
        parse_bytes: layout.as_ref().map(crate::guard::FileLayout::parse_bytes),
    }))
}

/// The element's text, trimmed; `None` when absent or empty.
fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

fn raw_text(obj: &DefaultDicomObject, tag: Tag) -> String {
    text(obj, tag).unwrap_or_default()
}

fn present(obj: &DefaultDicomObject, tag: Tag) -> bool {
    // An element with an empty value counts as absent (type 2 attributes may be empty).
    obj.element_opt(tag)
        .ok()
        .flatten()
        .is_some_and(|e| !e.value().is_empty())
}

fn int(obj: &DefaultDicomObject, tag: Tag) -> Attr<i64> {
    if !present(obj, tag) {
        return Ok(None);
    }
    match obj.element(tag).map(|e| e.to_int::<i64>()) {
        Ok(Ok(v)) => Ok(Some(v)),
        _ => Err(raw_text(obj, tag)),
    }
}

fn floats(obj: &DefaultDicomObject, tag: Tag) -> Attr<Vec<f64>> {
    if !present(obj, tag) {
        return Ok(None);
    }
    match obj.element(tag).map(|e| e.to_multi_float64()) {
        Ok(Ok(v)) if v.iter().all(|x| x.is_finite()) => Ok(Some(v)),
        _ => Err(raw_text(obj, tag)),
    }
}

fn float(obj: &DefaultDicomObject, tag: Tag) -> Attr<f64> {
    match floats(obj, tag)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(_) => Err(raw_text(obj, tag)),
    }
}
