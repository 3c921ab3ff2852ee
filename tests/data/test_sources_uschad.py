"""The `uschad` source on the real USC-HAD release (../shared/data/usc-had, via the `shared_data` fixture;
skipped without it). The format fixtures of tests/data/test_sources_paper.py test the layout and bad input;
these test what only the real files have: their quirks (README of the data folder)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from zerohar.data.folds import load_folds
from zerohar.data.sources import uschad


def _release(shared_data) -> Path:
    d = Path(shared_data) / "usc-had"
    if not (d / "USC-HAD").is_dir():
        pytest.skip(f"needs the USC-HAD release in {d}")
    return d


def _subset(shared_data, tmp_path, files: list[str]) -> Path:
    """A tree of the release's layout holding only `files` (symlinks): a fast read of the files a test needs."""
    src = _release(shared_data) / "USC-HAD"
    for f in files:
        dst = tmp_path / "USC-HAD" / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src / f)
    return tmp_path


def _labels(recs) -> dict[str, str]:
    classes = list(load_folds("uschad").classes)
    out = {}
    for r in recs:
        (lab,) = set(r.labels.tolist())
        out[r.name.split("/", 1)[1]] = classes[lab]
    return out


def test_subject14_a3t2_is_labelled_by_its_name_with_a_logged_line(shared_data, tmp_path, caplog):
    files = [f"Subject14/a{a}t{t}.mat" for a in (2, 3) for t in range(1, 6)]
    with caplog.at_level(logging.INFO, logger="zerohar.data.sources.uschad"):
        recs = uschad.read(_subset(shared_data, tmp_path, files), progress=False)
    mat = scipy.io.loadmat(tmp_path / "USC-HAD" / "Subject14" / "a3t2.mat")
    assert str(mat["activity_number"][0]) == "2" and str(mat["activity"][0]) == "walking-left"  # the quirk
    labels = _labels(recs)
    assert labels["Subject14/a3t2"] == "walking right"
    assert Counter(labels.values()) == {"walking left": 5, "walking right": 5}
    lines = [r.getMessage() for r in caplog.records if "a3t2" in r.getMessage()]
    assert lines == ["uschad: Subject14/a3t2.mat says activity_number 2 (walking left) but is named a3: labelled "
                     "walking right, as its name says"]
    # the evidence of the module docstring: gyro x turns the other way in walking left and right
    gx = {n: float(r.signals[:, 3].mean()) for n, r in zip(labels, recs)}
    assert gx["Subject14/a3t2"] < 0 and all(v > 0 for n, v in gx.items() if labels[n] == "walking left")


def test_real_quirks_spelling_and_extra_fields(shared_data, tmp_path):
    recs = uschad.read(_subset(shared_data, tmp_path, ["Subject13/a11t4.mat", "Subject3/a1t3.mat",
                                                       "Subject3/a8t1.mat"]), progress=False)
    assert "activity_numbr" in scipy.io.loadmat(tmp_path / "USC-HAD" / "Subject13" / "a11t4.mat")
    assert "comments" in scipy.io.loadmat(tmp_path / "USC-HAD" / "Subject3" / "a1t3.mat")
    assert _labels(recs) == {"Subject3/a1t3": "walking forward", "Subject3/a8t1": "sitting",
                             "Subject13/a11t4": "elevator up"}
    assert [r.subject for r in recs] == ["3", "3", "13"]
    sitting = recs[1]
    assert sitting.rate == 100.0 and sitting.signals.dtype == np.float32 and sitting.signals.shape[1] == 6
    g = np.linalg.norm(sitting.signals[:, :3], axis=1)
    assert abs(np.median(g) - 1.0) < 0.1  # accelerometer in g
    assert np.abs(sitting.signals[:, 3:]).mean() < 20  # gyroscope in deg/s, nearly still


@pytest.mark.slow
def test_the_whole_release(shared_data):
    recs = uschad.read(_release(shared_data), progress=False)
    assert len(recs) == 840 and len({r.subject for r in recs}) == 14
    counts = Counter(_labels(recs).values())
    assert set(counts.values()) == {70} and len(counts) == 12  # 14 subjects x 5 trials of every activity
