"""The zerohar demo (`make demo`, `make demo LABELS="walking,lying,cycling"`): offline, from the embedded HAPT data.

0. the shipped general model (no training) names the activities of one embedded HAPT recording with label text
   of your choice (`LABELS=...`), and says how long each took;
1. data: the embedded HAPT derivative (30 users, 12 activities, 30 Hz) cut into 5 s windows;
2. Stage I on fold1's seen classes (channel embeddings <-> sensor descriptions);
3. Stage II on fold1's seen classes (windows <-> LLM label descriptions);
4. zero-shot evaluation on the four classes Stage II never saw, next to chance;
5. `zerohar classify` on one recording of a test subject (never trained or selected on), written out as the CSV a
   user would have (time column first), with label text from the command line; a timeline of the result.

Runs go to `runs/demo/` (`--out`); a second call reuses the finished runs and takes seconds.
"""

from __future__ import annotations

import os

# Offline before any import that could load the sentence-transformers stack (the Makefile sets these too).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402 (after the offline environment above)
import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from zerohar.cli import configure_logging  # noqa: E402
from zerohar.cli import main as zerohar  # noqa: E402
from zerohar.config import resolve_config  # noqa: E402
from zerohar.data.folds import load_folds  # noqa: E402
from zerohar.data.prepare import class_table, load_windowset  # noqa: E402
from zerohar.data.sources import embedded  # noqa: E402
from zerohar.errors import ZeroharError  # noqa: E402
from zerohar.evaluation.benchmark import chance_metrics, evaluation_is_current, settings_diff  # noqa: E402
from zerohar.evaluation.evaluate import evaluate_run  # noqa: E402
from zerohar.inference.summaries import segments  # noqa: E402
from zerohar.models import general_model_dir  # noqa: E402
from zerohar.train.loop import summary_line, train_stage  # noqa: E402
from zerohar.train.runs import has_run_files, is_finished, load_run  # noqa: E402

DATASET, FOLD = "hapt", "fold1"
#: The demo's own training budget (a demo should take minutes): the defaults let a run go on until its validation
#: curve is flat, which on HAPT takes several times longer. Stage I: at most 60 steps (it saturates early);
#: Stage II: validated every 50 steps, at most 300 (under 2x the 162 steps of the demo's former 3 epochs), and
#: stopped at a plateau of 2 flat validations after 150 steps; both end with the learning-rate cool-down.
BUDGET = {
    "stage1": {"max_steps": 60, "eval_every": 20, "min_steps": 40, "patience": 1},
    "stage2": {"max_steps": 300, "eval_every": 50, "min_steps": 150, "patience": 2},
}


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--labels", help="comma-separated labels for the classify step (default: fold1's unseen classes)")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--force", action="store_true", help="retrain even if finished runs exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log every step (INFO)")
    return p.parse_args(argv)


def _step(i: int, title: str) -> None:
    print(f"\n[{i}/5] {title}", flush=True)


#: The general model's default labels in the demo: text it never trained on (HAPT says "walking upstairs",
#: "lying", "sitting"), for activities it did see.
GENERAL_LABELS = ["strolling", "climbing stairs", "going down stairs", "lying in bed", "sitting on a chair",
                  "standing still"]


def _general_model_step(out: Path, labels, progress: bool) -> int:
    """Step 0: the shipped general model on one recording of a subject it never trained on, with new labels."""
    print("\n[0/5] The general model (shipped, no training): one recording, label text of your choice", flush=True)
    try:
        run = load_run(general_model_dir(), load_model=False)
    except ZeroharError as e:
        print(f"skipped: {e}")
        return 0
    hapt = next((s for s in run.meta.get("sources", []) if s.get("name") == "hapt"), {})
    test = {str(x) for x in (hapt.get("subjects") or {}).get("test", [])}
    recs = embedded.read(progress=False)
    rec = next((r for r in recs if str(r.subject) in test), None)
    if rec is None:
        print("skipped: the general model records no HAPT test subject")
        return 0
    csv_in = out / f"general_recording_{rec.name}.csv"
    out.mkdir(parents=True, exist_ok=True)
    _write_recording_csv(rec, csv_in)
    print(f"trained on HAPT, shoulder exercises, sp-sw-har and USC-HAD (every class), but never on subject "
          f"{rec.subject} of HAPT: recording {rec.name}, {rec.n_samples / rec.rate / 60:.1f} min")
    labels = labels or GENERAL_LABELS
    cmd = ["classify", "--input", str(csv_in), "--placement", "waist", "--device", "smartphone", "--labels",
           *labels, "--out", str(out / "general_labels.csv"), "--force"]
    print("$ zerohar " + " ".join(f'"{a}"' if " " in a else a for a in cmd))
    return zerohar(cmd + ([] if progress else ["--no-progress"]))


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _write_recording_csv(rec, path: Path) -> None:
    """A recording as a user would have it: `time` (seconds) first, then the channel columns."""
    t = np.arange(rec.n_samples) / rec.rate
    cols = list(rec.layout.columns) or [f"{s.sensor}_{a}" for s in rec.layout.sensors for a in "xyz"]
    tmp = path.with_suffix(".tmp.csv")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", *cols])
        for ti, xi in zip(t.tolist(), rec.signals.astype(float).tolist()):
            w.writerow([f"{ti:.4f}", *(f"{v:.5f}" for v in xi)])
    os.replace(tmp, path)


def _true_label(rec, class_names, start: float, end: float) -> str:
    """The activity covering most of [start, end) in the recording's own labels ("-" if unlabelled)."""
    lab = rec.labels[int(start * rec.rate) : int(end * rec.rate)]
    lab = lab[lab >= 0]
    return class_names[int(np.bincount(lab).argmax())] if len(lab) else "-"


def _example_recording(split: dict, recs: list):
    """The recording to classify and what its subject was to the run, said truthfully: a test subject if the run
    holds any out (never trained or selected on), else a validation subject (it chose the checkpoint), else a
    training subject."""
    roles = (("test", "a test subject: never trained or selected on"),
             ("val", "a validation subject: not trained on, but it chose the checkpoint (no test subjects)"),
             ("train", "a training subject: the run holds out no subjects"))
    for key, role in roles:
        mine = {str(x) for x in split.get(key, [])}
        rec = next((r for r in recs if str(r.subject) in mine), None)
        if rec is not None:
            return rec, role
    return recs[0], "a subject the run's metadata does not name"


def _train(stage: str, cfg, where: Path, force: bool, progress: bool) -> Path:
    """Train a stage into `where`, or reuse the finished run there (a second call takes seconds).

    A finished run trained with other settings (e.g. after an update of the defaults) is reused with a note;
    an unfinished one is resumed, or restarted if its settings differ.
    """
    if not force and has_run_files(where) and (where / "config.yaml").is_file():
        diff = settings_diff(where, cfg)
        if is_finished(where):
            note = f" (trained with other settings: {', '.join(diff[:4])}; --force retrains)" if diff else ""
            print(f"reusing the finished run {where}{note}")
            return where
        if diff:
            print(f"{where} holds an unfinished run with other settings ({', '.join(diff[:4])}); starting over")
            force = True
    return train_stage(stage, cfg, where, resume=not force, force=force, progress=progress)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    configure_logging(1 if args.verbose else 0)
    t_start = time.perf_counter()
    out = Path(args.out)
    progress = not args.no_progress
    folds = load_folds(DATASET)
    unseen = folds.unseen(FOLD)
    user_labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    try:
        code = _general_model_step(out, user_labels, progress)
        if code:
            return code
        _step(1, "Data: the embedded HAPT derivative (UCI HAPT, CC BY 4.0), 5 s windows at 30 Hz")
        ws = load_windowset(DATASET, progress=progress)
        print(class_table(ws))
        print(f"fold1: Stage I and II train on {len(folds.seen(FOLD))} seen classes; never on {', '.join(unseen)}")

        _step(2, "Stage I: channel embeddings <-> sensor descriptions (seen classes only)")
        base = {"data": {"dataset": DATASET, "fold": FOLD}}
        cfg1 = resolve_config("stage1", overrides={**base, "train": BUDGET["stage1"]})
        s1 = _train("stage1", cfg1, out / "stage1", args.force, progress)
        print(summary_line(s1))

        _step(3, "Stage II: windows <-> LLM label descriptions (seen classes only)")
        cfg2 = resolve_config("stage2", overrides={**base, "init": str(s1), "train": BUDGET["stage2"]})
        s2 = _train("stage2", cfg2, out / "stage2", args.force, progress)
        print(summary_line(s2))

        _step(4, f"Zero-shot evaluation on the unseen classes: {', '.join(unseen)}")
        eval_dir = s2 / "eval"
        if evaluation_is_current(eval_dir / "metrics.json", s2 / "model.safetensors"):
            m = json.loads((eval_dir / "metrics.json").read_text())
        else:
            m = evaluate_run(s2, eval_dir, force=True, progress=progress)
        support = [m["per_class"][c]["support"] for c in m["class_order"]]
        chance = chance_metrics(np.repeat(np.arange(len(support)), support), len(support), 1)
        print(f"{m['n_windows']} windows of unseen activities, candidates = the {len(unseen)} unseen labels")
        print(f"  accuracy  {m['accuracy']:.3f}   (chance {chance['accuracy']:.3f})")
        print(f"  macro-F1  {m['macro_f1']:.3f}   (chance {chance['macro_f1']:.3f}, uniform guessing)")
        print(f"  top-2     {m['top2_accuracy']:.3f}   (chance {chance['top2_accuracy']:.3f})")
        gz = m.get("gzsl_calibrated")
        if gz:
            n_all = len(m["run"]["seen"]) + len(unseen)
            print(f"  all {n_all} labels as candidates (GZSL, calibrated stacking): seen {gz['seen_accuracy']:.3f}, "
                  f"unseen {gz['unseen_accuracy']:.3f}, harmonic mean {gz['harmonic_mean']:.3f}")
        print(f"  -> {eval_dir / 'metrics.json'}, {eval_dir / 'confusion.png'}")

        labels = user_labels or unseen
        _step(5, f"zerohar classify on one recording, labels: {', '.join(labels)}")
        rec, role = _example_recording(load_run(s2, load_model=False).subjects, embedded.read(progress=False))
        csv_in = out / f"recording_{rec.name}.csv"
        _write_recording_csv(rec, csv_in)
        print(f"recording {rec.name} (subject {rec.subject}, {role}), {rec.n_samples / rec.rate / 60:.1f} min "
              f"-> {csv_in}")
        csv_out = out / "labels.csv"
        cmd = ["classify", "--run", str(s2), "--input", str(csv_in), "--placement", "waist", "--device",
               "smartphone", "--labels", *labels, "--out", str(csv_out), "--force"]
        print("$ zerohar " + " ".join(f'"{a}"' if " " in a else a for a in cmd))
        if not progress:
            cmd.append("--no-progress")
        code = zerohar(cmd)
        if code:
            return code
        with open(csv_out, newline="") as f:
            rows = list(csv.DictReader(f))
        starts = [float(r["start_s"]) for r in rows]
        segs = segments(starts, [r["label"] for r in rows], 2.5, 5.0)
        classes = list(rec.meta.get("class_names") or ws.class_names)
        print(f"\ntimeline ({len(segs)} segments; `true` = the recording's own labels, for comparison):")
        width = max(len(lab) for lab in labels)
        shown = segs[:40]
        for a, b, lab in shown:
            print(f"  {_hms(a)}-{_hms(b)}  {lab:<{width}}  (true: {_true_label(rec, classes, a, b)})")
        if len(segs) > len(shown):
            print(f"  ... {len(segs) - len(shown)} more segments in {csv_out}")
    except ZeroharError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2

    print(f"\ndemo finished in {(time.perf_counter() - t_start) / 60:.1f} min; runs in {out}/")
    print(
        f'Next: name other activities with `make demo LABELS="walking,lying,cycling"`, or classify your own '
        f"recording: `zerohar classify --run {s2} --input YOUR.csv --placement 'left wrist' --device smartwatch "
        f'--labels "walking" "sleeping" "cycling" --out labels.csv`; the whole benchmark: '
        f"`zerohar benchmark --dataset hapt --out runs/benchmark`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
