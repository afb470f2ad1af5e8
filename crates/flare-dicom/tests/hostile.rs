//! Hostile input (issue 12): headers that contradict the pixels, codec-crashing codestreams and
//! damaged slices. Each case is generated at test time from a committed good series (written by
//! `scripts/fixtures/dicom_fixtures.py`): copied to a temporary folder, then one attribute
//! rewritten with dicom-rs or the file cut. Every case must be refused with one line naming the
//! file, never a panic and never a silently wrong volume.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use flare_dicom::{DicomError, read_series};
use flare_testkit::TempDir;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A copy of the committed fixture series `name` in a fresh temporary folder.
fn copy_series(name: &str, tag: &str) -> TempDir {
    let tmp = TempDir::new(tag);
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.join(p.file_name().unwrap().to_str().unwrap())).unwrap();
    }
    tmp
}

/// The series' files, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Rewrites one attribute of `file` with dicom-rs (the pixel data is kept as it is).
fn set(file: &Path, tag: dicom_core::Tag, vr: VR, value: PrimitiveValue) {
    let mut obj = OpenFileOptions::new().open_file(file).unwrap();
    obj.put(DataElement::new(tag, vr, value));
    obj.write_to_file(file).unwrap();
}

/// Reads the folder, expecting a refusal: one line starting with the folder or a file in it.
fn refused(dir: &Path) -> (DicomError, String) {
    let err = match read_series(dir, None) {
        Ok(s) => panic!(
            "{}: read a volume of shape {:?}",
            dir.display(),
            s.volume.shape()
        ),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.starts_with(&dir.display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    (err, msg)
}

/// The J2K fixture is 40 x 32 (columns x rows), int16 encoded lossless.
#[test]
fn j2k_size_that_disagrees_with_the_codestream_is_refused_before_decoding() {
    // Columns 16 and Rows 17 made dicom-rs 0.10.1 panic (slice index out of range, exit 101);
    // Columns 80 gave a volume half filled with -1024.
    for (tag, value, expect) in [
        (
            tags::COLUMNS,
            16u16,
            "Columns x Rows is 16 x 32 but the JPEG 2000 data is 40 x 32",
        ),
        (
            tags::ROWS,
            17,
            "Columns x Rows is 40 x 17 but the JPEG 2000 data is 40 x 32",
        ),
        (
            tags::COLUMNS,
            80,
            "Columns x Rows is 80 x 32 but the JPEG 2000 data is 40 x 32",
        ),
    ] {
        let tmp = copy_series("j2k", "hostile-j2k-size");
        // Every slice, as a campaign against a whole series would.
        for f in files(tmp.path()) {
            set(&f, tag, VR::US, PrimitiveValue::from(value));
        }
        let (err, msg) = refused(tmp.path());
        assert!(
            matches!(err, DicomError::HeaderContradictsPixels { .. }),
            "{msg}"
        );
        assert!(
            msg.contains("the header contradicts the pixel data: ") && msg.ends_with(expect),
            "{msg}"
        );
    }
}

#[test]
fn j2k_samples_wider_than_bits_allocated_are_refused() {
    // BitsAllocated 8 (BitsStored 8, HighBit 7) over 16-bit samples: dicom-rs cut each sample
    // to its low byte (HU -1024..-769).
    let tmp = copy_series("j2k", "hostile-j2k-bits");
    for f in files(tmp.path()) {
        set(&f, tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
        set(&f, tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
        set(&f, tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
        // A rescale under which 8 bits still reach from air to bone, so that the codestream
        // check is what refuses.
        set(&f, tags::RESCALE_SLOPE, VR::DS, PrimitiveValue::from("16"));
    }
    let (err, msg) = refused(tmp.path());
    assert!(
        matches!(err, DicomError::HeaderContradictsPixels { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("BitsAllocated is 8 but the JPEG 2000 data has"),
        "{msg}"
    );
}

#[test]
fn rle_header_taller_than_its_segments_is_refused() {
    // The RLE fixture is 8 x 6: its segments decode to 48 bytes each, Rows 7 needs 56 (dicom-rs
    // indexed past the decoded segment).
    let tmp = copy_series("rle", "hostile-rle");
    let victim = files(tmp.path())[0].clone();
    set(&victim, tags::ROWS, VR::US, PrimitiveValue::from(7u16));
    // A slice of another size would be refused as mixed sizes first: change them all.
    for f in files(tmp.path()) {
        set(&f, tags::ROWS, VR::US, PrimitiveValue::from(7u16));
    }
    let (err, msg) = refused(tmp.path());
    assert!(
        matches!(err, DicomError::HeaderContradictsPixels { .. }),
        "{msg}"
    );
    assert!(
        msg.ends_with("RLE segment 0 decodes to 48 bytes but Columns x Rows is 8 x 7 = 56"),
        "{msg}"
    );
}

#[test]
fn native_pixel_data_must_have_exactly_the_header_length() {
    // The shuffled fixture is 8 x 6 int16: 96 bytes. Columns 4 describes 48 of them.
    let tmp = copy_series("shuffled", "hostile-native");
    for f in files(tmp.path()) {
        set(&f, tags::COLUMNS, VR::US, PrimitiveValue::from(4u16));
    }
    let (err, msg) = refused(tmp.path());
    assert!(
        matches!(err, DicomError::HeaderContradictsPixels { .. }),
        "{msg}"
    );
    assert!(
        msg.ends_with("pixel data holds 96 bytes but 6 rows x 4 columns x 2 bytes make 48"),
        "{msg}"
    );
}

/// Sets one attribute on the second slice (by name) of a copy of `shuffled` and returns the
/// refusal's message, which must name that file.
fn one_bad_slice(tag: dicom_core::Tag, vr: VR, value: PrimitiveValue) -> (DicomError, String) {
    let tmp = copy_series("shuffled", "hostile-attr");
    let victim = files(tmp.path())[1].clone();
    set(&victim, tag, vr, value);
    let (err, msg) = refused(tmp.path());
    assert!(
        msg.starts_with(&victim.display().to_string()),
        "names {}: {msg}",
        victim.display()
    );
    (err, msg)
}

#[test]
fn invalid_pixel_description_is_refused() {
    let (_, msg) = one_bad_slice(tags::BITS_STORED, VR::US, PrimitiveValue::from(17u16));
    assert!(
        msg.ends_with("BitsStored = \"17\": must be 1 to BitsAllocated (16)"),
        "{msg}"
    );
    let (_, msg) = one_bad_slice(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16));
    assert!(
        msg.ends_with("HighBit = \"11\": must be BitsStored - 1 (15)"),
        "{msg}"
    );
    let (_, msg) = one_bad_slice(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(2u16),
    );
    assert!(
        msg.ends_with("PixelRepresentation = \"2\": must be 0 (unsigned) or 1 (two's complement)"),
        "{msg}"
    );
    let (_, msg) = one_bad_slice(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(3u16));
    assert!(msg.contains("3 samples per pixel"), "{msg}");
}

#[test]
fn absurd_rescale_is_refused() {
    // The shuffled fixture is int16 with slope 2.5, intercept -1024.5.
    for (tag, value, shown) in [
        (
            tags::RESCALE_SLOPE,
            "1e-30",
            "0.000000000000000000000000000001/-1024.5",
        ),
        (tags::RESCALE_INTERCEPT, "-1e38", "2.5/-1e38"),
        (tags::RESCALE_INTERCEPT, "1e6", "2.5/1000000"),
    ] {
        let (err, msg) = one_bad_slice(tag, VR::DS, PrimitiveValue::from(value));
        assert!(matches!(err, DicomError::BadAttribute { .. }), "{msg}");
        assert!(
            msg.contains(&format!("RescaleSlope/RescaleIntercept = \"{shown}\"")),
            "{msg}"
        );
        assert!(
            msg.contains("does not reach from air (-1000) to bone (1000); not a CT rescale"),
            "{msg}"
        );
    }
    let (_, msg) = one_bad_slice(tags::RESCALE_SLOPE, VR::DS, PrimitiveValue::from("1e30"));
    assert!(
        msg.ends_with(
            "RescaleSlope = \"1e30\": a stored step of more than 100 HU is not a CT rescale"
        ),
        "{msg}"
    );
    let (_, msg) = one_bad_slice(tags::RESCALE_SLOPE, VR::DS, PrimitiveValue::from("-1"));
    assert!(
        msg.ends_with("RescaleSlope = \"-1.0\": must be positive"),
        "{msg}"
    );
}

#[test]
fn a_non_ct_slice_inside_a_ct_series_is_refused() {
    for modality in ["PT", "MR"] {
        let (err, msg) = one_bad_slice(tags::MODALITY, VR::CS, PrimitiveValue::from(modality));
        assert!(matches!(err, DicomError::SliceNotCt { .. }), "{msg}");
        assert!(
            msg.contains(&format!("modality {modality} inside CT series ")),
            "{msg}"
        );
    }
}

/// The file holding the slice at the top of the shuffled series (largest position along z).
fn last_slice(dir: &Path) -> PathBuf {
    let z = |f: &PathBuf| {
        let obj = OpenFileOptions::new().open_file(f).unwrap();
        obj.element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap()[2]
    };
    files(dir)
        .into_iter()
        .max_by(|a, b| z(a).total_cmp(&z(b)))
        .unwrap()
}

/// Offset of the first occurrence of a tag's little-endian bytes in a file.
fn tag_offset(bytes: &[u8], tag: dicom_core::Tag) -> usize {
    let mut pat = tag.0.to_le_bytes().to_vec();
    pat.extend_from_slice(&tag.1.to_le_bytes());
    bytes
        .windows(4)
        .position(|w| w == pat.as_slice())
        .unwrap_or_else(|| panic!("{tag} not in the file"))
}

#[test]
fn a_truncated_last_slice_of_the_series_refuses_the_read() {
    // Cut inside the header, after SeriesInstanceUID: the file is known to be the series'.
    // Before, it was skipped and the volume silently lost its last slice.
    let tmp = copy_series("shuffled", "hostile-cut-known");
    let victim = last_slice(tmp.path());
    let bytes = std::fs::read(&victim).unwrap();
    let cut = tag_offset(&bytes, tags::IMAGE_POSITION_PATIENT) + 3;
    std::fs::write(&victim, &bytes[..cut]).unwrap();
    let (err, msg) = refused(tmp.path());
    assert!(matches!(err, DicomError::DamagedSlice { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("{}: damaged slice of series ", victim.display())),
        "{msg}"
    );
    assert!(msg.contains("the volume would lack it"), "{msg}");
}

#[test]
fn a_damaged_file_of_unknown_series_is_a_warning() {
    // Cut before SeriesInstanceUID: nothing says which series the file belonged to, so the
    // series is read and the caller gets a warning naming the file.
    let tmp = copy_series("shuffled", "hostile-cut-unknown");
    let victim = last_slice(tmp.path());
    let bytes = std::fs::read(&victim).unwrap();
    let cut = tag_offset(&bytes, tags::MODALITY) + 3;
    std::fs::write(&victim, &bytes[..cut]).unwrap();
    let s = read_series(tmp.path(), None).unwrap();
    assert_eq!(s.volume.shape(), [8, 6, 4]);
    let w = s.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "{}: skipped, not readable as DICOM (",
            victim.display()
        )),
        "{w:?}"
    );
    assert!(
        w[0].ends_with(&format!(
            "if it was a slice of series {}, the volume lacks it",
            s.series.uid
        )),
        "{w:?}"
    );
}

#[test]
fn pixel_data_cut_short_is_refused_by_its_declared_length() {
    // The length field says 96 bytes; 20 are missing. The walk refuses it before dicom-rs reads.
    let tmp = copy_series("shuffled", "hostile-cut-pixels");
    let victim = files(tmp.path())[2].clone();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 20]).unwrap();
    let (err, msg) = refused(tmp.path());
    assert!(matches!(err, DicomError::Unreadable { .. }), "{msg}");
    assert!(
        msg.ends_with("element (7FE0,0010) at byte 1000 declares 96 bytes but only 76 remain in the file (truncated file or corrupt length)"),
        "{msg}"
    );
}
