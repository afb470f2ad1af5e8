#!/usr/bin/env python3
"""Draws flare's DICOM outputs over their source series as a DICOM reader sees them.

Nothing here comes from flare's arrays: the CT slices are read with pydicom and sorted along
their normal, the SEG is read with highdicom (masks by source image, colours from each segment's
RecommendedDisplayCIELabValue, names from SegmentLabel), the RTSTRUCT with pydicom (contour
points mapped into each referenced image's pixel grid). Panels: the SEG filled on an axial slice
and on a coronal reformat, and the RTSTRUCT's contours on the same axial slice, shown the
radiological way (patient's right on the left, anterior or superior up) whatever the layout
the series is stored in.

Usage: dicom_out_picture.py SERIES_DIR SEG.dcm RTSTRUCT.dcm OUT.png
"""

import os
import sys

import highdicom as hd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pydicom
from skimage.color import lab2rgb


def main():
    series_dir, seg_path, rt_path, out = sys.argv[1:5]
    slices = []
    for f in sorted(os.listdir(series_dir)):
        ds = pydicom.dcmread(os.path.join(series_dir, f))
        if "PixelData" in ds:
            slices.append(ds)
    iop = np.array(slices[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), normal)))
    ct = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices]
    )
    uids = [
        d.SOPInstanceUID if str(d.get("SOPInstanceUID", "")).strip() else
        d.file_meta.MediaStorageSOPInstanceUID
        for d in slices
    ]
    ps = np.array(slices[0].PixelSpacing, float)
    rows, cols = int(slices[0].Rows), int(slices[0].Columns)
    dz = abs(
        np.dot(
            np.array(slices[-1].ImagePositionPatient, float)
            - np.array(slices[0].ImagePositionPatient, float),
            normal,
        )
    ) / (len(slices) - 1)

    seg = hd.seg.segread(seg_path)
    numbers = [s.SegmentNumber for s in seg.SegmentSequence]
    masks = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=False
    )
    colours = {}
    names = {}
    for s in seg.SegmentSequence:
        lab = np.array(s.RecommendedDisplayCIELabValue, float)
        lab = [lab[0] / 65535 * 100, lab[1] / 65535 * 255 - 128, lab[2] / 65535 * 255 - 128]
        colours[s.SegmentNumber] = np.clip(lab2rgb(np.array([[lab]]))[0, 0], 0, 1)
        names[s.SegmentNumber] = s.SegmentLabel

    # Radiological display whatever the stored layout: patient's right on the image's left,
    # anterior (axial) and superior (coronal) up. Columns run along row_dir, rows along col_dir.
    row_dir, col_dir = iop[:3], iop[3:]
    flip_cols = row_dir[0] < 0  # LPS: columns run towards the patient's right
    flip_rows = col_dir[1] < 0  # rows run towards anterior
    up = normal[2] > 0  # the stack runs towards superior
    if flip_cols:
        ct, masks = ct[:, :, ::-1], masks[:, :, ::-1]
    if flip_rows:
        ct, masks = ct[:, ::-1], masks[:, ::-1]

    # Axial slice and coronal row showing the most organs, then the most voxels.
    def best(counts):
        present = (counts > 0).sum(axis=-1)
        return int(np.lexsort((counts.sum(axis=-1), present))[-1])

    k = best(masks.sum(axis=(1, 2)))
    r = best(masks.sum(axis=(0, 2)))
    window = lambda a: np.clip((a + 160) / 400, 0, 1)

    def fill(ax, grey, sel, aspect):
        rgb = np.repeat(window(grey)[..., None], 3, -1)
        for n, number in enumerate(numbers):
            m = sel(masks[..., n]) > 0
            rgb[m] = 0.55 * rgb[m] + 0.45 * colours[number]
        ax.imshow(rgb, aspect=aspect, interpolation="nearest")
        ax.axis("off")

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 5.0), dpi=100)
    fill(axes[0], ct[k], lambda m: m[k], 1.0)
    axes[0].set_title(f"DICOM-SEG, axial (slice {k + 1} of {len(slices)})")
    # Coronal: rows of the stack, superior up (the stack runs along +normal).
    order = slice(None, None, -1) if up else slice(None)
    fill(axes[1], ct[order, r, :], lambda m: m[order, r, :], dz / ps[1])
    axes[1].set_title("DICOM-SEG, coronal reformat")

    rt = pydicom.dcmread(rt_path)
    by_uid = {u: n for n, u in enumerate(uids)}
    roi_name = {x.ROINumber: x.ROIName for x in rt.StructureSetROISequence}
    axes[2].imshow(window(ct[k]), cmap="gray", interpolation="nearest")
    axes[2].axis("off")
    ipp = np.array(slices[k].ImagePositionPatient, float)
    for roi in rt.ROIContourSequence:
        colour = np.array(roi.ROIDisplayColor, float) / 255
        for c in roi.ContourSequence:
            if by_uid[c.ContourImageSequence[0].ReferencedSOPInstanceUID] != k:
                continue
            pts = np.array(c.ContourData, float).reshape(-1, 3) - ipp
            x = pts @ row_dir / ps[1]
            y = pts @ col_dir / ps[0]
            if flip_cols:
                x = cols - 1 - x
            if flip_rows:
                y = rows - 1 - y
            axes[2].plot(np.append(x, x[0]), np.append(y, y[0]), color=colour, lw=1.4)
    axes[2].set_title("RTSTRUCT contours, same slice")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=colours[n], label=names[n]) for n in numbers
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out)
    print(f"wrote {out}")


main()
