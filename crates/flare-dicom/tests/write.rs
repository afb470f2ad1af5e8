//! The SEG and RTSTRUCT writers on the committed synthetic series (no Python needed): the
//! files parse, frames unpack to the label map, references and positions are the source's,
//! and label maps off the series' grid or without organs are refused. The independent readers
//! (dciodvfy, highdicom, matplotlib) check the same outputs in crates/flare-cli/tests/dicom_out.rs.

use std::{io::Cursor, path::PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use flare_dicom::{
    DicomError, scan_series,
    write::{Algorithm, flare_organs, rtstruct, seg},
};
use flare_volume::{LabelMap, Volume};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn algorithm() -> Algorithm {
    Algorithm {
        name: "flare".into(),
        version: "0.0.0-test".into(),
        model: "test".into(),
    }
}

fn parse(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
    // Skip the 128-byte preamble; the rest is "DICM" + meta + dataset.
    OpenFileOptions::new()
        .from_reader(Cursor::new(&bytes[128..]))
        .unwrap()
}

fn items(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Vec<InMemDicomObject> {
    obj.element(tag).unwrap().items().unwrap().to_vec()
}

fn str_of(obj: &InMemDicomObject, tag: dicom_object::Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// A label map on `geometry` with organ 1 in a block of slices 1-2 and organ 3 on slice 3.
fn labels_on(geometry: flare_volume::Geometry) -> LabelMap {
    let [nx, ny, _] = geometry.shape();
    let mut l = Volume::filled(geometry, 0u8);
    for k in 1..=2 {
        for j in 1..ny - 1 {
            for i in 2..nx - 1 {
                l.data_mut()[i + nx * (j + ny * k)] = 1;
            }
        }
    }
    l.data_mut()[3 + nx * (2 + ny * 3)] = 3;
    l
}

#[test]
fn seg_frames_unpack_to_the_label_map_at_the_source_positions() {
    let scan = scan_series(fixture("shuffled")).unwrap();
    let source = scan.source_series(None).unwrap();
    let volume = scan.read(None).unwrap().volume;
    assert!(source.geometry.same_grid(volume.geometry(), 1e-9));
    let labels = labels_on(source.geometry);
    let out = seg::segmentation(
        &source,
        &labels,
        &flare_organs([[1, 2, 3]; 4]),
        &algorithm(),
    )
    .unwrap();
    assert_eq!(out.labels, [1, 3]);
    assert_eq!(out.items, 3);
    let obj = parse(&out.bytes);
    assert_eq!(str_of(&obj, tags::SOP_CLASS_UID), seg::SEGMENTATION_STORAGE);
    assert_eq!(
        obj.meta().media_storage_sop_instance_uid(),
        out.sop_instance_uid
    );
    let [nx, ny, _] = source.geometry.shape();
    let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let frames = items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    assert_eq!(frames.len(), 3);
    for (f, frame) in frames.iter().enumerate() {
        let segment: u16 = items(frame, tags::SEGMENT_IDENTIFICATION_SEQUENCE)[0]
            .element(tags::REFERENCED_SEGMENT_NUMBER)
            .unwrap()
            .to_int()
            .unwrap();
        let label = [1u8, 3][usize::from(segment) - 1];
        let src = &items(
            &items(frame, tags::DERIVATION_IMAGE_SEQUENCE)[0],
            tags::SOURCE_IMAGE_SEQUENCE,
        )[0];
        let uid = str_of(src, tags::REFERENCED_SOP_INSTANCE_UID);
        let k = source
            .slices
            .iter()
            .position(|s| s.sop_instance_uid == uid)
            .unwrap();
        let ipp = obj_floats(
            &items(frame, tags::PLANE_POSITION_SEQUENCE)[0],
            tags::IMAGE_POSITION_PATIENT,
        );
        assert_eq!(ipp, source.slices[k].position_mm);
        // The frame's bits, unpacked here bit by bit from the stream.
        for r in 0..ny {
            for c in 0..nx {
                let bit = f * nx * ny + r * nx + c;
                let on = pixels[bit / 8] >> (bit % 8) & 1 == 1;
                assert_eq!(
                    on,
                    labels.data()[c + nx * (r + ny * k)] == label,
                    "{f} {r} {c}"
                );
            }
        }
    }
}

fn obj_floats(obj: &InMemDicomObject, tag: dicom_object::Tag) -> [f64; 3] {
    let v = obj.element(tag).unwrap().to_multi_float64().unwrap();
    [v[0], v[1], v[2]]
}

#[test]
fn rtstruct_contours_lie_on_their_images_and_enclose_the_organ() {
    let scan = scan_series(fixture("oblique")).unwrap();
    let source = scan.source_series(None).unwrap();
    let labels = labels_on(source.geometry);
    let organs = flare_organs([[9, 8, 7], [0, 0, 0], [1, 2, 3], [0, 0, 0]]);
    let out = rtstruct::structure_set(&source, &labels, &organs, &algorithm()).unwrap();
    assert_eq!(out.labels, [1, 3]);
    // Organ 1: one block per slice on 2 slices; organ 3: one voxel.
    assert_eq!(out.items, 3);
    let obj = parse(&out.bytes);
    let rois = items(&obj, tags::ROI_CONTOUR_SEQUENCE);
    assert_eq!(str_of(&rois[0], tags::ROI_DISPLAY_COLOR), "9\\8\\7");
    let contour = &items(&rois[1], tags::CONTOUR_SEQUENCE)[0];
    let uid = str_of(
        &items(contour, tags::CONTOUR_IMAGE_SEQUENCE)[0],
        tags::REFERENCED_SOP_INSTANCE_UID,
    );
    assert_eq!(uid, source.slices[3].sop_instance_uid);
    // The one-voxel contour is a diamond around the voxel's centre, in that slice's plane.
    let pts = contour
        .element(tags::CONTOUR_DATA)
        .unwrap()
        .to_multi_float64()
        .unwrap();
    assert_eq!(pts.len(), 12);
    let centre = (0..3)
        .map(|a| (0..4).map(|p| pts[3 * p + a]).sum::<f64>() / 4.0)
        .collect::<Vec<_>>();
    // Voxel (3, 2, 3) in RAS, back to LPS.
    let ras = source.geometry.index_to_world([3.0, 2.0, 3.0]);
    let lps = [-ras[0], -ras[1], ras[2]];
    for a in 0..3 {
        assert!((centre[a] - lps[a]).abs() < 1e-3, "{centre:?} {lps:?}");
    }
}

#[test]
fn label_maps_off_the_grid_or_without_organs_are_refused() {
    let scan = scan_series(fixture("shuffled")).unwrap();
    let source = scan.source_series(None).unwrap();
    let organs = flare_organs([[0, 0, 0]; 4]);
    let empty = Volume::filled(source.geometry, 0u8);
    let e = seg::segmentation(&source, &empty, &organs, &algorithm()).unwrap_err();
    assert!(matches!(e, DicomError::NoOrgan { .. }), "{e}");
    let e = rtstruct::structure_set(&source, &empty, &organs, &algorithm()).unwrap_err();
    assert!(e.to_string().contains("no organ found"), "{e}");
    let other = source.geometry.resized([4, 3, 5]).unwrap();
    let e = seg::segmentation(&source, &labels_on(other), &organs, &algorithm()).unwrap_err();
    assert!(matches!(e, DicomError::LabelGridMismatch { .. }), "{e}");
}
