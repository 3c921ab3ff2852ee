"""Build the shipped general model (`zerohar/models/general/`) from the raw datasets, in one command.

    python scripts/build_general_model.py --root ../shared/data

Stage I, then Stage II, on every class of HAPT, shoulder exercises, sp-sw-har and USC-HAD at once (zerohar's
multi-dataset training: one merged sensor layout, balanced sampling, shared label text), each dataset's
subjects split into train / validation / test; then the release: fp16 weights, model.json, config, metrics and
a model card with each dataset's held-out test-subject scores. Re-running continues unfinished stages.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from zerohar.cli import main as zerohar
from zerohar.data.multi import class_text, load_data
from zerohar.evaluation.metrics import zero_shot_report
from zerohar.inference.embed import embed_windows
from zerohar.inference.index import LabelIndex
from zerohar.models.export import export_release
from zerohar.text.encoder import get_text_encoder
from zerohar.train.runs import load_run

DATASETS = {  # name: (folder under --root, licence / terms as the dataset's README states them)
    "hapt": ("hapt", "CC BY 4.0 (UCI Machine Learning Repository)"),
    "shoulder": ("shoulder-exercises", "released with seglearn (BSD-3-Clause)"),
    "spswhar": ("sp-sw-har", "CC BY 4.0 (doi:10.5281/zenodo.8398688)"),
    "uschad": ("usc-had", "research use, cite Zhang and Sawchuk, UbiComp 2012"),
}
CITES = {
    "hapt": "UCI HAPT, Reyes-Ortiz et al. 2016: smartphone at the waist, 12 activities and transitions, 30 subjects",
    "shoulder": "Shoulder exercises, Burns et al. 2018: smartwatch on the wrist, 7 physiotherapy exercises, "
                "10 subjects",
    "spswhar": "sp-sw-har, Matey-Sanz et al. 2023: smartphone in the trouser pocket and smartwatch on the wrist, "
               "5 activities, 23 subjects",
    "uschad": "USC-HAD, Zhang and Sawchuk 2012: IMU at the front right hip, 12 activities, 14 subjects",
}


#: The cross-dataset tables the card quotes: the longer budget (Stage I 200, Stage II 600 steps, the recipe of
#: this model), one benchmark folder per target.
CROSS_TABLES = tuple(f"eval/results/cross-dataset/long-budget/{t}/results.md"
                     for t in ("uschad", "hapt", "shoulder", "spswhar"))


def cross_section(paths) -> list[str]:
    """The card's "Cross-dataset zero-shot" lines: each existing table's command, note and rows, as it stands."""
    found = [Path(c) for c in paths if Path(c).is_file()]
    lines = ["## Cross-dataset zero-shot", ""]
    if not found:
        return lines + ["Not measured for this build (see README, Results, cross-dataset)."]
    lines += ["Models trained on the other datasets only, with this model's recipe (Stage I 200, Stage II 600 "
              "steps; this shipped model saw all four), from " + ", ".join(f"`{c}`" for c in found) + ":"]
    for c in found:
        lines += ["", c.read_text().split("\n", 2)[-1].strip().replace("\n## ", "\n### ")]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="../shared/data", help="folder holding each dataset's folder")
    p.add_argument("--out", default="runs/general", help="training runs (stage1/, stage2/)")
    p.add_argument("--release", default="zerohar/models/general", help="release folder")
    p.add_argument("--stage1-steps", type=int, default=200, help="at most this many Stage I steps (default 200)")
    p.add_argument("--stage2-steps", type=int, default=2000, help="at most this many Stage II steps (default 2000; "
                   "it stops earlier on a plateau of its validation subjects)")
    p.add_argument("--cross", nargs="+", default=list(CROSS_TABLES),
                   help="the cross-dataset tables to quote in the card, those that exist (default: the longer "
                   "budget's, one per target, which is this model's own recipe)")
    p.add_argument("--force", action="store_true", help="replace an existing release")
    a = p.parse_args(argv)

    names = ",".join(DATASETS)
    out = Path(a.out)
    common = ["--dataset", names, "--root", a.root, "--no-progress"]
    t0 = time.time()
    # Step caps, not time limits, so the model does not depend on the machine that trained it
    for stage, extra in (("stage1", ["--set", f"train.max_steps={a.stage1_steps}", "--set", "train.eval_every=50",
                                     "--set", "train.min_steps=100", "--set", "train.max_val_windows=1500"]),
                         ("stage2", ["--stage1", str(out / "stage1"), "--set", f"train.max_steps={a.stage2_steps}",
                                     "--set", "train.max_val_windows=2000"])):
        if not (out / stage / "metrics.json").is_file() or not json.loads(
                (out / stage / "metrics.json").read_text()).get("finished"):
            rc = zerohar([stage, *common, *extra, "--out", str(out / stage), "--resume"])
            if rc:
                return rc

    run = load_run(out / "stage2")
    data = load_data(run.config)  # the merged windows: test-subject scores, and the fp16 release's check
    card = model_card(out, a, test_scores(run, data))
    rows = np.random.default_rng(0).choice(data.test_idx, min(512, len(data.test_idx)), replace=False)
    export_release(out / "stage2", a.release, card=card, force=a.force, check_windows=data.ws.X[rows],
                   check_layout=data.ws.layout)
    print(f"general model -> {a.release} ({(time.time() - t0) / 60:.1f} min)")
    return 0


def test_scores(run, data) -> dict[str, dict]:
    """Each source's held-out test subjects (never trained or selected on), every class of that dataset a
    candidate: accuracy and macro-F1 of the run's model, fp32."""
    enc = get_text_encoder(run.text_encoder)
    out = {}
    for i, part in enumerate(data.parts):
        rows = data.test_idx[data.part_of[data.test_idx] == i]
        if not len(rows):
            continue
        mine = [c for c in data.classes if c.startswith(part.name + "/")]
        names = [class_text(c) for c in mine]
        index = LabelIndex.build(run.model, run.label_texts(names), enc, progress=False)
        emb = embed_windows(run.model, data.ws.X[rows][:, [3 * s + k for s in part.slots for k in range(3)]],
                            part.data.ws.layout.canonical(), precision="fp32")
        _, top = index.search(emb, k=2, candidates=names)
        y = data.ws.y[rows] - data.classes.index(mine[0])  # ids in the dataset's own ordering
        r = zero_shot_report(y, top, names, names)
        out[part.name] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "windows": int(len(rows)),
                          "subjects": len(part.data.subjects.get("test", []))}
    return out


def model_card(out: Path, a, tests: dict[str, dict]) -> str:
    m2 = json.loads((out / "stage2" / "metrics.json").read_text())
    m1 = json.loads((out / "stage1" / "metrics.json").read_text())
    meta = json.loads((out / "stage2" / "model.json").read_text())["extra"]
    best = m2["best"]["val"]
    lines = [
        "# zerohar general model", "",
        "One zero-shot activity model for accelerometer (+ gyroscope) windows of 5 s at 30 Hz, trained on four "
        "public datasets at once, so that `zerohar classify --labels ...` names activities in a new study without "
        "training. Weights: `model.safetensors` (fp16, {size_mb} MB, identity `{identity}`).", "",
        "## Training data", "",
        "| dataset | what | licence / terms | training windows |", "|---|---|---|---|",
    ]
    for s in meta["sources"]:
        lines.append(f"| {s['name']} | {CITES[s['name']]} | {DATASETS[s['name']][1]} | {s['train_windows']:,} |")
    lines += [
        "", "Every class of every dataset was trained on; each dataset's subjects were split into training, "
        "validation (model selection, early stopping, the 'unknown' threshold) and test subjects (never trained "
        "or selected on). Subjects per split are in `model.json` (`sources[].subjects`).", "",
        "## Recipe", "",
        "```", f"python scripts/build_general_model.py --root {a.root} --stage1-steps {a.stage1_steps} "
        f"--stage2-steps {a.stage2_steps}", "```", "",
        f"Stage I {m1.get('steps', m1.get('best', {}).get('step'))} steps (stopped: {m1.get('stop_reason')}), "
        f"Stage II {m2.get('steps', m2.get('best', {}).get('step'))} steps (stopped: {m2.get('stop_reason')}), "
        f"caps {a.stage1_steps} and {a.stage2_steps} steps of 64 windows, "
        f"{(m1['timing']['wall_time_s'] + m2['timing']['wall_time_s']) / 60:.0f} min of wall time on a CPU; HARNet-5 "
        "backbone from random weights (no pretrained HARNet file could be fetched), LLM-written label "
        f"descriptions of the shipped files, sampling balance {meta['balance']} (each dataset's share ~ "
        "windows^0.5).", "",
        "## Held-out validation subjects (seen classes, every class of the dataset a candidate)", "",
        "| dataset | accuracy | macro-F1 |", "|---|---|---|",
    ]
    for s in meta["sources"]:
        n = s["name"]
        lines.append(f"| {n} | {best.get(f'val_acc/{n}', float('nan')):.3f} | "
                     f"{best.get(f'val_macro_f1/{n}', float('nan')):.3f} |")
    lines += ["", "## Held-out test subjects (never trained or selected on; seen classes, every class of the dataset "
              "a candidate)", "", "| dataset | test subjects | windows | accuracy | macro-F1 |",
              "|---|---|---|---|---|"]
    for n, r in tests.items():
        lines.append(f"| {n} | {r['subjects']} | {r['windows']:,} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} |")
    lines += ["", *cross_section(a.cross)]
    lines += [
        "", "## Limits", "",
        "- Four small datasets (77 subjects in all), laboratory protocols, adults; placements waist, wrist, "
        "trouser pocket, hip. Other placements (ankle, chest) and free-living data are outside what it saw.",
        "- Labels far from the training activities (sports, household tasks) are guesses from text alone; "
        "check with the `unknown` rate and a few labelled minutes before trusting a study's totals.",
        "- Trained from a random backbone for minutes on a CPU: a stronger backbone (HARNet pretrained on UK "
        "Biobank) is expected to help and was not available offline.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
