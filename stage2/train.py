"""`python stage2/train.py --dataset hapt --fold fold1`: exactly `zerohar stage2` (the same flags and code).

Without --out the run goes to runs/stage2/<dataset>-<fold>.
"""

from __future__ import annotations

import sys

from zerohar.cli import main

if __name__ == "__main__":
    sys.exit(main(["stage2", *sys.argv[1:]]))
