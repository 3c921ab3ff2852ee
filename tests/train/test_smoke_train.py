"""End to end through the command line: pretrain -> stage1 -> stage2 on a small real HAPT subset.

The embedded HAPT derivative (3 subjects), the real harnet5 backbone and text encoder, 1 epoch of 2 small
steps per stage: it checks that the commands fit together, not that they learn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zerohar.cli import main

SMALL = ["--set", 'data.subjects=["01", "02", "03"]', "--set", "train.val_fraction=0.34",
         "--set", "train.max_steps_per_epoch=2", "--set", "train.max_val_windows=16",
         "--epochs", "1", "--batch-size", "8", "--no-progress"]


def test_pretrain_stage1_stage2(tmp_path, capsys):
    pt, s1, s2, mdl = tmp_path / "pt", tmp_path / "s1", tmp_path / "s2", tmp_path / "backbone.mdl"
    # pretraining on every class would leak fold1's unseen classes into Stage I (refused below): use fold1's seen ones
    assert main(["pretrain", "--dataset", "hapt", "--fold", "fold1", "--out", str(pt), "--export-released", str(mdl),
                 *SMALL]) == 0
    assert json.loads((pt / "metrics.json").read_text())["best"]["metric"] is not None
    assert mdl.is_file()

    assert main(["stage1", "--dataset", "hapt", "--fold", "fold1", "--backbone-weights", str(mdl), "--out", str(s1),
                 *SMALL]) == 0
    assert main(["stage2", "--dataset", "hapt", "--fold", "fold1", "--stage1", str(s1), "--out", str(s2), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "stage1 finished" in out and "stage2 finished" in out and "channel_acc" in out and "val_acc" in out

    meta = json.loads((s2 / "model.json").read_text())["extra"]
    assert meta["stage"] == "stage2" and meta["stage1"]["init"] == str(mdl)
    cfg = (s2 / "config.yaml").read_text()
    assert "fold: fold1" in cfg and f"init: {s1}" in cfg

    # the same command again is refused (one line, exit 2), and accepted with --force
    assert main(["stage2", "--dataset", "hapt", "--fold", "fold1", "--stage1", str(s1), "--out", str(s2), *SMALL]) == 2
    assert "already holds a finished run; pass --force" in capsys.readouterr().err
    # an init that is not a Stage I run
    assert main(["stage2", "--dataset", "hapt", "--fold", "fold1", "--stage1", str(pt), "--out", str(tmp_path / "x"),
                 *SMALL]) == 2
    assert "is a pretrain run, not a Stage I run" in capsys.readouterr().err


def test_stage_scripts_are_the_commands():
    root = Path(__file__).resolve().parents[2]
    for stage in ("stage1", "stage2"):
        p = subprocess.run([sys.executable, str(root / stage / "train.py"), "--help"], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        init = "--backbone-weights" if stage == "stage1" else "--stage1"
        assert "--fold" in p.stdout and init in p.stdout and "--resume" in p.stdout
