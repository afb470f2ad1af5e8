#!/usr/bin/env python3
"""Widen one stage of a flare model file by an integer factor, keeping its function exactly.

Net2WiderNet (Chen et al., 2016) for flare's U-Net: every channel of every level is copied
`factor` times; a layer that reads copied channels gets each copy's share of the original
weight, split at random (the shares of one weight sum to it) so that the copies receive
different gradients and can grow apart in training. InstanceNorm sees identical copies, so
the widened network computes the same outputs as the original (up to float rounding) and
fine-tuning starts from the trained model instead of from scratch.

Usage: scripts/train/widen.py IN.safetensors OUT.safetensors [--stage stage2] [--factor 2]
       [--seed 0] [--spread 0.3]
IN may be a two-stage model file (e.g. the built-in crates/flare-pipeline/models/default.safetensors);
the other stage is copied unchanged. Needs numpy and safetensors (requirements-dev.txt).
"""
import argparse
import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--stage", default="stage2")
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread", type=float, default=0.3,
                    help="each copy's share is 1/factor +- spread/factor, uniform")
    a = ap.parse_args()
    k = a.factor
    rng = np.random.default_rng(a.seed)
    with safe_open(a.src, "np") as f:
        meta = dict(f.metadata())
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    card_key = f"flare.model_card.{a.stage}"
    card = json.loads(meta[card_key])
    arch = card["architecture"]
    widths = arch["widths"]
    levels = len(widths)
    p = a.stage + "."

    def copy_out(t, axis):
        """Each output channel c becomes channels c*k .. c*k+k-1."""
        return np.repeat(t, k, axis=axis)

    def split_in(t, axis, parts):
        """Input channels that are copies: `parts` lists (start, count) ranges of the
        original input axis whose channels were copied; other ranges stay (e.g. CT input)."""
        pieces = []
        for start, count, copied in parts:
            seg = np.take(t, range(start, start + count), axis=axis)
            if not copied:
                pieces.append(seg)
                continue
            seg = np.repeat(seg, k, axis=axis)
            # random shares per element, summing to 1 over the k copies of one channel
            shape = list(seg.shape)
            shape[axis] = count
            shares = 1.0 / k + rng.uniform(-a.spread / k, a.spread / k, size=[*shape[:axis], count, k, *shape[axis + 1:]])
            shares = shares - (shares.sum(axis=axis + 1, keepdims=True) - 1.0) / k
            shares = shares.reshape(seg.shape)
            pieces.append(seg * shares)
        return np.concatenate(pieces, axis=axis)

    out = {}
    for name, t in tensors.items():
        if not name.startswith(p):
            out[name] = t
            continue
        parts = name[len(p):].split(".")
        t = t.astype(np.float32)
        if parts[0] in ("encoder", "decoder"):
            lvl = int(parts[1])
            layer, kind = parts[2], parts[3]
            w = widths[lvl]
            if layer.startswith("norm") or kind == "bias":
                out[name] = copy_out(t, 0)
                continue
            if parts[0] == "encoder":
                if layer == "conv1":
                    cin = arch["in_channels"] if lvl == 0 else widths[lvl - 1]
                    ins = [(0, cin, lvl != 0)]
                else:
                    ins = [(0, w, True)]
                out[name] = split_in(copy_out(t, 0), 1, ins)
            elif layer == "up":  # ConvTranspose3d weight [ci, co, ...]: ci from level lvl+1
                out[name] = copy_out(split_in(t, 0, [(0, widths[lvl + 1], True)]), 1)
            elif layer == "conv1":  # [upsampled (w), skip (w)] concatenated
                out[name] = split_in(copy_out(t, 0), 1, [(0, w, True), (w, w, True)])
            else:
                out[name] = split_in(copy_out(t, 0), 1, [(0, w, True)])
        elif parts[0] in ("head", "ds"):
            if parts[-1] == "bias":
                out[name] = t
            else:
                cin = widths[0] if parts[0] == "head" else widths[int(parts[1])]
                out[name] = split_in(t, 1, [(0, cin, True)])
        else:
            raise SystemExit(f"{a.src}: unknown tensor {name}")
        out[name] = np.ascontiguousarray(out[name], dtype=np.float32)
    arch["widths"] = [w * k for w in widths]
    training = card.get("training") or {}
    training["notes"] = (f"widened x{k} (scripts/train/widen.py, seed {a.seed}, spread {a.spread}) "
                         f"from {a.src} {a.stage}; before: " + str(training.get("notes", "")))
    card["training"] = training
    meta[card_key] = json.dumps(card, separators=(",", ":"))
    save_file(out, a.dst, metadata=meta)
    print(f"{a.dst}: {a.stage} widths {widths} -> {arch['widths']}, {sum(v.size for n, v in out.items() if n.startswith(p))} parameters")


if __name__ == "__main__":
    main()
