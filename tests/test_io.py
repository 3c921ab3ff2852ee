"""The one atomic writer, output checks, table writer and YAML loader of zerohar.io."""

from __future__ import annotations

import pytest

from zerohar.errors import ZeroharError
from zerohar.io import check_output

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
