"""`zerohar distill`: the student's architecture and fast paths, the loss, a tiny distillation end to end, the
distilled backbone in classify and eval, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import SUBJECTS, TINY_MODEL, layout_of, randomise_bn, signal_of, untrained_run, window_set_file

from zerohar.cli import main
from zerohar.data.folds import load_folds
from zerohar.data.splits import split_subjects
from zerohar.data.windows import WindowSet
from zerohar.errors import ZeroharError
from zerohar.evaluation.evaluate import evaluate_run
from zerohar.inference.cohort import classify_cohort
from zerohar.inference.embed import MicroBatched, plan_backbone
from zerohar.inference.plan import inference_plan
from zerohar.model.fused import FusedHARNet, agreement, check_windows
from zerohar.model.harnet import LAYER_CONFIGS, DistilledHARNet, HARNet, layer_channels
from zerohar.model.onnx_backend import onnx_available, onnx_backbone
from zerohar.model.pretrained import load_backbone, load_student, save_student
from zerohar.train.distill import (
    channel_importance,
    distill_loss,
    distill_run,
    inverse_std,
    pruned_student,
    val_cosine,
)
from zerohar.train.runs import load_run

WAIST = layout_of(("acc", "waist", "smartphone"), ("gyro", "waist", "smartphone"))
#: A fast distillation: a narrow student, small batches, a few steps.
FAST = {"width": 0.25, "batch_size": 32, "progress": False}


# ---------------------------------------------------------------------------------------------- the student
def test_student_keeps_harnet_structure_and_width_one_is_the_released_network():
    net = HARNet("harnet5", width=0.5)
    assert layer_channels("harnet5", 0.5) == (32, 64, 128, 128, 256)
    assert [getattr(net, f"layer{i}")[0].out_channels for i in range(1, 6)] == [32, 64, 128, 128, 256]
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 6)] == [len(getattr(HARNet(), f"layer{i}"))
                                                                     for i in range(1, 6)]
    assert net.out_dim == 256 and net(torch.randn(2, 3, 150)).shape == (2, 256)
    full, one = HARNet("harnet5").state_dict(), HARNet("harnet5", width=1.0).state_dict()
    assert list(full) == list(one) and all(full[k].shape == one[k].shape for k in full)
    assert LAYER_CONFIGS["harnet5"][0] == (64, 2, 2, 2)
    student = DistilledHARNet("harnet5", 0.5)
    assert student.out_dim == 512 and student(torch.randn(3, 3, 150)).shape == (3, 512)
    assert {k.split(".")[0] for k in student.state_dict()} == {"net", "proj"}
    for bad in (0, 1.5, float("nan")):
        with pytest.raises(ZeroharError, match="width must be in"):
            HARNet("harnet5", width=bad)


def test_student_runs_fused_and_its_fused_output_equals_its_plain_output():
    torch.manual_seed(0)
    student = DistilledHARNet("harnet5", 0.5)
    randomise_bn(student.net, seed=1)
    student.eval()
    fused = FusedHARNet(student.net, torch.float32)  # the structure test accepts the narrower HARNet
    assert fused.out_dim == 256
    plan = inference_plan("fp32", flags=["avx2"])  # the fused fp32 rule
    run, autocast = plan_backbone(student, plan, torch.device("cpu"))
    assert not autocast and isinstance(run, MicroBatched)
    assert isinstance(run.module[0], FusedHARNet) and run.module[1] is student.proj
    x = check_windows(window=150)
    assert agreement(student, run, x) > 0.999
    with torch.no_grad():
        torch.testing.assert_close(run(x), student(x), rtol=1e-4, atol=1e-4)


def test_student_runs_in_int8():
    pytest.importorskip("onnxruntime")

    torch.manual_seed(0)
    student = DistilledHARNet("harnet5", 0.25).eval()
    run = onnx_backbone(student.net, "int8", check_windows(32, 150).numpy())
    x = check_windows(window=150)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(student.proj(run(x)), student(x), dim=1)
    assert cos.median() > 0.95


def test_student_files_round_trip_and_are_not_a_backbone(tmp_path):
    torch.manual_seed(0)
    student = DistilledHARNet("harnet5", 0.5).eval()
    path = save_student(student, tmp_path / "s.safetensors")
    back = load_student(path)
    x = torch.randn(2, 3, 150)
    with torch.no_grad():
        torch.testing.assert_close(back(x), student(x))
    with pytest.raises(ZeroharError, match="is a distilled backbone"):
        load_backbone(path)


# ---------------------------------------------------------------------------------------------- the loss
def test_distill_loss_is_zero_at_the_teacher_and_weighs_dimensions_by_their_spread():
    t = np.abs(np.random.default_rng(0).normal(size=(64, 8))).astype(np.float32)
    t[:, 0] *= 100  # a wide dimension
    t[:, 7] = 0.0  # a dead one
    inv = inverse_std(t)
    assert torch.isfinite(inv).all() and inv[7] == inv.max()  # floored, not infinite
    tt = torch.from_numpy(t)
    assert distill_loss(tt, tt, inv).item() == pytest.approx(0.0, abs=1e-6)
    off = tt.clone()
    off[:, 0] += 1.0  # one unit in a dimension of spread ~60
    off2 = tt.clone()
    off2[:, 1] += 1.0  # one unit in a dimension of spread ~0.6: costs much more
    assert distill_loss(off2, tt, inv) > distill_loss(off, tt, inv) > 0


# ---------------------------------------------------------------------------------------------- the start
def test_channel_importance_ranks_a_channel_nothing_reads_last():
    torch.manual_seed(0)
    net = randomise_bn(HARNet("harnet5"), seed=2).eval()
    x = check_windows(64, 150).numpy()
    before = channel_importance(net, x)
    j = int(before["layer3.1"].argmax())  # the most read channel inside block 1 of layer3
    with torch.no_grad():
        net.layer2[0].weight[:, 5] = 0  # layer1's stream channel 5: read by neither its blocks nor layer2
        for blk in (net.layer1[1], net.layer1[2]):
            blk.conv1.weight[:, 5] = 0
        net.layer3[1].conv2.weight[:, j] = 0  # and block 1 of layer3's channel j goes nowhere
    sc = channel_importance(net, x)
    assert set(sc) == {"layer1", "layer1.1", "layer1.2", "layer2", "layer2.1", "layer2.2", "layer3", "layer3.1",
                       "layer3.2", "layer4", "layer4.1", "layer4.2", "layer5"}
    assert sc["layer1"].shape == (64,) and sc["layer5"].shape == (512,)
    assert before["layer1"][5] > 0 and sc["layer1"][5] == 0 and (sc["layer1"][torch.arange(64) != 5] > 0).all()
    assert before["layer3.1"][j] > 0 and sc["layer3.1"][j] == 0


def test_a_student_started_from_the_teacher_is_closer_to_it_than_a_random_one():
    torch.manual_seed(0)
    teacher = randomise_bn(HARNet("harnet5"), seed=5).eval()
    x = check_windows(512, 150).numpy()
    with torch.no_grad():
        t = teacher(torch.from_numpy(x)).numpy()
    xv, tv = x[:128], t[:128]
    started = pruned_student(teacher, 0.5, x[128:], t[128:])
    assert started.training and started.width == 0.5 and started.out_dim == 512
    random = DistilledHARNet("harnet5", 0.5, 512)
    with torch.no_grad():
        random.proj.bias.copy_(torch.from_numpy(t[128:].mean(0)))
    inv = inverse_std(t[128:])

    def loss(student):  # on held-out windows (a random net's features share a large mean: the cosine is near 1)
        with torch.no_grad():
            return distill_loss(student.eval()(torch.from_numpy(xv)), torch.from_numpy(tv), inv).item()

    assert val_cosine(started, xv, tv) > val_cosine(random, xv, tv)
    assert loss(started) < 0.5 * loss(random)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A tiny run (three embedded HAPT subjects) distilled on its own training windows (the default data)."""

    run = untrained_run(tmp_path_factory.mktemp("run") / "stage2", subjects=SUBJECTS)
    distill_run(run, max_steps=6, **FAST)
    return run


def test_distillation_on_the_runs_own_windows_writes_both_files(distilled):
    d = distilled / "distilled"
    assert sorted(p.name for p in d.iterdir()) == ["model.safetensors", "student.json"]
    r = json.loads((d / "student.json").read_text())
    model = json.loads((distilled / "model.json").read_text())
    assert r["teacher"]["identity"] == model["identity"] and r["width"] == 0.25 and r["steps"] == 6
    assert r["stop_reason"] == "max_steps" and 0 < r["val_cosine"] <= 1 and r["seconds"]["wall"] > 0
    data = r["data"]
    assert data["source"] == "run" and data["fold"] == "fold1" and not data["labels_read"]
    train, val, test = split_subjects(SUBJECTS, 0.2, 0.2, 0, test_optional=True)  # the run's split (seed 0)
    assert data["subjects"] == {"train": train, "val": val} and test and not set(test) & set(train + val)
    # acc + gyro of every window, and of its two augmented copies (turned every way); validation: one copy
    assert data["train_triads"] == 2 * 3 * data["train_windows"] and data["val_triads"] == 2 * 2 * data["val_windows"]
    assert data["augment_copies"] == 2 and data["augment"] == {"max_deg": 180.0, "scale": 0.3, "intensity": 1.0,
                                                               "tempo": 1.0, "mix": 0.0}
    assert not [p for p in distilled.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_tiny_distillation_on_random_windows_improves_the_student(tmp_path):
    run = untrained_run(tmp_path / "run")
    data = window_set_file(tmp_path / "random.npz", WAIST, ["a", "b"], n_subjects=5, per=24, seed=0)
    distill_run(run, data=str(data), max_steps=30, augment_copies=0, **FAST)  # learning, measured plainly
    r = json.loads((run / "distilled" / "student.json").read_text())
    assert r["data"]["source"] == str(data) and r["data"]["val_windows"] == 24  # one of five subjects
    assert r["val_cosine"] > r["val_cosine_start"]  # the student moved towards the teacher
    assert [h["step"] for h in r["history"]] == [25, 30] and r["transductive_init"] == []
    first, last = (h["train_loss"] for h in r["history"])  # mean loss of steps 1-25, then of steps 26-30
    assert last < first
    assert sorted(p.name for p in (run / "distilled").iterdir()) == ["model.safetensors", "student.json"]
    assert r["init"] == {"from": "random"}
    # The other start: the teacher's own most read channels, much closer to it before any step
    distill_run(run, data=str(data), max_steps=1, augment_copies=0, init="teacher", force=True, **FAST)
    started = json.loads((run / "distilled" / "student.json").read_text())
    assert started["init"] == {"from": "teacher", "rank_triads": 4 * 2 * 24}  # every training triad (acc, gyro)
    assert started["val_cosine_start"] > r["val_cosine_start"]


def _datetime_csv(path, seconds: int = 60):
    n = seconds * 30
    t = np.datetime64("2026-06-01T10:00:00", "ms") + (np.arange(n) * 1000 / 30).astype("timedelta64[ms]")
    x = signal_of(np.arange(n) / 30.0)
    rows = "\n".join(f"{ti}," + ",".join(f"{v:.5f}" for v in xi)
                     for ti, xi in zip(np.datetime_as_string(t, unit="ms"), x.astype(float)))
    path.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    return path


def test_classify_distilled_runs_the_student_and_says_so(distilled, tmp_path):
    run = load_run(distilled, distilled=True)
    assert isinstance(run.student, DistilledHARNet) and isinstance(run.model.backbone, HARNet)
    assert run.window_model.backbone is run.student and run.window_model.sensor_encoder is run.model.sensor_encoder
    rec = _datetime_csv(tmp_path / "rec.csv")
    args = ["classify", "--run", str(distilled), "--input", str(rec), "--labels", "walking", "sitting",
            "--placement", "waist", "--device", "smartphone", "--no-progress", "--precision", "fp32"]
    assert main(args + ["--out-dir", str(tmp_path / "study"), "--distilled"]) == 0
    info = json.loads((tmp_path / "study" / "rec" / "info.json").read_text())
    student = json.loads((distilled / "distilled" / "student.json").read_text())
    assert info["model"]["backbone"]["kind"] == "distilled"
    assert info["model"]["backbone"]["identity"] == student["identity"] and info["arguments"]["distilled"]
    assert main(args + ["--out-dir", str(tmp_path / "own")]) == 0
    assert json.loads((tmp_path / "own" / "rec" / "info.json").read_text())["model"]["backbone"]["kind"] == "trained"
    if onnx_available():  # --distilled --precision int8: the student's HARNet in int8, its projection after it
        assert main(args[:-2] + ["--precision", "int8", "--out", str(tmp_path / "int8.csv"), "--distilled"]) == 0


def test_classify_cascade_keeps_the_students_label_only_where_its_error_cannot_change_it(distilled, tmp_path):
    rec = _datetime_csv(tmp_path / "rec.csv", 120)
    args = ["classify", "--run", str(distilled), "--input", str(rec), "--labels", "walking", "sitting", "lying",
            "--placement", "waist", "--device", "smartphone", "--no-progress", "--precision", "fp32",
            "--no-unknown"]
    labels = {}
    for name, flags in {"own": [], "student": ["--distilled"], "cascade": ["--cascade"]}.items():
        assert main(args + ["--out-dir", str(tmp_path / name)] + flags) == 0
        labels[name] = pd.read_csv(tmp_path / name / "rec" / "windows.csv")["label"].to_numpy()
    info = json.loads((tmp_path / "cascade" / "rec" / "info.json").read_text())
    c = info["cascade"]
    assert info["arguments"]["cascade"] and info["model"]["backbone"]["kind"] == "distilled"
    assert c["worn_windows"] == len(labels["own"]) and 0 <= c["checked_windows"] <= c["worn_windows"]
    assert c["checked_share"] == pytest.approx(c["checked_windows"] / c["worn_windows"]) and c["quantile"] == 0.99
    # every label is the teacher's (checked again) or the student's (left to it): never a third one
    assert ((labels["cascade"] == labels["own"]) | (labels["cascade"] == labels["student"])).all()
    assert (labels["cascade"] != labels["own"]).sum() <= (labels["student"] != labels["own"]).sum()
    assert main(args + ["--out", str(tmp_path / "both.csv"), "--cascade", "--distilled"]) == 2


def test_cohort_classify_distilled_runs_the_student_on_the_workers(distilled, tmp_path):
    (tmp_path / "cohort").mkdir()
    _datetime_csv(tmp_path / "cohort" / "p0.csv", 30)
    res = classify_cohort(str(distilled), tmp_path / "cohort", tmp_path / "out", labels=["walking", "sitting"],
                          workers=1, progress=False, placement="waist", device="smartphone", precision="fp32",
                          distilled=True)
    assert res.count("done") == 1
    info = json.loads((tmp_path / "out" / "p0" / "info.json").read_text())
    assert info["model"]["backbone"]["kind"] == "distilled"


def test_eval_distilled_scores_the_student(distilled, tmp_path):
    m = evaluate_run(distilled, tmp_path / "eval", distilled=True, progress=False)
    assert m["backbone"]["kind"] == "distilled" and m["backbone"]["width"] == 0.25
    assert 0 <= m["macro_f1"] <= 1


def test_eval_cascade_checks_each_decision_as_a_stream(distilled, tmp_path, capsys):
    m = evaluate_run(distilled, tmp_path / "eval", cascade=True, progress=False)
    own = evaluate_run(distilled, tmp_path / "own", progress=False)
    assert m["backbone"]["kind"] == "distilled" and own["cascade"] is None and m["n_windows"] == own["n_windows"]
    zs, gz = m["cascade"]["zero_shot"], m["cascade"]["gzsl"]
    assert zs["worn_windows"] == m["n_windows"] and gz["worn_windows"] >= zs["worn_windows"]
    for c in (zs, gz):  # the audit alone sends one window in 64 to the run's own backbone
        assert -(-c["worn_windows"] // 64) == c["audited_windows"] <= c["checked_windows"] <= c["worn_windows"]
    assert main(["eval", "--run", str(distilled), "--cascade", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert "cascade, zero-shot decision: the run's own backbone checked" in capsys.readouterr().out
    assert main(["eval", "--run", str(distilled), "--cascade", "--distilled", "--no-progress"]) == 2
    assert main(["eval", "--run", str(distilled), "--cascade", "--candidates", "all", "--dataset", "hapt"]) == 2
    assert "--cascade scores a run on its own fold" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- refusals
def test_distilled_without_a_distilled_folder_says_to_run_distill(tmp_path, capsys):
    run = untrained_run(tmp_path / "run")
    rec = _datetime_csv(tmp_path / "rec.csv", 10)
    code = main(["classify", "--run", str(run), "--input", str(rec), "--labels", "walking", "sitting", "--placement",
                 "waist", "--device", "smartphone", "--out", str(tmp_path / "o.csv"), "--distilled", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"make one with `zerohar distill --run {run}`" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--run", str(run), "--distilled", "--no-progress"]) == 2
    assert "zerohar distill --run" in capsys.readouterr().err


def test_existing_output_bad_width_and_runs_without_harnet_are_refused(distilled, tmp_path, capsys):
    assert main(["distill", "--run", str(distilled), "--no-progress"]) == 2
    assert "already exists; pass --force to replace it" in capsys.readouterr().err
    original = untrained_run(tmp_path / "orig", model=TINY_MODEL)
    assert main(["distill", "--run", str(original), "--no-progress"]) == 2
    assert "has no HARNet backbone to distil" in capsys.readouterr().err
    assert main(["distill", "--run", str(tmp_path / "orig"), "--width", "2", "--force", "--no-progress"]) == 2
    assert "width must be in (0, 1]" in capsys.readouterr().err


def test_data_holding_unseen_classes_or_test_subjects_is_refused_unless_allowed(tmp_path):
    folds = load_folds("hapt")
    run = untrained_run(tmp_path / "run", split={"train": ["1"], "val": ["2"], "test": ["9"]})
    classes = list(folds.classes)
    n = 40
    rng = np.random.default_rng(0)
    y = np.full(n, classes.index("standing"))
    y[:4] = classes.index("walking")  # unseen in fold1
    subject = np.repeat(["1", "2", "3", "4"], n // 4)
    ws = WindowSet(rng.normal(size=(n, 6, 150)).astype(np.float32), y, subject, classes, WAIST,
                   recording=np.repeat(np.arange(4), n // 4), start=np.tile(np.arange(n // 4) * 2.5, 4),
                   meta={"dataset": "hapt"})
    path = ws.save(tmp_path / "hapt-like.npz")
    with pytest.raises(ZeroharError, match=r"would train the student on hapt's classes \['walking'\], unseen in "
                                           r"this fold; .*--allow-transductive-init \(the student is then marked"):
        distill_run(run, data=str(path), max_steps=1, **FAST)
    ws.subject[ws.subject == "4"] = "9"  # a test subject of the run, no unseen class
    ws.y[:4] = classes.index("standing")
    path = ws.save(tmp_path / "hapt-test-subject.npz")
    with pytest.raises(ZeroharError, match=r"hapt's subjects \['9'\], held out for test here"):
        distill_run(run, data=str(path), max_steps=1, **FAST)
    distill_run(run, data=str(path), max_steps=1, allow_transductive_init=True, **FAST)
    r = json.loads((run / "distilled" / "student.json").read_text())
    assert any("held out for test" in s for s in r["transductive_init"])
