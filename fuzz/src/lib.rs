//! The fuzz targets' harnesses: each takes afl's input bytes to one of flare's readers through
//! the library entry points the `flare` CLI uses (`flare_io::read_ct` for images, as `flare
//! segment`/`convert` do; `read_label_map` and `read_raw` as `flare evaluate`/`info` do;
//! `flare_pipeline::Model::from_bytes` and `flare_model::file::from_bytes` for model files).
//!
//! A reader may return any error; only a panic, an abort (e.g. an allocation failure) or a
//! hang is a finding. The harness limits flare's memory (`FLARE_MEMORY_LIMIT_MB`, see
//! [`init`]) so that a header declaring a huge volume must be refused by the readers' checks.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Memory limit the readers are given, in MB: small, so that a hostile size is refused
/// quickly, yet far above what any seed needs.
pub const MEMORY_LIMIT_MB: &str = "64";

/// Separator of the files packed into one `dicom_folder` input.
pub const FILE_SEPARATOR: &[u8] = b"\n--flare-next-file--\n";

/// Sets the readers' memory limit. Call first thing in `main`, before any thread starts.
pub fn init() {
    // SAFETY: called at the start of `main`, before the harness or a reader starts a thread.
    unsafe { std::env::set_var("FLARE_MEMORY_LIMIT_MB", MEMORY_LIMIT_MB) };
}

/// This process's scratch folder (one per process, so parallel afl instances do not meet),
/// reused for every input: creating a fresh one per input would cost more than most reads.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("FLARE_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("flare-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the scratch folder");
        dir
    })
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
fn put(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("cannot write the scratch file");
    path
}

/// Reads a NIfTI file the three ways the CLI does: as CT (`segment`, `convert`), as a label
/// map (`evaluate`), with its stored voxels (`info`).
fn read_nifti_all(path: &Path) {
    let _ = flare_io::read_ct(path, &flare_io::ReadOptions::default());
    let _ = flare_nifti::read_label_map(path);
    let _ = flare_nifti::read_raw(path);
}

/// `nifti`: the bytes are a plain `.nii` file.
pub fn nifti(bytes: &[u8]) {
    read_nifti_all(&put("input.nii", bytes));
}

/// `nifti_gz`: the first byte picks how the rest reaches the gzip path. Odd: the rest is
/// compressed here, so the decoder always succeeds and afl's mutations land on the header and
/// voxels behind it (sizes checked against a compressed length, the libdeflate buffer, the
/// 1032x bound). Even: the rest is written as it is, so the mutations land on the gzip stream
/// itself (truncation, corruption, multi-member files, trailing data, the fallback from
/// libdeflate to the streaming decoder). Either way the file is named `.nii.gz`; the reader
/// recognises gzip by content.
pub fn nifti_gz(bytes: &[u8]) {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let file = if mode & 1 == 1 {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(rest).expect("gzip into memory");
        enc.finish().expect("gzip into memory")
    } else {
        rest.to_vec()
    };
    read_nifti_all(&put("input.nii.gz", &file));
}

/// Empties (or creates) a scratch sub-folder for a DICOM series.
fn series_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    std::fs::create_dir_all(&dir).expect("cannot create the series folder");
    dir
}

/// Reads a folder as `flare segment -i FOLDER` does.
fn read_series(dir: &Path) {
    let _ = flare_io::read_ct(dir, &flare_io::ReadOptions::default());
}

/// `dicom_file`: the bytes are one DICOM file, alone in a folder given to the series reader.
pub fn dicom_file(bytes: &[u8]) {
    let dir = series_dir("series1");
    std::fs::write(dir.join("IM0001"), bytes).expect("cannot write the DICOM file");
    read_series(&dir);
}

/// `dicom_folder`: the bytes are up to three DICOM files joined by [`FILE_SEPARATOR`] (more
/// pieces are joined into the third), written into one folder given to the series reader.
pub fn dicom_folder(bytes: &[u8]) {
    let dir = series_dir("series3");
    for (i, part) in split_files(bytes, 3).iter().enumerate() {
        std::fs::write(dir.join(format!("IM{i:04}")), part).expect("cannot write a DICOM file");
    }
    read_series(&dir);
}

/// Splits `bytes` at [`FILE_SEPARATOR`] into at most `max` pieces.
pub fn split_files(bytes: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while out.len() + 1 < max {
        match rest
            .windows(FILE_SEPARATOR.len())
            .position(|w| w == FILE_SEPARATOR)
        {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + FILE_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// `model_file`: the bytes are a model file, read as `flare segment --model` reads a
/// two-stage model and as `flare bundle` reads a single stage.
pub fn model_file(bytes: &[u8]) {
    let origin = Path::new("fuzz.safetensors");
    let _ = flare_pipeline::Model::from_bytes(bytes, origin);
    let _ = flare_model::file::from_bytes(bytes, origin);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_separator_into_at_most_max_pieces() {
        let s = FILE_SEPARATOR;
        let joined = [b"a".as_slice(), s, b"b", s, b"c", s, b"d"].concat();
        assert_eq!(
            split_files(&joined, 3),
            vec![b"a".as_slice(), b"b", &[b"c".as_slice(), s, b"d"].concat()]
        );
        assert_eq!(split_files(b"abc", 3), vec![b"abc".as_slice()]);
    }
}
