#!/usr/bin/env python3
"""Voxel agreement of two label maps (issue 11: bf16 against fp32 inference), read with nibabel.

Usage: scripts/bench/label_agreement.py A.nii.gz B.nii.gz [A2 B2 ...]
Prints per pair: voxels, the share with equal labels, the share among voxels either map labels
as an organ, and per organ the voxel counts and Dice between the two maps.
"""
import sys

import nibabel as nib
import numpy as np

ORGANS = {1: "liver", 2: "kidneys", 3: "spleen", 4: "pancreas"}


def main(paths):
    if len(paths) < 2 or len(paths) % 2:
        sys.exit(__doc__)
    for a_path, b_path in zip(paths[::2], paths[1::2]):
        a_img, b_img = nib.load(a_path), nib.load(b_path)
        if a_img.shape != b_img.shape or not np.allclose(a_img.affine, b_img.affine):
            sys.exit(f"{a_path} and {b_path}: different grids")
        a = np.asarray(a_img.dataobj).astype(np.uint8)
        b = np.asarray(b_img.dataobj).astype(np.uint8)
        same = a == b
        fg = (a > 0) | (b > 0)
        print(
            f"{a_path} vs {b_path}: {a.size} voxels, equal {100 * same.mean():.4f}% "
            f"({int((~same).sum())} differ); within organs {100 * same[fg].mean():.3f}%"
        )
        for k, name in ORGANS.items():
            na, nb = int((a == k).sum()), int((b == k).sum())
            inter = int(((a == k) & (b == k)).sum())
            dice = 2 * inter / (na + nb) if na + nb else float("nan")
            print(f"  {name:<9} {na:>9} {nb:>9} voxels, Dice {dice:.5f}")


if __name__ == "__main__":
    main(sys.argv[1:])
