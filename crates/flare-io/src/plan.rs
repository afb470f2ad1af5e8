//! The batch plan of `flare segment`: which cases INPUT holds and where each result goes.
//!
//! - A NIfTI file is one case, named by its stem without `_0000`.
//! - A folder without NIfTI files is one DICOM case (named by the folder).
//! - A folder of NIfTI files is a FLARE batch: each `<case>_0000.nii.gz` (or a file without a
//!   channel suffix) is a case written to `OUTPUT/<case>.nii.gz`; other channels and a second
//!   file of the same case are left out, each with a note saying why.
//!
//! File names follow [`flare_nifti::naming`].

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
};

use flare_nifti::naming::{
    CT_CHANNEL, case_of, channel_of, is_nifti_name, label_file_name, nifti_stem,
};

use crate::IoError;

/// One case to segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Case name (file name without extension and `_0000`, or the DICOM folder's name).
    pub name: String,
    /// The CT.
    pub input: PathBuf,
    /// The label map to write.
    pub output: PathBuf,
    /// For a DICOM folder, the series to read (else `--series` or the largest).
    pub series: Option<String>,
}

/// What a batch will do: the cases, and files in a batch folder that are not cases.
#[derive(Debug, Default)]
pub struct Plan {
    /// Cases in order.
    pub jobs: Vec<Job>,
    /// Lines to show before starting (e.g. files ignored and why).
    pub notes: Vec<String>,
    /// Whether OUTPUT is a folder.
    pub batch: bool,
}

impl Plan {
    /// Refuses, before any work, a case whose output would land on an input: its own
    /// ([`crate::check_output`]) or another case's (a folder segmented into itself holding
    /// `a_0000.nii.gz` and `a_0000_0000.nii.gz`: case `a_0000` would write over case `a`'s CT).
    pub fn check_outputs(&self) -> Result<(), IoError> {
        let inputs: Vec<(PathBuf, &Job)> = self
            .jobs
            .iter()
            .filter_map(|j| Some((std::fs::canonicalize(&j.input).ok()?, j)))
            .collect();
        for job in &self.jobs {
            crate::check_output(&job.output, &[&job.input])?;
            let target = file_target(&job.output);
            if let Some((_, owner)) = inputs.iter().find(|(i, _)| Some(i) == target.as_ref()) {
                return Err(IoError::OutputIsAnotherInput {
                    output: job.output.clone(),
                    case: job.name.clone(),
                    input: owner.input.clone(),
                    owner: owner.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The file `path` names, absolute and with its folder's links resolved, whether or not the
/// file exists yet (`None` when its folder does not exist: nothing can be there).
pub fn file_target(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// Works out the cases from INPUT and OUTPUT (see the module doc).
pub fn plan(input: &Path, output: &Path) -> Result<Plan, IoError> {
    let meta = std::fs::metadata(input).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IoError::NotFound {
            path: input.to_path_buf(),
        },
        _ => IoError::Inaccessible {
            path: input.to_path_buf(),
            source: e,
        },
    })?;
    let output_is_file = is_nifti_name(output);
    let single = |case: &OsStr| -> Plan {
        let out = if output_is_file {
            output.to_path_buf()
        } else {
            output.join(label_file_name(case))
        };
        Plan {
            jobs: vec![Job {
                name: case.to_string_lossy().into_owned(),
                input: input.to_path_buf(),
                output: out,
                series: None,
            }],
            notes: Vec::new(),
            batch: false,
        }
    };
    if !meta.is_dir() {
        let Some(stem) = input.file_name().and_then(nifti_stem) else {
            return Err(IoError::NotAnInput {
                path: input.to_path_buf(),
            });
        };
        return Ok(single(case_of(stem)));
    }
    let list = |source| IoError::ListFolder {
        path: input.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(list)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_nifti_name(p))
        .collect();
    files.sort();
    if files.is_empty() {
        // No NIfTI inside: a DICOM series folder (reading it says so if it is not one).
        let name = input
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(OsStr::to_os_string))
            .unwrap_or_else(|| OsString::from("case"));
        return Ok(single(&name));
    }
    if output_is_file {
        return Err(IoError::FolderOutputNeeded {
            path: output.to_path_buf(),
        });
    }
    let mut out = Plan {
        batch: true,
        ..Plan::default()
    };
    let mut seen: BTreeMap<OsString, PathBuf> = BTreeMap::new();
    for f in files {
        let Some(stem) = f.file_name().and_then(nifti_stem) else {
            continue;
        };
        if let Some((_, ch)) = channel_of(stem)
            && ch != CT_CHANNEL
        {
            out.notes.push(format!(
                "{}: ignored (channel {ch}; flare reads the CT, channel {CT_CHANNEL})",
                f.display()
            ));
            continue;
        }
        let case = case_of(stem).to_os_string();
        let name = case.to_string_lossy().into_owned();
        if let Some(first) = seen.get(&case) {
            out.notes.push(format!(
                "{}: ignored (case {name} is already {})",
                f.display(),
                first.display()
            ));
            continue;
        }
        out.jobs.push(Job {
            output: output.join(label_file_name(&case)),
            name,
            input: f.clone(),
            series: None,
        });
        seen.insert(case, f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(dir.join(n), b"").unwrap();
        }
    }

    #[test]
    fn a_flare_folder_gives_one_job_per_ct_and_says_what_it_leaves_out() {
        let t = flare_testkit::TempDir::new("io-plan-folder");
        let input = t.join("in");
        std::fs::create_dir_all(&input).unwrap();
        touch(
            &input,
            &[
                "a_0000.nii.gz",
                "a_0001.nii.gz",
                "b.nii",
                "b_0000.nii.gz",
                "._c_0000.nii.gz",
                "notes.txt",
            ],
        );
        let out = t.join("out");
        let p = plan(&input, &out).unwrap();
        assert!(p.batch);
        let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p.jobs[0].output, out.join("a.nii.gz"));
        assert_eq!(p.jobs[1].input, input.join("b.nii"));
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
        assert!(p.notes[0].contains("channel 0001"), "{:?}", p.notes);
        assert!(p.notes[1].contains("case b is already"), "{:?}", p.notes);
        let e = plan(&input, &t.join("one.nii.gz")).unwrap_err();
        assert!(e.to_string().contains("OUTPUT must be a folder"), "{e}");
    }

    #[test]
    fn single_inputs_and_refusals() {
        let t = flare_testkit::TempDir::new("io-plan-single");
        touch(&t.join(""), &["scan_0000.nii.gz", "notes.txt"]);
        let p = plan(&t.join("scan_0000.nii.gz"), &t.join("out")).unwrap();
        assert!(!p.batch);
        assert_eq!(p.jobs[0].name, "scan");
        assert_eq!(p.jobs[0].output, t.join("out").join("scan.nii.gz"));
        let p = plan(&t.join("scan_0000.nii.gz"), &t.join("x.nii")).unwrap();
        assert_eq!(p.jobs[0].output, t.join("x.nii"));
        let series = t.join("CT_series");
        std::fs::create_dir_all(&series).unwrap();
        touch(&series, &["IM0001"]);
        let p = plan(&series, &t.join("o")).unwrap();
        assert_eq!(p.jobs[0].name, "CT_series");
        let e = plan(&t.join("notes.txt"), &t.join("o")).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a .nii/.nii.gz file or a folder"),
            "{e}"
        );
        let e = plan(&t.join("missing"), &t.join("o")).unwrap_err();
        assert!(
            e.to_string().ends_with("missing: no such file or folder"),
            "{e}"
        );
    }
}
