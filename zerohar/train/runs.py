"""Run directories: what a training run leaves behind, and how evaluation and classification load it.

A run directory holds::

    config.yaml         the resolved config (a valid --config file)
    model.safetensors   the selected (best) model          } written by ZeroHARModel.save_pretrained,
    model.json          its config and the run's metadata  } with the metadata below under "extra"
    state.pt            the last epoch's state, for --resume (model, optimizer, scheduler, RNG, history)
    metrics.json        per-epoch and best validation metrics, timing; "finished": true once done
    log.txt             the run's log
    distilled/          optional, written by `zerohar distill`: a smaller backbone trained to match the model's
                        (model.safetensors, student.json); `load_run(..., distilled=True)` runs it instead

A run is *finished* when `metrics.json` says so and the model files exist. An output directory that holds a
finished run is refused without `force`; an unfinished one needs `resume` (continue) or `force` (start over).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerohar.config import Config, from_dict
from zerohar.data.layout import SensorLayout
from zerohar.errors import ZeroharError
from zerohar.io import atomic_directory, atomic_write_json, load_json, load_yaml
from zerohar.model.harnet import DistilledHARNet
from zerohar.model.pretrained import load_student, save_student
from zerohar.model.zerohar import ZeroHARModel, file_identity
from zerohar.text.label_rule import label_texts

logger = logging.getLogger(__name__)

#: Files a run writes; `force` removes exactly these (never anything else in the directory).
RUN_FILES = ("config.yaml", "model.safetensors", "model.json", "state.pt", "metrics.json", "log.txt")
#: The folder of a run's distilled backbone (`zerohar distill`), and its two files.
DISTILLED_DIR = "distilled"
STUDENT_FILES = ("model.safetensors", "student.json")


# ---------------------------------------------------------------------------------------------- state
def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def is_finished(run_dir: str | Path) -> bool:
    """True when `run_dir` holds a completed run (metrics.json says finished and the model files exist)."""
    d = Path(run_dir)
    m = _read_json(d / "metrics.json")
    return bool(m and m.get("finished")) and (d / "model.safetensors").is_file() and (d / "model.json").is_file()


def has_run_files(run_dir: str | Path) -> bool:
    """True when `run_dir` holds any file a run writes."""
    d = Path(run_dir)
    return d.is_dir() and any((d / f).exists() for f in RUN_FILES)


def check_out_dir(out_dir: str | Path, *, force: bool = False, resume: bool = False) -> str:
    """What to do with an output directory: "fresh", "resume" or "finished" (read-only; nothing is removed).

    Args:
        out_dir: The run directory.
        force: Start over even if the directory holds a run.
        resume: Continue an unfinished run (a finished one is returned as "finished": nothing to do).

    Returns:
        "fresh" (start a new run; with `force`, the old run files must be removed first), "resume" (state.pt
        exists) or "finished" (resume of a finished run).

    Raises:
        ZeroharError: a finished run without force / resume, an unfinished run without resume / force, or a
            path that is a file.
    """
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise ZeroharError(f"output {d} is a file; expected a run directory")
    if force or not has_run_files(d):
        return "fresh"
    if is_finished(d):
        if resume:
            return "finished"
        raise ZeroharError(f"output directory {d} already holds a finished run; pass --force to overwrite it")
    if resume:
        if (d / "state.pt").is_file():
            return "resume"
        return "fresh"  # killed before its first checkpoint: nothing to resume, start again
    raise ZeroharError(
        f"output directory {d} holds an unfinished run; pass --resume to continue it or --force to start over"
    )


def clear_run_files(out_dir: str | Path) -> None:
    """Remove the files a run writes (used by --force); other files in the directory are left alone."""
    d = Path(out_dir)
    for f in RUN_FILES:
        p = d / f
        if p.is_file():
            p.unlink()


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class Run:
    """A finished training run, loaded.

    Attributes:
        path: The run directory.
        model: The selected model (`ZeroHARModel`, eval mode), or None when loaded with `load_model=False`,
            for a Stage I run unless loaded with `any_stage=True`, or for a pretrain run (whose artefact is a
            backbone: use :func:`zerohar.model.pretrained.load_backbone`).
        config: The resolved :class:`~zerohar.config.Config`.
        meta: The run metadata stored in `model.json` (stage, dataset, fold, classes, layout, text encoder, ...).
        metrics: `metrics.json`.
        distilled: `distilled/student.json` when windows run through the distilled backbone (`load_run(...,
            distilled=True)`), else None.
        student: that backbone (:class:`~zerohar.model.harnet.DistilledHARNet`), else None.
    """

    path: Path
    model: Any
    config: Any
    meta: dict
    metrics: dict = field(default_factory=dict)
    distilled: dict | None = None
    student: Any = None

    @property
    def window_model(self):
        """The model that embeds windows: `model`, or with the distilled backbone, a view of it whose backbone is
        the student (every other module shared). `model` stays as trained: label indexes, which only its text
        projector makes, carry its identity either way."""
        if self.student is None or self.model is None:
            return self.model
        return self.model.with_backbone(self.student)

    def backbone_info(self) -> dict:
        """Which backbone embeds windows, for `info.json` and `metrics.json`: `{"kind": "trained"}`, or the
        distilled one's identity, width, teacher identity and validation cosine."""
        d = self.distilled
        if not d:
            return {"kind": "trained"}
        return {"kind": "distilled", "identity": d.get("identity"), "width": d.get("width"),
                "teacher_identity": (d.get("teacher") or {}).get("identity"), "val_cosine": d.get("val_cosine"),
                "folder": str(distilled_dir(self.path))}

    @property
    def stage(self) -> str:
        return self.meta["stage"]

    @property
    def dataset(self) -> str | None:
        return self.meta.get("dataset")

    @property
    def fold(self) -> str | None:
        return self.meta.get("fold")

    @property
    def classes(self) -> list[str]:
        """Every class of the dataset, in THE ordering of its folds file."""
        return list(self.meta.get("classes", []))

    @property
    def seen(self) -> list[str]:
        return list(self.meta.get("seen", []))

    @property
    def unseen(self) -> list[str]:
        return list(self.meta.get("unseen", []))

    def label_texts(self, labels: list[str], **kwargs) -> dict[str, list[str]]:
        """The texts of `labels` as this run's model reads labels (:func:`zerohar.text.label_rule.label_texts`
        with the run's label-text setting, descriptions file and dataset; `kwargs`: written, describe, ...)."""
        return label_texts(labels, label_text=self.config.train.label_text, descriptions=self.config.data.descriptions,
                           dataset=self.dataset, **kwargs)

    @property
    def layout(self):
        """The sensor layout the model was trained on (`SensorLayout`)."""
        return SensorLayout.from_dict(self.meta["layout"], f"{self.path / 'model.json'} (layout)")

    @property
    def text_encoder(self) -> str:
        """The text encoder's name (pass to `get_text_encoder`)."""
        return self.meta.get("text_encoder_name")

    @property
    def text_identity(self) -> str:
        return self.meta.get("text_encoder")

    @property
    def window_s(self) -> float:
        return float(self.meta["window_s"])

    @property
    def subjects(self) -> dict[str, list[str]]:
        """Subject split of the run: "train", "val" (model selection) and, for supervised runs, "test"."""
        return dict(self.meta.get("subjects", {}))


def read_run_meta(run_dir: str | Path) -> dict:
    """The run metadata of `model.json` without loading the weights (ZeroharError if it is not a finished run)."""
    d = Path(run_dir)
    _require_finished(d)
    j = _read_json(d / "model.json")
    if j is None:
        raise ZeroharError(f"{d / 'model.json'} is not valid JSON; the run directory is damaged")
    meta = j.get("extra", j)
    if not isinstance(meta, dict) or "stage" not in meta:
        raise ZeroharError(f"{d / 'model.json'} lacks the run metadata ('stage'); it was not written by zerohar train")
    return meta


def _require_finished(d: Path) -> None:
    if not d.exists():
        raise ZeroharError(f"run directory {d} does not exist")
    if not d.is_dir():
        raise ZeroharError(f"{d} is a file; expected a run directory (with model.safetensors, model.json, ...)")
    if not has_run_files(d):
        raise ZeroharError(f"{d} is not a zerohar run directory (no config.yaml, model.json or metrics.json)")
    if not is_finished(d):
        raise ZeroharError(
            f"run {d} is unfinished (metrics.json does not say finished); resume it with --resume or use another run"
        )


#: Stages whose model names windows zero-shot: `load_run` loads the model of these by default.
ZERO_SHOT_STAGES = ("stage2", "supervised")


def load_run(run_dir: str | Path, *, load_model: bool = True, any_stage: bool = False, distilled: bool = False
             ) -> Run:
    """Load a finished run: its model (via ZeroHARModel.from_pretrained), resolved config and metadata.

    Args:
        run_dir: The run directory.
        load_model: False to read only config, metadata and metrics (fast; no torch model built).
        any_stage: also load the model of a Stage I run (the start of Stage II). By default only a zero-shot
            model (Stage II, supervised) is loaded: a Stage I run's model has never seen a label, so classify,
            index and eval, which refuse a run without a model, refuse it instead of naming windows at random.
        distilled: run the distilled backbone of `run_dir/distilled/` (see :func:`use_distilled`) in place of the
            model's own; every other part of the model is unchanged.

    Returns:
        A :class:`Run`.

    Raises:
        ZeroharError: the directory is missing, is not a run, is unfinished, or its files are damaged.
    """

    d = Path(run_dir)
    meta = read_run_meta(d)
    cfg = from_dict(Config, load_yaml(d / "config.yaml", "run config", mapping=True), str(d / "config.yaml"))
    metrics = _read_json(d / "metrics.json") or {}
    model = None
    if load_model and (meta["stage"] in ZERO_SHOT_STAGES or (any_stage and meta["stage"] != "pretrain")):

        try:
            model = ZeroHARModel.from_pretrained(d)
        except ZeroharError:
            raise
        except Exception as e:  # a damaged safetensors file, shapes that do not match model.json, ...
            raise ZeroharError(
                f"the model of run {d} could not be loaded ({e.__class__.__name__}: {str(e)[:200]})"
            ) from None
        model.eval()
    run = Run(d, model, cfg, meta, metrics)
    if distilled:
        use_distilled(run)
    return run


# ---------------------------------------------------------------------------------------------- distilled backbone
def distilled_dir(run_dir: str | Path) -> Path:
    """`run_dir/distilled`: where `zerohar distill` writes the run's student backbone."""
    return Path(run_dir) / DISTILLED_DIR


def save_distilled(run_dir: str | Path, student: DistilledHARNet, record: dict, *, force: bool = False) -> Path:
    """Write `run_dir/distilled/` whole or not at all: `model.safetensors` (the student) and `student.json`
    (`record`, plus the student file's `identity`, which :func:`use_distilled` checks).

    Raises:
        ZeroharError: the folder exists and `force` is not set.
    """

    def fill(tmp: Path) -> None:
        weights = save_student(student, tmp / "model.safetensors", extra={"teacher": record.get("teacher")})
        atomic_write_json(tmp / "student.json", {**record, "identity": file_identity(weights)})

    return atomic_directory(distilled_dir(run_dir), fill, force=force)


def read_distilled(run_dir: str | Path) -> dict:
    """`student.json` of a run's distilled backbone (ZeroharError naming `zerohar distill` when there is none)."""
    d = distilled_dir(run_dir)
    if not all((d / f).is_file() for f in STUDENT_FILES):
        raise ZeroharError(f"run {run_dir} has no distilled backbone ({d} with model.safetensors and student.json); "
                           f"make one with `zerohar distill --run {run_dir}`")
    record = load_json(d / "student.json", "distilled backbone record")
    if not isinstance(record, dict):
        raise ZeroharError(f"{d / 'student.json'} is not a JSON object; the file is damaged")
    return record


def use_distilled(run: Run) -> dict:
    """Make the run's distilled backbone the one windows run through (:attr:`Run.window_model`); returns (and sets
    `run.distilled` to) its `student.json`.

    Raises:
        ZeroharError: no `distilled/` folder; a student file modified since it was written; or a student
            distilled from another model than the run holds now (the run was trained again since).
    """
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run without a zero-shot model; --distilled needs a "
                           "Stage II (or supervised) run")
    if run.model.cfg.encoder != "harnet":
        raise ZeroharError(f"run {run.path} uses the original ZeroHAR encoder, which has no HARNet backbone to "
                           "replace with a distilled one")
    record = read_distilled(run.path)
    d = distilled_dir(run.path)
    weights = d / "model.safetensors"
    if record.get("identity") and file_identity(weights) != record["identity"]:
        raise ZeroharError(f"{weights} does not match the identity in {d / 'student.json'} (the file was modified "
                           f"or partially written); make it again with `zerohar distill --run {run.path} --force`")
    teacher = (record.get("teacher") or {}).get("identity")
    own = (run.model.metadata or {}).get("identity")
    if teacher and own and teacher != own:
        raise ZeroharError(f"{d} was distilled from another model ({teacher}) than run {run.path} holds now ({own}); "
                           f"make it again with `zerohar distill --run {run.path} --force`")
    student = load_student(weights)
    if student.out_dim != run.model.backbone.out_dim or student.window != run.model.cfg.window:
        raise ZeroharError(f"{weights} gives {student.out_dim} features of {student.window}-sample windows, the "
                           f"model's backbone {run.model.backbone.out_dim} of {run.model.cfg.window}")
    run.student, run.distilled = student, record
    logger.info("run %s: the distilled backbone (width %g, %s) replaces the model's", run.path, student.width,
                record.get("identity"))
    return record
