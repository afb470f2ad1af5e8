#!/usr/bin/env python3
"""Benchmark (not a test): flare-nifti's .nii.gz read next to nibabel's, in one run.

Makes (once) a 512x512x300 int16 CT-like .nii.gz in a work folder (not in the repository),
builds the `read_bench` example in release mode, then alternates fresh processes of
  flare:   read_image (float32, scaling applied)            [and read_raw, stored int16]
  nibabel: np.asanyarray(nib.load(f).dataobj)                (stored int16)
           nib.load(f).get_fdata(dtype=np.float32)           (float32)
and prints the median time and peak RSS of each and the ratios. Each measurement is its own
process, so peak RSS is per read; alternating spreads machine noise over both sides.

Usage: scripts/bench/nifti_read.py [--runs N] [--work DIR] [--shape NX NY NZ]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

NIBABEL = r"""
import sys, time, resource, numpy as np, nibabel as nib
path, mode = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
img = nib.load(path)
if mode == "dataobj":
    a = np.asanyarray(img.dataobj)
else:
    a = img.get_fdata(dtype=np.float32)
s = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print('{"seconds": %.4f, "peak_rss_mb": %.1f, "baseline_rss_mb": %.1f}' % (s, peak, base))
"""


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=os.environ.get("FLARE_BENCH_DIR", "/tmp/flare-nifti-bench"))
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    nx, ny, nz = args.shape
    ct = os.path.join(args.work, f"ct_{nx}x{ny}x{nz}_int16.nii.gz")
    if not os.path.exists(ct):
        print(f"making {ct} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench", "nifti_make_ct.py"),
                        ct, str(nx), str(ny), str(nz)], check=True)
    raw_mb = nx * ny * nz * 2 / 1e6
    size_mb = os.path.getsize(ct) / 1e6
    print(f"file: {ct}: {size_mb:.1f} MB compressed, {raw_mb:.1f} MB raw ({100 * size_mb / raw_mb:.0f} %)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "flare-nifti", "--example", "read_bench"],
                   cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "examples", "read_bench")

    kinds = {
        "flare read_image (f32)": [exe, ct, "image"],
        "flare read_raw (i16)": [exe, ct, "raw"],
        "nibabel dataobj (i16)": [sys.executable, "-c", NIBABEL, ct, "dataobj"],
        "nibabel get_fdata(f32)": [sys.executable, "-c", NIBABEL, ct, "fdata"],
    }
    results = {k: [] for k in kinds}
    for r in range(args.runs):
        for k, cmd in kinds.items():
            results[k].append(run_json(cmd))
        print(f"run {r + 1}/{args.runs}: " + ", ".join(
            f"{k.split()[0]} {results[k][-1]['seconds']:.2f}s" for k in kinds), flush=True)

    med = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
    rss = {k: statistics.median(x["peak_rss_mb"] for x in v) for k, v in results.items()}
    print(f"\nmedian of {args.runs} runs ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}):")
    for k in kinds:
        extra = ""
        if k.startswith("nibabel"):
            base = statistics.median(x["baseline_rss_mb"] for x in results[k])
            extra = f" (interpreter + numpy + nibabel before the read: {base:.0f} MB)"
        print(f"  {k:26s} {med[k]:6.3f} s   peak RSS {rss[k]:6.0f} MB{extra}")
    f32 = med["nibabel get_fdata(f32)"] / med["flare read_image (f32)"]
    i16 = med["nibabel dataobj (i16)"] / med["flare read_raw (i16)"]
    cross = med["nibabel dataobj (i16)"] / med["flare read_image (f32)"]
    print(f"  flare is {f32:.2f}x faster than nibabel to float32, {i16:.2f}x to int16; "
          f"flare's float32 read vs nibabel's int16 dataobj: {cross:.2f}x")


if __name__ == "__main__":
    main()
