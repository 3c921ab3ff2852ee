"""The writer's guarantees: stale temporary files, the atomic log, the writability check, inputs never replaced."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from zerohar.errors import ZeroharError
from zerohar.io import (
    STALE_AFTER_S,
    AtomicLog,
    TableWriter,
    _host,
    atomic_directory,
    atomic_write_text,
    check_input_file,
    check_output,
    check_writable,
    note_input,
    remove_stale_temporaries,
)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _tag(pid: int) -> str:
    return f"{_host()}-{pid}"


def test_a_temporary_file_of_a_dead_writer_is_removed_by_the_next_write(tmp_path):
    dead = tmp_path / f".out.json.abc123.{_tag(_dead_pid())}.tmp"
    dead.write_text("half")
    alive = tmp_path / f".out.json.def456.{_tag(os.getppid())}.tmp"  # a live process (our parent) is writing
    alive.write_text("busy")
    other = tmp_path / ".other.json.x.host-1.tmp"  # another file's temporaries are not ours to judge
    other.write_text("x")
    atomic_write_text(tmp_path / "out.json", "{}")
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_day_old_temporary_file_of_another_host_is_removed(tmp_path):
    old = tmp_path / ".out.json.abc.elsewhere-1.tmp"
    old.write_text("x")
    young = tmp_path / ".out.json.abd.elsewhere-2.tmp"
    young.write_text("x")
    t = time.time() - STALE_AFTER_S - 10
    os.utime(old, (t, t))
    assert remove_stale_temporaries(tmp_path / "out.json") == [old]
    assert young.exists()


def test_a_folder_left_by_a_killed_atomic_directory_is_removed(tmp_path):
    stale = tmp_path / f".idx.k3j.{_tag(_dead_pid())}.tmp"
    stale.mkdir()
    (stale / "index.faiss").write_text("half")
    atomic_directory(tmp_path / "idx", lambda d: (d / "a.txt").write_text("a"))
    assert not stale.exists() and (tmp_path / "idx" / "a.txt").read_text() == "a"
    atomic_directory(tmp_path / "idx", lambda d: (d / "b.txt").write_text("b"), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_the_atomic_log_appears_only_when_committed(tmp_path):
    log = logging.getLogger("zerohar.test.atomiclog")
    log.setLevel(logging.INFO)
    h = AtomicLog(tmp_path / "log.txt")
    log.addHandler(h)
    log.info("one")
    assert not (tmp_path / "log.txt").exists()
    h.abort()
    log.removeHandler(h)
    assert list(tmp_path.iterdir()) == []  # aborted: nothing left behind
    h = AtomicLog(tmp_path / "log.txt")
    log.addHandler(h)
    log.info("two")
    h.close()
    log.removeHandler(h)
    h = AtomicLog(tmp_path / "log.txt")  # a resumed run continues the log
    log.addHandler(h)
    log.info("three")
    h.commit()
    log.removeHandler(h)
    assert (tmp_path / "log.txt").read_text().split() == ["two", "three"]
    assert [p.name for p in tmp_path.iterdir()] == ["log.txt"]


def test_check_writable_creates_nothing(tmp_path, deny):
    check_writable(tmp_path / "a" / "b" / "c.json")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    with pytest.raises(ZeroharError, match=r"the folder .*ro is not writable"):
        check_writable(tmp_path / "ro" / "x" / "c.json")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ZeroharError, match=r"f is not a folder"):
        check_output(tmp_path / "f" / "c.json")


def test_an_input_is_never_replaced(tmp_path):
    rec = tmp_path / "rec.csv"
    rec.write_text("time,acc_x\n")
    note_input(rec)
    for attempt in (lambda: check_output(rec, force=True), lambda: atomic_write_text(rec, "x"),
                    lambda: TableWriter(rec, ["a"]), lambda: check_output(tmp_path / "." / "rec.csv", force=True)):
        with pytest.raises(ZeroharError, match="is the input recording"):
            attempt()
    assert rec.read_text() == "time,acc_x\n" and sorted(p.name for p in tmp_path.iterdir()) == ["rec.csv"]


def test_table_writer_leaves_nothing_on_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with TableWriter(tmp_path / "t.csv", ["a"]) as w:
            w.write({"a": [1.0]})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: os.mkfifo(p), "named pipe"),
    (lambda p: os.symlink(p, p), "symbolic link loop"),
    (lambda p: os.symlink(p.parent / "none", p), "broken symbolic link"),
], ids=["missing", "folder", "fifo", "loop", "dangling"])
def test_check_input_file_says_what_the_path_is(tmp_path, make, words):
    p = tmp_path / "x.csv"
    make(p)
    with pytest.raises(ZeroharError, match=words):
        check_input_file(p)
