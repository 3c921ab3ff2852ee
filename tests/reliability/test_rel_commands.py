"""describe, stage1 / stage2 / pretrain, eval, probe, benchmark and speed on malformed inputs and outputs."""

from __future__ import annotations

import json
import shutil

import pytest
from badinputs import nested_json, nested_yaml, tiny_config, write
from helpers import TINY_MODEL, untrained_run
from llm_server import LLMServer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("run") / "stage2", model=TINY_MODEL)


@pytest.fixture(scope="module")
def server():
    with LLMServer() as s:
        yield s


@pytest.fixture
def llm(server, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path_factory.mktemp("cache")))  # fresh: requests are counted
    server.reset()
    return server


# ---------------------------------------------------------------------------------------------- describe
def describe(server, *args, out="d.json"):
    return ["describe", "--llm-model", "m", "--base-url", server.url, "--no-progress", "--retries", "0",
            "--timeout", "5", *(("--out", out) if out else ()), *args]


def test_describe_writes_the_file(zh, llm, tmp_path):
    r = zh(*describe(llm, "walking")).ok()
    assert "d.json" in r.new


@pytest.mark.parametrize("args, words", [
    ([], ["no labels"]),
    (["walk\ning"], ["line break"]),
    (["  "], ["empty"]),
    (["x" * 300], ["300 characters"]),
    (["walking", "--n", "0"], ["--n"]),
    (["walking", "--n", "-2"], ["--n"]),
    (["walking", "--n", "1000"], ["--n"]),
    (["walking", "--concurrency", "0"], ["--concurrency"]),
    (["walking", "--timeout", "0"], ["--timeout"]),
    (["walking", "--timeout", "nan"], ["--timeout", "finite"]),
    (["walking", "--retries", "-1"], ["--retries"]),
    (["walking", "--backoff", "-1"], ["--backoff"]),
    (["walking", "--backoff", "inf"], ["--backoff", "finite"]),
    (["walking", "--temperature", "-1"], ["--temperature"]),
    (["walking", "--temperature", "9"], ["--temperature"]),
], ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None)
def test_describe_bad_arguments_send_no_request(zh, llm, args, words):
    zh(*describe(llm, *args)).refused(*words)
    assert llm.count == 0


def test_describe_bad_base_url(zh, llm):
    zh("describe", "walking", "--llm-model", "m", "--base-url", "not a url", "--out", "d.json",
       "--no-progress").refused("--base-url", "not a url")


DESCRIBE_LABEL_FILES = [
    ("l.json", nested_json(4000), ["nested too deeply"]),
    ("l.json", '{"labels": {"a": ["x"], "a": ["y"]}}', ["'a'", "twice"]),
    ("l.json", '["ok", "bad\\nlabel"]', ["line break"]),
    ("l.txt", b"\x00\x00", ["not a text file"]),
]


@pytest.mark.parametrize("name, content, words", DESCRIBE_LABEL_FILES, ids=[c[1][:12] for c in DESCRIBE_LABEL_FILES])
def test_describe_bad_labels_file(zh, llm, tmp_path, name, content, words):
    f = write(tmp_path / name, content)
    zh(*describe(llm, "--labels-file", f)).refused(*words)
    assert llm.count == 0


def test_describe_out_exists(zh, llm, tmp_path):
    write(tmp_path / "d.json", "{}")
    zh(*describe(llm, "walking")).refused("already exists", "--update", "--force")
    assert llm.count == 0


def test_describe_out_is_a_folder(zh, llm, tmp_path):
    (tmp_path / "d.json").mkdir()
    zh(*describe(llm, "walking")).refused("is a folder")


def test_describe_out_unwritable_fails_before_any_request(zh, llm, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*describe(llm, "walking", out=tmp_path / "ro" / "sub" / "d.json")).refused("not writable")
    assert llm.count == 0


def test_describe_out_under_a_file(zh, llm, tmp_path):
    write(tmp_path / "f", "x")
    zh(*describe(llm, "walking", out=tmp_path / "f" / "d.json")).refused("not a folder")
    assert llm.count == 0


@pytest.mark.parametrize("content, words", [
    ("{", ["not valid json"]),
    (nested_json(3000), ["nested too deeply"]),
    ('{"labels": {"a": ["x"]}, "labels": {}}', ["twice"]),
    ('{"labels": {"a": ["x"]}, "junk": 1}', ["junk"]),
], ids=["broken", "nested", "dup", "extra"])
def test_describe_update_of_an_invalid_file(zh, llm, tmp_path, content, words):
    write(tmp_path / "d.json", content)
    zh(*describe(llm, "walking", "--update")).refused(*words)
    assert llm.count == 0 and (tmp_path / "d.json").read_text() == content


def test_describe_server_unreachable(zh, tmp_path):
    zh("describe", "walking", "--llm-model", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", "d.json",
       "--retries", "0", "--timeout", "1", "--no-progress").refused("127.0.0.1:9")


def test_describe_server_always_fails(zh, llm):
    llm.default = "500"
    try:
        zh(*describe(llm, "walking")).refused("500")
    finally:
        llm.default = "ok"


# ---------------------------------------------------------------------------------------------- training
def train(stage, *args, out="run"):
    return [stage, "--dataset", "hapt", "--no-progress", "--set", "train.max_steps_per_epoch=1", "--epochs", "1",
            *(("--out", out) if out else ()), *args]


@pytest.mark.parametrize("stage", ["stage1", "stage2", "pretrain"])
@pytest.mark.parametrize("args, words", [
    (["--dataset", "nosuch"], ["nosuch"]),
    (["--fold", "fold99"], ["fold99"]),
    (["--epochs", "0"], ["epochs"]),
    (["--epochs", "-1"], ["epochs"]),
    (["--batch-size", "0"], ["batch_size"]),
    (["--lr", "-1"], ["lr"]),
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--set", "train.nosuch=1"], ["nosuch"]),
    (["--set", "train.lr"], ["key=value"]),
    (["--precision", "fp8"], ["invalid choice"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_training_bad_flags(zh, stage, args, words):
    zh(*train(stage, *args)).refused(*words)


@pytest.mark.parametrize("text, words", [
    ("train: {nosuch: 1}\n", ["nosuch"]),
    (nested_yaml(5000), ["nested too deeply"]),
    ("train: {lr: 1}\ntrain: {lr: 2}\n", ["'train'", "twice"]),
    ("- 1\n", ["mapping"]),
    ("train: [\n", ["not valid yaml"]),
], ids=["unknown", "nested", "dup", "list", "broken"])
def test_training_bad_config_file(zh, tmp_path, text, words):
    zh(*train("stage1", "--config", write(tmp_path / "c.yaml", text))).refused(*words)


@pytest.mark.parametrize("text, words", [
    (nested_yaml(5000), ["nested too deeply"]),
    ("classes: [walking, sitting]\nfolds: {fold1: {unseen: [walking, sitting]}}\n", ["no seen class"]),
    ("classes: [walking]\nclasses: [walking]\nfolds: {}\n", ["twice"]),
    ("classes: [a, b]\nfolds: [x]\n", ["'folds' must be a mapping"]),
], ids=["nested", "no-seen", "dup", "folds-list"])
def test_training_bad_folds_file(zh, tmp_path, text, words):
    zh(*train("stage2", "--folds", write(tmp_path / "f.yaml", text))).refused(*words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, words", [
    (nested_json(5000), ["nested too deeply"]),
    ('{"labels": {"walking": ["a"], "walking": ["b"]}}', ["'walking'", "twice"]),
    ('{"labels": {"rock climbing": ["hands grip and pull the body up"]}}', ["no descriptions", "--descriptions"]),
    ("{", ["not valid json"]),
], ids=["nested", "dup", "lacks-seen", "broken"])
def test_stage2_bad_descriptions_leave_no_run_behind(zh, tmp_path, content, words):
    zh(*train("stage2", "--descriptions", write(tmp_path / "d.json", content))).refused(*words)
    assert not (tmp_path / "run").exists(), "a refused run left its folder (log.txt) behind"


def test_training_data_file_missing(zh, tmp_path):
    zh("stage1", "--data", tmp_path / "w.npz", "--out", "run", "--no-progress").refused("w.npz")


def test_training_data_file_garbage(zh, tmp_path):
    f = write(tmp_path / "w.npz", b"PK\x03\x04garbage")
    zh("stage1", "--data", f, "--out", "run", "--no-progress").refused("w.npz")
    assert not (tmp_path / "run").exists()


def test_training_out_is_a_file(zh, tmp_path):
    write(tmp_path / "run", "x")
    zh(*train("stage1")).refused("is a file")


def test_training_out_holds_a_finished_run(zh, run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    zh(*train("stage2")).refused("finished run", "--force")


def test_training_out_unwritable(zh, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*train("stage1", out=tmp_path / "ro" / "run")).refused("ro")


def test_stage2_from_a_missing_stage1(zh, tmp_path):
    zh(*train("stage2", "--stage1", tmp_path / "s1")).refused("does not exist")


def test_stage2_from_a_stage2_run(zh, run_dir):
    zh(*train("stage2", "--stage1", run_dir)).refused("not a Stage I run")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04" + bytes(64)],
                         ids=["empty", "text", "zip"])
def test_backbone_weights_garbage(zh, tmp_path, content):
    f = write(tmp_path / "w.mdl", content)
    zh(*train("stage1", "--backbone-weights", f)).refused("w.mdl")
    assert not (tmp_path / "run").exists()


def test_backbone_weights_missing(zh, tmp_path):
    zh(*train("stage1", "--backbone-weights", tmp_path / "w.mdl")).refused("w.mdl")


def test_resume_with_a_torn_state(zh, tmp_path):
    cfg = write(tmp_path / "tiny.yaml", tiny_config())
    d = tmp_path / "run"
    zh("stage1", "--config", cfg, "--out", d, "--no-progress").ok()
    (d / "metrics.json").write_text(json.dumps({"finished": False}))
    state = (d / "state.pt").read_bytes()
    (d / "state.pt").write_bytes(state[: len(state) // 3])
    zh("stage1", "--config", cfg, "--out", d, "--no-progress", "--resume").refused("state.pt", "damaged")


def test_pretrain_export_exists(zh, tmp_path):
    write(tmp_path / "b.mdl", "x")
    zh(*train("pretrain", "--export-released", tmp_path / "b.mdl")).refused("already exists")


def test_pretrain_export_unwritable(zh, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*train("pretrain", "--export-released", tmp_path / "ro" / "b.mdl")).refused("not writable")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- eval
def test_eval_run_missing(zh, tmp_path):
    zh("eval", "--run", tmp_path / "none").refused("does not exist")


def test_eval_out_exists(zh, run_dir, tmp_path):
    write(tmp_path / "ev" / "metrics.json", "{}")
    zh("eval", "--run", run_dir, "--out", tmp_path / "ev", "--no-progress").refused("already exists")


def test_eval_out_unwritable(zh, run_dir, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh("eval", "--run", run_dir, "--out", tmp_path / "ro" / "ev", "--no-progress").refused("not writable")


@pytest.mark.parametrize("content", [b"junk", b""], ids=["junk", "empty"])
def test_eval_data_garbage(zh, run_dir, tmp_path, content):
    f = write(tmp_path / "w.npz", content)
    zh("eval", "--run", run_dir, "--data", f, "--out", tmp_path / "ev", "--no-progress").refused("w.npz")


def test_eval_root_missing(zh, run_dir, tmp_path):
    zh("eval", "--run", run_dir, "--root", tmp_path / "none", "--out", tmp_path / "ev",
       "--no-progress").refused("does not exist")


# ---------------------------------------------------------------------------------------------- probe
@pytest.mark.parametrize("args, words", [
    (["--dataset", "nosuch"], ["nosuch"]),
    (["--dataset", "hapt", "--folds", "1"], ["--folds", "at least 2"]),
    (["--dataset", "hapt", "--folds", "-3"], ["--folds"]),
    (["--dataset", "hapt", "--batch-size", "0"], ["batch"]),
    (["--dataset", "hapt", "--sensors", "baro"], ["invalid choice"]),
    (["--dataset", "hapt", "--out", "p.txt"], [".json"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_probe_bad_flags(zh, args, words):
    zh("probe", "--no-progress", *args).refused(*words)


def test_probe_backbone_missing(zh, tmp_path):
    zh("probe", "--dataset", "hapt", "--backbone-weights", tmp_path / "b.mdl", "--no-progress").refused("b.mdl")


def test_probe_backbone_garbage(zh, tmp_path):
    f = write(tmp_path / "b.mdl", b"garbage")
    zh("probe", "--dataset", "hapt", "--backbone-weights", f, "--no-progress").refused("b.mdl")


def test_probe_data_garbage(zh, tmp_path):
    f = write(tmp_path / "w.npz", b"junk")
    zh("probe", "--data", f, "--no-progress").refused("w.npz")


def test_probe_out_exists(zh, tmp_path):
    write(tmp_path / "p.json", "{}")
    zh("probe", "--dataset", "hapt", "--out", tmp_path / "p.json", "--no-progress").refused("already exists")


def test_probe_out_unwritable(zh, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh("probe", "--dataset", "hapt", "--out", tmp_path / "ro" / "p.json", "--no-progress").refused("not writable")


# ---------------------------------------------------------------------------------------------- benchmark
@pytest.mark.parametrize("args, words", [
    (["--dataset", "nosuch"], ["nosuch"]),
    (["--dataset", "hapt", "--folds", "fold99"], ["fold99"]),
    (["--dataset", "hapt", "--seeds", "0"], ["--seeds"]),
    (["--dataset", "hapt", "--methods", "magic"], ["magic"]),
    (["--dataset", "hapt", "--epochs-scale", "0"], ["--epochs-scale"]),
    (["--dataset", "hapt", "--epochs-scale", "nan"], ["--epochs-scale", "finite"]),
    (["--dataset", "hapt", "--set", "nokey"], ["key=value"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_benchmark_bad_flags(zh, tmp_path, args, words):
    zh("benchmark", "--out", tmp_path / "b", "--no-progress", *args).refused(*words)
    assert not (tmp_path / "b").exists()


def test_benchmark_out_is_a_file(zh, tmp_path):
    write(tmp_path / "b", "x")
    zh("benchmark", "--dataset", "hapt", "--out", tmp_path / "b", "--no-progress").refused("b")


def test_benchmark_out_unwritable(zh, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh("benchmark", "--dataset", "hapt", "--out", tmp_path / "ro" / "b", "--no-progress").refused("not writable")


# ---------------------------------------------------------------------------------------------- speed
@pytest.mark.parametrize("args, words", [
    (["--days", "0"], ["--days"]),
    (["--days", "-1"], ["--days"]),
    (["--days", "inf"], ["--days", "finite"]),
    (["--figures", "nosuch"], ["invalid choice"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_speed_bad_flags(zh, args, words):
    zh("speed", "--quick", *args).refused(*words)


def test_speed_json_exists(zh, tmp_path):
    write(tmp_path / "s.json", "{}")
    zh("speed", "--quick", "--json", tmp_path / "s.json").refused("already exists")


def test_speed_json_unwritable(zh, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh("speed", "--quick", "--json", tmp_path / "ro" / "s.json").refused("not writable")


def test_speed_json_is_a_folder(zh, tmp_path):
    (tmp_path / "s.json").mkdir()
    zh("speed", "--quick", "--json", tmp_path / "s.json").refused("is a folder")


# ---------------------------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("argv, words", [
    (["nosuch"], ["invalid choice"]),
    (["prepare", "--nosuch"], ["unrecognized arguments"]),
    (["classify"], ["required"]),
], ids=["command", "flag", "required"])
def test_command_line_usage_errors(zh, argv, words):
    r = zh(*argv)
    assert r.code == 2 and "Traceback" not in r.err and all(w in r.err for w in words) and not r.new

