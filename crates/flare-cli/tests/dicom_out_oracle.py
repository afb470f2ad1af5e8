"""Independent check of flare's DICOM outputs against the source series and flare's NIfTI.

Usage (python3 -c "$(cat this)" ...): SERIES_DIR LABELS.nii.gz SEG.dcm|- RTSTRUCT.dcm|- COLOURS_JSON

Reads the source series with pydicom (its own sort along the slice normal, SOP Instance UIDs from
the dataset or, where blank, the file meta), flare's label map with nibabel (each source slice
matched to the NIfTI slice at its position), the SEG with highdicom (masks by source instance,
segments identified by their SNOMED CT codes, not by flare's label values) and the RTSTRUCT with
pydicom + matplotlib (contours mapped into each referenced image's pixel grid from its own
position, orientation and spacing, filled by pixel centre with the even-odd rule).

Prints one JSON object: per organ, SEG voxel mismatches and RTSTRUCT Dice; asserts the references
and modules on the way (a failed assertion fails the test with its message).
"""

import json
import sys

import nibabel as nib
import numpy as np
import pydicom

ORGANS = {"10200004": 1, "64033007": 2, "78961009": 3, "15776009": 4}
NAMES = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}


def blank(v):
    return v is None or str(v).strip("\0 ") == ""


def load_series(folder):
    import os

    slices = []
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            try:
                ds = pydicom.dcmread(p)
            except Exception:
                continue
            if "PixelData" not in ds or ds.get("Modality") != "CT":
                continue
            uid = ds.get("SOPInstanceUID")
            if blank(uid):
                uid = ds.file_meta.MediaStorageSOPInstanceUID
            cls = ds.get("SOPClassUID")
            if blank(cls):
                cls = ds.file_meta.MediaStorageSOPClassUID
            slices.append((ds, str(uid), str(cls)))
    iop = np.array(slices[0][0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda s: float(np.dot(np.array(s[0].ImagePositionPatient, float), normal)))
    return slices, iop, normal


def main():
    series_dir, labels_path, seg_path, rt_path, colours_json = sys.argv[1:6]
    colours = json.loads(colours_json)
    slices, iop, normal = load_series(series_dir)
    first = slices[0][0]
    rows, cols = int(first.Rows), int(first.Columns)
    ps = np.array(first.PixelSpacing, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]

    img = nib.load(labels_path)
    lab = np.asarray(img.dataobj)
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    assert lab.shape == (cols, rows, len(slices)), (lab.shape, rows, cols, len(slices))
    # NIfTI slice of each source slice: the one whose (0, 0, k) is nearest its position.
    inv = np.linalg.inv(lps_affine)
    masks = []  # per source slice: (rows, cols) labels
    for ds, _, _ in slices:
        ijk = inv @ np.append(np.array(ds.ImagePositionPatient, float), 1.0)
        k = int(round(ijk[2]))
        assert abs(ijk[0]) < 0.05 and abs(ijk[1]) < 0.05, ijk
        masks.append(lab[:, :, k].T)
    masks = np.stack(masks)  # (slice, row, col)
    uids = [s[1] for s in slices]
    by_uid = {s[1]: n for n, s in enumerate(slices)}
    study_uid = first.get("StudyInstanceUID")
    frame_uid = str(first.FrameOfReferenceUID)
    positions = [float(np.dot(np.array(d.ImagePositionPatient, float), normal)) for d, _, _ in slices]
    gaps = np.diff(positions)
    result = {"slice_gap_spread_mm": float(gaps.max() - gaps.min())}
    result["organs_in_nifti"] = sorted(NAMES[int(v)] for v in np.unique(lab) if v in NAMES)

    if seg_path != "-":
        import highdicom as hd

        seg = hd.seg.segread(seg_path)
        ds = pydicom.dcmread(seg_path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
        assert ds.SegmentationType == "BINARY" and ds.BitsAllocated == 1
        assert ds.Modality == "SEG"
        assert ds.FrameOfReferenceUID == frame_uid, (ds.FrameOfReferenceUID, frame_uid)
        if not blank(study_uid):
            assert ds.StudyInstanceUID == study_uid
        assert str(ds.PatientName) == str(first.PatientName), (ds.PatientName, first.PatientName)
        assert ds.PatientID == first.PatientID
        assert ds.SeriesInstanceUID != first.get("SeriesInstanceUID")
        refs = [
            i.ReferencedSOPInstanceUID
            for s in ds.ReferencedSeriesSequence
            for i in s.ReferencedInstanceSequence
        ]
        assert sorted(refs) == sorted(uids), "ReferencedSeriesSequence != the source images"
        # Every frame: its position is its source image's, its derivation names that image.
        for f in ds.PerFrameFunctionalGroupsSequence:
            src = f.DerivationImageSequence[0].SourceImageSequence[0]
            n = by_uid[src.ReferencedSOPInstanceUID]
            a = np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
            b = np.array(slices[n][0].ImagePositionPatient, float)
            assert np.abs(a - b).max() < 1e-6, (a, b)
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert np.allclose(
            np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float), iop
        )
        assert np.allclose(np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float), ps)
        segs = {}
        for s in ds.SegmentSequence:
            cat = s.SegmentedPropertyCategoryCodeSequence[0]
            assert (cat.CodeValue, cat.CodingSchemeDesignator) == ("123037004", "SCT")
            typ = s.SegmentedPropertyTypeCodeSequence[0]
            assert typ.CodingSchemeDesignator == "SCT"
            assert s.SegmentAlgorithmType == "AUTOMATIC"
            assert s.SegmentAlgorithmName.startswith("flare ")
            label = ORGANS[typ.CodeValue]
            segs[s.SegmentNumber] = label
            lab_ = np.array(s.RecommendedDisplayCIELabValue, float)
            from skimage.color import rgb2lab

            want = rgb2lab(np.array([[colours[label - 1]]], float) / 255.0)[0, 0]
            got = [lab_[0] / 65535 * 100, lab_[1] / 65535 * 255 - 128, lab_[2] / 65535 * 255 - 128]
            assert np.abs(np.array(got) - want).max() < 0.1, (got, want)
        px = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            segment_numbers=sorted(segs),
            combine_segments=False,
            assert_missing_frames_are_empty=True,
        )
        assert px.shape == (len(uids), rows, cols, len(segs)), px.shape
        mism = {}
        for n, number in enumerate(sorted(segs)):
            label = segs[number]
            mism[NAMES[label]] = int(np.count_nonzero((px[..., n] > 0) != (masks == label)))
        for label, name in NAMES.items():
            if label not in segs.values():
                mism[name] = int(np.count_nonzero(masks == label))
        result["seg_segments"] = sorted(NAMES[v] for v in segs.values())
        result["seg_mismatched_voxels"] = mism
        result["seg_frames"] = int(ds.NumberOfFrames)

    if rt_path != "-":
        from matplotlib.path import Path

        rt = pydicom.dcmread(rt_path)
        assert rt.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3" and rt.Modality == "RTSTRUCT"
        ref_for = rt.ReferencedFrameOfReferenceSequence[0]
        assert ref_for.FrameOfReferenceUID == frame_uid
        rt_series = ref_for.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
        listed = sorted(i.ReferencedSOPInstanceUID for i in rt_series.ContourImageSequence)
        assert listed == sorted(uids)
        if not blank(first.get("SeriesInstanceUID")):
            assert rt_series.SeriesInstanceUID == first.SeriesInstanceUID
        assert str(rt.PatientName) == str(first.PatientName)
        names = {r.ROINumber: r for r in rt.StructureSetROISequence}
        for r in rt.StructureSetROISequence:
            assert r.ReferencedFrameOfReferenceUID == frame_uid
        label_of = {
            o.ReferencedROINumber: ORGANS[o.RTROIIdentificationCodeSequence[0].CodeValue]
            for o in rt.RTROIObservationsSequence
        }
        centres = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), -1).reshape(-1, 2)
        dice = {}
        for roi in rt.ROIContourSequence:
            assert roi.ReferencedROINumber in names
            label = label_of[roi.ReferencedROINumber]
            assert [int(v) for v in roi.ROIDisplayColor] == colours[label - 1]
            filled = np.zeros((len(slices), rows, cols), bool)
            for c in roi.ContourSequence:
                assert c.ContourGeometricType == "CLOSED_PLANAR"
                n = by_uid[c.ContourImageSequence[0].ReferencedSOPInstanceUID]
                pts = np.array(c.ContourData, float).reshape(-1, 3)
                assert len(pts) == int(c.NumberOfContourPoints)
                d = pts - np.array(slices[n][0].ImagePositionPatient, float)
                assert np.abs(d @ normal).max() < 1e-3, "contour off its image's plane"
                xy = np.stack([d @ row_dir / ps[1], d @ col_dir / ps[0]], 1)
                inside = Path(xy).contains_points(centres).reshape(rows, cols)
                filled[n] ^= inside
            truth = masks == label
            dice[NAMES[label]] = float(
                2 * np.count_nonzero(filled & truth) / (filled.sum() + truth.sum())
            )
        result["rtstruct_dice"] = dice
    print(json.dumps(result))


main()
