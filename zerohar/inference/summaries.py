"""Summaries of labelled windows: time per label, segments of consecutive windows, durations for people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ClassifyResult:
    """What :func:`classify_recording` wrote."""

    out: Path
    n_windows: int
    window_s: float
    step_s: float
    duration_s: float  # time covered by windows (each window counts for one step, the last for a whole window)
    seconds_per_label: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """A table of time per label, largest first."""
        total = sum(self.seconds_per_label.values()) or 1.0
        width = max([5] + [len(k) for k in self.seconds_per_label])
        lines = [f"{'label':<{width}}  {'time':>10}  {'share':>6}"]
        for lab, s in sorted(self.seconds_per_label.items(), key=lambda kv: -kv[1]):
            lines.append(f"{lab:<{width}}  {format_duration(s):>10}  {100 * s / total:5.1f}%")
        return lines


def format_duration(seconds: float) -> str:
    """`HH:MM:SS` (with days as `Nd HH:MM:SS` beyond 24 h)."""
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def segments(starts: Sequence[float], labels: Sequence[str], step_s: float, window_s: float) -> list[tuple]:
    """Merge consecutive windows with one label into `(start_s, end_s, label)` segments.

    A window stands for the `step_s` seconds from its start; the last window before a gap (or the end)
    stands for its whole length. Windows further apart than one step start a new segment.
    """
    out: list[list] = []
    prev = None
    for t, lab in zip(np.asarray(starts, dtype=np.float64).tolist(), labels):
        contiguous = prev is not None and abs(t - prev - step_s) < 1e-6 * max(1.0, step_s)
        if prev is not None and not contiguous:
            out[-1][1] = prev + window_s
        if contiguous and out[-1][2] == lab:
            out[-1][1] = t + step_s
        else:
            out.append([t, t + step_s, lab])
        prev = t
    if out:
        out[-1][1] = prev + window_s
    return [tuple(x) for x in out]
