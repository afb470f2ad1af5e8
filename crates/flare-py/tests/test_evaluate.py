"""`flare.evaluate`: the numbers `flare evaluate` writes in its official CSV, to the last bit,
whether the label maps are given as files, nibabel images or arrays."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

import flare
from conftest import cli_segment

nib = pytest.importorskip("nibabel")


@pytest.fixture(scope="session")
def pair(flare_cli, phantom_model, phantoms, data_dir) -> dict:
    """A prediction (the CLI's segmentation of the LPS phantom, made worse so that no score is
    1) and its exact ground truth, in FLARE folder layout."""
    pred_dir, gt_dir = data_dir / "eval_pred", data_dir / "eval_gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    labels, _ = cli_segment(flare_cli, phantoms["lps"], phantom_model, data_dir / "eval_tmp.nii.gz")
    gt_img = nib.load(phantoms["truth"]["lps"])
    worse = labels.copy()
    worse[:, :, : labels.shape[2] // 3][worse[:, :, : labels.shape[2] // 3] == 1] = 0  # cut the liver
    worse[worse == 3] = 5  # spleen becomes an unknown label
    worse[:4, :4, :4] = 2  # a stray kidney blob
    img = nib.Nifti1Image(worse.astype(np.uint8), gt_img.affine, header=gt_img.header.copy())
    img.set_data_dtype(np.uint8)
    nib.save(img, pred_dir / "case.nii.gz")
    shutil.copy(phantoms["truth"]["lps"], gt_dir / "case.nii.gz")
    return {"pred": pred_dir / "case.nii.gz", "gt": gt_dir / "case.nii.gz", "pred_dir": pred_dir, "gt_dir": gt_dir}


def cli_scores(flare_cli, pair, tmp_path, *extra: str) -> dict:
    out = tmp_path / "scores.csv"
    flare_cli("evaluate", "--pred", pair["pred_dir"], "--gt", pair["gt_dir"], "--out", out, *extra)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1
    return {k: float(v) for k, v in rows[0].items() if k != "Name"}


def test_files_give_the_cli_numbers_exactly(flare_cli, pair, tmp_path):
    expected = cli_scores(flare_cli, pair, tmp_path)
    s = flare.evaluate(pair["pred"], pair["gt"])
    assert s.row == expected
    assert s.dsc["spleen"] == 0.0 and 0 < s.dsc["liver"] < 1
    assert s.mean_dsc == pytest.approx(np.mean([expected[f"DSC_{i}"] for i in range(1, 5)]), abs=1e-15)
    assert any("outside 0..4" in w for w in s.warnings)


def test_images_and_arrays_give_the_cli_numbers_exactly(flare_cli, pair, tmp_path):
    expected = cli_scores(flare_cli, pair, tmp_path)
    p, g = nib.load(pair["pred"]), nib.load(pair["gt"])
    assert flare.evaluate(p, g).row == expected
    pa, ga = np.asanyarray(p.dataobj), np.asanyarray(g.dataobj)
    zooms = g.header.get_zooms()[:3]
    assert flare.evaluate((pa, p.affine), (ga, g.affine), spacing=zooms).row == expected
    # Any dtype and memory order of the label arrays.
    assert flare.evaluate(np.ascontiguousarray(pa.astype(np.int32)), ga.astype(np.float64), spacing=zooms).row == expected
    # Mixed: a file and an image.
    assert flare.evaluate(pair["pred"], g).row == expected


def test_per_organ_tolerances_match_the_cli(flare_cli, pair, tmp_path):
    expected = cli_scores(flare_cli, pair, tmp_path, "--tolerances", "1=5,2=3,4=2.5")
    s = flare.evaluate(pair["pred"], pair["gt"], tolerance={1: 5, "kidney": 3, "pancreas": 2.5})
    assert s.row == expected
    assert "NSD-5mm_1" in s.row and "NSD-1mm_3" in s.row


def test_evaluate_errors(pair, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        flare.evaluate(tmp_path / "none.nii.gz", pair["gt"])
    g = nib.load(pair["gt"])
    ga = np.asanyarray(g.dataobj)
    shifted = g.affine.copy()
    shifted[0, 3] += 1.0
    with pytest.raises(ValueError, match="different grids"):
        flare.evaluate((ga, shifted), (ga, g.affine))
    with pytest.raises(ValueError, match="different grids"):
        flare.evaluate(ga[:-1], ga, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="give spacing"):
        flare.evaluate(ga, ga)
    with pytest.raises(ValueError, match="this is a 2D image"):
        flare.evaluate(ga[:, :, 0], ga[:, :, 0], spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="not an organ label"):
        flare.evaluate(pair["pred"], pair["gt"], tolerance={7: 1.0})
    # A prediction on another grid, as files: the CLI's message.
    other = nib.Nifti1Image(ga.astype(np.uint8), shifted)
    path = tmp_path / "other.nii.gz"
    nib.save(other, path)
    with pytest.raises(ValueError, match="prediction and ground truth are on different grids"):
        flare.evaluate(path, pair["gt"])
