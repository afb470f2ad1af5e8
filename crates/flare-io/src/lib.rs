//! One door in for CT images and one door out for label maps.
//!
//! `flare-nifti` and `flare-dicom` each know one format; this crate decides which one a path is
//! (a file is NIfTI, a folder is a DICOM series), remembers where an image came from
//! ([`Source`]), and writes results so that they land on the input's grid: "like" the input's
//! NIfTI header (qform and sform kept with their codes), or from the series' geometry for DICOM,
//! which is the grid `flare convert` writes. It also refuses to write over an input, and works
//! out a batch's cases and their outputs ([`plan`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod plan;

pub use plan::{Job, Plan, file_target, plan};

use std::path::{Path, PathBuf};

use flare_dicom::{DicomError, SeriesSummary};
use flare_nifti::{DataType, NiftiError, NiftiHeader};
use flare_volume::{LabelMap, Volume};

/// Why an image could not be read or a result written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// A NIfTI file's problem (the message names the file).
    #[error(transparent)]
    Nifti(#[from] NiftiError),
    /// A DICOM folder's problem (the message names the folder or file).
    #[error(transparent)]
    Dicom(#[from] DicomError),
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The output would replace an input.
    #[error("{}: refusing to write over an input file", path.display())]
    WouldOverwriteInput {
        /// The output path.
        path: PathBuf,
    },
    /// The path exists but cannot be looked at (permissions).
    #[error("{}: cannot be read", path.display())]
    Inaccessible {
        /// The path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A case's output is another case's input.
    #[error(
        "{}: the output of case {case} would overwrite {}, the input of case {owner}; write to another folder",
        output.display(),
        input.display()
    )]
    OutputIsAnotherInput {
        /// The output path.
        output: PathBuf,
        /// Its case.
        case: String,
        /// The input it would overwrite.
        input: PathBuf,
        /// That input's case.
        owner: String,
    },
    /// INPUT is neither a NIfTI file nor a folder.
    #[error(
        "{}: not a .nii/.nii.gz file or a folder (DICOM series or FLARE cases)",
        path.display()
    )]
    NotAnInput {
        /// The input path.
        path: PathBuf,
    },
    /// INPUT is a folder of cases but OUTPUT names one file.
    #[error(
        "{}: INPUT is a folder of cases, so OUTPUT must be a folder, not a .nii/.nii.gz file",
        path.display()
    )]
    FolderOutputNeeded {
        /// The output path.
        path: PathBuf,
    },
    /// A folder cannot be listed.
    #[error("{}: cannot list the folder", path.display())]
    ListFolder {
        /// The folder.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The output name has no extension flare can write.
    #[error("{}: output must end in .nii.gz or .nii", path.display())]
    BadOutputName {
        /// The output path.
        path: PathBuf,
    },
}

/// Where a CT image came from, kept so that results can be written on its grid.
#[derive(Debug, Clone)]
pub enum Source {
    /// A NIfTI file, with its header as stored.
    Nifti {
        /// The file.
        path: PathBuf,
        /// Its header.
        header: Box<NiftiHeader>,
    },
    /// A DICOM series read from a folder.
    Dicom {
        /// The folder.
        dir: PathBuf,
        /// The series that was read.
        series: Box<SeriesSummary>,
        /// Every series in the folder (most slices first).
        all_series: Vec<SeriesSummary>,
        /// Set when the folder held several series and the largest was taken by default.
        choice_note: Option<String>,
        /// Damaged files beside the series that may have been slices of it (see
        /// `flare_dicom::DicomSeries::warnings`), one line each, for the CLI to print.
        warnings: Vec<String>,
    },
}

impl Source {
    /// The file or folder read.
    pub fn path(&self) -> &Path {
        match self {
            Source::Nifti { path, .. } => path,
            Source::Dicom { dir, .. } => dir,
        }
    }
}

/// A CT scan in Hounsfield units on its own grid, and where it came from.
#[derive(Debug, Clone)]
pub struct CtImage {
    /// The voxels (HU), `i` fastest.
    pub volume: Volume<f32>,
    /// The file or series it came from.
    pub source: Source,
}

/// Options for [`read_ct`].
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// For a DICOM folder, the SeriesInstanceUID to read (default: the series with most slices).
    pub series_uid: Option<String>,
}

/// Whether a path is a NIfTI file or a DICOM folder, judged without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A file: read as NIfTI (gzip recognised by content).
    NiftiFile,
    /// A folder: read as a DICOM series.
    DicomFolder,
}

/// Tells a NIfTI file from a DICOM folder.
pub fn input_kind(path: &Path) -> Result<InputKind, IoError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(InputKind::DicomFolder),
        Ok(_) => Ok(InputKind::NiftiFile),
        Err(_) => Err(IoError::NotFound {
            path: path.to_path_buf(),
        }),
    }
}

/// Reads a CT scan: a `.nii`/`.nii.gz` file, or a folder holding a DICOM series.
pub fn read_ct(path: &Path, options: &ReadOptions) -> Result<CtImage, IoError> {
    match input_kind(path)? {
        InputKind::NiftiFile => {
            let image = flare_nifti::read_image(path)?;
            Ok(CtImage {
                volume: image.volume,
                source: Source::Nifti {
                    path: path.to_path_buf(),
                    header: Box::new(image.header),
                },
            })
        }
        InputKind::DicomFolder => {
            let series = flare_dicom::read_series(path, options.series_uid.as_deref())?;
            let choice_note = series.choice_note();
            let warnings = series.warnings();
            Ok(CtImage {
                volume: series.volume,
                source: Source::Dicom {
                    dir: path.to_path_buf(),
                    series: Box::new(series.series),
                    all_series: series.all_series,
                    choice_note,
                    warnings,
                },
            })
        }
    }
}

/// Checks that `output` is a NIfTI name and is none of `inputs` (also through links).
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<(), IoError> {
    // Lossy: the suffixes are ASCII, and a name that is not UTF-8 is still a good name.
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if !(name.ends_with(".nii.gz") || name.ends_with(".nii")) || name.starts_with(".nii") {
        return Err(IoError::BadOutputName {
            path: output.to_path_buf(),
        });
    }
    let out = std::fs::canonicalize(output).ok();
    for input in inputs {
        let same = match (&out, std::fs::canonicalize(input).ok()) {
            (Some(o), Some(i)) => *o == i,
            _ => output == *input,
        };
        if same {
            return Err(IoError::WouldOverwriteInput {
                path: output.to_path_buf(),
            });
        }
    }
    Ok(())
}

impl CtImage {
    /// Writes a label map on this image's grid: "like" the NIfTI input (its qform and sform with
    /// their codes), or from the DICOM series' geometry (the grid `flare convert` writes).
    /// The write goes through a temporary file renamed into place.
    pub fn write_label_map(&self, output: &Path, labels: &LabelMap) -> Result<(), IoError> {
        check_output(output, &[self.source.path()])?;
        match &self.source {
            Source::Nifti { header, .. } => {
                flare_nifti::write_label_map_like(output, labels, header)?
            }
            Source::Dicom { .. } => flare_nifti::write_label_map(output, labels)?,
        }
        Ok(())
    }

    /// Writes the scan itself as NIfTI (int16 when every voxel is a whole number that fits,
    /// else float32, unless `datatype` says), on its geometry with qform and sform set.
    pub fn write_nifti(&self, output: &Path, datatype: Option<DataType>) -> Result<(), IoError> {
        check_output(output, &[self.source.path()])?;
        flare_nifti::write_volume(output, &self.volume, datatype)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flare_testkit::TempDir;

    #[test]
    fn output_names_and_inputs_are_checked() {
        let tmp = TempDir::new("flare-io-check");
        let input = tmp.join("case_0000.nii.gz");
        std::fs::write(&input, b"x").unwrap();
        assert!(check_output(&tmp.join("case.nii.gz"), &[&input]).is_ok());
        assert!(check_output(&tmp.join("case.nii"), &[&input]).is_ok());
        let e = check_output(&tmp.join("case.png"), &[&input]).unwrap_err();
        assert!(e.to_string().contains("must end in .nii.gz or .nii"), "{e}");
        let e = check_output(&input, &[&input]).unwrap_err();
        assert!(
            e.to_string().contains("refusing to write over an input"),
            "{e}"
        );
        // The same file reached through another spelling of its path.
        let other = tmp.path().join(".").join("case_0000.nii.gz");
        assert!(check_output(&other, &[&input]).is_err());
    }

    #[test]
    fn missing_path_is_named() {
        let e = read_ct(
            Path::new("/nonexistent/flare/ct.nii.gz"),
            &ReadOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/flare/ct.nii.gz: no such file or folder"
        );
    }
}
