"""Export a finished Stage II run as a release: what `zerohar/models/general/` ships.

The release folder is a run folder that `zerohar.train.runs.load_run` reads like any other (config.yaml,
model.json, metrics.json, model.safetensors), with the weights stored in fp16 (half the size; they are cast
back to fp32 when loaded, so inference is unchanged but for fp16 rounding of the weights, checked against the
fp32 run by :func:`export_release`) and a model card.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from zerohar.errors import ZeroharError
from zerohar.inference.embed import embed_windows
from zerohar.io import atomic_write, atomic_write_json, atomic_write_text
from zerohar.model.zerohar import MODEL_FORMAT, file_identity
from zerohar.train.runs import load_run

logger = logging.getLogger(__name__)

RELEASE_FILES = ("model.safetensors", "model.json", "config.yaml", "metrics.json", "MODEL_CARD.md")


def export_release(run_dir: str | Path, out: str | Path, *, card: str, fp16: bool = True, force: bool = False,
                   check_windows: np.ndarray | None = None, check_layout=None) -> Path:
    """Write the release of `run_dir` into `out`.

    Args:
        run_dir: a finished Stage II run.
        out: the release folder (refused if it holds a release, unless `force`).
        card: the model card's Markdown text (`MODEL_CARD.md`); `{identity}` and `{size_mb}` are filled in.
        fp16: store floating-point weights in fp16.
        force: overwrite an existing release.
        check_windows, check_layout: windows `(N, C, T)` and their layout: the release's embeddings must agree
            with the run's (cosine > 0.999 for every window), else nothing is kept.

    Returns:
        `out`.
    """

    run_dir, out = Path(run_dir), Path(out)
    if (out / "model.safetensors").exists() and not force:
        raise ZeroharError(f"{out} already holds a release; pass --force to replace it")
    run = load_run(run_dir)
    if run.stage != "stage2" or run.model is None:
        raise ZeroharError(f"{run_dir} is a {run.stage} run; a release is a Stage II model")
    out.mkdir(parents=True, exist_ok=True)
    state = load_file(str(run_dir / "model.safetensors"), device="cpu")
    if fp16:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    weights = atomic_write(out / "model.safetensors",
                           lambda tmp: save_file(state, tmp, metadata={"format": MODEL_FORMAT,
                                                                        "dtype": "float16" if fp16 else "float32"}))
    meta = json.loads((run_dir / "model.json").read_text())
    meta["identity"] = file_identity(weights)
    meta["extra"]["release"] = {"from_run": str(run_dir), "run_identity": run.model.metadata.get("identity"),
                                "weights_dtype": "float16" if fp16 else "float32"}
    atomic_write_json(out / "model.json", meta)
    shutil.copyfile(run_dir / "config.yaml", out / "config.yaml")
    atomic_write_json(out / "metrics.json", json.loads((run_dir / "metrics.json").read_text()))
    size_mb = weights.stat().st_size / 2**20
    atomic_write_text(out / "MODEL_CARD.md", card.replace("{identity}", meta["identity"])
                      .replace("{size_mb}", f"{size_mb:.1f}"))
    if check_windows is not None:
        released = load_run(out)
        a = embed_windows(run.model, check_windows, check_layout, precision="fp32")
        b = embed_windows(released.model, check_windows, check_layout, precision="fp32")
        cos = (a * b).sum(1)
        if float(cos.min()) < 0.999:
            for f in RELEASE_FILES:
                (out / f).unlink(missing_ok=True)
            raise ZeroharError(f"the fp16 release's embeddings differ from the run's (lowest cosine "
                               f"{float(cos.min()):.4f}); export with fp16=False")
        logger.info("release agrees with the run: lowest cosine of %d windows %.5f", len(cos), float(cos.min()))
    logger.info("released %s -> %s (%.1f MB, identity %s)", run_dir, out, size_mb, meta["identity"])
    return out
