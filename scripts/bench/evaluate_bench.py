#!/usr/bin/env python3
"""Side-by-side benchmark: `flare evaluate` against the official FLARE21 evaluation in Python.

Builds one full-size pair (512 x 512 x 150, four organs, 0.8 x 0.8 x 2.5 mm): the ground truth is
a real BTCV label map from ../shared/data (nearest-neighbour upsampled) when present, else
synthetic ellipsoid organs; the prediction is the ground truth shifted by a few voxels with
noise on its surfaces. Then times, on the same files:

  Python  the FLARE21 code path (nibabel get_fdata, `== i`, surface-distance's DSC and NSD),
          via scripts/fixtures/metrics_flare_eval.py; loading and scoring timed apart.
  Rust    `flare evaluate` end to end (process start, reading, scoring, CSV), best of 3; and
          scoring alone (`score_case`, the flare-metrics example score_bench), best of 3.

Prints both times, the ratios, and the largest difference between the two sets of scores.

Usage (build first: cargo build --release -p flare-cli -p flare-metrics --bins --examples):
    python3 scripts/bench/evaluate_bench.py [--threads N] [--keep DIR]
"""

import argparse
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import nibabel as nb
import numpy as np
from scipy import ndimage

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPE = (512, 512, 150)
SPACING = (0.8, 0.8, 2.5)


def load_oracle():
    spec = importlib.util.spec_from_file_location(
        "metrics_flare_eval", ROOT / "scripts" / "fixtures" / "metrics_flare_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ground_truth(rng):
    shared = pathlib.Path(os.environ.get("FLARE_SHARED", ROOT.parent / "shared"))
    real = shared / "data" / "btcv" / "btcv_0005.nii.gz"
    if real.exists():
        lab = np.asanyarray(nb.load(str(real)).dataobj).astype(np.uint8)
        zoom = [t / s for t, s in zip(SHAPE, lab.shape)]
        gt = ndimage.zoom(lab, zoom, order=0)
        return gt[:SHAPE[0], :SHAPE[1], :SHAPE[2]], f"BTCV {real.name} upsampled"
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) * s for n, s in zip(SHAPE, SPACING)],
                          indexing="ij")
    gt = np.zeros(SHAPE, np.uint8)
    organs = [  # centre (mm), radii (mm): liver, two kidneys, spleen, pancreas
        (1, (150, 200, 220), (80, 65, 75)),
        (2, (290, 250, 170), (30, 25, 50)),
        (2, (130, 250, 170), (30, 25, 50)),
        (3, (310, 260, 230), (40, 30, 50)),
        (4, (220, 220, 180), (55, 15, 20)),
    ]
    for label, c, r in organs:
        gt[((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1] = label
    return gt, "synthetic ellipsoids (no shared data)"


def prediction(gt, rng):
    pred = np.roll(gt, shift=(2, -1, 1), axis=(0, 1, 2))
    edge = ndimage.morphological_gradient(pred, size=(3, 3, 3)) > 0
    flip = edge & (rng.rand(*pred.shape) < 0.3)
    pred = pred.copy()
    pred[flip] = 0
    return pred


def save(data, path):
    aff = np.diag([SPACING[0], SPACING[1], SPACING[2], 1.0])
    img = nb.Nifti1Image(data.astype(np.uint8), aff)
    img.set_qform(aff, 1)
    img.set_sform(aff, 1)
    nb.save(img, str(path))


def best_of(n, fn):
    best = float("inf")
    out = None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flare", default=str(ROOT / "target" / "release" / "flare"))
    ap.add_argument("--score-bench",
                    default=str(ROOT / "target" / "release" / "examples" / "score_bench"))
    ap.add_argument("--threads", type=int, default=0, help="Rust threads (0: all cores)")
    ap.add_argument("--keep", help="write the pair here and keep it")
    args = ap.parse_args()
    for exe in (args.flare, args.score_bench):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: cargo build --release -p flare-cli -p flare-metrics --bins --examples")

    rng = np.random.RandomState(0)
    tmp = tempfile.TemporaryDirectory()
    root = pathlib.Path(args.keep or tmp.name)
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    gt, source = ground_truth(rng)
    pred = prediction(gt, rng)
    save(gt, gt_dir / "bench_000.nii.gz")
    save(pred, pred_dir / "bench_000.nii.gz")
    counts = [int((gt == i).sum()) for i in range(1, 5)]
    print(f"pair: {SHAPE}, spacing {SPACING} mm, ground truth = {source}")
    print(f"organ voxels (gt): {counts}; cores: {os.cpu_count()}")

    # Python, the FLARE21 way.
    oracle = load_oracle()
    t = time.perf_counter()
    gt_nii = nb.load(str(gt_dir / "bench_000.nii.gz"))
    spacing = gt_nii.header.get_zooms()[:3]
    gt_data = gt_nii.get_fdata()
    seg_data = nb.load(str(pred_dir / "bench_000.nii.gz")).get_fdata()
    py_load = time.perf_counter() - t
    t = time.perf_counter()
    py_scores = oracle.case_scores(gt_data, seg_data, spacing, [1.0] * 4)
    py_score = time.perf_counter() - t
    del gt_data, seg_data

    env = dict(os.environ)
    thread_args = ["--threads", str(args.threads)] if args.threads else []
    if args.threads:
        env["RAYON_NUM_THREADS"] = str(args.threads)
    out = subprocess.run([args.score_bench, str(gt_dir / "bench_000.nii.gz"),
                          str(pred_dir / "bench_000.nii.gz"), "3"],
                         capture_output=True, text=True, env=env, check=True).stdout
    fields = dict(line.split(" ", 1) for line in out.strip().splitlines())
    rs_score = float(fields["score_s"])
    rs_values = [float(v) for v in fields["scores"].split()]
    csv = root / "flare.csv"
    rs_total, _ = best_of(3, lambda: subprocess.run(
        [args.flare, *thread_args, "evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir),
         "--out", str(csv)], capture_output=True, env=env, check=True))
    row = csv.read_text().splitlines()[1].split(",")[1:]
    csv_values = [float(v) for v in row]

    py_values = [float(v) for pair in py_scores for v in pair]
    diff = max(max(abs(a - b) for a, b in zip(py_values, rs_values)),
               max(abs(a - b) for a, b in zip(py_values, csv_values)))
    py_total = py_load + py_score
    print(f"scores (DSC, NSD per organ): {[round(v, 4) for v in py_values]}")
    print(f"largest |Python - Rust| over the 8 scores: {diff:.3e}")
    print(f"{'':28}{'Python (FLARE21)':>18}{'Rust (flare)':>14}{'ratio':>9}")
    print(f"{'scoring only':28}{py_score:>16.3f} s{rs_score:>12.3f} s{py_score / rs_score:>8.1f}x")
    print(f"{'end to end (read + score)':28}{py_total:>16.3f} s{rs_total:>12.3f} s"
          f"{py_total / rs_total:>8.1f}x")
    print(f"(Python loading alone: {py_load:.3f} s; flare's threads: {fields['shape'].split('threads ')[-1]})")


if __name__ == "__main__":
    main()
