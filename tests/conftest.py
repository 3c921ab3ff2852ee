"""Shared fixtures. Tests run offline on CPU; those that need ../shared/data skip with a reason without it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test session writes its cache to a temporary directory, never to ~/.cache."""
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path_factory.getbasetemp() / "zerohar-cache"))


@pytest.fixture(scope="session")
def shared_data():
    """`../shared/data` (developers and CI); tests needing it skip on a user's fresh clone."""
    from zerohar.paths import shared_data_dir  # local: conftest sets the offline environment before any zerohar import

    d = shared_data_dir()
    if d is None:
        pytest.skip("needs ../shared/data beside the checkout (present in CI; not part of a user's clone)")
    return d


@pytest.fixture(scope="session")
def device_dir(shared_data):
    """`../shared/data/devices`: the real device files (.cwa, .gt3x, .bin) of its README."""
    d = shared_data / "devices"
    if not d.is_dir():
        pytest.skip(f"needs {d}")
    return d
