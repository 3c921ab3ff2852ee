"""`torchrun --nproc_per_node=2` (gloo on CPU) computes the same losses as one process.

The batch size is global: each of the 2 processes takes half of the same global batch, and channel
embeddings are gathered (with gradient) before the contrastive loss. With an encoder without BatchNorm
(the original encoder; LayerNorm only) and no dropout, 1 and 2 processes differ only by float summation
order: the first step's loss agrees, and so does the second's (which checks that the gradients of the two
processes were combined into the single-process update).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_train import tiny_cfg

from zerohar.train import train_stage

SCRIPT = """
import json, sys
from zerohar.config import resolve_config
from zerohar.train import train_stage
over = json.loads(sys.argv[1])
train_stage("stage1", resolve_config("stage1", overrides=over), sys.argv[2], progress=False)
"""


def _overrides() -> dict:
    cfg = tiny_cfg("stage1", epochs=2, max_steps_per_epoch=1, batch_size=8, augment=True)
    return {"data": cfg.data.__dict__, "model": cfg.model.__dict__, "train": cfg.train.__dict__}


def test_two_processes_match_one(tmp_path):
    over = _overrides()
    one = train_stage("stage1", tiny_cfg("stage1", epochs=2, max_steps_per_epoch=1, batch_size=8, augment=True),
                      tmp_path / "one", progress=False)
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         json.dumps(over), str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert a["timing"]["processes"] == 1 and b["timing"]["processes"] == 2
    loss_one = [e["train_loss"] for e in a["epochs"]]
    loss_two = [e["train_loss"] for e in b["epochs"]]
    assert loss_two[0] == pytest.approx(loss_one[0], rel=1e-4)  # first step: same global batch, same loss
    assert loss_two[1] == pytest.approx(loss_one[1], rel=1e-3)  # second step: same update was applied
    assert b["finished"] and (tmp_path / "two" / "model.safetensors").is_file()
