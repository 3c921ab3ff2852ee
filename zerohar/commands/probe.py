"""`zerohar probe`: linear-probe macro-F1 of a frozen HARNet backbone, in subject-disjoint folds.

Compares backbones the way SSL-Wearables' and RelCon's papers do: random (no --backbone-weights), SSL multi-task
(`zerohar pretrain`), RelCon (`zerohar pretrain --method relcon`) or a released HARNet file.
"""

from __future__ import annotations

import argparse

from zerohar.commands import PRECISIONS, add_progress_argument, deprecated_alias


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone-weights", dest="backbone", metavar="FILE",
                   help="the backbone: a released HARNet file (.mdl), a pretrain run or a backbone .safetensors "
                   "(default: a random backbone, the baseline)")
    deprecated_alias(p, "--backbone", "--backbone-weights", "backbone", metavar="FILE")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="NAME", help="dataset (hapt without --root: the embedded derivative)")
    src.add_argument("--data", metavar="FILE.npz", help="a window set written by `zerohar prepare`")
    p.add_argument("--root", metavar="DIR", help="the dataset's raw folder")
    p.add_argument("--sensors", nargs="+", default=["acc"], choices=["acc", "gyro", "mag"],
                   help="sensor kinds whose triads are embedded and concatenated (default: acc)")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="subject-disjoint folds (default 5)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of a random backbone and the classifier")
    p.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="feature precision (default fp32: an evaluation is exact)")
    p.add_argument("--out", metavar="FILE.json", help="also write the result to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from zerohar.evaluation.probe import probe_backbone  # heavy: torch, scikit-learn

    r = probe_backbone(args.backbone, dataset=args.dataset, data=args.data, root=args.root,
                       sensors=tuple(args.sensors), n_folds=args.folds, seed=args.seed, batch_size=args.batch_size,
                       precision=args.precision, out=args.out, force=args.force, progress=not args.no_progress)
    print(f"linear probe of the {r['backbone']} backbone on {r['n_windows']} windows, {len(r['classes'])} classes, "
          f"{r['folds']} subject-disjoint folds of {r['n_subjects']} subjects:")
    print(f"  macro-F1 {r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f}   accuracy {r['accuracy']:.3f} ± "
          f"{r['accuracy_std']:.3f}   (chance macro-F1 about {1 / len(r['classes']):.3f})")
    if args.out:
        print(f"-> {args.out}")
    return 0
