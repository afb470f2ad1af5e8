//! Writing results back as DICOM over the source series: a Segmentation object ([`seg`]) and an
//! RT Structure Set ([`rtstruct`]).
//!
//! Both refer to the very images the label map was computed from, so that a viewer (3D Slicer,
//! OHIF, a PACS) or a planning system places them over the series without any resampling:
//! [`SourceSeries`] re-reads the chosen series' headers in volume order (slice `k` of the label
//! map is `slices[k]`), checks that their UIDs are usable and consistent, and keeps what the
//! outputs copy (patient and study modules, Frame of Reference, positions as written).
//!
//! # UIDs
//! New UIDs (series, SOP instance, dimension organisation, and any the source lacks) are
//! `2.25.<UUID v4 as a decimal integer>`, the scheme of ISO/IEC 9834-8 that DICOM PS3.5 B.2
//! allows without a registered root. Anonymised exports often blank the dataset's SOP Class and
//! SOP Instance UIDs while the file meta keeps them: the file meta's values are used then. A
//! dataset value that contradicts the file meta, a SOP Instance UID shared by two files, or
//! Study or Frame of Reference UIDs that differ between slices are refused. A Study, Series or
//! Frame of Reference UID missing from every slice is generated, with a note saying so
//! ([`SourceSeries::notes`]), so that the SEG and the RTSTRUCT of one run share it.

pub mod rtstruct;
pub mod seg;

use std::path::{Path, PathBuf};

use dicom_core::{
    DataElement, PrimitiveValue, Tag, VR,
    value::{C, DataSetSequence},
};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};
use flare_volume::{Geometry, LabelMap};
use rayon::prelude::*;

use crate::{DicomError, FolderScan, layout};

/// Explicit VR Little Endian, the transfer syntax of everything written here.
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// How one organ label is described in the outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Organ {
    /// Its value in the label map (1-4 for flare).
    pub label: u8,
    /// Display name, e.g. `Liver` (SEG SegmentLabel, RTSTRUCT ROIName).
    pub name: String,
    /// SNOMED CT code of the structure, e.g. `10200004`.
    pub snomed_code: String,
    /// Its SNOMED CT meaning, e.g. `Liver`.
    pub snomed_meaning: String,
    /// Display colour (sRGB).
    pub rgb: [u8; 3],
}

/// SNOMED CT codes of flare's labels 1-4 (liver, kidney, spleen, pancreas) as `(name, code,
/// meaning)`; the category of all four is [`ANATOMICAL_STRUCTURE`].
pub const FLARE_ORGAN_CODES: [(&str, &str, &str); 4] = [
    ("Liver", "10200004", "Liver"),
    ("Kidneys", "64033007", "Kidney"),
    ("Spleen", "78961009", "Spleen"),
    ("Pancreas", "15776009", "Pancreas"),
];

/// SNOMED CT "Anatomical Structure", the segmented property category of every organ.
pub const ANATOMICAL_STRUCTURE: (&str, &str) = ("123037004", "Anatomical Structure");

/// flare's four organs with the given display colours (labels 1-4 in order).
pub fn flare_organs(colours: [[u8; 3]; 4]) -> Vec<Organ> {
    FLARE_ORGAN_CODES
        .iter()
        .zip(colours)
        .enumerate()
        .map(|(n, (&(name, code, meaning), rgb))| Organ {
            label: n as u8 + 1,
            name: name.into(),
            snomed_code: code.into(),
            snomed_meaning: meaning.into(),
            rgb,
        })
        .collect()
}

/// What made the result, as written in the outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Algorithm {
    /// The program, e.g. `flare`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The model that produced the labels (its name).
    pub model: String,
}

/// One source image, in volume order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SourceSlice {
    /// The file.
    pub file: PathBuf,
    /// SOP Class UID (the dataset's, or the file meta's where the dataset's is empty).
    pub sop_class_uid: String,
    /// SOP Instance UID (likewise).
    pub sop_instance_uid: String,
    /// ImagePositionPatient in mm (LPS), as parsed.
    pub position_mm: [f64; 3],
    /// ImagePositionPatient as written in the file (three DS strings), copied verbatim.
    position_text: Vec<String>,
}

impl SourceSlice {
    /// An item with ReferencedSOPClassUID and ReferencedSOPInstanceUID naming this image.
    fn reference(&self) -> InMemDicomObject {
        item(|o| {
            put_str(
                o,
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                &self.sop_class_uid,
            );
            put_str(
                o,
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                &self.sop_instance_uid,
            );
        })
    }
}

/// The series a label map was computed from, as the DICOM outputs refer to it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceSeries {
    /// The folder read.
    pub dir: PathBuf,
    /// The grid, exactly as the reader derives it (the label map must lie on it).
    pub geometry: Geometry,
    /// The slices in volume order: label-map slice `k` is `slices[k]`.
    pub slices: Vec<SourceSlice>,
    /// StudyInstanceUID (generated when every slice lacks one; see `notes`).
    pub study_instance_uid: String,
    /// SeriesInstanceUID (generated when the slices lack one).
    pub series_instance_uid: String,
    /// FrameOfReferenceUID (generated when the slices lack one).
    pub frame_of_reference_uid: String,
    /// Warnings for the user: UIDs that had to be generated.
    pub notes: Vec<String>,
    /// Patient and study attributes copied from the first slice.
    copied: Vec<DataElement<InMemDicomObject>>,
    /// ImageOrientationPatient and PixelSpacing as written, and SliceThickness if present.
    orientation_text: Vec<String>,
    pixel_spacing_text: Vec<String>,
    slice_thickness_text: Option<String>,
    /// PositionReferenceIndicator (Frame of Reference module; empty when absent).
    position_reference_indicator: String,
    rows: u16,
    columns: u16,
}

/// Attributes of the Patient, General Study and Patient Study modules copied into every output;
/// `true` marks the type 2 ones, written empty when the source lacks them.
const COPIED: &[(Tag, VR, bool)] = &[
    (tags::SPECIFIC_CHARACTER_SET, VR::CS, false),
    (tags::PATIENT_NAME, VR::PN, true),
    (tags::PATIENT_ID, VR::LO, true),
    (tags::ISSUER_OF_PATIENT_ID, VR::LO, false),
    (tags::PATIENT_BIRTH_DATE, VR::DA, true),
    (tags::PATIENT_SEX, VR::CS, true),
    (tags::PATIENT_AGE, VR::AS, false),
    (tags::PATIENT_SIZE, VR::DS, false),
    (tags::PATIENT_WEIGHT, VR::DS, false),
    (tags::PATIENT_IDENTITY_REMOVED, VR::CS, false),
    (tags::DEIDENTIFICATION_METHOD, VR::LO, false),
    (tags::STUDY_DATE, VR::DA, true),
    (tags::STUDY_TIME, VR::TM, true),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN, true),
    (tags::STUDY_ID, VR::SH, true),
    (tags::ACCESSION_NUMBER, VR::SH, true),
    (tags::STUDY_DESCRIPTION, VR::LO, false),
];

impl FolderScan {
    /// The series [`FolderScan::read`] would decode for `series_uid`, as the DICOM outputs refer
    /// to it: its slices in volume order with their UIDs and positions (headers only).
    pub fn source_series(&self, series_uid: Option<&str>) -> Result<SourceSeries, DicomError> {
        let index = self.series_index(series_uid)?;
        let Some(group) = self.groups.get(index) else {
            return Err(DicomError::NoDicom {
                dir: self.dir.clone(),
                skipped: self.skipped_files,
                unreadable: None,
            });
        };
        let layout = layout::arrange(&self.dir, group.clone())?;
        SourceSeries::from_files(
            &self.dir,
            layout.geometry,
            layout.slices.iter().map(|h| h.path.clone()).collect(),
        )
    }
}

/// The element's text, trimmed of spaces and NULs; empty when absent.
fn text(obj: &DefaultDicomObject, tag: Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| clean(&s).to_string()))
        .unwrap_or_default()
}

fn clean(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
}

/// A multi-valued text element split on `\`, each value trimmed.
fn values(obj: &DefaultDicomObject, tag: Tag) -> Vec<String> {
    let t = text(obj, tag);
    if t.is_empty() {
        return Vec::new();
    }
    t.split('\\').map(|v| clean(v).to_string()).collect()
}

/// What one source header contributes.
struct Header {
    slice: SourceSlice,
    study_uid: String,
    series_uid: String,
    frame_of_reference_uid: String,
}

fn inconsistent(file: &Path, problem: String) -> DicomError {
    DicomError::InconsistentUids {
        file: file.to_path_buf(),
        problem,
    }
}

fn read_header(file: &Path) -> Result<(Header, DefaultDicomObject), DicomError> {
    let (obj, _) = crate::guard::open_header(file).map_err(|d| DicomError::Unreadable {
        file: file.to_path_buf(),
        message: d.message,
    })?;
    let pick = |tag: Tag, keyword: &'static str, meta_value: &str, meta_keyword: &str| {
        let in_dataset = text(&obj, tag);
        let in_meta = clean(meta_value).to_string();
        match (in_dataset.is_empty(), in_meta.is_empty()) {
            (true, true) => Err(DicomError::MissingAttribute {
                file: file.to_path_buf(),
                attribute: keyword,
            }),
            (true, false) => Ok(in_meta),
            (false, true) => Ok(in_dataset),
            (false, false) if in_dataset == in_meta => Ok(in_dataset),
            (false, false) => Err(inconsistent(
                file,
                format!(
                    "{keyword} {in_dataset} differs from the file meta's {meta_keyword} {in_meta}"
                ),
            )),
        }
    };
    let sop_class_uid = pick(
        tags::SOP_CLASS_UID,
        "SOPClassUID",
        obj.meta().media_storage_sop_class_uid(),
        "MediaStorageSOPClassUID",
    )?;
    let sop_instance_uid = pick(
        tags::SOP_INSTANCE_UID,
        "SOPInstanceUID",
        obj.meta().media_storage_sop_instance_uid(),
        "MediaStorageSOPInstanceUID",
    )?;
    let position_text = values(&obj, tags::IMAGE_POSITION_PATIENT);
    let parsed: Vec<f64> = position_text
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .collect();
    // The reader checked positions already; a mismatch here means the file changed meanwhile.
    let [x, y, z] = parsed[..] else {
        return Err(DicomError::BadAttribute {
            file: file.to_path_buf(),
            attribute: "ImagePositionPatient",
            value: position_text.join("\\"),
            problem: "needs 3 numbers".into(),
        });
    };
    let header = Header {
        slice: SourceSlice {
            file: file.to_path_buf(),
            sop_class_uid,
            sop_instance_uid,
            position_mm: [x, y, z],
            position_text,
        },
        study_uid: text(&obj, tags::STUDY_INSTANCE_UID),
        series_uid: text(&obj, tags::SERIES_INSTANCE_UID),
        frame_of_reference_uid: text(&obj, tags::FRAME_OF_REFERENCE_UID),
    };
    Ok((header, obj))
}

/// The one value all slices that have it agree on; an error naming two files that disagree.
fn common_uid(
    headers: &[Header],
    get: impl Fn(&Header) -> &str,
    keyword: &str,
) -> Result<Option<String>, DicomError> {
    let mut found: Option<(&str, &Path)> = None;
    for h in headers {
        let v = get(h);
        if v.is_empty() {
            continue;
        }
        match found {
            None => found = Some((v, &h.slice.file)),
            Some((first, file)) if first != v => {
                return Err(inconsistent(
                    &h.slice.file,
                    format!(
                        "{keyword} {v} differs from {first} in {} (one series, one {keyword})",
                        file.display()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(found.map(|(v, _)| v.to_string()))
}

impl SourceSeries {
    /// Reads the headers of `files` (the series' slices in volume order, forming `geometry`).
    fn from_files(
        dir: &Path,
        geometry: Geometry,
        files: Vec<PathBuf>,
    ) -> Result<SourceSeries, DicomError> {
        let mut read: Vec<(Header, DefaultDicomObject)> = files
            .par_iter()
            .map(|f| read_header(f))
            .collect::<Result<_, _>>()?;
        let first_obj =
            read.first()
                .map(|(_, o)| o.clone())
                .ok_or_else(|| DicomError::NoDicom {
                    dir: dir.to_path_buf(),
                    skipped: 0,
                    unreadable: None,
                })?;
        let headers: Vec<Header> = read.drain(..).map(|(h, _)| h).collect();

        let mut seen = std::collections::HashMap::new();
        for h in &headers {
            if let Some(other) = seen.insert(h.slice.sop_instance_uid.as_str(), &h.slice.file) {
                return Err(inconsistent(
                    &h.slice.file,
                    format!(
                        "SOPInstanceUID {} is also that of {}",
                        h.slice.sop_instance_uid,
                        other.display()
                    ),
                ));
            }
        }
        let frames = common_uid(
            &headers,
            |h| &h.frame_of_reference_uid,
            "FrameOfReferenceUID",
        )
        .map_err(|e| match e {
            DicomError::InconsistentUids { file, problem } => {
                DicomError::MixedFrameOfReference { file, problem }
            }
            e => e,
        })?;
        let study = common_uid(&headers, |h| &h.study_uid, "StudyInstanceUID")?;
        let series = common_uid(&headers, |h| &h.series_uid, "SeriesInstanceUID")?;
        let mut notes = Vec::new();
        let mut or_new = |v: Option<String>, keyword: &str| {
            v.unwrap_or_else(|| {
                let uid = new_uid();
                notes.push(format!(
                    "{}: the slices have no {keyword}; the DICOM outputs use a new one, {uid}",
                    dir.display()
                ));
                uid
            })
        };
        let study_instance_uid = or_new(study, "StudyInstanceUID");
        let series_instance_uid = or_new(series, "SeriesInstanceUID");
        let frame_of_reference_uid = or_new(frames, "FrameOfReferenceUID");

        let copied = COPIED
            .iter()
            .filter_map(
                |&(tag, vr, type2)| match first_obj.element_opt(tag).ok().flatten() {
                    Some(e) => Some(e.clone()),
                    None if type2 => Some(DataElement::new(tag, vr, PrimitiveValue::Empty)),
                    None => None,
                },
            )
            .collect();
        let first_file = headers[0].slice.file.clone();
        let rows = first_obj
            .element(tags::ROWS)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok());
        let columns = first_obj
            .element(tags::COLUMNS)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok());
        let (Some(rows), Some(columns)) = (rows, columns) else {
            return Err(DicomError::MissingAttribute {
                file: first_file,
                attribute: "Rows/Columns",
            });
        };
        let slice_thickness = text(&first_obj, tags::SLICE_THICKNESS);
        Ok(SourceSeries {
            dir: dir.to_path_buf(),
            geometry,
            slices: headers.into_iter().map(|h| h.slice).collect(),
            study_instance_uid,
            series_instance_uid,
            frame_of_reference_uid,
            notes,
            copied,
            orientation_text: values(&first_obj, tags::IMAGE_ORIENTATION_PATIENT),
            pixel_spacing_text: values(&first_obj, tags::PIXEL_SPACING),
            slice_thickness_text: (!slice_thickness.is_empty()).then_some(slice_thickness),
            position_reference_indicator: text(&first_obj, tags::POSITION_REFERENCE_INDICATOR),
            rows,
            columns,
        })
    }

    /// Refuses a label map that does not lie on this series' grid.
    fn check_grid(&self, labels: &LabelMap) -> Result<(), DicomError> {
        if labels.geometry().same_grid(&self.geometry, 1e-3) {
            return Ok(());
        }
        Err(DicomError::LabelGridMismatch {
            dir: self.dir.clone(),
            labels: labels.geometry().shape(),
            series: self.geometry.shape(),
        })
    }

    /// A ReferencedSeriesSequence item listing every slice of the series.
    fn referenced_series_item(&self) -> InMemDicomObject {
        item(|o| {
            put_str(
                o,
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                &self.series_instance_uid,
            );
            put_seq(
                o,
                tags::REFERENCED_INSTANCE_SEQUENCE,
                self.slices.iter().map(SourceSlice::reference).collect(),
            );
        })
    }

    /// The label map's slice `k` as a row-major `rows x columns` mask of `label`.
    fn slice_has(&self, labels: &LabelMap, k: usize, label: u8) -> bool {
        let n = usize::from(self.rows) * usize::from(self.columns);
        labels.data()[k * n..(k + 1) * n].contains(&label)
    }
}

/// A new UID under `2.25.`: a random (version 4) UUID as one decimal integer (at most 39 digits,
/// so the UID stays within 64 characters).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// Today's date and time (UTC) as DICOM DA and TM strings.
fn now_da_tm() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    da_tm(secs)
}

/// DA and TM strings of a time in seconds since 1970-01-01 UTC.
fn da_tm(secs: u64) -> (String, String) {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm): a dozen lines instead
    // of a date crate for two strings.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

// Element builders: the dataset is assembled from these, one attribute per call.

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: impl Into<String>) {
    obj.put(DataElement::new(
        tag,
        vr,
        PrimitiveValue::from(value.into()),
    ));
}

fn put_strs(obj: &mut InMemDicomObject, tag: Tag, vr: VR, values: &[String]) {
    let v: C<String> = values.iter().cloned().collect();
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Strs(v)));
}

fn put_us(obj: &mut InMemDicomObject, tag: Tag, values: &[u16]) {
    let v: C<u16> = values.iter().copied().collect();
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::U16(v)));
}

fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn item(build: impl FnOnce(&mut InMemDicomObject)) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    build(&mut o);
    o
}

/// A Code Sequence Macro item.
fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(|o| {
        put_str(o, tags::CODE_VALUE, VR::SH, value);
        put_str(o, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
        put_str(o, tags::CODE_MEANING, VR::LO, meaning);
    })
}

/// The identity of an output: its SOP class and instance, and its new series.
struct NewInstance<'a> {
    sop_class_uid: &'a str,
    sop_instance_uid: &'a str,
    series_instance_uid: &'a str,
    modality: &'a str,
    series_number: i32,
    series_description: &'a str,
}

/// The SOP Common, patient, study and series attributes every output shares.
fn common(
    obj: &mut InMemDicomObject,
    source: &SourceSeries,
    new: &NewInstance<'_>,
    algorithm: &Algorithm,
) {
    let NewInstance {
        sop_class_uid,
        sop_instance_uid,
        series_instance_uid,
        modality,
        series_number,
        series_description,
    } = *new;
    for e in &source.copied {
        obj.put(e.clone());
    }
    let (date, time) = now_da_tm();
    put_str(obj, tags::SOP_CLASS_UID, VR::UI, sop_class_uid);
    put_str(obj, tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid);
    put_str(
        obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &source.study_instance_uid,
    );
    put_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, series_instance_uid);
    put_str(obj, tags::MODALITY, VR::CS, modality);
    put_str(obj, tags::SERIES_NUMBER, VR::IS, series_number.to_string());
    put_str(obj, tags::SERIES_DESCRIPTION, VR::LO, series_description);
    put_str(obj, tags::SERIES_DATE, VR::DA, &date);
    put_str(obj, tags::SERIES_TIME, VR::TM, &time);
    put_str(obj, tags::INSTANCE_CREATION_DATE, VR::DA, &date);
    put_str(obj, tags::INSTANCE_CREATION_TIME, VR::TM, &time);
    put_str(obj, tags::MANUFACTURER, VR::LO, &algorithm.name);
    put_str(obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, &algorithm.name);
    put_str(
        obj,
        tags::DEVICE_SERIAL_NUMBER,
        VR::LO,
        format!("{}-{}", algorithm.name, algorithm.version),
    );
    put_str(obj, tags::SOFTWARE_VERSIONS, VR::LO, &algorithm.version);
}

/// The file's bytes: preamble, file meta (Explicit VR Little Endian) and `obj`.
fn encode(
    obj: InMemDicomObject,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> Result<Vec<u8>, DicomError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(EXPLICIT_VR_LE)
        .build()
        .map_err(|e| DicomError::Encode {
            message: e.to_string(),
        })?;
    let file = obj.with_exact_meta(meta);
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| DicomError::Encode {
        message: e.to_string(),
    })?;
    Ok(bytes)
}

/// An output written by [`seg::segmentation`] or [`rtstruct::structure_set`]: the file's bytes
/// and what it holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DicomOutput {
    /// The DICOM file.
    pub bytes: Vec<u8>,
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// Its (new) Series Instance UID.
    pub series_instance_uid: String,
    /// The labels it holds (segments or ROIs), in order.
    pub labels: Vec<u8>,
    /// Frames (SEG) or contours (RTSTRUCT).
    pub items: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_2_25_decimal_and_short() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        for u in [&a, &b] {
            assert!(u.starts_with("2.25."), "{u}");
            assert!(u.len() <= 64, "{u}");
            let digits = &u[5..];
            assert!(digits.bytes().all(|c| c.is_ascii_digit()), "{u}");
            assert!(!digits.starts_with('0') || digits == "0", "{u}");
        }
    }

    #[test]
    fn dates_are_dicom_da_and_tm() {
        // Expected values from Python's datetime.fromtimestamp(s, UTC).
        let s = |d: &str, t: &str| (d.to_string(), t.to_string());
        assert_eq!(da_tm(0), s("19700101", "000000"));
        assert_eq!(da_tm(951_782_400), s("20000229", "000000"));
        assert_eq!(da_tm(1_735_689_599), s("20241231", "235959"));
        assert_eq!(da_tm(4_107_542_400), s("21000301", "000000"));
    }
}
