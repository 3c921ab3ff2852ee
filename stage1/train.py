"""`python stage1/train.py --dataset hapt --fold fold1`: the same as `zerohar stage1` (default --out runs/stage1/<dataset>-<fold>)."""

from __future__ import annotations

import sys

from zerohar.cli import main

if __name__ == "__main__":
    sys.exit(main(["stage1", *sys.argv[1:]]))
