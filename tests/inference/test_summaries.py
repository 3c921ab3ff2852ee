"""Summaries of labelled windows: segments of consecutive windows."""

from __future__ import annotations

from zerohar.inference.summaries import segments

# ---------------------------------------------------------------------------------------------- input / output


def test_segments_merge_consecutive_windows():
    starts = [0.0, 2.5, 5.0, 7.5, 10.0, 30.0, 32.5]
    labels = ["walk", "walk", "sit", "sit", "sit", "sit", "walk"]
    assert segments(starts, labels, 2.5, 5.0) == [
        (0.0, 5.0, "walk"), (5.0, 15.0, "sit"), (30.0, 32.5, "sit"), (32.5, 37.5, "walk")
    ]
