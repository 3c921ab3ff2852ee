"""The shipped general model (zerohar/models/general): its files agree with its card, it loads offline, and a
fresh clone names the activities of a CSV recording with new label text without any training."""

from __future__ import annotations

import csv
import json
import re

from zerohar.cli import main
from zerohar.data.sources import embedded
from zerohar.model.zerohar import file_identity
from zerohar.models import GENERAL, general_model_dir
from zerohar.train.runs import load_run


def test_shipped_model_matches_its_card():
    d = general_model_dir()
    meta = json.loads((d / "model.json").read_text())
    ident = file_identity(d / "model.safetensors")
    assert meta["identity"] == ident
    card = (d / "MODEL_CARD.md").read_text()
    assert f"identity `{ident}`" in card
    size = (d / "model.safetensors").stat().st_size / 2**20
    assert size < 20
    assert re.search(rf"\({size:.1f} MB", card.replace("fp16, ", "("))
    extra = meta["extra"]
    assert [s["name"] for s in extra["sources"]] == ["hapt", "shoulder", "spswhar", "uschad"]
    assert extra["release"]["weights_dtype"] == "float16" and extra["stage"] == "stage2"
    for s in extra["sources"]:
        assert s["name"] in card  # every training dataset is named (with its licence) in the card
    assert json.loads((d / "metrics.json").read_text())["finished"]


def test_classify_without_a_run_uses_the_general_model(tmp_path):
    assert load_run(GENERAL).model is not None  # offline: HF_HUB_OFFLINE is set by conftest
    rec = embedded.read(progress=False)[0]
    path = tmp_path / "rec.csv"
    cols = list(rec.layout.columns)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", *cols])
        n = min(rec.n_samples, 30 * 120)  # two minutes
        for i in range(n):
            w.writerow([f"{i / rec.rate:.4f}", *(f"{v:.5f}" for v in rec.signals[i])])
    out = tmp_path / "x.csv"
    assert main(["classify", "--input", str(path), "--placement", "waist", "--device", "smartphone",
                 "--labels", "walking", "climbing stairs", "lying", "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 47 and {r["label"] for r in rows} <= {"walking", "climbing stairs", "lying", "unknown"}
