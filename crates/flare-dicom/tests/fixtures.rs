//! The reader against the synthetic series of `scripts/fixtures/dicom_fixtures.py`: good series
//! must match the independent pydicom/SimpleITK conversion (voxels exactly, affine to 1e-5), bad
//! ones must be refused with a message naming the folder or file and the problem.

use std::path::PathBuf;

use flare_dicom::{DicomError, read_series, scan_series};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

struct Expected {
    series_uid: String,
    n_series: usize,
    skipped_files: usize,
    shape: [usize; 3],
    affine: [[f64; 4]; 4],
    voxels: Vec<f32>,
}

fn expected(name: &str) -> Expected {
    let path = fixture("expected").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let usize_of = |k: &str| v[k].as_u64().unwrap() as usize;
    let shape = v["shape"].as_array().unwrap();
    let mut affine = [[0.0; 4]; 4];
    for (r, row) in v["affine"].as_array().unwrap().iter().enumerate() {
        for (c, x) in row.as_array().unwrap().iter().enumerate() {
            affine[r][c] = x.as_f64().unwrap();
        }
    }
    Expected {
        series_uid: v["series_uid"].as_str().unwrap().to_string(),
        n_series: usize_of("n_series"),
        skipped_files: usize_of("skipped_files"),
        shape: [0, 1, 2].map(|a| shape[a].as_u64().unwrap() as usize),
        affine,
        // The oracle wrote f32 values as the f64 they widen to: narrowing back is exact.
        voxels: v["voxels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect(),
    }
}

fn check_good(dir: &str, uid: Option<&str>, expected_name: &str) -> flare_dicom::DicomSeries {
    let exp = expected(expected_name);
    let got = read_series(fixture(dir), uid).unwrap_or_else(|e| panic!("{dir}: {e}"));
    assert_eq!(got.series.uid, exp.series_uid, "{dir}: series chosen");
    assert_eq!(got.all_series.len(), exp.n_series, "{dir}: series found");
    assert_eq!(got.skipped_files, exp.skipped_files, "{dir}: files skipped");
    assert_eq!(got.volume.shape(), exp.shape, "{dir}: shape");
    let affine = got.volume.geometry().affine().rows();
    assert_eq!(exp.affine[3], [0.0, 0.0, 0.0, 1.0]);
    for r in 0..3 {
        for c in 0..4 {
            let (a, b) = (affine[r][c], exp.affine[r][c]);
            assert!(
                (a - b).abs() <= 1e-5,
                "{dir}: affine[{r}][{c}] = {a}, expected {b}\n{affine:?}\nvs {:?}",
                exp.affine
            );
        }
    }
    assert_eq!(got.volume.data().len(), exp.voxels.len());
    for (n, (a, b)) in got.volume.data().iter().zip(&exp.voxels).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{dir}: voxel {n}: {a} vs {b}");
    }
    got
}

#[test]
fn shuffled_names_and_instance_numbers() {
    check_good("shuffled", None, "shuffled");
}

#[test]
fn oblique_uint16_implicit_vr() {
    let s = check_good("oblique", None, "oblique");
    // Slope 0.3 is not exact in binary: the f64-then-f32 rounding must match numpy's.
    assert!(s.volume.data().iter().any(|v| v.fract() != 0.0));
}

#[test]
fn rle_lossless_is_decoded() {
    check_good("rle", None, "rle");
}

#[test]
fn jpeg2000_lossless_is_decoded() {
    check_good("j2k", None, "j2k");
}

#[test]
fn two_series_default_is_the_largest() {
    let s = check_good("two_series", None, "two_series_default");
    assert!(s.chosen_by_default);
    let note = s.choice_note().expect("a note when several series exist");
    assert!(note.contains("2 series found"), "{note}");
    assert!(note.contains(&s.series.uid), "{note}");
    assert!(note.contains("--series"), "{note}");
    assert_eq!(s.series.n_slices, 7);
}

#[test]
fn two_series_by_uid() {
    let exp = expected("two_series_b");
    let s = check_good("two_series", Some(&exp.series_uid), "two_series_b");
    assert!(!s.chosen_by_default);
    assert!(s.choice_note().is_none());
}

#[test]
fn scan_lists_series_without_decoding() {
    let scan = scan_series(fixture("two_series")).unwrap();
    // README.txt, junk.bin, the DICOMDIR and the structured report.
    assert_eq!(scan.skipped_files, 4);
    assert_eq!(scan.series.len(), 2);
    let (a, b) = (&scan.series[0], &scan.series[1]);
    assert_eq!(
        (a.n_slices, a.size, a.modality.as_str(), a.series_number),
        (7, Some([8, 6]), "CT", Some(3))
    );
    assert_eq!(a.description, "venous 3mm");
    assert_eq!(a.transfer_syntax, "1.2.840.10008.1.2.1");
    assert_eq!(
        (b.n_slices, b.size, b.series_number),
        (5, Some([5, 4]), Some(5))
    );
    assert_eq!(b.description, "sagittal reformat");
    let line = a.to_string();
    assert!(
        line.contains("8x6x7") && line.contains("CT") && line.contains("venous 3mm"),
        "{line}"
    );
    assert_eq!(a.uid, expected("two_series_default").series_uid);
}

/// Reads a bad fixture and returns its error with the message, checking that the message names
/// the fixture's folder (every message starts with the folder or a file inside it).
fn refused(dir: &str) -> (DicomError, String) {
    let path = fixture(dir);
    let err = match read_series(&path, None) {
        Ok(s) => panic!("{dir}: read a volume of shape {:?}", s.volume.shape()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{dir}: {msg}");
    assert!(!msg.contains('\n'), "{dir}: one line: {msg}");
    (err, msg)
}

#[test]
fn unknown_series_lists_the_uids() {
    let dir = fixture("two_series");
    let err = read_series(&dir, Some("1.2.3.4")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DicomError::UnknownSeries { .. }), "{msg}");
    assert!(
        msg.contains("no series with SeriesInstanceUID 1.2.3.4"),
        "{msg}"
    );
    assert!(
        msg.contains(&expected("two_series_default").series_uid),
        "{msg}"
    );
    assert!(msg.contains(&expected("two_series_b").series_uid), "{msg}");
}

#[test]
fn gap_is_missing_slices() {
    let (err, msg) = refused("bad_gap");
    assert!(
        matches!(err, DicomError::MissingSlices { missing: 1, .. }),
        "{msg}"
    );
    assert!(msg.contains("missing slices: 4.000 mm between"), "{msg}");
    assert!(msg.contains("s02.dcm") && msg.contains("s03.dcm"), "{msg}");
    assert!(msg.contains("usual spacing is 2.000 mm"), "{msg}");
}

#[test]
fn gantry_tilt() {
    let (err, msg) = refused("bad_tilt");
    assert!(matches!(err, DicomError::GantryTilt { .. }), "{msg}");
    assert!(msg.contains("gantry tilt"), "{msg}");
    // The tilt written by the fixture script is 15 degrees.
    assert!(msg.contains("about 15.00 degrees"), "{msg}");
}

#[test]
fn non_parallel_slices() {
    let (err, msg) = refused("bad_nonparallel");
    assert!(matches!(err, DicomError::NonParallelSlices { .. }), "{msg}");
    assert!(msg.contains("s03.dcm: slices are not parallel"), "{msg}");
    assert!(msg.contains("by 5.000 degrees"), "{msg}");
}

#[test]
fn mixed_sizes() {
    let (err, msg) = refused("bad_mixed_sizes");
    assert!(matches!(err, DicomError::MixedSizes { .. }), "{msg}");
    assert!(msg.contains("slices of different sizes"), "{msg}");
    assert!(
        msg.contains("s00.dcm is 8x6") && msg.contains("s02.dcm is 8x5"),
        "{msg}"
    );
}

#[test]
fn mr_is_not_ct() {
    let (err, msg) = refused("bad_mr");
    assert!(matches!(err, DicomError::NotCt { .. }), "{msg}");
    assert!(msg.contains("has modality MR, not CT"), "{msg}");
}

#[test]
fn missing_pixel_data() {
    let (err, msg) = refused("bad_no_pixels");
    assert!(matches!(err, DicomError::MissingPixelData { .. }), "{msg}");
    assert!(
        msg.ends_with("s04.dcm: DICOM image has no pixel data"),
        "{msg}"
    );
}

#[test]
fn no_dicom_at_all() {
    let (err, msg) = refused("bad_no_dicom");
    assert!(
        matches!(err, DicomError::NoDicom { skipped: 2, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("no DICOM image files found (2 other file(s) skipped)"),
        "{msg}"
    );
    let scan_err = scan_series(fixture("bad_no_dicom")).unwrap_err();
    assert_eq!(scan_err.to_string(), msg);
}

#[test]
fn not_a_folder() {
    let path = fixture("does_not_exist");
    let err = read_series(&path, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DicomError::Io { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("{}: cannot read the folder", path.display())),
        "{msg}"
    );
}

#[test]
fn undecodable_transfer_syntax_is_named() {
    let (err, msg) = refused("bad_jpegls");
    assert!(
        matches!(err, DicomError::UnsupportedTransferSyntax { .. }),
        "{msg}"
    );
    assert!(msg.contains("JPEG-LS Lossless"), "{msg}");
    assert!(msg.contains("1.2.840.10008.1.2.4.80"), "{msg}");
    assert!(msg.contains("flare cannot decode"), "{msg}");
}

#[test]
fn duplicate_positions() {
    let (err, msg) = refused("bad_duplicate");
    assert!(matches!(err, DicomError::DuplicatePosition { .. }), "{msg}");
    assert!(msg.contains("duplicate slice position"), "{msg}");
    assert!(msg.contains("s02.dcm") && msg.contains("s03.dcm"), "{msg}");
    assert!(msg.contains("at 4.000 mm"), "{msg}");
}

#[test]
fn missing_orientation() {
    let (err, msg) = refused("bad_no_iop");
    assert!(
        matches!(
            err,
            DicomError::MissingAttribute {
                attribute: "ImageOrientationPatient",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.ends_with("s00.dcm: missing ImageOrientationPatient"),
        "{msg}"
    );
}

#[test]
fn zero_pixel_spacing() {
    let (err, msg) = refused("bad_zero_spacing");
    assert!(
        matches!(
            err,
            DicomError::BadAttribute {
                attribute: "PixelSpacing",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("PixelSpacing = \"[0.0, 0.8]\": spacing must be positive"),
        "{msg}"
    );
}

#[test]
fn non_uniform_spacing() {
    let (err, msg) = refused("bad_nonuniform");
    assert!(matches!(err, DicomError::NonUniformSpacing { .. }), "{msg}");
    assert!(
        msg.contains("non-uniform slice spacing: 1.300 mm between"),
        "{msg}"
    );
    assert!(msg.contains("s02.dcm") && msg.contains("s03.dcm"), "{msg}");
    assert!(msg.contains("tolerance 0.020 mm"), "{msg}");
}

#[test]
fn file_cut_short_is_named() {
    // A copy of a good series with one file losing its last 20 bytes (inside the pixel data):
    // its header still scans, so the failure comes when the pixels are read.
    let tmp = flare_testkit::TempDir::new("dicom-cut");
    for entry in std::fs::read_dir(fixture("shuffled")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.join(p.file_name().unwrap().to_str().unwrap())).unwrap();
    }
    let victim = tmp.join("IM0017");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 20]).unwrap();
    let err = read_series(tmp.path(), None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DicomError::Unreadable { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("{}: cannot read DICOM", victim.display())),
        "{msg}"
    );
}

#[test]
fn damaged_dicom_beside_a_series_is_reported() {
    let tmp = flare_testkit::TempDir::new("dicom-damaged");
    for entry in std::fs::read_dir(fixture("shuffled")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.join(p.file_name().unwrap().to_str().unwrap())).unwrap();
    }
    // The DICOM magic, then bytes that are no file meta group.
    let mut junk = vec![0u8; 128];
    junk.extend_from_slice(b"DICM");
    junk.extend_from_slice(&[0xAB; 40]);
    std::fs::write(tmp.join("damaged.dcm"), &junk).unwrap();
    let s = read_series(tmp.path(), None).unwrap();
    assert_eq!(s.skipped_files, 1);
    assert_eq!(s.unreadable.len(), 1);
    assert!(
        s.unreadable[0].contains("damaged.dcm: "),
        "{:?}",
        s.unreadable
    );
    assert_eq!(s.volume.shape(), expected("shuffled").shape);
}

#[test]
fn truncated_pixel_data() {
    let (err, msg) = refused("bad_truncated");
    assert!(
        matches!(err, DicomError::TruncatedPixelData { .. }),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "s01.dcm: pixel data holds 86 bytes but 6 rows x 8 columns x 2 bytes need 96"
        ),
        "{msg}"
    );
}
