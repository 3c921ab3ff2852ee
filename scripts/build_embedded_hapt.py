"""Build the compact HAPT derivative shipped in `zerohar/data/embedded/` from the UCI raw files.

    python scripts/build_embedded_hapt.py [--root ../shared/data/hapt] [--out zerohar/data/embedded/hapt30.npz]

All 61 recordings (30 users) are brought to the canonical form (30 Hz, g, rad/s) and stored as float16
signals + int8 labels with a JSON header (no pickle): about 8 MB, so `load_windowset("hapt")` and the demo
work on a fresh clone with no network and no ../shared. UCI HAPT is CC BY 4.0 (HAPT_ATTRIBUTION.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

from zerohar.data.folds import load_folds
from zerohar.data.sources import embedded, hapt
from zerohar.data.transforms import CANONICAL_RATE, to_canonical
from zerohar.errors import ZeroharError
from zerohar.paths import shared_data_dir

MAX_BYTES = 10 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    shared = shared_data_dir()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(shared / "hapt") if shared else None, help="UCI HAPT folder (RawData/)")
    p.add_argument("--out", default=str(embedded.path()), help="output .npz")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.root is None:
        print("give --root: the UCI HAPT folder holding RawData/", file=sys.stderr)
        return 2
    try:
        recs = hapt.read(args.root)
        pieces = [q for r in recs for q in to_canonical(r, CANONICAL_RATE)]
        provenance = {
            "dataset": "UCI HAPT: Smartphone-Based Recognition of Human Activities and Postural Transitions",
            "authors": "Reyes-Ortiz, Oneto, Sama, Parra, Anguita (2016)",
            "url": hapt.URL,
            "licence": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
            "changes": "RawData/ resampled to 30 Hz (anti-aliased), stored as float16; labels from labels.txt",
            "built_by": "scripts/build_embedded_hapt.py",
        }
        out = embedded.write(pieces, list(load_folds("hapt").classes), args.out, provenance)
    except ZeroharError as e:
        print(f"build_embedded_hapt: error: {e}", file=sys.stderr)
        return 2
    size = out.stat().st_size
    print(f"wrote {out}: {len(pieces)} recordings, {sum(q.n_samples for q in pieces):,} samples, {size / 1e6:.2f} MB")
    if size > MAX_BYTES:
        print(f"build_embedded_hapt: error: {out} is larger than {MAX_BYTES / 1e6:.0f} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
