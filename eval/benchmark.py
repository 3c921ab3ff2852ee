"""Every method on every fold and seed: `python eval/benchmark.py --dataset hapt --out DIR` (= `zerohar benchmark`)."""

from __future__ import annotations

import sys

from zerohar.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
