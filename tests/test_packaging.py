"""The installable package: metadata ships inside the wheel, the CLI lists every command, imports are light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from zerohar.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_has_a_module_and_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"zerohar {name}" in out


def test_top_level_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_import_has_no_heavy_side_effects():
    code = "import sys, zerohar, zerohar.cli; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_wheel_ships_metadata_and_embedded_data(tmp_path):
    pytest.importorskip("setuptools")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    wheel = next(tmp_path.glob("zerohar-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for sub in ("folds", "sensors", "labels"):
        shipped = {Path(n).name for n in names if n.startswith(f"zerohar/_metadata/{sub}/")}
        in_repo = {p.name for p in (ROOT / "metadata" / sub).iterdir() if p.is_file()}
        assert in_repo and in_repo <= shipped, f"metadata/{sub} missing from the wheel: {in_repo - shipped}"
    assert "zerohar/_metadata/hyperparameters.yaml" in names
    assert any(n.startswith("zerohar/data/embedded/") and n.endswith(".npz") for n in names)
    for f in ("model.safetensors", "model.json", "config.yaml", "metrics.json", "MODEL_CARD.md"):
        assert f"zerohar/models/general/{f}" in names, f"the general model's {f} is missing from the wheel"
