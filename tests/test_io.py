"""The one atomic writer, output checks, table writer and YAML loader of zerohar.io."""

from __future__ import annotations

import json

import pytest

from zerohar.errors import ZeroharError
from zerohar.io import (
    TableWriter,
    atomic_directory,
    atomic_savez,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    check_output,
    load_yaml,
)

# ---------------------------------------------------------------------------------------------- input / output


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_an_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("x")
    with pytest.raises(ZeroharError, match="labels.csv already exists; pass --force to overwrite it"):
        check_output(out, force=False, suffixes=(".csv", ".parquet"))
    assert check_output(out, force=True, suffixes=(".csv", ".parquet")) == out
    with pytest.raises(ZeroharError, match=r"expected a .csv or .parquet file name, found suffix '.txt'"):
        check_output(tmp_path / "labels.txt", force=False, suffixes=(".csv", ".parquet"))


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path):
    if _has_pyarrow():
        pytest.skip("pyarrow is installed")
    with pytest.raises(ZeroharError, match=r"x.parquet: writing Parquet needs pyarrow \(pip install pyarrow\)"):
        check_output(tmp_path / "x.parquet", force=False, suffixes=(".csv", ".parquet"))


# ---------------------------------------------------------------------------------------------- atomic writes
def _no_temp_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


def test_atomic_writers_write_every_kind_with_the_umask_mode(tmp_path):
    import os

    import numpy as np
    import torch

    umask = os.umask(0o022)
    try:
        paths = [
            atomic_write_text(tmp_path / "a.txt", "héllo\n"),
            atomic_write_json(tmp_path / "sub" / "b.json", {"x": [1, 2]}),
            atomic_write_yaml(tmp_path / "c.yaml", {"k": "v"}),
            atomic_savez(tmp_path / "d.npz", arr=np.arange(3)),
            atomic_torch_save({"w": torch.ones(2)}, tmp_path / "e.pt"),
        ]
    finally:
        os.umask(umask)
    for p in paths:
        assert (p.stat().st_mode & 0o777) == 0o644, p  # not mkstemp's 0600
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "sub" / "b.json").read_text()) == {"x": [1, 2]}
    assert load_yaml(tmp_path / "c.yaml") == {"k": "v"}
    with np.load(tmp_path / "d.npz", allow_pickle=False) as z:
        assert z["arr"].tolist() == [0, 1, 2]
    assert torch.load(tmp_path / "e.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert _no_temp_files(tmp_path) and _no_temp_files(tmp_path / "sub")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    p = atomic_write_text(tmp_path / "x.txt", "old")

    def boom(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half of the new cont")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, boom)
    assert p.read_text() == "old"
    assert _no_temp_files(tmp_path)
    with pytest.raises(ZeroharError, match="x.txt already exists; pass --force"):
        atomic_write_text(p, "new", force=False)
    assert p.read_text() == "old"


def test_atomic_directory_swaps_a_whole_folder(tmp_path):
    d = tmp_path / "idx"

    def fill(n):
        def f(tmp):
            (tmp / "a").write_text(str(n))
            (tmp / "b").write_text(str(n))
        return f

    atomic_directory(d, fill(1))
    with pytest.raises(ZeroharError, match="idx already exists; pass --force"):
        atomic_directory(d, fill(2))
    atomic_directory(d, fill(2), force=True)
    assert sorted(p.name for p in d.iterdir()) == ["a", "b"] and (d / "a").read_text() == "2"

    def broken(tmp):
        (tmp / "a").write_text("3")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        atomic_directory(d, broken, force=True)
    assert (d / "a").read_text() == "2"  # the old folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary sibling left


def test_table_writer_commits_or_leaves_nothing(tmp_path):
    out = tmp_path / "t.csv"
    with TableWriter(out, ["start_s", "label"]) as w:
        w.write({"start_s": [0.0, 2.5], "label": ["walking", "sitting"]})
        w.commit()
    assert out.read_text().splitlines() == ["start_s,label", "0.0000,walking", "2.5000,sitting"]
    with pytest.raises(ValueError):
        with TableWriter(tmp_path / "u.csv", ["start_s"]) as w:
            w.write({"start_s": [1.0]})
            raise ValueError("interrupted")
    assert not (tmp_path / "u.csv").exists() and _no_temp_files(tmp_path)


def test_check_output_refuses_folders_and_names_update(tmp_path):
    with pytest.raises(ZeroharError, match="is a folder; expected a file name"):
        check_output(tmp_path)
    f = tmp_path / "x.json"
    f.write_text("{}")
    with pytest.raises(ZeroharError, match="already exists; pass --update to merge into it, or --force"):
        check_output(f, update=False)
    assert check_output(f, update=True) == f and check_output(f, force=True) == f


# ---------------------------------------------------------------------------------------------- YAML
def test_load_yaml_is_safe_and_says_what_is_wrong(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ZeroharError, match=r"layout file .*f\.yaml is not valid YAML"):
        load_yaml(p, "layout file")
    p.write_text("a: [1, 2\n")
    with pytest.raises(ZeroharError, match=r"not valid YAML \(line 2: expected ',' or '\]', but got '<stream end>'\)"):
        load_yaml(p)
    p.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ZeroharError, match="nested too deeply"):
        load_yaml(p, "folds file")
    p.write_text("- 1\n")
    with pytest.raises(ZeroharError, match="expected a mapping at the top level, found list"):
        load_yaml(p, mapping=True)
    p.write_text("")
    assert load_yaml(p, mapping=True) == {} and load_yaml(p) is None
    with pytest.raises(ZeroharError, match=r"folds file .*missing\.yaml does not exist"):
        load_yaml(tmp_path / "missing.yaml", "folds file")
    with pytest.raises(ZeroharError, match="is a folder; expected a file"):
        load_yaml(tmp_path, "folds file")
