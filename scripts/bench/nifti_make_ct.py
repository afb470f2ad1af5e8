#!/usr/bin/env python3
"""Writes a synthetic CT-like int16 NIfTI (.nii.gz) for the NIfTI read benchmark.

Smooth anatomy-like shapes (a body ellipse with organ-like blobs and a spine) plus Gaussian noise,
so that it compresses about as well as a real abdominal CT (roughly 50-65 % of the raw size).
Written with nibabel at its default gzip level, as clinical tools and FLARE data are.

Usage: nifti_make_ct.py OUT.nii.gz [NX NY NZ]
"""

import sys

import nibabel as nib
import numpy as np


def main() -> None:
    out = sys.argv[1]
    nx, ny, nz = (int(v) for v in sys.argv[2:5]) if len(sys.argv) >= 5 else (512, 512, 300)
    rng = np.random.default_rng(20210)
    data = np.empty((nx, ny, nz), dtype=np.int16)
    x = np.linspace(-1.0, 1.0, nx)[:, None]
    y = np.linspace(-1.0, 1.0, ny)[None, :]
    for k in range(nz):
        z = k / max(nz - 1, 1)
        # Air outside, soft tissue inside a body ellipse that changes slowly along z.
        sl = np.full((nx, ny), -1000.0, dtype=np.float32)
        body = (x / (0.85 - 0.05 * z)) ** 2 + (y / 0.62) ** 2 < 1.0
        sl[body] = 30.0
        fat = ((x / 0.8) ** 2 + (y / 0.57) ** 2 > 1.0) & body
        sl[fat] = -90.0
        liver = ((x + 0.35) / 0.35) ** 2 + ((y + 0.1) / (0.3 + 0.1 * z)) ** 2 < 1.0
        sl[liver] = 60.0
        spleen = ((x - 0.45) / 0.15) ** 2 + ((y + 0.15) / 0.2) ** 2 < 1.0
        sl[spleen & (z > 0.4)] = 50.0
        for side in (-0.25, 0.25):
            kid = ((x - side) / 0.09) ** 2 + ((y - 0.3) / 0.13) ** 2 < 1.0
            sl[kid & (z > 0.2) & (z < 0.6)] = 160.0
        spine = (x / 0.07) ** 2 + ((y - 0.45) / 0.07) ** 2 < 1.0
        sl[spine] = 700.0
        # Scanner noise everywhere (air included), as in real CT.
        sl += rng.normal(0.0, 18.0, size=(nx, ny)).astype(np.float32)
        data[:, :, k] = np.clip(np.rint(sl), -1024, 3071).astype(np.int16)
    affine = np.diag([-0.78, -0.78, 2.5, 1.0])
    affine[:3, 3] = [199.6, 199.6, -700.0]
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_data_dtype(np.int16)
    nib.save(img, out)


if __name__ == "__main__":
    main()
