//! Bringing the parts of a batch back together: which cases are complete, failed or missing,
//! their volumes as one CSV, and the entries of one HTML index.

use std::path::{Path, PathBuf};

use flare_labels::LabelSet;
use flare_report::{CaseEntry, CaseStatus};

use crate::{
    error::{Result, io_err},
    part::part_of,
    record::{CaseRecord, RecordStatus, Records},
};

/// A case the batch should have: its name, CT and label map (as `flare segment` plans them).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCase {
    /// Case name.
    pub name: String,
    /// The CT.
    pub input: PathBuf,
    /// The label map.
    pub output: PathBuf,
}

/// Where a case stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseState {
    /// Its label map is in place.
    Complete,
    /// The part that did it failed; the error.
    Failed(String),
    /// No part has finished it; why it counts as missing.
    Missing(String),
}

/// One case of the gathered batch.
#[derive(Debug, Clone, PartialEq)]
pub struct GatheredCase {
    /// The case as planned.
    pub case: PlannedCase,
    /// Where it stands.
    pub state: CaseState,
    /// Its record, if one was readable.
    pub record: Option<CaseRecord>,
    /// Organ volumes in mL of a complete case, in the label set's order (FLARE21: liver,
    /// kidneys, spleen, pancreas).
    pub volumes_ml: Option<Vec<f64>>,
    /// Anything a reader should know (a missing or out-of-date record, say).
    pub notes: Vec<String>,
}

/// The whole batch as its parts left it.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// Every planned case, in plan order.
    pub cases: Vec<GatheredCase>,
    /// The number of parts every record agrees on (`None` if no record, or they disagree).
    pub part_count: Option<u32>,
    /// Records of cases that are not in the plan (an input removed since?), by case name.
    pub stray_records: Vec<String>,
    /// Temporary files left in OUTPUT or its records folder by processes that were killed
    /// while writing (never under a final name; safe to delete once no part is running).
    pub leftovers: Vec<PathBuf>,
}

impl Gathered {
    /// How many cases are complete.
    pub fn complete(&self) -> usize {
        self.count(|s| matches!(s, CaseState::Complete))
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s, CaseState::Failed(_)))
    }

    /// How many cases are missing.
    pub fn missing(&self) -> usize {
        self.count(|s| matches!(s, CaseState::Missing(_)))
    }

    fn count(&self, f: fn(&CaseState) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.state)).count()
    }

    /// The row of every complete case, in plan order, for [`volumes_csv`] (the plausibility
    /// warnings from its record).
    pub fn volume_rows(&self) -> Vec<VolumeRow> {
        self.cases
            .iter()
            .filter_map(|c| {
                c.volumes_ml.as_ref().map(|v| VolumeRow {
                    case: c.case.name.clone(),
                    volumes_ml: v.clone(),
                    warnings: c.warnings(),
                })
            })
            .collect()
    }

    /// The index entries of every case. A picture is linked relative to `report_dir` when it
    /// lies inside it, else by its full path.
    pub fn report_entries(&self, report_dir: Option<&Path>) -> Vec<CaseEntry> {
        let base = report_dir.and_then(|d| d.canonicalize().ok());
        self.cases
            .iter()
            .map(|c| {
                let status = match &c.state {
                    CaseState::Complete => CaseStatus::Done,
                    CaseState::Failed(e) => CaseStatus::Failed(e.clone()),
                    CaseState::Missing(why) => CaseStatus::Failed(format!("missing: {why}")),
                };
                let png = c.record.as_ref().and_then(|r| r.png.as_deref()).map(|png| {
                    let path = PathBuf::from(png);
                    base.as_ref()
                        .and_then(|b| {
                            path.canonicalize()
                                .ok()?
                                .strip_prefix(b)
                                .ok()
                                .map(|p| p.display().to_string())
                        })
                        .unwrap_or_else(|| png.to_string())
                });
                let timed = c
                    .record
                    .as_ref()
                    .filter(|r| r.status != RecordStatus::Existing);
                CaseEntry {
                    name: c.case.name.clone(),
                    input: c.case.input.display().to_string(),
                    output: Some(c.case.output.display().to_string()),
                    status,
                    volumes_ml: c.volumes_ml.clone(),
                    wall_s: timed.and_then(|r| r.seconds),
                    peak_rss_mb: timed.and_then(|r| r.peak_rss_mb),
                    png: if matches!(c.state, CaseState::Complete) {
                        png
                    } else {
                        None
                    },
                    notes: c.notes.clone(),
                    warnings: c.warnings(),
                }
            })
            .collect()
    }
}

/// One row of the volumes CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    /// Case name.
    pub case: String,
    /// Each organ's volume in mL, in the label set's order (FLARE21: liver, kidneys, spleen,
    /// pancreas).
    pub volumes_ml: Vec<f64>,
    /// Plausibility warnings (`flare_pipeline::plausibility`), none for a plausible case.
    pub warnings: Vec<String>,
}

/// Looks at every planned case in `output_dir`: its label map and its record. A case is
/// complete when its label map exists (outputs are only ever renamed into place whole), failed
/// when its record says so and there is no label map, and missing otherwise. Volumes come from
/// the record, or from `volumes_of(label map)` where the record has none for `labels`' organs (a
/// part stopped between writing the map and its record); a label map that cannot be read makes the case
/// failed. Reads only; writes nothing.
pub fn gather(
    cases: &[PlannedCase],
    output_dir: &Path,
    labels: &LabelSet,
    volumes_of: &mut dyn FnMut(&Path) -> std::result::Result<Vec<f64>, String>,
) -> Result<Gathered> {
    let records = Records::of_output(output_dir);
    let mut out = Gathered::default();
    let mut counts: Vec<u32> = Vec::new();
    for case in cases {
        let mut notes = Vec::new();
        let record = match records.read(&case.name) {
            Ok(r) => r,
            Err(e) => {
                notes.push(format!("record ignored: {e}"));
                None
            }
        };
        if let Some(r) = &record {
            counts.push(r.part.count());
            notes.extend(r.notes.iter().cloned());
        }
        let exists = case.output.is_file();
        let recorded = (record.as_ref())
            .and_then(|r| r.volumes_ml.as_ref())
            .and_then(|v| v.for_labels(labels));
        let (state, volumes_ml) = match (&record, exists) {
            (Some(r), true) if r.is_complete() && recorded.is_some() => {
                (CaseState::Complete, recorded)
            }
            (r, true) => {
                match r {
                    None => notes.push(
                        "no record: its part stopped after writing the label map, or the map \
                         came from elsewhere; volumes read from the map"
                            .to_string(),
                    ),
                    Some(r) if r.status == RecordStatus::Failed => notes.push(
                        "the record says failed but the label map exists (a later run wrote \
                         it); volumes read from the map"
                            .to_string(),
                    ),
                    Some(_) => {}
                }
                match volumes_of(&case.output) {
                    Ok(v) => (CaseState::Complete, Some(v)),
                    Err(e) => (
                        CaseState::Failed(format!(
                            "{}: the label map cannot be read: {e}",
                            case.output.display()
                        )),
                        None,
                    ),
                }
            }
            (Some(r), false) if r.status == RecordStatus::Failed => (
                CaseState::Failed(
                    r.error
                        .clone()
                        .unwrap_or_else(|| "failed (no error recorded)".to_string()),
                ),
                None,
            ),
            (Some(_), false) => (
                CaseState::Missing(format!(
                    "its record says it was written, but {} is gone",
                    case.output.display()
                )),
                None,
            ),
            (None, false) => (
                CaseState::Missing("no label map and no record".to_string()),
                None,
            ),
        };
        out.cases.push(GatheredCase {
            case: case.clone(),
            state,
            record,
            volumes_ml,
            notes,
        });
    }
    let counts: std::collections::BTreeSet<u32> = counts.into_iter().collect();
    out.part_count = match counts.len() {
        1 => counts.first().copied(),
        _ => None,
    };
    let planned: std::collections::HashSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    out.stray_records = records
        .cases()?
        .into_iter()
        .filter(|c| !planned.contains(c.as_str()))
        .collect();
    for dir in [output_dir, records.dir()] {
        out.leftovers.extend(temporary_files(dir)?);
    }
    Ok(out)
}

/// Hidden `*.tmp` files in `dir` (flare's writers name their temporary files `.NAME.*.tmp`).
fn temporary_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, "cannot list the folder")(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "cannot list the folder"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

impl GatheredCase {
    /// The part this case belongs to when the batch is split `count` ways.
    pub fn part(&self, count: u32) -> u32 {
        part_of(&self.case.name, count)
    }

    /// The plausibility warnings its record carries (none without a record).
    pub fn warnings(&self) -> Vec<String> {
        self.record
            .as_ref()
            .map(|r| r.warnings.clone())
            .unwrap_or_default()
    }
}

/// The volumes CSV: `case`, a `NAME_ml` column per organ of `labels` (FLARE21:
/// `case,liver_ml,kidney_ml,spleen_ml,pancreas_ml,warnings`), `warnings`; one row per case.
/// `warnings` holds the case's plausibility warnings joined by `; ` (empty when there are
/// none); it comes last so the volume columns stay where they always were. Fields are quoted
/// as RFC 4180 wants where they hold a comma, quote or line break.
pub fn volumes_csv(labels: &LabelSet, rows: &[VolumeRow]) -> String {
    let quote = |text: &str| {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_string()
        }
    };
    let mut text = String::from("case");
    for organ in labels.organs() {
        text.push_str(&format!(",{}", quote(&format!("{}_ml", organ.name))));
    }
    text.push_str(",warnings\n");
    for r in rows {
        text.push_str(&quote(&r.case));
        for v in &r.volumes_ml {
            text.push_str(&format!(",{v:.3}"));
        }
        text.push_str(&format!(",{}\n", quote(&r.warnings.join("; "))));
    }
    text
}
