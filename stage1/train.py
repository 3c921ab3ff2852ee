"""`python stage1/train.py --dataset hapt --fold fold1`: exactly `zerohar stage1` (the same flags and code).

Without --out the run goes to runs/stage1/<dataset>-<fold>.
"""

from __future__ import annotations

import sys

from zerohar.cli import main

if __name__ == "__main__":
    sys.exit(main(["stage1", *sys.argv[1:]]))
