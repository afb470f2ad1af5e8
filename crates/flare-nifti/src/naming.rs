//! How NIfTI files are named in FLARE and nnU-Net folders, in one place for everything that
//! lists such a folder (`flare segment`'s batch plan, `flare evaluate`, training datasets).
//!
//! - A NIfTI file is `<stem>.nii.gz` or `<stem>.nii`; an empty stem or a hidden name (`.x.nii`,
//!   macOS's `._x.nii.gz` copies) is not a case.
//! - An image is `<case>_<channel>` with a four-digit channel; channel `0000` is the CT.
//! - A label map, or a result, is `<case>.nii.gz`.
//!
//! Names are `OsStr`s, byte for byte: file names need not be UTF-8 (a folder copied from an old
//! system in Latin-1), and a case keeps its exact bytes in its output's name; only messages
//! show it lossily.

use std::{
    ffi::{OsStr, OsString},
    path::Path,
};

/// The channel of the CT in FLARE names (`<case>_0000.nii.gz`).
pub const CT_CHANNEL: &str = "0000";

/// `name` without the ASCII `suffix`, byte for byte.
fn strip_suffix_os<'a>(name: &'a OsStr, suffix: &str) -> Option<&'a OsStr> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        name.as_bytes()
            .strip_suffix(suffix.as_bytes())
            .map(OsStr::from_bytes)
    }
    #[cfg(not(unix))]
    {
        name.to_str()?.strip_suffix(suffix).map(OsStr::new)
    }
}

/// The stem of a NIfTI file name (`a_0000.nii.gz` -> `a_0000`); `None` for other files, an
/// empty stem or a hidden name.
pub fn nifti_stem(file_name: &OsStr) -> Option<&OsStr> {
    strip_suffix_os(file_name, ".nii.gz")
        .or_else(|| strip_suffix_os(file_name, ".nii"))
        .filter(|s| !s.is_empty() && !s.as_encoded_bytes().starts_with(b"."))
}

/// Whether `path` names a NIfTI file by its name (see [`nifti_stem`]).
pub fn is_nifti_name(path: &Path) -> bool {
    path.file_name().and_then(nifti_stem).is_some()
}

/// A FLARE channel suffix `_NNNN`: the case and the channel (`a_0001` -> `(a, "0001")`).
pub fn channel_of(stem: &OsStr) -> Option<(&OsStr, String)> {
    let lossy = stem.to_string_lossy();
    let (_, ch) = lossy.rsplit_once('_')?;
    if ch.len() != 4 || !ch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let case = strip_suffix_os(stem, &format!("_{ch}"))?;
    (!case.is_empty()).then(|| (case, ch.to_string()))
}

/// The case an image stem names: without `_0000`, else the whole stem.
pub fn case_of(stem: &OsStr) -> &OsStr {
    match channel_of(stem) {
        Some((case, ch)) if ch == CT_CHANNEL => case,
        _ => stem,
    }
}

/// The label map's (and a result's) file name of a case: `<case>.nii.gz`, byte for byte.
pub fn label_file_name(case: &OsStr) -> OsString {
    let mut name = case.to_os_string();
    name.push(".nii.gz");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flare_names() {
        let os = OsStr::new;
        assert_eq!(case_of(os("case_0000")), "case");
        assert_eq!(case_of(os("FLARE21_001_0000")), "FLARE21_001");
        assert_eq!(case_of(os("scan")), "scan");
        assert_eq!(case_of(os("scan_12")), "scan_12");
        assert_eq!(case_of(os("a_0001")), "a_0001");
        assert_eq!(
            channel_of(os("a_0001")),
            Some((os("a"), "0001".to_string()))
        );
        assert_eq!(channel_of(os("_0001")), None);
        assert_eq!(nifti_stem(os("a.nii.gz")), Some(os("a")));
        assert_eq!(
            nifti_stem(os("validation_001.nii")),
            Some(os("validation_001"))
        );
        assert_eq!(nifti_stem(os(".nii.gz")), None);
        assert_eq!(nifti_stem(os(".hidden.nii.gz")), None);
        assert_eq!(nifti_stem(os("._a_0000.nii.gz")), None);
        assert_eq!(nifti_stem(os("a.txt")), None);
        assert_eq!(nifti_stem(os("scores.csv")), None);
        assert!(is_nifti_name(Path::new("dir/b.nii")));
        assert!(!is_nifti_name(Path::new("dir/")));
        assert_eq!(label_file_name(os("a")), "a.nii.gz");
    }

    #[cfg(unix)]
    #[test]
    fn names_that_are_not_utf8_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let stem = OsStr::from_bytes(b"caf\xe9_0000");
        let case = case_of(stem);
        assert_eq!(case.as_bytes(), b"caf\xe9");
        assert_eq!(label_file_name(case).as_bytes(), b"caf\xe9.nii.gz");
        assert_eq!(
            nifti_stem(OsStr::from_bytes(b"\xff.nii")).map(OsStr::as_bytes),
            Some(&b"\xff"[..])
        );
    }
}
