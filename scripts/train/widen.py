#!/usr/bin/env python3
"""Widen one stage of a flare model file, keeping its function exactly.

Net2WiderNet (Chen et al., 2016) for flare's U-Net: each level's channels are copied, every
channel `factor` times (an integer factor) or, for a factor such as 1.5, every channel once
plus a random choice of them once more (each level's new width is round(width * factor));
a layer that reads copied channels gets each copy's share of the original weight, split at
random (the shares of one weight sum to it) so that the copies receive different gradients
and can grow apart in training. InstanceNorm sees identical copies, so the widened network
computes the same outputs as the original (up to float rounding) and fine-tuning starts from
the trained model instead of from scratch. (The general form, 2026-12-07, draws the same
numbers as the integer-only script it replaced, so factor 2 gives the same file.)

Usage: scripts/train/widen.py IN.safetensors OUT.safetensors [--stage stage2] [--factor 2]
       [--seed 0] [--spread 0.3]
IN may be a two-stage model file (e.g. the built-in crates/flare-pipeline/models/default.safetensors;
the other stage is copied unchanged) or a one-stage file from `flare train` or `flare average`. Needs numpy and safetensors (requirements-dev.txt).
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
    ap.add_argument("--factor", type=float, default=2.0,
                    help="new width = round(width * factor) per level; 1 < factor, at most 2 unless whole")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread", type=float, default=0.3,
                    help="each copy's share is 1/factor +- spread/factor, uniform")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    with safe_open(a.src, "np") as f:
        meta = dict(f.metadata())
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    # A two-stage file (`flare bundle`) names its tensors `stage2.…`; a one-stage file
    # (`flare train`, `flare average`) has one card and bare names.
    card_key, p = f"flare.model_card.{a.stage}", a.stage + "."
    if card_key not in meta and "flare.model_card" in meta:
        card_key, p = "flare.model_card", ""
    if card_key not in meta:
        raise SystemExit(f"{a.src}: no model card for {a.stage} (keys: {', '.join(meta)})")
    card = json.loads(meta[card_key])
    arch = card["architecture"]
    widths = arch["widths"]

    # Per level, `src[l][j]` is the original channel that new channel j copies and `copies[l][c]`
    # how many copies channel c has. A whole factor k copies every channel k times (c*k ..
    # c*k+k-1); otherwise every channel once more for a random choice of round(w*f) - w of them.
    whole = float(a.factor).is_integer()
    if a.factor <= 1 or (not whole and a.factor > 2):
        raise SystemExit(f"--factor {a.factor}: use a whole number > 1 or one between 1 and 2")
    src, copies = [], []
    for w in widths:
        if whole:
            idx = np.repeat(np.arange(w), int(a.factor))
        else:
            extra = rng.choice(w, size=int(round(w * a.factor)) - w, replace=False)
            idx = np.sort(np.concatenate([np.arange(w), extra]))
        src.append(idx)
        copies.append(np.bincount(idx, minlength=w))

    def copy_out(t, axis, lvl):
        """Output channel j of the widened layer is original channel src[lvl][j]."""
        return np.take(t, src[lvl], axis=axis)

    def split_in(t, axis, parts):
        """Input channels that are copies: `parts` lists (start, count, level) ranges of the
        original input axis, `level` None for ranges that are not copied (e.g. CT input)."""
        pieces = []
        for start, count, lvl in parts:
            seg = np.take(t, range(start, start + count), axis=axis)
            if lvl is None:
                pieces.append(seg)
                continue
            idx, n = src[lvl], copies[lvl]
            seg = np.take(seg, idx, axis=axis)
            # random shares per element, summing to 1 over the copies of one channel
            shape = [1] * seg.ndim
            shape[axis] = len(idx)
            per = n[idx].reshape(shape).astype(np.float64)
            shares = 1.0 / per + rng.uniform(-a.spread / per, a.spread / per, size=seg.shape)
            group = np.zeros_like(np.take(shares, range(count), axis=axis))
            np.add.at(np.moveaxis(group, axis, 0), idx, np.moveaxis(shares, axis, 0))
            shares = shares - (np.take(group, idx, axis=axis) - 1.0) / per
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
                out[name] = copy_out(t, 0, lvl)
                continue
            if parts[0] == "encoder":
                if layer == "conv1":
                    cin = arch["in_channels"] if lvl == 0 else widths[lvl - 1]
                    ins = [(0, cin, lvl - 1 if lvl != 0 else None)]
                else:
                    ins = [(0, w, lvl)]
                out[name] = split_in(copy_out(t, 0, lvl), 1, ins)
            elif layer == "up":  # ConvTranspose3d weight [ci, co, ...]: ci from level lvl+1
                out[name] = copy_out(split_in(t, 0, [(0, widths[lvl + 1], lvl + 1)]), 1, lvl)
            elif layer == "conv1":  # [upsampled (w), skip (w)] concatenated
                out[name] = split_in(copy_out(t, 0, lvl), 1, [(0, w, lvl), (w, w, lvl)])
            else:
                out[name] = split_in(copy_out(t, 0, lvl), 1, [(0, w, lvl)])
        elif parts[0] in ("head", "ds"):
            if parts[-1] == "bias":
                out[name] = t
            else:
                lvl = 0 if parts[0] == "head" else int(parts[1])
                out[name] = split_in(t, 1, [(0, widths[lvl], lvl)])
        else:
            raise SystemExit(f"{a.src}: unknown tensor {name}")
        out[name] = np.ascontiguousarray(out[name], dtype=np.float32)
    arch["widths"] = [len(idx) for idx in src]
    training = card.get("training") or {}
    training["notes"] = (f"widened x{a.factor:g} (scripts/train/widen.py, seed {a.seed}, spread {a.spread}) "
                         f"from {a.src} {a.stage}; before: " + str(training.get("notes", "")))
    card["training"] = training
    meta[card_key] = json.dumps(card, separators=(",", ":"))
    save_file(out, a.dst, metadata=meta)
    print(f"{a.dst}: {a.stage if p else 'the network'} widths {widths} -> {arch['widths']}, {sum(v.size for n, v in out.items() if n.startswith(p))} parameters")


if __name__ == "__main__":
    main()
