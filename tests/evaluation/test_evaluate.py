"""zerohar eval: metrics.json layout, one class ordering end to end, GZSL test set, supervised runs, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY_MODEL, untrained_run

from zerohar.cli import build_parser, main
from zerohar.data.prepare import load_windowset
from zerohar.errors import ZeroharError
from zerohar.evaluation.benchmark import run_benchmark
from zerohar.evaluation.evaluate import evaluate_run, format_metrics
from zerohar.inference.embed import embed_windows
from zerohar.text.encoder import get_text_encoder
from zerohar.text.labels import load_label_descriptions
from zerohar.train.runs import load_run

SUBJECTS = ["01", "02", "03"]


def _tiny_run(d, *, stage="stage2", split=None, label_text="descriptions", seed=0, model=None):
    """A finished untrained run on 3 HAPT subjects (train 01, validation 02, test 03 unless `split` says otherwise)."""
    return untrained_run(d, stage=stage, subjects=SUBJECTS, label_text=label_text, seed=seed, model=model,
                         split=split or {"train": ["01"], "val": ["02"], "test": ["03"]})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = _tiny_run(tmp_path_factory.mktemp("eval") / "run")
    return run, evaluate_run(run, precision="fp32", progress=False)


def test_metrics_json_layout(evaluated):
    run, m = evaluated
    on_disk = json.loads((run / "eval" / "metrics.json").read_text())
    assert list(on_disk)[:4] == ["accuracy", "macro_f1", "top2_accuracy", "chance"]
    for key in ("per_class", "confusion_matrix", "class_order", "gzsl"):
        assert key in on_disk
    assert set(on_disk["gzsl"]) >= {"seen_accuracy", "unseen_accuracy", "harmonic_mean"}
    assert on_disk["chance"] == pytest.approx(1 / 4)
    assert on_disk["class_order"] == ["walking", "sitting", "stand-to-sit", "sit-to-lie"]  # the dataset's order
    cm = np.asarray(on_disk["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == on_disk["n_windows"]
    assert [on_disk["per_class"][c]["support"] for c in on_disk["class_order"]] == cm.sum(axis=1).tolist()
    assert (run / "eval" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_agrees_with_an_independent_computation(evaluated):
    """Embed the unseen windows and compare them with the label prototypes by hand: same accuracy and F1."""
    from sklearn.metrics import f1_score

    run_dir, m = evaluated
    run = load_run(run_dir)
    ws = load_windowset("hapt")
    unseen = ["sit-to-lie", "walking", "stand-to-sit", "sitting"]  # any order
    ids = [ws.class_names.index(c) for c in unseen]
    mask = np.isin(ws.y, ids) & np.isin(ws.subject, SUBJECTS)
    emb = embed_windows(run.model, ws.X[mask], ws.layout, precision="fp32")  # (n, E)
    descs = load_label_descriptions("hapt")
    enc = get_text_encoder()
    with torch.no_grad():
        protos = torch.stack([
            run.model.label_prototypes(torch.from_numpy(enc.encode(descs[c]))[None])[0] for c in unseen
        ]).numpy()  # (4, E)
    pred = np.asarray(ids)[np.argmax(emb @ protos.T, axis=1)]
    y = ws.y[mask]
    assert m["n_windows"] == len(y)
    assert m["accuracy"] == pytest.approx(float(np.mean(pred == y)), abs=1e-9)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=sorted(ids), average="macro", zero_division=0))


def test_gzsl_tests_held_out_subjects_of_seen_classes(evaluated):
    _, m = evaluated
    assert m["run"]["gzsl_seen_subjects"] == ["03"]  # the run's test subjects, never its validation subject 02
    assert m["run"]["subjects"] == {"train": ["01"], "val": ["02"], "test": ["03"]}
    g = m["gzsl"]
    ws = load_windowset("hapt")
    seen_ids = [ws.class_names.index(c) for c in m["run"]["seen"]]
    assert g["n_seen_windows"] == int((np.isin(ws.y, seen_ids) & (ws.subject == "03")).sum())
    assert g["n_unseen_windows"] == m["n_windows"]
    assert 0.0 <= g["harmonic_mean"] <= max(g["seen_accuracy"], g["unseen_accuracy"])
    c = m["gzsl_calibrated"]
    assert c["n_unseen_windows"] == g["n_unseen_windows"] and c["n_seen_windows"] == g["n_seen_windows"]
    # one test subject with two recordings: the margin is cross-fitted between them, never from a window's own
    assert c["seen_keep"] == 0.9 and c["cross_fitted"] is True and c["groups_by"] == "recording"
    # Lowering the seen scores can only move answers towards unseen classes.
    assert c["unseen_accuracy"] >= g["unseen_accuracy"] and c["seen_accuracy"] <= g["seen_accuracy"]
    assert m["gzsl_note"] is None


def test_unseen_metrics_on_the_test_subjects(evaluated):
    """The `test_subjects` block: the zero-shot metrics on the test subjects' unseen-class windows alone."""
    _, m = evaluated
    t = m["test_subjects"]
    ws = load_windowset("hapt")
    unseen_ids = [ws.class_names.index(c) for c in m["class_order"]]
    assert t["subjects"] == ["03"] and t["given"] is False
    assert t["n_windows"] == int((np.isin(ws.y, unseen_ids) & (ws.subject == "03")).sum()) < m["n_windows"]
    assert sum(t["support"].values()) == t["n_windows"] and list(t["support"]) == m["class_order"]
    assert 0.0 <= t["macro_f1"] <= 1.0 and t["chance"] == m["chance"]
    assert m["run"]["unseen_windows"] == "all subjects"


def test_a_run_without_test_subjects_measures_no_gzsl_seen_accuracy(tmp_path, caplog):
    """Never a silent reuse of the validation subjects: GZSL seen accuracy and calibration are not measured."""
    run = _tiny_run(tmp_path / "nt", split={"train": ["01", "02"], "val": ["03"], "test": []}, model=TINY_MODEL)
    with caplog.at_level("WARNING"):
        m = evaluate_run(run, progress=False)
    assert m["gzsl"]["seen_accuracy"] is None and m["gzsl"]["harmonic_mean"] is None
    assert m["gzsl_calibrated"] is None and m["test_subjects"] is None and m["run"]["gzsl_seen_subjects"] == []
    assert "records no test subjects" in m["gzsl_note"] and "not measured" in caplog.text
    assert m["n_windows"] > 0  # the zero-shot metrics themselves need no test subjects
    assert "GZSL: run " in format_metrics(m)


def test_the_test_subject_block_on_given_subjects(tmp_path):
    """The benchmark scores every row on the bound's test subjects; a supervised run only on its own."""
    m = evaluate_run(_tiny_run(tmp_path / "zs", model=TINY_MODEL), progress=False, subjects=["02", "03"])
    assert m["test_subjects"]["subjects"] == ["02", "03"] and m["test_subjects"]["given"] is True
    assert m["run"]["gzsl_seen_subjects"] == ["03"]  # GZSL stays on the run's own test subjects
    sup = _tiny_run(tmp_path / "sup", stage="supervised", model=TINY_MODEL)
    with pytest.raises(ZeroharError, match=r"supervised run .* trained on subjects \['02'\]; it can only be scored "
                                           r"on its test subjects \['03'\]"):
        evaluate_run(sup, progress=False, subjects=["02", "03"])
    s = evaluate_run(sup, tmp_path / "sup_ev", progress=False, subjects=["03"])
    assert s["test_subjects"]["macro_f1"] == s["macro_f1"] and s["test_subjects"]["n_windows"] == s["n_windows"]


def test_an_existing_evaluation_is_kept_without_force(evaluated):
    run, _ = evaluated
    with pytest.raises(ZeroharError, match=r"eval/metrics.json already exists; pass --force to overwrite it"):
        evaluate_run(run, progress=False)


def test_supervised_runs_are_tested_on_their_test_subjects_only(tmp_path):
    split = {"train": ["01"], "val": ["02"], "test": ["03"]}
    run = _tiny_run(tmp_path / "sup", stage="supervised", split=split)
    m = evaluate_run(run, progress=False)
    ws = load_windowset("hapt")
    unseen_ids = [ws.class_names.index(c) for c in ["walking", "sitting", "stand-to-sit", "sit-to-lie"]]
    assert m["n_windows"] == int((np.isin(ws.y, unseen_ids) & (ws.subject == "03")).sum())
    assert m["run"]["gzsl_seen_subjects"] == ["03"]


def test_a_run_trained_on_label_names_is_evaluated_with_names(tmp_path):
    run = load_run(_tiny_run(tmp_path / "names", label_text="names"), load_model=False)
    assert run.label_texts(["walking", "sitting"]) == {"walking": ["walking"], "sitting": ["sitting"]}
    run = load_run(_tiny_run(tmp_path / "descs"), load_model=False)
    assert len(run.label_texts(["walking"])["walking"]) == 10


def test_a_stage1_run_is_refused(tmp_path):
    run = _tiny_run(tmp_path / "s1", stage="stage1")
    with pytest.raises(ZeroharError, match="is a stage1 run; zero-shot evaluation needs a Stage II"):
        evaluate_run(run, progress=False)
    with pytest.raises(ZeroharError, match="run directory .*missing does not exist"):
        evaluate_run(tmp_path / "missing", progress=False)


def test_eval_command(evaluated, tmp_path, capsys):
    run, m = evaluated
    assert main(["eval", "--run", str(run), "--out", str(tmp_path / "ev"), "--precision", "fp32",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}" in out
    assert "chance 0.250" in out
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_eval_and_benchmark_are_fp32_by_default_classify_stays_auto():
    import inspect

    def default(command: str, *argv: str) -> str:
        return build_parser(only=command).parse_args([command, *argv]).precision

    assert default("eval", "--run", "r") == "fp32"
    assert default("benchmark", "--dataset", "hapt", "--out", "b") == "fp32"
    assert default("classify", "--run", "r", "--input", "x.csv", "--labels", "walking", "--out", "o.csv") == "auto"
    assert inspect.signature(evaluate_run).parameters["precision"].default == "fp32"
    assert inspect.signature(run_benchmark).parameters["precision"].default == "fp32"


def test_metrics_record_precision_and_transductive_init(evaluated):
    _, m = evaluated
    assert m["precision"] == "fp32" and m["run"]["transductive_init"] == []
