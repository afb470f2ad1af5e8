//! Per-case records: one small JSON file per case in `OUTPUT/.flare-records/`, written
//! atomically when the case ends, whichever part did it.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use flare_labels::{Label, LabelSet};
use serde::{Deserialize, Serialize};

use crate::{
    error::{BatchError, Result, io_err},
    part::Part,
};

/// The folder, inside OUTPUT, that holds the records.
pub const RECORDS_DIR: &str = ".flare-records";

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Segmented by the process that wrote the record.
    Done,
    /// Its output already existed (an earlier run, or a part stopped before its record), so it
    /// was left as it was; the volumes are read from it.
    Existing,
    /// Reading or segmenting failed; `error` says why. No output was written.
    Failed,
}

/// Organ volumes of a label map in millilitres, as a record stores them: a JSON object from
/// each organ's key ([`OrganVolumes::key`]: `liver_ml`, `kidneys_ml`, ... for FLARE21) to its
/// volume, in the label set's order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganVolumes(Vec<(String, f64)>);

impl OrganVolumes {
    /// The record key of an organ: its display name, spaces as underscores, then `_ml`.
    pub fn key(organ: &Label) -> String {
        format!("{}_ml", organ.display_name.replace(' ', "_"))
    }

    /// The volumes `ml` of `set`'s organs, in its order.
    pub fn new(set: &LabelSet, ml: &[f64]) -> OrganVolumes {
        OrganVolumes(
            set.organs()
                .iter()
                .zip(ml)
                .map(|(o, &v)| (OrganVolumes::key(o), v))
                .collect(),
        )
    }

    /// The volumes of `set`'s organs in its order, or `None` when the record lacks one (a
    /// record written for another label set).
    pub fn for_labels(&self, set: &LabelSet) -> Option<Vec<f64>> {
        (set.organs().iter())
            .map(|o| {
                let key = OrganVolumes::key(o);
                self.0.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
            })
            .collect()
    }
}

impl From<[f64; 4]> for OrganVolumes {
    /// FLARE21's liver, kidneys, spleen and pancreas.
    fn from(v: [f64; 4]) -> OrganVolumes {
        OrganVolumes::new(&LabelSet::flare21(), &v)
    }
}

impl Serialize for OrganVolumes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for OrganVolumes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = OrganVolumes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of organ volumes in mL")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrganVolumes, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, f64>()? {
                    out.push(entry);
                }
                Ok(OrganVolumes(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// What one process did with one case: the file `OUTPUT/.flare-records/<case>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// Case name (FLARE naming: the input's name without `_0000.nii.gz`).
    pub case: String,
    /// The CT, as given.
    pub input: String,
    /// The label map.
    pub output: String,
    /// How the case ended.
    pub status: RecordStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the case in seconds (read to write).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Peak resident memory of the process while it did the case, in MB.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// Organ volumes of the label map.
    #[serde(default)]
    pub volumes_ml: Option<OrganVolumes>,
    /// The case's report picture, if one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png: Option<String>,
    /// Anything a reader should know (post-processing effects, DICOM series choice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Plausibility warnings (`flare_pipeline::plausibility`): the input does not look like an
    /// abdominal CT, or an organ is missing, too small, too large or misplaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The part of the batch that did it.
    pub part: Part,
    /// The model that segmented it (`flare segment` prints the same description).
    #[serde(default)]
    pub model: Option<String>,
    /// The cluster engine's name for the process (`slurm job 12_3`), if any.
    #[serde(default)]
    pub job: Option<String>,
    /// The machine.
    #[serde(default)]
    pub host: Option<String>,
    /// The process id.
    pub pid: u32,
    /// When the case ended, seconds since 1970-01-01 UTC.
    pub finished_unix_s: f64,
    /// The flare version that wrote the record.
    pub flare_version: String,
}

impl CaseRecord {
    /// A record stamped with this process (pid, host, time, version); the caller fills in the
    /// times, volumes and messages it has.
    pub fn new(
        case: &str,
        input: &Path,
        output: &Path,
        status: RecordStatus,
        part: Part,
    ) -> CaseRecord {
        CaseRecord {
            case: case.to_string(),
            input: input.display().to_string(),
            output: output.display().to_string(),
            status,
            error: None,
            seconds: None,
            peak_rss_mb: None,
            volumes_ml: None,
            png: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            part,
            model: None,
            job: None,
            host: host_name(),
            pid: std::process::id(),
            finished_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            flare_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Whether the record says the case's output was written (now or before).
    pub fn is_complete(&self) -> bool {
        matches!(self.status, RecordStatus::Done | RecordStatus::Existing)
    }
}

/// The kernel's host name (Linux), else `HOSTNAME`.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

/// The records of one output folder.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records of the batch writing into `output_dir`.
    pub fn of_output(output_dir: &Path) -> Records {
        Records {
            dir: output_dir.join(RECORDS_DIR),
        }
    }

    /// The folder of the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record file of `case`.
    pub fn path_of(&self, case: &str) -> PathBuf {
        self.dir.join(format!("{case}.json"))
    }

    /// Writes `record` to its file through a temporary file in the same folder, flushed to disk
    /// and renamed into place: a reader sees the old record or the new one, never half of one.
    /// Creates the folder. Returns the file written.
    pub fn write(&self, record: &CaseRecord) -> Result<PathBuf> {
        let path = self.path_of(&record.case);
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err(&self.dir, "cannot create the records folder"))?;
        let mut json = serde_json::to_vec_pretty(record).map_err(|e| BatchError::BadRecord {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        json.push(b'\n');
        flare_atomic::write(&path, &json).map_err(io_err(&path, "cannot write"))?;
        Ok(path)
    }

    /// The record of `case`, `None` if it has none.
    pub fn read(&self, case: &str) -> Result<Option<CaseRecord>> {
        let path = self.path_of(case);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, "cannot read")(e)),
        };
        let record: CaseRecord =
            serde_json::from_slice(&bytes).map_err(|e| BatchError::BadRecord {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if record.case != case {
            return Err(BatchError::BadRecord {
                path,
                detail: format!("it is the record of case {:?}", record.case),
            });
        }
        Ok(Some(record))
    }

    /// The cases that have a record file, sorted; empty when the folder does not exist.
    pub fn cases(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir, "cannot list the records folder")(e)),
        };
        let mut cases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir, "cannot list the records folder"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some(case) = name.strip_suffix(".json") {
                cases.push(case.to_string());
            }
        }
        cases.sort();
        Ok(cases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flare_testkit::TempDir;

    fn record(case: &str) -> CaseRecord {
        let mut r = CaseRecord::new(
            case,
            Path::new("/in/a_0000.nii.gz"),
            Path::new("/out/a.nii.gz"),
            RecordStatus::Done,
            Part::new(1, 4).unwrap(),
        );
        r.seconds = Some(1.25);
        r.peak_rss_mb = Some(230.0);
        r.volumes_ml = Some([1500.0, 300.0, 200.0, 80.0].into());
        r.job = Some("slurm job 12_1".to_string());
        r
    }

    #[test]
    fn records_round_trip_and_leave_no_temporary_file() {
        let t = TempDir::new("batch-records");
        let records = Records::of_output(t.path());
        assert_eq!(records.read("a").unwrap(), None);
        assert!(records.cases().unwrap().is_empty());
        let r = record("a");
        let path = records.write(&r).unwrap();
        assert_eq!(path, t.path().join(".flare-records/a.json"));
        assert_eq!(records.read("a").unwrap(), Some(r.clone()));
        let mut again = r.clone();
        again.status = RecordStatus::Failed;
        again.error = Some("truncated gzip".to_string());
        records.write(&again).unwrap();
        assert_eq!(records.read("a").unwrap(), Some(again));
        let names: Vec<String> = std::fs::read_dir(records.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json"]);
        assert_eq!(records.cases().unwrap(), ["a"]);
    }

    #[test]
    fn the_json_is_plain_for_other_tools() {
        let t = TempDir::new("batch-records-json");
        let records = Records::of_output(t.path());
        let path = records.write(&record("a")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(v["status"], "done");
        assert_eq!(v["part"]["index"], 1);
        assert_eq!(v["part"]["count"], 4);
        assert_eq!(v["volumes_ml"]["liver_ml"], 1500.0);
        assert_eq!(v["seconds"], 1.25);
        assert!(v.get("error").is_none());
    }

    #[test]
    fn a_bad_record_is_an_error_naming_its_file() {
        let t = TempDir::new("batch-records-bad");
        let records = Records::of_output(t.path());
        std::fs::create_dir_all(records.dir()).unwrap();
        std::fs::write(records.path_of("a"), b"{\"case\": ").unwrap();
        let e = records.read("a").unwrap_err().to_string();
        assert!(
            e.contains(".flare-records/a.json") && e.contains("not a flare case record"),
            "{e}"
        );
        // A record copied under another case's name is refused too.
        records.write(&record("b")).unwrap();
        std::fs::copy(records.path_of("b"), records.path_of("a")).unwrap();
        let e = records.read("a").unwrap_err().to_string();
        assert!(e.contains("record of case \"b\""), "{e}");
    }
}
