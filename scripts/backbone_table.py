"""The backbone table of issue 13: random vs SSL multi-task vs RelCon, by linear probe and zero-shot.

    python scripts/backbone_table.py --root ../shared/data \
        --backbone ssl=runs/backbones/ssl --backbone relcon=runs/backbones/relcon \
        --cross random=runs/cross --cross ssl=runs/backbones/cross-ssl --cross relcon=runs/backbones/cross-relcon \
        --out eval/results/backbones

For every dataset: `zerohar probe` (logistic regression on frozen accelerometer features, 5 subject-disjoint
folds, macro-F1) of each backbone; the random backbone with `--random-seeds` seeds (its spread is the noise
floor of the comparison). Zero-shot columns are read from `zerohar benchmark --protocol cross-dataset` output
folders (`runs.csv`, method `zerohar`), one per backbone. The pretraining budget of each backbone (steps,
windows, minutes, stop reason, and what it was trained on) is read from its run directories. Writes
`results.md` and `results.csv` in `--out`; probe results are cached as JSON in `--work` and reused.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from zerohar.data.sources import dataset_roots
from zerohar.evaluation.probe import probe_backbone

DATASETS = ("hapt", "shoulder", "spswhar", "uschad")


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{what} {it!r}: expected NAME=PATH")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def _run_budget(run: Path) -> dict:
    """Steps, windows, minutes and stop reason of a pretraining run (and of its motif distance for RelCon)."""
    m = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "model.json").read_text()).get("extra", {})
    t = m.get("timing", {})
    out = {"steps": m.get("steps"), "windows": t.get("train_windows"), "minutes": (t.get("wall_time_s") or 0) / 60,
           "stop": m.get("stop_reason"), "best": m.get("best", {}).get("val", {}), "dataset": meta.get("dataset"),
           "method": meta.get("pretrain_method")}
    md = meta.get("motif_distance")
    if md and md.get("run"):
        sub = _run_budget(Path(md["run"]))
        out["motif"] = sub
        out["minutes_total"] = out["minutes"] + sub["minutes"]
    else:
        out["minutes_total"] = out["minutes"]
    return out


def _cross(folder: Path) -> dict[str, list[float]]:
    """Unseen macro-F1 per target of the `zerohar` rows of a cross-dataset benchmark folder."""
    res: dict[str, list[float]] = {}
    with open(folder / "runs.csv") as f:
        for row in csv.DictReader(f):
            if row["method"] == "zerohar":
                res.setdefault(row["target"], []).append(float(row["macro_f1"]))
    return res


def _zs(f1: list[float]) -> str:
    """A zero-shot cell: mean (± std over seeds) and the number of seeds."""
    spread = f" ± {np.std(f1):.3f}" if len(f1) > 1 else ""
    return f"{np.mean(f1):.3f}{spread} ({len(f1)} seed{'s' if len(f1) > 1 else ''})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="../shared/data", help="folder holding each dataset's folder")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated datasets to probe")
    p.add_argument("--backbone", action="append", default=[], metavar="NAME=RUN", help="a pretrained backbone")
    p.add_argument("--random-seeds", type=int, default=3, help="seeds of the random backbone (default 3)")
    p.add_argument("--cross", action="append", default=[], metavar="NAME=DIR",
                   help="a cross-dataset benchmark folder whose zerohar rows used backbone NAME")
    p.add_argument("--work", default="runs/backbones/probes", help="cache of the probe results (JSON)")
    p.add_argument("--out", default="eval/results/backbones", help="where results.md / results.csv go")
    a = p.parse_args(argv)

    datasets = [d for d in a.datasets.split(",") if d]
    roots = dataset_roots(datasets, a.root)
    backbones = {"random": None, **_kv(a.backbone, "--backbone")}
    cross = {k: _cross(Path(v)) for k, v in _kv(a.cross, "--cross").items()}
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    probes: dict[tuple[str, str], list[dict]] = {}
    for name, path in backbones.items():
        seeds = range(a.random_seeds) if path is None else [0]
        for ds in datasets:
            for s in seeds:
                f = work / f"{name}-{ds}-seed{s}.json"
                if f.is_file():
                    r = json.loads(f.read_text())
                else:
                    print(f"probe {name} on {ds} (seed {s})", flush=True)
                    r = probe_backbone(path, dataset=ds, root=roots[ds], seed=s, out=f, force=True, progress=False)
                probes.setdefault((name, ds), []).append(r)

    budgets = {n: _run_budget(Path(p_)) for n, p_ in backbones.items() if p_ is not None}
    rows = []
    for name in backbones:
        for ds in datasets:
            rs = probes[(name, ds)]
            f1 = [r["macro_f1"] for r in rs]
            rows.append({"backbone": name, "dataset": ds, "probe_macro_f1": float(np.mean(f1)),
                         "probe_macro_f1_std": float(np.std(f1)) if len(f1) > 1 else float(rs[0]["macro_f1_std"]),
                         "probe_runs": len(f1), "probe_accuracy": float(np.mean([r["accuracy"] for r in rs])),
                         "zero_shot_cross_macro_f1": (float(np.mean(cross[name][ds]))
                                                      if name in cross and ds in cross[name] else None)})
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def cell(name: str, ds: str) -> str:
        r = next(x for x in rows if x["backbone"] == name and x["dataset"] == ds)
        return f"{r['probe_macro_f1']:.3f} ± {r['probe_macro_f1_std']:.3f}"

    targets = sorted({t for c in cross.values() for t in c})
    lines = ["# Backbones: random vs SSL multi-task vs RelCon", "",
             f"Command: `python scripts/backbone_table.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             "Linear probe: logistic regression on frozen accelerometer features (`zerohar probe`), 5 "
             "subject-disjoint folds, every class, macro-F1 mean ± std over the folds (random backbone: mean ± std "
             f"over {a.random_seeds} seeds of the fold means). Zero-shot: unseen macro-F1 of the cross-dataset "
             "protocol (Stage I + Stage II trained on the other datasets with that backbone, every class of the "
             "target unseen; mean ± std over its seeds), where it was run.", "",
             "| backbone | " + " | ".join([f"probe {d}" for d in datasets] + [f"zero-shot cross {t}" for t in targets])
             + " |", "|---|" + "---|" * (len(datasets) + len(targets))]
    for name in backbones:
        zs = [_zs(cross[name][t]) if name in cross and t in cross[name] else "n/a" for t in targets]
        lines.append("| " + " | ".join([name] + [cell(name, d) for d in datasets] + zs) + " |")
    lines += ["", "Pretraining of each backbone (from its run directories):", "",
              "| backbone | trained on | steps | windows processed | minutes | stop | best validation |",
              "|---|---|---|---|---|---|---|"]
    for name, b in budgets.items():
        parts = [b]
        if "motif" in b:
            parts = [b["motif"], b]
        for i, x in enumerate(parts):
            label = name if i == len(parts) - 1 else f"{name} (motif distance)"
            best = ", ".join(f"{k} {v:.3f}" for k, v in x["best"].items() if isinstance(v, (int, float)))
            lines.append(f"| {label} | {x['dataset']} | {x['steps']} | {x['windows']} | {x['minutes']:.1f} | "
                         f"{x['stop']} | {best} |")
    lines += ["", f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; probes of this invocation "
              f"{(time.time() - t0) / 60:.1f} min."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
