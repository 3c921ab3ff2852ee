"""What a model saw in training, and the refusal of an init that saw what the current run must not.

Every run records in its metadata (`model.json`, and the header of every backbone `.safetensors`) a `saw` entry:
per dataset, the classes whose labelled windows it trained on and the subjects whose windows it trained on or
was selected on (training and validation subjects), merged with what its own inits saw. A zero-shot number is
only honest when no part of the model saw the fold's unseen classes, and a held-out test subject is only held out
when no init trained on it; so a run refuses (one sentence) an init whose `saw` includes the current fold's unseen
classes or the current run's test subjects, unless `allow_transductive_init` is set, which is then stamped into
the run's metadata.

A released HARNet file has no such record (it was pretrained on UK Biobank, not on these datasets): it loads with
a one-line note that its provenance is unknown.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

#: Saw = {dataset key: {"classes": [...], "subjects": [...]}}.
Saw = dict[str, dict[str, list[str]]]
#: The metadata an exported released-format backbone keeps beside it (`FILE.mdl.json`).
PROVENANCE_KEYS = ("stage", "dataset", "data", "fold", "classes", "unseen", "trained_classes", "subjects", "saw",
                   "transductive_init", "zerohar_version")


def provenance_file(path: str | Path) -> Path:
    """The provenance sidecar of an exported backbone file."""
    return Path(f"{path}.json")


def data_key(dataset: str | None, data: str | None) -> str:
    """How `saw` names a dataset: its name, else the window-set file."""
    return str(dataset or data or "unknown")


def merge_saw(*parts: Saw | None) -> Saw:
    out: dict[str, dict[str, set]] = {}
    for part in parts:
        for key, v in (part or {}).items():
            d = out.setdefault(key, {"classes": set(), "subjects": set()})
            d["classes"].update(map(str, v.get("classes", [])))
            d["subjects"].update(map(str, v.get("subjects", [])))
    return {k: {"classes": sorted(v["classes"]), "subjects": sorted(v["subjects"])} for k, v in out.items()}


def _saw_of_meta(meta: dict) -> Saw:
    if isinstance(meta.get("saw"), dict):
        return meta["saw"]
    # A run written before `saw` existed: its own data (its inits are not followed).
    subjects = meta.get("subjects") or {}
    return {data_key(meta.get("dataset"), meta.get("data")): {
        "classes": list(meta.get("trained_classes") or []),
        "subjects": list(subjects.get("train", [])) + list(subjects.get("val", [])),
    }}


def _meta_of(source: Path) -> dict | None:
    if source.is_dir():
        p = source / "model.json"
        if not p.is_file():
            return None
        try:
            j = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        meta = j.get("extra", j)
        return meta if isinstance(meta, dict) else None
    sidecar = provenance_file(source)
    if source.is_file() and sidecar.is_file():
        try:
            j = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return None
        meta = j.get("extra") if isinstance(j, dict) else None
        return meta if isinstance(meta, dict) else None
    if source.suffix == ".safetensors" and source.is_file():
        from safetensors import safe_open  # heavy: only when a backbone file is named

        try:
            with safe_open(str(source), framework="pt", device="cpu") as f:
                extra = (f.metadata() or {}).get("extra")
            meta = json.loads(extra) if extra else None
        except Exception:  # noqa: BLE001 - a damaged file is reported by the loader itself
            return None
        return meta if isinstance(meta, dict) and meta else None
    return None


def saw_of(source: str | Path | None) -> Saw | None:
    """What the model at `source` saw ({} for none; None when unknown: a released file, torch.hub)."""
    if source is None:
        return {}
    meta = _meta_of(Path(source)) if str(source) != "hub" else None
    if meta is None:
        logger.warning("%s has no zerohar provenance (a released or foreign checkpoint): what it was trained on "
                       "cannot be checked against this fold", source)
        return None
    return _saw_of_meta(meta)


def check_inits(sources: list[tuple[str, str | None]], key: str, unseen: list[str], test_subjects: list[str],
                allow: bool) -> tuple[Saw, list[str]]:
    """Refuse an init that saw the fold's unseen classes or the run's test subjects.

    Args:
        sources: `(flag, path)` of every init of the run (backbone weights, Stage I run, motif distance).
        key: the current data's :func:`data_key`.
        unseen: the classes the run must never have seen (empty for the supervised bound).
        test_subjects: the run's held-out test subjects.
        allow: `allow_transductive_init`: warn and record instead of refusing.

    Returns:
        (what the inits saw, merged; the leaks found, as sentences; empty when none).
    """
    parts, leaks = [], []
    for flag, path in sources:
        saw = saw_of(path)
        if not saw:
            continue
        parts.append(saw)
        leaks += find_leaks(f"{flag} {path} was trained on", saw, key, unseen, test_subjects)
    refuse_leaks(leaks, allow)
    return merge_saw(*parts), leaks


def find_leaks(what: str, saw: Saw, key: str, unseen: list[str], test_subjects: list[str]) -> list[str]:
    """The leaks of `saw` into data `key`, as sentences starting with `what` ("--stage1 RUN was trained on"):
    its classes among `unseen`, its subjects among `test_subjects` (empty when none)."""
    mine = saw.get(key, {})
    classes = sorted(set(mine.get("classes", [])) & set(unseen))
    subjects = sorted(set(mine.get("subjects", [])) & set(map(str, test_subjects)))
    leaks = []
    if classes:
        leaks.append(f"{what} {key}'s classes {classes}, unseen in this fold")
    if subjects:
        leaks.append(f"{what} {key}'s subjects {subjects}, held out for test here")
    return leaks


def refuse_leaks(leaks: list[str], allow: bool, instead: str = "start from a run that did not see them",
                 marked: str = "the run") -> None:
    """The one refusal of a transductive init: a ZeroharError with the first leak, unless `allow` (then each
    leak is a warning, and the caller records them). `instead` says what to do; `marked` what is then marked
    transductive."""
    if leaks and not allow:
        raise ZeroharError(f"{leaks[0]}; {instead}, or pass --allow-transductive-init ({marked} is then marked "
                           "transductive)")
    for leak in leaks:
        logger.warning("transductive init allowed: %s", leak)
