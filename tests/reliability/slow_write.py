"""Run `zerohar ARGS...` with one atomic write made slow and torn, so a test can kill the process mid-write.

    python slow_write.py MARKER PATTERN NTH -- ARGS...

The NTH write (1-based) of a file whose name matches the glob PATTERN writes its whole content to the temporary
file, cuts it to half its length (a torn file, as a kill in the middle of the write leaves it), writes the
temporary file's path to MARKER and sleeps: the test then sends SIGKILL, SIGTERM or SIGINT.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from pathlib import Path

import zerohar.io as zio

marker, pattern, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = sys.argv[sys.argv.index("--") + 1:]
real = zio.atomic_write
seen = 0


def slow_atomic_write(path, write, **kwargs):
    global seen
    if fnmatch.fnmatch(Path(path).name, pattern):
        seen += 1
        if seen == nth:
            def torn(tmp):
                write(tmp)
                with open(tmp, "r+b") as f:
                    f.truncate(os.path.getsize(tmp) // 2)
                Path(marker).write_text(tmp)
                time.sleep(120)

            return real(path, torn, **kwargs)
    return real(path, write, **kwargs)


zio.atomic_write = slow_atomic_write  # before any other zerohar module imports the name

from zerohar.cli import main  # noqa: E402 - after the patch, on purpose

sys.exit(main(args))
