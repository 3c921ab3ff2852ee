"""Both RelCon steps and SSL pretraining from the command line on the embedded data; their backbones drop into
Stage I through `--backbone-weights` and export in the released HARNet format."""

from __future__ import annotations

import torch

from zerohar.cli import main
from zerohar.model.pretrained import load_backbone

TINY = ["--dataset", "hapt", "--set", 'data.subjects=["01", "02", "03"]', "--epochs", "1", "--batch-size", "8",
        "--set", "train.max_steps_per_epoch=2", "--set", "train.max_val_windows=32", "--no-progress"]


def test_pretrain_methods_from_the_cli_feed_stage1_and_export(tmp_path, capsys):
    motif, relcon, s1 = tmp_path / "motif", tmp_path / "relcon", tmp_path / "s1"
    # pretraining without fold1's unseen classes, so that its backbone may start a fold1 Stage I
    assert main(["pretrain", "--method", "motif-distance", "--fold", "fold1", "--out", str(motif), *TINY]) == 0
    mdl = tmp_path / "relcon.mdl"
    assert main(["pretrain", "--method", "relcon", "--fold", "fold1", "--distance", str(motif),
                 "--set", "train.relcon_within_cands=4",
                 "--out", str(relcon), "--export-released", str(mdl), *TINY]) == 0
    out = capsys.readouterr().out
    assert "pretrain finished" in out and "released HARNet format" in out
    # The exported file is the released key format and holds the run's backbone.
    released = torch.load(mdl, weights_only=True)
    assert all(k.startswith("module.feature_extractor.") for k in released)
    a, b = load_backbone(mdl, "harnet5").state_dict(), load_backbone(relcon, "harnet5").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    tiny_model = ["--set", "model.embed_dim=32", "--set", "model.d_model=32", "--set", "model.n_layers=1"]
    assert main(["stage1", "--fold", "fold1", "--backbone-weights", str(relcon), "--out", str(s1), *TINY,
                 *tiny_model]) == 0
    # a fold1 run may not start from a backbone that saw fold1's unseen classes (here: trained on fold2)
    assert main(["pretrain", "--fold", "fold2", "--out", str(tmp_path / "f2"), *TINY]) == 0
    capsys.readouterr()
    assert main(["stage1", "--fold", "fold1", "--backbone-weights", str(tmp_path / "f2"), "--out",
                 str(tmp_path / "s1x"), *TINY, *tiny_model]) == 2
    assert "unseen in this fold" in capsys.readouterr().err
    # a relcon run needs its distance
    assert main(["pretrain", "--method", "relcon", "--out", str(tmp_path / "x"), *TINY]) == 2
    assert "relcon_distance" in capsys.readouterr().err
