"""What every training task shares (data, batches, metadata), and how a task's model starts.

A *task* is what one stage trains on, its loss and its validation metric; :mod:`zerohar.train.loop` is the one
loop that runs any of them. The tasks of the stages live one per module (``pretrain_ssl``, ``stage1``,
``stage2``) and are looked up by stage name in :mod:`zerohar.train.registry`.

Text embeddings (frozen sentence encoder) are computed once per run, before training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch

from zerohar import __version__
from zerohar.config import Config, ModelConfig
from zerohar.data.augment import augment
from zerohar.data.layout import SENSOR_KINDS
from zerohar.data.multi import MultiData, load_data
from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_json
from zerohar.losses.contrastive import ContrastiveLoss
from zerohar.model.pretrained import BACKBONE_FORMAT, save_backbone
from zerohar.model.zerohar import ZeroHARModel, kind_indices, scale_and_clip
from zerohar.text.encoder import get_text_encoder
from zerohar.train.provenance import check_inits, data_key, merge_saw
from zerohar.train.runs import load_run, read_run_meta

logger = logging.getLogger(__name__)

#: Validation embeds this many windows per forward pass.
VAL_BATCH = 256


def build_zerohar_model(cfg: Config, backbone_source: str | None):
    """A fresh ZeroHARModel of `cfg.model`, its HARNet backbone loaded from `backbone_source` (None = random)."""
    model = ZeroHARModel(cfg.model)
    if backbone_source is not None:
        src = Path(backbone_source)
        if src.is_dir():
            check_backbone_run(src)
        model.init_backbone(str(backbone_source), partial=cfg.train.partial_backbone)
    return model


def check_backbone_run(d: Path) -> None:
    """A run directory given as a backbone must be a finished run (pretrain, or any run with a backbone)."""
    read_run_meta(d)  # ZeroharError for an unfinished or foreign directory


def _stage1_meta(path: str | Path) -> dict:
    p = Path(path)
    if p.is_file():
        raise ZeroharError(f"--stage1 {p} is a file; Stage II starts from a Stage I run directory")
    meta = read_run_meta(p)  # missing / unfinished / foreign directory: ZeroharError
    if meta.get("stage") != "stage1":
        raise ZeroharError(
            f"--stage1 {p} is a {meta.get('stage')} run, not a Stage I run; pass the directory of a Stage I run"
        )
    return meta


def load_stage1_run(path: str | Path):
    """A finished Stage I run (model loaded); any other kind of run or directory is refused."""
    _stage1_meta(path)
    return load_run(path, any_stage=True)


def resolve_init(cfg: Config) -> Config:
    """Stage II from a Stage I run continues that run's model, so its model section becomes the Stage I one's.

    Raises:
        ZeroharError: `init` is not a finished Stage I run.
    """
    if cfg.stage not in ("stage2", "supervised") or cfg.init is None:
        return cfg

    _stage1_meta(cfg.init)
    path = Path(cfg.init) / "model.json"
    saved = ModelConfig.from_dict(json.loads(path.read_text()).get("config"), f"{path} 'config'")
    if saved != cfg.model:
        diff = [f.name for f in dataclasses.fields(saved) if getattr(saved, f.name) != getattr(cfg.model, f.name)]
        logger.info("model settings %s come from the Stage I run %s", ", ".join(diff), cfg.init)
    return dataclasses.replace(cfg, model=saved)


def step_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by the seed and integer keys (epoch, step, ...): the same on every process."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits `n` training windows (independent of world size and resume)."""
    return step_rng(seed, epoch, 0x5EED).permutation(n)


class BaseTask:
    """Shared parts: data, batches, metadata."""

    gather_keys: tuple[str, ...] = ()
    metric = ""
    aug_deg = 0.0
    aug_scale = 0.0

    def __init__(self, cfg: Config, dist):
        self.cfg, self.dist = cfg, dist
        self.data = load_data(cfg)
        #: several sources (zerohar.data.multi): `(N, S)` bool, the sensors each window has; None for one source
        self.present = self.data.present if isinstance(self.data, MultiData) else None
        self.saw, self.transductive_init = self._check_provenance()
        self.X = self.data.ws.X  # (N, C, T) float32
        self.y = self.data.ws.y
        self.layout = self.data.ws.layout
        self.train_idx = self.data.train_idx
        self.device = dist.device

    def init_sources(self) -> list[tuple[str, str | None]]:
        """`(flag, path)` of every pretrained part this run starts from."""
        c = self.cfg
        if c.stage in ("stage2", "supervised"):
            return [("--stage1", c.init), ("--backbone-weights", c.backbone_init)]
        sources = [("--backbone-weights", c.init)]
        if c.stage == "pretrain" and c.train.pretrain_method == "relcon":
            sources.append(("--distance", c.train.relcon_distance))
        return sources

    def _check_provenance(self):
        parts = ([(p.key, p.data) for p in self.data.parts] if isinstance(self.data, MultiData)
                 else [(data_key(self.data.dataset, self.cfg.data.data), self.data)])
        own, inits, leaks = {}, None, []
        for key, d in parts:
            unseen = [] if self.cfg.stage == "supervised" else d.unseen  # the upper bound trains on every class
            inits, found = check_inits(self.init_sources(), key, unseen, d.subjects.get("test", []),
                                       self.cfg.allow_transductive_init)
            leaks += found
            own[key] = {"classes": list(d.seen), "subjects": list(d.subjects["train"]) + list(d.subjects["val"])}
        return merge_saw(own, inits), leaks

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def has_validation(self) -> bool:
        return len(self.data.val_idx) > 0

    def make_batch(self, idx: np.ndarray, lo_hi: tuple[int, int], rng: np.random.Generator, device) -> dict:
        """This process's slice of the global batch `idx` (positions in the training set), augmented.

        Every random draw is made for the whole global batch, then sliced: 1 and N processes see the same data.
        """
        rows = self.train_idx[idx]
        x = self.X[rows]  # (B, C, T)
        if self.cfg.train.augment and (self.aug_deg or self.aug_scale):
            x = augment(x, rng, self.aug_deg, self.aug_scale)
        lo, hi = lo_hi
        batch = {"x": torch.from_numpy(np.ascontiguousarray(x[lo:hi])).to(device), "rows": rows}
        if self.present is not None:
            batch["sensor_mask"] = torch.from_numpy(self.present[rows][lo:hi]).to(device)  # (b, S)
        return batch

    def epoch_order(self, seed: int, epoch: int, n: int) -> np.ndarray:
        """Positions in the training set for epoch `epoch`: a permutation, or the balanced draws of several
        sources (:meth:`zerohar.data.multi.MultiData.epoch_order`)."""
        if isinstance(self.data, MultiData):
            return self.data.epoch_order(seed, epoch, n, self.train_idx)
        return epoch_permutation(seed, epoch, n)

    def val_mask(self, rows: np.ndarray) -> torch.Tensor | None:
        """The sensor mask of validation windows `rows` (None for one source: every sensor present)."""
        if self.present is None:
            return None
        return torch.from_numpy(self.present[rows]).to(self.device)

    def after_step(self, model) -> None:
        """Hook after each optimiser step (nothing by default)."""

    def metadata(self) -> dict:
        """The run metadata written into model.json ("extra"): what eval / classify need to use the run."""
        d, c = self.data, self.cfg
        multi = {}
        if isinstance(d, MultiData):
            multi = {"sources": [
                {"name": p.name, "key": p.key, "dataset": p.data.dataset, "fold": p.data.fold,
                 "classes": p.data.classes, "unseen": p.data.unseen, "layout": p.data.ws.layout.to_dict(),
                 "subjects": p.data.subjects, "descriptions": p.descriptions,
                 "train_windows": int(np.isin(d.train_idx, p.rows).sum())}
                for p in d.parts], "balance": d.balance,
                # classes given another source's label text (data.label_map): the labels this model merged
                "label_map": dict(d.label_map), "label_map_file": d.label_map_file}
        return {**multi,
            "stage": c.stage,
            "dataset": d.dataset,
            "data": c.data.data,
            "fold": d.fold,
            "classes": d.classes,
            "seen": [x for x in d.classes if x not in d.unseen],
            "unseen": d.unseen,
            "trained_classes": d.seen,
            "layout": self.layout.to_dict(),
            "window_s": c.data.window_s,
            "rate": float(self.data.ws.rate),
            "subjects": d.subjects,
            "label_text": c.train.label_text,
            "transductive": c.train.transductive,
            "descriptions": c.data.descriptions,
            "init": c.init,
            "backbone_init": c.backbone_init,
            "saw": self.saw,
            "transductive_init": self.transductive_init,
            "seed": c.train.seed,
            "zerohar_version": __version__,
        }

    def summary(self) -> dict:
        d = self.data
        return {"train_windows": int(len(d.train_idx)), "val_windows": int(len(d.val_idx)),
                "test_windows": int(len(d.test_idx)), "subjects": {k: len(v) for k, v in d.subjects.items()}}

    def _val_batches(self):
        idx = self.data.val_idx
        for i in range(0, len(idx), VAL_BATCH):
            rows = idx[i : i + VAL_BATCH]
            yield rows, torch.from_numpy(self.X[rows]).to(self.device)


class ZeroHARTask(BaseTask):
    """Stage I and II: the ZeroHAR model, the frozen text encoder, the contrastive loss."""

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)

        self.text = get_text_encoder(cfg.text_encoder)
        if self.text.dim != cfg.model.d_text:
            raise ZeroharError(
                f"text encoder {self.text.name!r} gives {self.text.dim}-d embeddings, but model.d_text is "
                f"{cfg.model.d_text}; set model.d_text={self.text.dim}"
            )
        self.kinds = kind_indices(self.layout, self.device)  # (S,) sensor kind of each triad
        self.criterion = ContrastiveLoss(max_scale=cfg.model.max_logit_scale)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Frozen sentence embeddings `(M, d_text)`, computed once per run (and cached on disk)."""
        return torch.from_numpy(np.asarray(self.text.encode(texts, progress=False), dtype=np.float32)).to(self.device)

    def metadata(self) -> dict:
        return {**super().metadata(), "text_encoder": self.text.identity, "text_encoder_name": self.text.name}

    def save_model(self, model, out: Path, info: dict) -> None:
        model.save_pretrained(out, extra={**self.metadata(), **info})


# ---------------------------------------------------------------------------------------------- pretraining
class TriadInput:
    """The triads a pretraining method trains on (`train.pretrain_sensors`), with ZeroHAR's input handling."""

    def __init__(self, task: BaseTask, cfg: Config):
        kinds = cfg.train.pretrain_sensors
        layout = task.layout
        self.triads = [i for i, s in enumerate(layout.sensors) if s.sensor in kinds]
        if not self.triads:
            raise ZeroharError(
                f"{task.data.source}: no sensor of kind {', '.join(kinds)} to pretrain on (train.pretrain_sensors); "
                f"the layout has {', '.join(sorted({s.sensor for s in layout.sensors}))}"
            )
        self.channels = [3 * i + a for i in self.triads for a in range(3)]
        m = cfg.model
        self.kind_ids = torch.tensor([[SENSOR_KINDS.index(layout.sensors[i].sensor) for i in self.triads]])
        self.kind_scale = torch.tensor([m.kind_scale.get(k, 1.0) for k in SENSOR_KINDS])
        self.clip = m.clip_acc
        self.X = task.X

    @property
    def per_window(self) -> int:
        return len(self.triads)

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        """`(R, S', 3, T)`: the selected triads of windows `rows`, scaled and clipped."""
        x = torch.from_numpy(np.ascontiguousarray(self.X[rows][:, self.channels], dtype=np.float32))
        r, _, t = x.shape
        tri = x.reshape(r, self.per_window, 3, t)
        return scale_and_clip(tri, self.kind_ids.expand(r, -1), self.kind_scale, self.clip)


def save_backbone_run(task: BaseTask, backbone, out: Path, info: dict) -> None:
    """The artefact of every pretraining method: the backbone (`model.safetensors`, HARNet keys) and a
    `model.json` with the run's metadata, so `load_backbone(run_dir)` and Stage I take it like a released file."""
    meta = {**task.metadata(), **info, "backbone": backbone.variant,
            "pretrain_sensors": task.cfg.train.pretrain_sensors}
    save_backbone(backbone, out / "model.safetensors", extra=meta)
    atomic_write_json(out / "model.json", {"format": BACKBONE_FORMAT, "variant": backbone.variant, "extra": meta})
