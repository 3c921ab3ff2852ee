"""Fixtures shared by the inference tests."""

from __future__ import annotations

import pytest
from helpers import untrained_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained Stage II run (one per test module): the model path of classify, cohorts and study outputs."""
    return untrained_run(tmp_path_factory.mktemp("run") / "stage2")
