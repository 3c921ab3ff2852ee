"""Throughput and memory, fast path next to plain fp32: `python eval/speed.py [--quick]` (= `zerohar speed`)."""

from __future__ import annotations

import sys

from zerohar.cli import main

if __name__ == "__main__":
    sys.exit(main(["speed", *sys.argv[1:]]))
