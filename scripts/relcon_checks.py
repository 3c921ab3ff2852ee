"""Diagnostics of a RelCon pretraining: the motif distance's rotation invariance, and the backbones' features.

    python scripts/relcon_checks.py --distance runs/motif --root ../shared/data/hapt \
        --backbone random --backbone ssl=runs/ssl --backbone relcon=runs/relcon

1. **Rotation check of the motif distance** (`--distance`, a motif-distance run): for anchors drawn from the
   accelerometer triads of a dataset's labelled windows, the distance to (a) the same window randomly rotated
   (RelCon's `rotate` augmentation, one of the changes the distance was trained to ignore), (b) the same window
   with small noise, (c) a window of the same class from another subject, (d) a window of another class from
   another subject. A distance that learned what its training asked ranks (a) and (b) near and (d) far; how
   (c) ranks against (d) is what RelCon's ranking passes on to the encoder.
2. **Features** of each backbone (`NAME=RUN`, or `random`): on the same windows, the effective rank of the
   feature matrix (exp of the entropy of its normalised singular values) and the share of variance in the top
   10 directions. A backbone whose features collapse onto few directions loses what a linear probe needs.

Prints one JSON object (also written to `--out` when given).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from zerohar.data.prepare import load_windowset
from zerohar.data.relcon_augment import rotate
from zerohar.evaluation.probe import backbone_features
from zerohar.io import atomic_write_text
from zerohar.model.motif import load_motif_distance
from zerohar.model.pretrained import load_backbone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--distance", required=True, help="a motif-distance run directory")
    p.add_argument("--dataset", default="hapt")
    p.add_argument("--root", default=None, help="the dataset's raw folder (default: the embedded HAPT)")
    p.add_argument("--backbone", action="append", default=[], metavar="NAME=RUN", help="backbone(s) to describe")
    p.add_argument("--anchors", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    torch.set_num_threads(1)
    rng = np.random.default_rng(a.seed)
    ws = load_windowset(a.dataset, root=a.root, progress=False)
    ws = ws.subset(ws.y >= 0)
    acc = next(i for i, s in enumerate(ws.layout.sensors) if s.sensor == "acc")
    X = np.clip(ws.X[:, 3 * acc : 3 * acc + 3], -3, 3).astype(np.float32)  # the model's input handling
    motif, _ = load_motif_distance(a.distance)

    anchors = rng.choice(len(X), min(a.anchors, len(X)), replace=False)
    rows = {"rotated": [], "noise": [], "same_class": [], "other_class": []}
    cands = {k: [] for k in rows}
    for i in anchors:
        other_subj = np.flatnonzero(ws.subject != ws.subject[i])
        same = other_subj[ws.y[other_subj] == ws.y[i]]
        diff = other_subj[ws.y[other_subj] != ws.y[i]]
        if len(same) == 0 or len(diff) == 0:
            continue
        cands["rotated"].append(rotate(X[i : i + 1], rng)[0])
        cands["noise"].append(X[i] + rng.normal(0, 0.01, X[i].shape).astype(np.float32))
        cands["same_class"].append(X[rng.choice(same)])
        cands["other_class"].append(X[rng.choice(diff)])
        for k in rows:
            rows[k].append(i)
    kinds = list(cands)
    n = len(rows["rotated"])
    anc = torch.from_numpy(X[rows["rotated"]])
    with torch.inference_mode():
        d = {k: motif.pair_distance(anc, torch.from_numpy(np.stack(cands[k]).astype(np.float32))).numpy()
             for k in kinds}
    check = {
        "anchors": n,
        "median_distance": {k: float(np.median(d[k])) for k in kinds},
        "rotated_nearer_than_other_class": float(np.mean(d["rotated"] < d["other_class"])),
        "rotated_nearer_than_same_class": float(np.mean(d["rotated"] < d["same_class"])),
        "noise_nearer_than_other_class": float(np.mean(d["noise"] < d["other_class"])),
        "same_class_nearer_than_other_class": float(np.mean(d["same_class"] < d["other_class"])),
    }

    feats = {}
    pick = rng.choice(len(ws), min(2000, len(ws)), replace=False)
    sub = ws.subset(np.sort(pick))
    for spec in a.backbone:
        name, path = (spec.split("=", 1) + [None])[:2] if "=" in spec else (spec, None)
        torch.manual_seed(a.seed)
        net = load_backbone(path, "harnet5").eval()
        f = backbone_features(net, sub, ("acc",))
        f = f - f.mean(0)
        s = np.linalg.svd(f, compute_uv=False)
        var = s**2 / (s**2).sum()
        pr = s / s.sum()
        feats[name] = {"dim": int(f.shape[1]), "effective_rank": float(np.exp(-(pr * np.log(pr + 1e-12)).sum())),
                       "top10_variance": float(var[:10].sum()),
                       "dead_features": int((f.std(0) < 1e-6).sum())}
    out = {"dataset": a.dataset, "distance": a.distance, "rotation_check": check, "features": feats}
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        atomic_write_text(a.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
