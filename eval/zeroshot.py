"""Zero-shot evaluation of one run: `python eval/zeroshot.py --run RUN [--out DIR]` (= `zerohar eval`)."""

from __future__ import annotations

import sys

from zerohar.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
