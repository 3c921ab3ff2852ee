"""The reliability harness: run `zerohar ...` in-process on a malformed input and judge the outcome.

Every case ends one of three ways, and the harness checks which:

- **refused**: exit status 2 and one line on stderr (``zerohar CMD: error: ...``, or argparse's ``error:``) with
  the case's key words, no traceback, and nothing new left in the test's folder (no output, no temporary file);
- **repaired**: exit status 0 and a ``WARNING`` line saying what was repaired (the key words);
- any other exception escaping ``main`` fails the test: that is a traceback.

The test's folder is also the working directory, so a command that writes to a default place (``runs/...``)
is caught leaving something behind as well.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zerohar.cli import main


def snapshot(root: Path) -> set[str]:
    """Every path under `root` (hidden ones too), relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    new: set[str] = field(default_factory=set)

    @property
    def command(self) -> str:
        return next((a for a in self.argv if not a.startswith("-")), "")

    def _words(self, text: str, words) -> None:
        low = text.lower()
        missing = [w for w in words if w.lower() not in low]
        assert not missing, f"{missing} not in {text!r}"

    def refused(self, *words: str, left: set[str] | None = None) -> Outcome:
        """Exit 2, one error sentence with `words`, no traceback, nothing new on disk (but `left`)."""
        assert "Traceback" not in self.err, self.err
        assert self.code == 2, f"exit {self.code} for {self.argv}; stderr: {self.err!r} stdout: {self.out[-300:]!r}"
        lines = [ln for ln in self.err.splitlines() if "error:" in ln]
        assert len(lines) == 1, f"expected one error line, found {self.err!r}"
        self._words(lines[0], words)
        assert self.new <= (left or set()), f"left behind: {sorted(self.new)}"
        return self

    def repaired(self, *words: str) -> Outcome:
        """Exit 0 and a WARNING line with `words`."""
        assert "Traceback" not in self.err, self.err
        assert self.code == 0, f"exit {self.code}; stderr: {self.err!r}"
        warnings = [ln for ln in self.err.splitlines() if ln.startswith("WARNING")]
        assert warnings, f"no WARNING line in {self.err!r}"
        self._words(" ".join(warnings), words)
        return self

    def ok(self) -> Outcome:
        assert "Traceback" not in self.err, self.err
        assert self.code == 0, f"exit {self.code}; stderr: {self.err!r}"
        return self


@pytest.fixture
def zh(capsys, tmp_path, monkeypatch):
    """`zh("prepare", "--dataset", ...)`: run the command line in-process in `tmp_path`; an Outcome."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-zerohar-reliability")

    def run(*argv) -> Outcome:
        argv = [str(a) for a in argv]
        before = snapshot(tmp_path)
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code if isinstance(e.code, int) else 2
        out, err = capsys.readouterr()
        return Outcome(argv, code, out, err, snapshot(tmp_path) - before)

    return run


# ---------------------------------------------------------------------------------------------- denied access
@pytest.fixture
def deny(monkeypatch):
    """`deny(path, write=True, read=False)`: opening a file under `path` (or creating one there) raises
    PermissionError, as for a user without the rights. Tests run as root, for whom file modes deny nothing,
    so the refusal is injected where the operating system would raise it (open, os.open, mkdir, listing)."""
    denied: list[tuple[str, bool, bool]] = []
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_scandir, real_listdir = os.scandir, os.listdir

    def hit(p, writing: bool) -> bool:
        try:
            s = os.path.abspath(os.fspath(p))
        except TypeError:
            return False
        return any((s == d or s.startswith(d + os.sep)) and (w if writing else r) for d, w, r in denied)

    def fail(p):
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))

    def fake_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and hit(file, any(c in mode for c in "wax+")):
            fail(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if hit(path, bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))):
            fail(path)
        return real_os_open(path, flags, *a, **k)

    def fake_mkdir(path, *a, **k):
        if hit(path, True):
            fail(path)
        return real_mkdir(path, *a, **k)

    def fake_scandir(path="."):
        if hit(path, False):
            fail(path)
        return real_scandir(path)

    def fake_listdir(path="."):
        if hit(path, False):
            fail(path)
        return real_listdir(path)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    monkeypatch.setattr(os, "listdir", fake_listdir)

    def add(path, *, write: bool = True, read: bool = False) -> Path:
        denied.append((os.path.abspath(path), write, read))
        return Path(path)

    return add
