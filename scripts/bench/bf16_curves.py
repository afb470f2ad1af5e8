#!/usr/bin/env python3
"""Two `flare train` validation curves side by side (issue 11: fp32 against bf16).

Usage: scripts/bench/bf16_curves.py FP32.log.csv BF16.log.csv
Prints validation Dice per organ at every step both runs validated, and the largest absolute
difference per organ.
"""
import csv
import sys

ORGANS = ["liver", "kidney", "spleen", "pancreas"]


def curve(path):
    rows = csv.DictReader(open(path))
    return {int(r["step"]): r for r in rows if r.get("val_dsc_liver")}


def main(a_path, b_path):
    a, b = curve(a_path), curve(b_path)
    print(f"validation Dice, {a_path} | {b_path}")
    print("step  " + "  ".join(f"{o:>17}" for o in ORGANS))
    worst = {o: 0.0 for o in ORGANS}
    for s in sorted(set(a) & set(b)):
        cells = []
        for o in ORGANS:
            x, y = float(a[s][f"val_dsc_{o}"]), float(b[s][f"val_dsc_{o}"])
            worst[o] = max(worst[o], abs(x - y))
            cells.append(f"{x:.4f} | {y:.4f}")
        print(f"{s:>5} " + "  ".join(f"{c:>17}" for c in cells))
    print("largest |difference|: " + ", ".join(f"{o} {worst[o]:.4f}" for o in ORGANS))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
