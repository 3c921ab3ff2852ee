"""The command line: one flag name per meaning, deprecated spellings, help on every option, quiet by default."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

import pytest

from zerohar.cli import COMMANDS, build_parser, configure_logging, main
from zerohar.commands._training import add_training_arguments, config_from_args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_does_not_import_torch():
    code = ("import sys\nfrom zerohar.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_every_visible_option_of_every_command_has_help():
    missing = []
    for name, p in _subparsers(build_parser()).items():
        for a in p._actions:
            if a.help is None and a.option_strings:
                missing.append(f"{name} {a.option_strings[0]}")
    assert not missing, f"options without help text: {missing}"
    assert set(_subparsers(build_parser())) == set(COMMANDS)


@pytest.mark.parametrize("command, flag", [("classify", "--run"), ("index", "--run"), ("eval", "--run"),
                                           ("describe", "--llm-model"), ("stage2", "--stage1"),
                                           ("stage1", "--backbone-weights"), ("pretrain", "--backbone-weights"),
                                           ("benchmark", "--backbone-weights")])
def test_one_flag_name_per_meaning(command, flag):
    p = _subparsers(build_parser(only=command))[command]
    assert flag in p._option_string_actions


@pytest.mark.parametrize("command, old, new, dest", [
    ("classify", "--model", "--run", "run"), ("index", "--model", "--run", "run"),
    ("describe", "--model", "--llm-model", "llm_model"), ("stage2", "--init", "--stage1", "init"),
    ("stage2", "--backbone-init", "--backbone-weights", "backbone_init"),
    ("stage1", "--init", "--backbone-weights", "init"), ("benchmark", "--backbone-init", "--backbone-weights",
                                                         "backbone_init"),
])
def test_old_spellings_still_work_with_a_deprecation_note(command, old, new, dest, capsys):
    p = _subparsers(build_parser(only=command))[command]
    action = p._option_string_actions[old]
    assert action.help == argparse.SUPPRESS  # hidden from --help
    assert old not in p.format_help()
    ns = argparse.Namespace()
    action(p, ns, "X", old)
    assert getattr(ns, dest) == "X"
    err = capsys.readouterr().err
    assert f"{old} is deprecated" in err and new in err and len(err.strip().splitlines()) == 1


def test_stage2_flags_map_to_the_config():
    p = argparse.ArgumentParser()
    add_training_arguments(p, "stage2")
    cfg = config_from_args("stage2", p.parse_args(["--dataset", "hapt", "--backbone-weights", "w.mdl"]))
    assert cfg.init is None and cfg.backbone_init == "w.mdl"
    p = argparse.ArgumentParser()
    add_training_arguments(p, "stage1")
    args = p.parse_args(["--dataset", "hapt", "--backbone-weights", "w.mdl"])
    assert config_from_args("stage1", args).init == "w.mdl"


def test_verbosity_counts_before_and_after_the_command():
    assert build_parser(only="eval").parse_args(["eval", "--run", "r"]).verbose == 0
    assert build_parser(only="eval").parse_args(["-v", "eval", "--run", "r"]).verbose == 1
    assert build_parser(only="eval").parse_args(["eval", "--run", "r", "-vv"]).verbose == 2


def test_logging_is_quiet_by_default_even_when_a_library_raises_its_level(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(0)
        log = logging.getLogger("zerohar.some.module")
        logging.getLogger("zerohar").setLevel(logging.INFO)  # as training does for its log.txt
        log.info("an info line")
        log.warning("a warning line")
        err = capsys.readouterr().err
        assert "a warning line" in err and "an info line" not in err
        configure_logging(1)
        log.info("now shown")
        assert "now shown" in capsys.readouterr().err
        assert sum(getattr(h, "_zerohar", False) for h in root.handlers) == 1  # reconfiguring replaces the handler
    finally:
        logging.getLogger("zerohar").setLevel(logging.NOTSET)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_importing_the_label_index_changes_no_logger():
    # faiss' and zerohar's own loggers keep their level (torch configures its own loggers when imported).
    code = ("import logging\nimport zerohar.inference.index\nd = logging.root.manager.loggerDict\n"
            "print(sorted(n for n, lg in d.items() if isinstance(lg, logging.Logger) and lg.level != logging.NOTSET "
            "and n.split('.')[0] in ('faiss', 'zerohar')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_an_unwritable_output_is_one_sentence_not_a_traceback(tmp_path, capsys, monkeypatch):
    import os

    from llm_server import LLMServer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if os.geteuid() == 0:
        target = "/proc/zerohar-test/labels.json"  # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "sub" / "labels.json")
    with LLMServer() as server:  # the folder is tested before any request is paid for
        rc = main(["describe", "walking", "--llm-model", "test-model", "--base-url", server.url, "--out", target,
                   "--no-progress"])
        assert server.count == 0
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("zerohar describe: error: output ") and "not writable" in err
    assert len(err.strip().splitlines()) == 1
