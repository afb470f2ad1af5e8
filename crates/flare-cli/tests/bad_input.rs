//! Every kind of bad input named in the foundation issue, through the real `flare` binary:
//! one line on stderr naming the file and the problem, exit code 2, no panic, and no output
//! (nor a temporary file) left behind.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use flare_testkit::{TempDir, workspace_root};
use flare_volume::{Geometry, Volume};

fn flare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flare"))
}

/// A valid float32 .nii (uncompressed, so its header bytes can be patched).
fn valid_nii(dir: &TempDir, name: &str) -> PathBuf {
    let g = Geometry::axis_aligned([6, 5, 4], [0.8, 0.8, 2.5], [10.0, -20.0, 30.0]).unwrap();
    let v = Volume::new(g, (0..120).map(|x| x as f32 - 60.0).collect()).unwrap();
    let path = dir.join(name);
    flare_nifti::write_volume(&path, &v, Some(flare_nifti::DataType::Float32)).unwrap();
    path
}

fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Runs `flare convert INPUT OUT` and checks the failure contract; returns stderr.
fn assert_refused(input: &Path, dir: &TempDir, env: &[(&str, &str)], expect: &str) -> String {
    let out = dir.join("out.nii.gz");
    let mut cmd = flare();
    cmd.arg("convert").arg(input).arg(&out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit code for {}: {stderr}",
        input.display()
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected, got: {stderr}"
    );
    assert!(stderr.starts_with("flare: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let shown = input.display().to_string();
    assert!(
        stderr.contains(&shown),
        "the message should name {shown}: {stderr}"
    );
    assert!(stderr.contains(expect), "expected {expect:?} in: {stderr}");
    assert!(!out.exists(), "output left behind for {}", input.display());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out.nii"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // Also through `flare info`: same failure contract, no panic.
    let o = flare()
        .arg("info")
        .arg(input)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    stderr
}

#[test]
fn a_valid_file_converts() {
    let dir = TempDir::new("cli-valid");
    let input = valid_nii(&dir, "ct.nii");
    let out = dir.join("ct.nii.gz");
    let o = flare()
        .arg("convert")
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back = flare_nifti::read_image(&out).unwrap();
    let orig = flare_nifti::read_image(&input).unwrap();
    assert_eq!(back.volume.data(), orig.volume.data());
    assert!(
        back.volume
            .geometry()
            .same_grid(orig.volume.geometry(), 1e-5)
    );
    // An existing output is not replaced without --overwrite, and the input never is.
    let o = flare()
        .arg("convert")
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let o = flare()
        .arg("convert")
        .arg(&input)
        .arg(&out)
        .arg("--overwrite")
        .output()
        .unwrap();
    assert!(o.status.success());
    let before = std::fs::read(&input).unwrap();
    let o = flare()
        .arg("convert")
        .arg(&input)
        .arg(&input)
        .arg("--overwrite")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to write over an input"));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn truncated_gzip() {
    let dir = TempDir::new("cli-truncated");
    let nii = valid_nii(&dir, "a.nii");
    let gz = gzip(&std::fs::read(&nii).unwrap());
    let bad = dir.join("truncated.nii.gz");
    std::fs::write(&bad, &gz[..gz.len() / 2]).unwrap();
    assert_refused(&bad, &dir, &[], "truncated");
}

#[test]
fn gzip_of_garbage() {
    let dir = TempDir::new("cli-garbage");
    let garbage: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let bad = dir.join("garbage.nii.gz");
    std::fs::write(&bad, gzip(&garbage)).unwrap();
    assert_refused(&bad, &dir, &[], "not a NIfTI file");
    // And bytes that claim to be gzip but are not a valid stream.
    let mut fake = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    fake.extend_from_slice(&garbage[..400]);
    let bad = dir.join("corrupt.nii.gz");
    std::fs::write(&bad, fake).unwrap();
    assert_refused(&bad, &dir, &[], "gzip");
}

#[test]
fn wrong_magic() {
    let dir = TempDir::new("cli-magic");
    let bad = valid_nii(&dir, "magic.nii");
    patch(&bad, 344, b"xyz\0");
    assert_refused(&bad, &dir, &[], "not a NIfTI file");
}

#[test]
fn header_sizes_disagree_with_file_length() {
    let dir = TempDir::new("cli-short");
    let bad = valid_nii(&dir, "short.nii");
    let b = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &b[..b.len() - 7]).unwrap();
    assert_refused(&bad, &dir, &[], "bytes of voxels");
    let bad = valid_nii(&dir, "offset.nii");
    patch(&bad, 108, &1.0e6f32.to_le_bytes());
    assert_refused(&bad, &dir, &[], "voxels start at byte");
}

#[test]
fn two_d_and_four_d() {
    let dir = TempDir::new("cli-dims");
    let bad = valid_nii(&dir, "flat.nii");
    patch(&bad, 40, &2i16.to_le_bytes());
    assert_refused(&bad, &dir, &[], "2D image");
    let bad = valid_nii(&dir, "time.nii");
    patch(&bad, 40, &4i16.to_le_bytes());
    patch(&bad, 48, &2i16.to_le_bytes());
    assert_refused(&bad, &dir, &[], "one 3D volume");
}

#[test]
fn nan_and_inf_voxels() {
    let dir = TempDir::new("cli-nan");
    let bad = valid_nii(&dir, "nan.nii");
    let offset = 352 + 4 * 17;
    patch(&bad, offset, &f32::NAN.to_le_bytes());
    assert_refused(&bad, &dir, &[], "finite");
    let bad = valid_nii(&dir, "inf.nii");
    patch(&bad, 352, &f32::INFINITY.to_le_bytes());
    assert_refused(&bad, &dir, &[], "finite");
}

#[test]
fn zero_negative_or_nan_spacing() {
    let dir = TempDir::new("cli-spacing");
    for (name, value) in [("zero.nii", 0.0f32), ("nan.nii", f32::NAN)] {
        let bad = valid_nii(&dir, name);
        patch(&bad, 80, &value.to_le_bytes());
        assert_refused(&bad, &dir, &[], "spacing");
    }
    // DICOM: a PixelSpacing of zero.
    let fixture = workspace_root().join("crates/flare-dicom/tests/fixtures/bad_zero_spacing");
    assert_refused(&fixture, &dir, &[], "PixelSpacing");
}

/// A negative stored pixdim is not an error: nibabel builds the qform from its absolute value
/// (the sign of a flip lives in the quaternion and qfac), and so do we.
#[test]
fn negative_pixdim_reads_as_nibabel_does() {
    let dir = TempDir::new("cli-negative");
    let input = valid_nii(&dir, "negative.nii");
    patch(&input, 254, &0i16.to_le_bytes()); // sform_code 0: the qform and pixdim decide
    patch(&input, 84, &(-0.8f32).to_le_bytes());
    let image = flare_nifti::read_image(&input).unwrap();
    assert!((image.volume.geometry().spacing_mm()[1] - 0.8).abs() < 1e-6);
}

#[test]
fn singular_affine() {
    let dir = TempDir::new("cli-singular");
    let bad = valid_nii(&dir, "singular.nii");
    // sform column 0 (srow_x[0], srow_y[0], srow_z[0]) set to zero.
    for row in [280, 296, 312] {
        patch(&bad, row, &0.0f32.to_le_bytes());
    }
    assert_refused(&bad, &dir, &[], "singular");
}

#[test]
fn empty_file() {
    let dir = TempDir::new("cli-empty");
    let bad = dir.join("empty.nii.gz");
    std::fs::write(&bad, b"").unwrap();
    assert_refused(&bad, &dir, &[], "0 bytes");
}

#[test]
fn folder_without_dicom() {
    let dir = TempDir::new("cli-nodicom");
    let bad = dir.join("series");
    std::fs::create_dir_all(bad.join("nested")).unwrap();
    std::fs::write(bad.join("notes.txt"), b"not an image").unwrap();
    std::fs::write(bad.join("nested").join("x.dcm"), b"DICM? no").unwrap();
    assert_refused(&bad, &dir, &[], "no DICOM");
}

#[test]
fn dicom_without_pixel_data() {
    let fixture = workspace_root().join("crates/flare-dicom/tests/fixtures/bad_no_pixels");
    let dir = TempDir::new("cli-nopixels");
    assert_refused(&fixture, &dir, &[], "pixel data");
}

#[test]
fn volume_larger_than_memory() {
    let dir = TempDir::new("cli-memory");
    let g = Geometry::axis_aligned([256, 256, 40], [1.0; 3], [0.0; 3]).unwrap();
    let big = Volume::filled(g, 7.0f32);
    let input = dir.join("big.nii.gz");
    flare_nifti::write_volume(&input, &big, None).unwrap();
    // 10 MB of voxels against a 1 MB limit: refused before allocating.
    assert_refused(&input, &dir, &[("FLARE_MEMORY_LIMIT_MB", "1")], "too large");
}

/// The bytes of every file in `dir`, by name (to prove nothing was written).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// A folder segmented into itself, holding `a_0000.nii.gz` (case `a`) and
/// `a_0000_0000.nii.gz` (case `a_0000`, whose output is `a_0000.nii.gz`): refused before any
/// work, naming both files, with or without --overwrite; the CT is left as it was.
#[test]
fn a_batch_output_on_another_cases_input_is_refused() {
    let dir = TempDir::new("cli-output-on-input");
    valid_nii(&dir, "a_0000.nii");
    let a = dir.join("a_0000.nii");
    std::fs::rename(&a, dir.join("a_0000.nii.gz")).unwrap(); // the name is what matters here
    std::fs::copy(dir.join("a_0000.nii.gz"), dir.join("a_0000_0000.nii.gz")).unwrap();
    let before = snapshot(dir.path());
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["segment", "-i", dir.path().to_str().unwrap()];
        args.extend(["-o", dir.path().to_str().unwrap()]);
        args.extend(extra);
        let o = flare().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains("the output of case a_0000 would overwrite")
                && err.contains("the input of case a;"),
            "{err}"
        );
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{extra:?}: the folder changed"
        );
    }
}

/// `flare evaluate --out` naming a ground-truth file, a prediction, a folder or a new NIfTI
/// name in an input folder is refused before scoring; the files are untouched.
#[test]
fn evaluate_never_writes_its_csv_over_an_input() {
    let dir = TempDir::new("cli-evaluate-out-on-input");
    let (pred, gt) = (dir.join("pred"), dir.join("gt"));
    for d in [&pred, &gt] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("c.nii.gz"), b"not really a NIfTI").unwrap();
    }
    let before = (snapshot(&pred), snapshot(&gt));
    for out in [
        gt.join("c.nii.gz"),
        pred.join("c.nii.gz"),
        gt.clone(),
        gt.join("new.nii.gz"),
    ] {
        let o = flare()
            .args(["evaluate", "--pred", pred.to_str().unwrap()])
            .args(["--gt", gt.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", out.display());
        assert!(err.contains("refusing to write the CSV there"), "{err}");
        assert_eq!((snapshot(&pred), snapshot(&gt)), before);
        assert!(!gt.join("new.nii.gz").exists());
    }
}

/// A copy of a committed fixture series of flare-dicom (written by
/// `scripts/fixtures/dicom_fixtures.py`) in `dir/name`, each file passed through `edit`.
fn fixture_series(dir: &TempDir, fixture: &str, edit: impl Fn(&str, &mut Vec<u8>)) -> PathBuf {
    let src = workspace_root()
        .join("crates/flare-dicom/tests/fixtures")
        .join(fixture);
    let out = dir.join("series");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let mut bytes = std::fs::read(&p).unwrap();
        edit(&name, &mut bytes);
        std::fs::write(out.join(&name), bytes).unwrap();
    }
    out
}

/// Where the first occurrence of a tag's value lies in an explicit VR little endian file: past
/// tag, VR and a 2-byte length for short VRs, or at an OB/OW element's 4-byte length field.
fn explicit_value_at(bytes: &[u8], group: u16, element: u16) -> usize {
    let mut pat = group.to_le_bytes().to_vec();
    pat.extend_from_slice(&element.to_le_bytes());
    bytes.windows(4).position(|w| w == pat.as_slice()).unwrap() + 8
}

/// `flare segment` on a bad series: the case fails (exit 1, as a failed case of a batch), one
/// error line naming the file, no output.
fn segment_refused(series: &Path, dir: &TempDir, expect: &str) {
    let out = dir.join("labels.nii.gz");
    let o = flare()
        .arg("segment")
        .arg("-i")
        .arg(series)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(expect), "{expect:?} in {stderr}");
    assert!(!out.exists());
}

#[test]
fn j2k_header_that_disagrees_with_the_codestream() {
    // Columns 16 on the 40-wide JPEG 2000 fixture: dicom-rs 0.10.1 panicked (exit 101).
    let dir = TempDir::new("cli-j2k-columns");
    let series = fixture_series(&dir, "j2k", |_, b| {
        let at = explicit_value_at(b, 0x0028, 0x0011);
        b[at..at + 2].copy_from_slice(&16u16.to_le_bytes());
    });
    let expect = "the header contradicts the pixel data: Columns x Rows is 16 x 32 but the JPEG 2000 data is 40 x 32";
    assert_refused(&series, &dir, &[], expect);
    segment_refused(&series, &dir, expect);
}

#[test]
fn corrupt_pixel_data_length() {
    // 0xFFFFFFF0 bytes declared in a file of about 1 KB: refused before anything is allocated.
    let dir = TempDir::new("cli-dicom-length");
    let series = fixture_series(&dir, "shuffled", |_, b| {
        let at = explicit_value_at(b, 0x7fe0, 0x0010);
        b[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    });
    assert_refused(
        &series,
        &dir,
        &[],
        "declares 4294967280 bytes but only 96 remain",
    );
}

#[test]
fn truncated_slice_of_the_series_is_refused() {
    // IM0010 is the top slice of the shuffled fixture (z = -300): cut inside its header after
    // the SeriesInstanceUID, it used to vanish from the volume without a word.
    let dir = TempDir::new("cli-dicom-cut");
    let series = fixture_series(&dir, "shuffled", |name, b| {
        if name == "IM0010" {
            let at = explicit_value_at(b, 0x0020, 0x0032);
            b.truncate(at);
        }
    });
    assert_refused(&series, &dir, &[], "damaged slice of series");
    segment_refused(&series, &dir, "IM0010: damaged slice of series");
}

#[test]
fn damaged_file_of_unknown_series_is_a_warning() {
    // Cut before its SeriesInstanceUID: the series is read, and convert and segment say which
    // file was skipped and what it may cost.
    let dir = TempDir::new("cli-dicom-cut-unknown");
    let series = fixture_series(&dir, "shuffled", |name, b| {
        if name == "IM0010" {
            let at = explicit_value_at(b, 0x0008, 0x0060);
            b.truncate(at);
        }
    });
    let warning = format!(
        "flare: warning: {}: skipped, not readable as DICOM (",
        series.join("IM0010").display()
    );
    let o = flare()
        .arg("convert")
        .arg(&series)
        .arg(dir.join("ct.nii.gz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(stderr.contains("the volume lacks it"), "{stderr}");
    let o = flare()
        .arg("segment")
        .arg("-i")
        .arg(&series)
        .arg("-o")
        .arg(dir.join("labels.nii.gz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("flare: warning: ") && stderr.contains("IM0010: skipped, not readable"),
        "{stderr}"
    );
}
