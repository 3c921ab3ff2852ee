"""The shipped general model: trained on every dataset of the project at once (see `general/MODEL_CARD.md`),
used by `zerohar classify`, `index` and `eval` when no run is named."""

from __future__ import annotations

from pathlib import Path

from zerohar.errors import ZeroharError

#: The folder of the shipped model inside the package (released format: model.safetensors, model.json, ...).
GENERAL = Path(__file__).resolve().parent / "general"


def general_model_dir() -> Path:
    """The shipped general model's folder.

    Raises:
        ZeroharError: this installation has no general model (a build without it).
    """
    if not (GENERAL / "model.safetensors").is_file():
        raise ZeroharError(f"this installation ships no general model ({GENERAL} is missing); name a trained "
                           "Stage II run with --run RUN")
    return GENERAL


def resolve_model(run: str | Path | None) -> Path:
    """`run` if given, else the shipped general model (with one log line saying so)."""
    if run is not None:
        return Path(run)
    import logging

    d = general_model_dir()
    logging.getLogger(__name__).info("no --run given: using the shipped general model (%s)", d)
    return d
