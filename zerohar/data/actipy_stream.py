"""actipy's Java parsers read as a stream, and actipy's calibration and non-wear rules from window sums.

:mod:`zerohar.data.devices` reads a device file in two passes of :class:`ParserPass` (see that module's
docstring): the first adds every chunk to :class:`WindowSums`, from which :func:`calibration` and
:func:`nonwear_segments` run actipy's own `calibrate_gravity` and `find_nonwear_segments` on a small frame with
the same 10 s window means and standard deviations as the whole file; the second applies the result.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np

#: The window of actipy's gravity calibration (its `calibrate_gravity` default).
CALIBRATION_WINDOW = "10s"
ACC = ("x", "y", "z")
GYRO = ("gyro_x", "gyro_y", "gyro_z")


# ---------------------------------------------------------------------------------------------- actipy's parser
def _read(f, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise EOFError("the parser's stream ended early")
    return b


def parse(path: Path, workdir: str, errors) -> Generator[dict[str, np.ndarray], None, dict]:
    """actipy's Java parser of `path` in its streaming mode: the columns (`time` as int64 ns of the device clock;
    `x`, `y`, `z`, ... float32), 8,192 rows at a time; returns what the parser reported (its `info.txt`).

    The framing (a magic, a schema code, then chunks of a row count and each column's bytes, ending with a
    count of 0) is actipy's (`actipy.reader._read_java_stream_arrays` decodes it into whole-file arrays).
    """
    from actipy import reader

    cmd = ["java", "-XX:ParallelGCThreads=1", "-cp", str(Path(reader.__file__).parent),
           reader._java_reader_class(str(path)), "-i", str(path), "-o", workdir, "--stream"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
    out = proc.stdout
    try:
        if _read(out, len(reader._JAVA_STREAM_MAGIC)) != reader._JAVA_STREAM_MAGIC:
            raise ValueError("not an actipy parser stream")
        fields = reader._JAVA_STREAM_SCHEMAS[_read(out, 1)[0]]
        dtypes = [np.dtype("<i8") if f == "time" else np.dtype("<f4") for f in fields]
        while rows := struct.unpack("<I", _read(out, 4))[0]:
            yield {f: np.frombuffer(_read(out, rows * d.itemsize), dtype=d) for f, d in zip(fields, dtypes)}
    except BaseException:  # a bad file, or the consumer stopped early: the parser goes too
        out.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    out.close()
    if proc.wait():
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return reader._read_java_info(workdir)


def _fill_forward(v: np.ndarray, bad: np.ndarray, prev: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Rows `bad` of `v` replaced by the last good row before them (`prev`: the last good row of earlier
    chunks); returns the filled rows and how many leading rows had no good row before them (left out)."""
    idx = np.where(~bad, np.arange(len(v)), -1)
    np.maximum.accumulate(idx, out=idx)
    if prev is not None:
        return np.where((idx < 0)[:, None], prev, v[np.maximum(idx, 0)]), 0
    lead = int(np.count_nonzero(idx < 0))
    return v[idx[lead:]], lead


class ParserPass:
    """One parse of a device file, with actipy's quality control (a row whose time is not after every earlier
    one is dropped and counted) and NaN rows filled forward.

    Iterating yields `(t (n,) int64 ns, signals (n, C) float32, temperature (n,) float32 or None, nan (n,) bool:
    rows whose acc / gyro were not finite)`; afterwards :attr:`java` holds the parser's report.
    """

    def __init__(self, source: Path, workdir: str):
        self.source, self.workdir = source, workdir
        self.columns: list[str] | None = None
        self.temperature = False
        self.rows = self.nonincreasing = self.dropped = 0
        self.first_ns = self.last_ns = None
        self.java: dict = {}
        self.errors = tempfile.TemporaryFile()

    def stderr(self) -> list[str]:
        """What the parser printed (actipy's only report of skipped blocks), a line each."""
        self.errors.seek(0)
        text = self.errors.read().decode("utf-8", "replace")
        return [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]]:
        parsed = parse(self.source, self.workdir, self.errors)
        last = prev = None  # the latest time kept; the last finite row (signals and temperature)
        try:
            while True:
                try:
                    cols = next(parsed)
                except StopIteration as stop:
                    self.java = stop.value
                    return
                t = cols["time"]
                if not len(t):
                    continue
                if self.columns is None:
                    self.columns = list(ACC) + (list(GYRO) if set(GYRO) <= set(cols) else [])
                    self.temperature = "temperature" in cols
                self.nonincreasing += int(np.count_nonzero(t[1:] <= t[:-1])) + int(last is not None and t[0] <= last)
                high = np.maximum.accumulate(t)
                keep = np.empty(len(t), dtype=bool)
                keep[0] = last is None or t[0] > last
                keep[1:] = t[1:] > (high[:-1] if last is None else np.maximum(high[:-1], last))
                last = int(high[-1]) if last is None else max(last, int(high[-1]))
                v = np.stack([cols[c] for c in self.columns] + ([cols["temperature"]] if self.temperature else []), 1)
                if not keep.all():
                    t, v = t[keep], v[keep]
                nan = ~np.isfinite(v[:, : len(self.columns)]).all(axis=1)
                bad = ~np.isfinite(v).all(axis=1)  # a missing temperature is filled, not non-wear
                if bad.any():
                    v, lead = _fill_forward(v, bad, prev)
                    t, nan = t[lead:], nan[lead:]
                    self.dropped += lead
                if not len(t):
                    continue
                prev = v[-1]
                self.first_ns = int(t[0]) if self.first_ns is None else self.first_ns
                self.last_ns = int(t[-1])
                self.rows += len(t)
                k = len(self.columns)
                yield t, v[:, :k], (v[:, k] if self.temperature else None), nan
        finally:
            parsed.close()


# ---------------------------------------------------------------------------------------------- window statistics
class WindowSums:
    """actipy's window statistics (windows of `width_ns` from the first sample), built chunk by chunk: per window
    the count, sums and squares of x, y, z (and temperature, with the products of each axis with it), and the
    times of its first and last samples. About 130 bytes a window: 8 MB for a week of 10 s windows.

    Rows a parser wrote as NaN (filled forward by :class:`ParserPass`) are also summed apart, so that the
    calibration can leave them out (actipy's skips NaN) while non-wear counts them filled (actipy's fills them).
    """

    def __init__(self, width_ns: int, temperature: bool):
        self.width, self.temperature, self.origin = width_ns, temperature, None
        self.k = 4 if temperature else 3
        self.table = np.zeros((0, 1 + 2 * self.k + 3))  # n | sums | squares | axis x temperature products
        self.filled: np.ndarray | None = None  # the same, of the filled rows only
        self.first = np.zeros(0, dtype=np.int64)
        self.last = np.zeros(0, dtype=np.int64)

    def _grow(self, m: int) -> None:
        if m <= len(self.table):
            return
        pad = max(m, 2 * len(self.table)) - len(self.table)
        self.table = np.concatenate([self.table, np.zeros((pad, self.table.shape[1]))])
        if self.filled is not None:
            self.filled = np.concatenate([self.filled, np.zeros((pad, self.table.shape[1]))])
        self.first = np.concatenate([self.first, np.full(pad, np.iinfo(np.int64).max)])
        self.last = np.concatenate([self.last, np.full(pad, np.iinfo(np.int64).min)])

    def _sum(self, out: np.ndarray, rel: np.ndarray, v: np.ndarray, b0: int) -> None:
        span = int(rel[-1]) + 1
        w, k = slice(b0, b0 + span), self.k
        out[w, 0] += np.bincount(rel, minlength=span)
        for j in range(k):
            out[w, 1 + j] += np.bincount(rel, weights=v[:, j], minlength=span)
            out[w, 1 + k + j] += np.bincount(rel, weights=v[:, j] * v[:, j], minlength=span)
            if self.temperature and j < 3:
                out[w, 1 + 2 * k + j] += np.bincount(rel, weights=v[:, j] * v[:, 3], minlength=span)

    def add(self, t: np.ndarray, acc: np.ndarray, temperature: np.ndarray | None, filled: np.ndarray) -> None:
        """One chunk: times `(n,)` ns in order, acc `(n, 3)`, temperature `(n,)` (when the file has one), and
        which rows were filled."""
        if self.origin is None:
            self.origin = int(t[0])
        b = (t - self.origin) // self.width
        b0 = int(b[0])
        rel = (b - b0).astype(np.intp)
        self._grow(b0 + int(rel[-1]) + 1)
        v = acc.astype(np.float64)
        if self.temperature:
            v = np.column_stack([v, temperature.astype(np.float64)])
        self._sum(self.table, rel, v, b0)
        if filled.any():
            if self.filled is None:
                self.filled = np.zeros_like(self.table)
            r = rel[filled]
            self._sum(self.filled, r - r[0], v[filled], b0 + int(r[0]))
        head = np.flatnonzero(np.diff(rel, prepend=-1))  # first sample of each window present in the chunk
        tail = np.append(head[1:], len(rel)) - 1
        k = b0 + rel[head]
        self.first[k] = np.minimum(self.first[k], t[head])
        self.last[k] = np.maximum(self.last[k], t[tail])

    def _used(self, skip_filled: bool) -> np.ndarray:
        """The table up to the last window with samples, without the filled rows' sums if `skip_filled`."""
        m = int(np.flatnonzero(self.table[:, 0])[-1]) + 1
        return self.table[:m] - self.filled[:m] if skip_filled and self.filled is not None else self.table[:m]

    def moments(self, coef: tuple | None = None, skip_filled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per window `(m, k)` means and sample standard deviations (NaN for fewer than two samples), of the
        signal as read, or calibrated by `coef = (intercept, slope, slope_t or None)`: the standard deviation
        of ``a + b x + c T`` is that of ``b x + c T``, from the sums of x, T, x², T² and xT."""
        table, k = self._used(skip_filled), self.k
        n, s, q, cross = table[:, :1], table[:, 1 : 1 + k], table[:, 1 + k : 1 + 2 * k], table[:, 1 + 2 * k :]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n
            dev = q - s * mean  # sums of squared deviations, as actipy computes them
            if coef is not None:
                a, b, c = (None if x is None else np.asarray(x, dtype=np.float64) for x in coef)
                xyz_mean, xyz_dev = a + b * mean[:, :3], b * b * dev[:, :3]
                if c is not None:
                    xyz_mean = xyz_mean + c * mean[:, 3:4]
                    xyz_dev = xyz_dev + c * c * dev[:, 3:4] + 2 * b * c * (cross - s[:, :3] * mean[:, 3:4])
                mean, dev = mean.copy(), dev.copy()
                mean[:, :3], dev[:, :3] = xyz_mean, xyz_dev
            std = np.where(n > 1, np.sqrt(np.maximum(dev, 0) / (n - 1)), np.nan)
        return mean, std

    def frame(self, mean: np.ndarray, std: np.ndarray, columns: list[str], skip_filled: bool = False):
        """A frame whose windows have exactly these means and standard deviations: two samples ``m -+ s / √2``
        in each window of two samples or more (one, ``m``, in a window of one), for actipy's window functions."""
        import pandas as pd

        n = self._used(skip_filled)[:, 0]
        w = np.flatnonzero(n > 0)
        reps = np.where(n[w] > 1, 2, 1)
        second = np.zeros(int(reps.sum()), dtype=bool)
        second[np.cumsum(reps)[reps == 2] - 1] = True
        rows = np.repeat(w, reps)
        d = np.nan_to_num(std[rows] / np.sqrt(2.0))
        d[:, 3:] = 0.0  # temperature: only its means are used
        values = mean[rows] + np.where(second[:, None], d, -d)  # d = 0 in a window of one sample
        time = self.origin + rows.astype(np.int64) * self.width + second
        index = pd.DatetimeIndex(time.astype("datetime64[ns]"), name="time")
        return pd.DataFrame(values[:, : len(columns)], index=index, columns=columns)


def calibration(sums: WindowSums, processing) -> tuple[dict, tuple | None, list[str]]:
    """actipy's gravity calibration of the whole file from its window sums: (actipy's info, the coefficients
    `(intercept, slope, slope_t or None)` as float32 when it calibrated, else None, actipy's warnings)."""
    mean, std = sums.moments(skip_filled=True)
    frame = sums.frame(mean, std, list(ACC) + (["temperature"] if sums.temperature else []), skip_filled=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, info = processing.calibrate_gravity(frame, window=CALIBRATION_WINDOW, return_coeffs=True)
    notes = [str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))]
    coef = None
    if info.get("CalibOK") and "CalibxSlope" in info:  # CalibOK without coefficients: already calibrated
        def get(name):
            return np.array([info[f"Calib{a}{name}"] for a in ACC], dtype=np.float32)

        coef = (get("Intercept"), get("Slope"), get("SlopeT") if sums.temperature else None)
    return info, coef, notes


def nonwear_segments(sums: WindowSums, coef: tuple | None, processing, kw: dict) -> tuple[np.ndarray, dict]:
    """actipy's non-wear segments of the whole (calibrated) file from its window sums: `(k, 2)` int64 ns times of
    the first and last sample actipy would set to NaN (``data.loc[start : start + length]``) in each, and
    actipy's info."""
    mean, std = sums.moments(coef)
    seg = processing.find_nonwear_segments(sums.frame(mean[:, :3], std[:, :3], list(ACC)), **kw)
    start = seg.index.asi8.astype(np.int64)
    length = seg.to_numpy().astype("timedelta64[ns]").astype(np.int64)
    info = {"NonwearTime(days)": float(length.sum()) / 1e9 / 86400, "NumNonwearEpisodes": len(seg)}
    k0 = (start - sums.origin) // sums.width
    k1 = k0 + length // sums.width  # the window whose start ends the segment
    end = sums.origin + k1 * sums.width
    last = np.where(sums.first[k1] == end, end, sums.last[k1 - 1])
    return np.stack([sums.first[k0], last], axis=1).reshape(-1, 2), info


def sample_runs(t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`(k, 2)` times of the first and last sample of each run of `mask`."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([t[d[:-1] == 1], t[np.flatnonzero(d == -1) - 1]], axis=1)


def merge_runs(iv: np.ndarray, period_ns: int) -> np.ndarray:
    """Sorted `(k, 2)` sample runs, the ones that touch (a sample period apart or less) joined."""
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    out: list[list[int]] = []
    for a, b in iv.tolist():
        if out and a <= out[-1][1] + period_ns * 1.5:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)
