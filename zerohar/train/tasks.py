"""What each stage trains on, its loss and its validation metric (the loop itself is :mod:`zerohar.train.loop`).

- **pretrain**: SSL pretext multi-task (arrow of time, permutation, time warp) on every window of the
  training subjects, labelled or not, one triad at a time (`train.pretrain_sensors`, acc by default);
  selected on the held-out subjects' pretext accuracy. The artefact is a HARNet backbone (:mod:`zerohar.train.pretrain_ssl`).
- **stage1**: each channel embedding (`encode_channels`) against the projected descriptions of the layout's
  channels (`axis_description`); equal texts are positives. Selected on held-out subjects' channel
  retrieval accuracy: does each channel embedding retrieve its own description among the layout's?
- **stage2**: window embeddings (`encode_windows`, sensor context = `sensor_description` of each triad)
  against label texts of the seen classes present in the batch, windows of equal labels are positives.
  Selected on held-out subjects' accuracy among the prototypes of all seen classes.
- **supervised**: stage2 on every class, with a subject-disjoint split into train / val / test subjects.

Label text per step (`train.label_sampling`): "prototype" (default) uses, for each label, the normalised mean
of its projected descriptions, exactly what zero-shot inference compares windows with; "description" draws one
of the label's descriptions per label and step (text-side augmentation). Unseen labels' text never enters
training unless `train.transductive` is true, in which case their prototypes join every step as negatives
(as the original ZeroHAR did).

Text embeddings (frozen sentence encoder) are computed once per run, before training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zerohar.config import Config
from zerohar.errors import ZeroharError
from zerohar.model.precision import autocast

logger = logging.getLogger(__name__)

#: Validation embeds this many windows per forward pass.
VAL_BATCH = 256


# ---------------------------------------------------------------------------------------------- data
@dataclass
class StageData:
    """The windows of a stage and their subject split (indices into `ws`)."""

    ws: object  # WindowSet
    dataset: str | None
    classes: list[str]  # every class, in the folds file's ordering
    seen: list[str]  # classes this stage trains on
    unseen: list[str]  # the fold's unseen classes ([] without a fold)
    fold: str | None
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    subjects: dict[str, list[str]]
    source: str  # how messages name the data: the dataset or the window set file


def split_subjects(subjects: list[str], val_fraction: float, test_fraction: float, seed: int
                   ) -> tuple[list[str], list[str], list[str]]:
    """Seeded subject-disjoint split into (train, val, test); val / test get at least one subject when asked."""
    subs = sorted(set(subjects))
    order = [subs[i] for i in np.random.default_rng([seed, 0x5B]).permutation(len(subs))]
    n_test = max(1, round(test_fraction * len(subs))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(subs))) if val_fraction > 0 else 0
    if n_test + n_val >= len(subs):
        raise ZeroharError(
            f"{len(subs)} subject(s) cannot be split into training, validation ({val_fraction:.0%}) and test "
            f"({test_fraction:.0%}) subjects; use data with more subjects or set train.val_fraction=0"
        )
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return sorted(train), sorted(val), sorted(test)


def load_stage_data(cfg: Config) -> StageData:
    """Load the windows of `cfg`'s data, check the fold against them and split subjects.

    Raises:
        ZeroharError: unknown fold, unseen classes missing from the data, window length that does not fit the
            backbone, no training windows.
    """
    from zerohar.data.folds import load_folds
    from zerohar.data.prepare import load_windowset

    d, t, stage = cfg.data, cfg.train, cfg.stage
    ws = load_windowset(d.dataset if d.data is None else None, root=d.root, data=d.data, window_s=d.window_s)
    source = d.data or d.dataset
    dataset = d.dataset if d.data is None else ws.meta.get("dataset")
    expected_t = int(round(d.window_s * ws.rate))
    if ws.window_length != expected_t:
        raise ZeroharError(
            f"{source}: windows have {ws.window_length} samples, but data.window_s={d.window_s} at {ws.rate:g} Hz "
            f"needs {expected_t}"
        )
    _check_window_for_model(cfg, ws.window_length, source)
    if d.subjects:
        keep = [str(s) for s in d.subjects]
        missing = sorted(set(keep) - set(ws.subject.tolist()))
        if missing:
            raise ZeroharError(f"{source}: data.subjects names subjects {missing} that are not in the data")
        ws = ws.subset(np.isin(ws.subject, keep))
    classes = list(ws.class_names)
    unseen: list[str] = []
    if d.fold is not None:
        folds_src = d.folds or dataset
        if folds_src is None:
            raise ZeroharError(
                f"{source}: a fold needs a folds file (--folds FILE.yaml) for a window set without a dataset name"
            )
        folds = load_folds(folds_src)
        unseen = folds.unseen(d.fold)  # unknown fold: ZeroharError naming the folds file
        missing = [c for c in unseen if c not in classes]
        if missing:
            raise ZeroharError(
                f"fold {d.fold!r} of {folds.source}: unseen classes {missing} are missing from the data {source} "
                f"(its classes are {classes})"
            )
        counts = ws.class_counts()
        empty = [c for c in unseen if counts.get(c, 0) == 0]
        if empty:
            raise ZeroharError(
                f"fold {d.fold!r} of {folds.source}: unseen classes {empty} have no windows in the data {source}"
                f"{' (subjects ' + ', '.join(map(str, d.subjects)) + ')' if d.subjects else ''}"
            )
    if stage == "pretrain":
        ids = [classes.index(c) for c in unseen]
        mask = ~np.isin(ws.y, ids)  # unlabelled windows are welcome; unseen classes' windows are not
        seen = [c for c in classes if c not in unseen]
    elif stage == "supervised":
        mask = ws.y >= 0
        seen = list(classes)
    else:
        seen = [c for c in classes if c not in unseen]
        mask = np.isin(ws.y, [classes.index(c) for c in seen])
    ws = ws.subset(mask)
    if len(ws) == 0:
        raise ZeroharError(f"{source}: no windows to train {stage} on (fold {d.fold!r})")
    test_frac = t.test_fraction if stage == "supervised" else 0.0
    train_s, val_s, test_s = split_subjects(ws.subject.tolist(), t.val_fraction, test_frac, t.seed)
    idx = np.arange(len(ws))
    data = StageData(
        ws=ws, dataset=dataset, classes=classes, seen=seen, unseen=unseen, fold=d.fold,
        train_idx=idx[np.isin(ws.subject, train_s)], val_idx=idx[np.isin(ws.subject, val_s)],
        test_idx=idx[np.isin(ws.subject, test_s)], subjects={"train": train_s, "val": val_s, "test": test_s},
        source=str(source),
    )
    if t.max_val_windows is not None and len(data.val_idx) > t.max_val_windows:
        pick = np.random.default_rng([t.seed, 0x7A1]).choice(len(data.val_idx), t.max_val_windows, replace=False)
        data.val_idx = np.sort(data.val_idx[pick])
    logger.info(
        "%s: %d training windows (%d subjects), %d validation windows (%d subjects)%s", source,
        len(data.train_idx), len(train_s), len(data.val_idx), len(val_s),
        f", {len(data.test_idx)} test windows ({len(test_s)} subjects)" if test_s else "",
    )
    return data


def _check_window_for_model(cfg: Config, t: int, source: str) -> None:
    from zerohar.model.harnet import VARIANTS

    m = cfg.model
    if getattr(m, "encoder", "harnet") == "harnet" or cfg.stage == "pretrain":
        variant = getattr(m, "backbone", "harnet5")
        if VARIANTS.get(variant) != t:
            raise ZeroharError(
                f"{source}: windows have {t} samples, but the {variant} backbone needs {VARIANTS.get(variant)} "
                f"(set data.window_s={VARIANTS.get(variant, 150) / 30:g} or another model.backbone)"
            )


# ---------------------------------------------------------------------------------------------- augmentation
def random_rotations(n: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """`n` rotation matrices `(n, 3, 3)` about uniformly random axes by angles uniform in [0, max_deg]."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True) + 1e-12
    ang = np.deg2rad(rng.uniform(0.0, max_deg, size=n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    s, c = np.sin(ang)[:, None, None], np.cos(ang)[:, None, None]
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)


def augment(x: np.ndarray, rng: np.random.Generator, max_deg: float, scale: float) -> np.ndarray:
    """Windows `(B, C, T)`: each triad rotated by a small random rotation and scaled by a random factor.

    The device sits a little differently on every subject; a small rotation (the same one for the sensors of
    a window, which are on one device or not) and amplitude scaling mimic that without changing the axes'
    identity (Stage I must still tell x from y from z).
    """
    b, c, t = x.shape
    s = c // 3
    tri = x.reshape(b, s, 3, t)  # (B, S, 3, T)
    if max_deg > 0:
        r = random_rotations(b, max_deg, rng).astype(np.float32)  # (B, 3, 3)
        tri = np.einsum("bij,bsjt->bsit", r, tri)
    if scale > 0:
        f = rng.uniform(1 - scale, 1 + scale, size=(b, 1, 1, 1)).astype(np.float32)
        tri = tri * f
    return np.ascontiguousarray(tri.reshape(b, c, t), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- models
def build_zerohar_model(cfg: Config, backbone_source: str | None):
    """A fresh ZeroHARModel of `cfg.model`, its HARNet backbone loaded from `backbone_source` (None = random)."""
    from zerohar.model.zerohar import ZeroHARModel

    model = ZeroHARModel(cfg.model)
    if backbone_source is not None:
        src = Path(backbone_source)
        if src.is_dir():
            check_backbone_run(src)
        model.init_backbone(str(backbone_source))
    return model


def check_backbone_run(d: Path) -> None:
    """A run directory given as a backbone must be a finished run (pretrain, or any run with a backbone)."""
    from zerohar.train.runs import read_run_meta

    read_run_meta(d)  # ZeroharError for an unfinished or foreign directory


def _stage1_meta(path: str | Path) -> dict:
    from zerohar.train.runs import read_run_meta

    p = Path(path)
    if p.is_file():
        raise ZeroharError(f"--init {p} is a file; Stage II starts from a Stage I run directory")
    meta = read_run_meta(p)  # missing / unfinished / foreign directory: ZeroharError
    if meta.get("stage") != "stage1":
        raise ZeroharError(
            f"--init {p} is a {meta.get('stage')} run, not a Stage I run; pass the directory of a Stage I run"
        )
    return meta


def load_stage1_run(path: str | Path):
    """A finished Stage I run (model loaded); any other kind of run or directory is refused."""
    from zerohar.train.runs import load_run

    _stage1_meta(path)
    return load_run(path)


def resolve_init(cfg: Config) -> Config:
    """Stage II from a Stage I run continues that run's model, so its model section becomes the Stage I one's.

    Raises:
        ZeroharError: `init` is not a finished Stage I run.
    """
    if cfg.stage not in ("stage2", "supervised") or cfg.init is None:
        return cfg
    import dataclasses
    import json

    from zerohar.config import model_config_class

    _stage1_meta(cfg.init)
    path = Path(cfg.init) / "model.json"
    saved = model_config_class().from_dict(json.loads(path.read_text()).get("config"), f"{path} 'config'")
    if saved != cfg.model:
        diff = [f.name for f in dataclasses.fields(saved) if getattr(saved, f.name) != getattr(cfg.model, f.name)]
        logger.info("model settings %s come from the Stage I run %s", ", ".join(diff), cfg.init)
    return dataclasses.replace(cfg, model=saved)


# ---------------------------------------------------------------------------------------------- tasks
def make_task(cfg: Config, dist):
    """The task of `cfg.stage` (data loaded, model built or initialised, text embedded)."""
    if cfg.stage == "pretrain":
        from zerohar.train.pretrain_ssl import PretrainTask

        return PretrainTask(cfg, dist)
    if cfg.stage == "stage1":
        return Stage1Task(cfg, dist)
    return Stage2Task(cfg, dist)


class BaseTask:
    """Shared parts: data, batches, metadata."""

    gather_keys: tuple[str, ...] = ()
    metric = ""
    aug_deg = 0.0
    aug_scale = 0.0

    def __init__(self, cfg: Config, dist):
        self.cfg, self.dist = cfg, dist
        self.data = load_stage_data(cfg)
        self.X = self.data.ws.X  # (N, C, T) float32
        self.y = self.data.ws.y
        self.layout = self.data.ws.layout
        self.train_idx = self.data.train_idx
        self.device = dist.device

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
        return {"x": torch.from_numpy(np.ascontiguousarray(x[lo:hi])).to(device), "rows": rows}

    def after_step(self, model) -> None:
        """Hook after each optimiser step (nothing by default)."""

    def metadata(self) -> dict:
        """The run metadata written into model.json ("extra"): what eval / classify need to use the run."""
        from zerohar import __version__

        d, c = self.data, self.cfg
        return {
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


class _ZeroHARTask(BaseTask):
    """Stage I and II: the ZeroHAR model, the frozen text encoder, the contrastive loss."""

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        from zerohar.losses.contrastive import ContrastiveLoss
        from zerohar.model.zerohar import kind_indices
        from zerohar.text.encoder import get_text_encoder

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


class Stage1Task(_ZeroHARTask):
    """Channel embeddings <-> per-axis sensor descriptions."""

    gather_keys = ("channels",)
    metric = "channel_acc"
    # No large rotations: the axes' identity is what Stage I learns. A few degrees mimic device placement.
    aug_deg, aug_scale = 10.0, 0.1

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        from zerohar.text.sensors import axis_description

        self.channels = self.layout.channels
        texts = [axis_description(ch) for ch in self.channels]
        self.texts = list(dict.fromkeys(texts))  # unique texts; equal descriptions are one text (positives)
        self.text_ids = torch.tensor([self.texts.index(t) for t in texts], device=self.device)  # (C,)
        self.text_emb = self.embed(self.texts)  # (U, d_text)
        self.model = build_zerohar_model(cfg, cfg.init)

    def forward(self, model, batch: dict) -> dict:
        ch = model.encode_channels(batch["x"], kinds=self.kinds)  # (b, C, E) normalised
        txt = model.encode_text(self.text_emb)  # (U, E) normalised
        # `* 1` makes the scale a non-leaf output, so DDP sees the parameter used in this forward.
        return {"channels": ch, "text": txt, "scale": model.logit_scale * 1}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        ch = out["channels"].float()  # (B, C, E)
        b, c, e = ch.shape
        targets = self.text_ids.repeat(b)  # (B*C,)
        return self.criterion(ch.reshape(b * c, e), out["text"].float(), targets, out["scale"])

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        txt = model.encode_text(self.text_emb).float()  # (U, E)
        hits = []
        for _, x in self._val_batches():
            with autocast(bf16, self.device):
                ch = model.encode_channels(x, kinds=self.kinds)  # (b, C, E)
            hits.append((ch.float() @ txt.T).argmax(-1).cpu())  # (b, C)
        model.train()
        return channel_retrieval_report(torch.cat(hits).numpy(), self.text_ids.cpu().numpy(), self.channels)


def channel_retrieval_report(pred: np.ndarray, truth: np.ndarray, channels) -> dict:
    """Stage I validation: does each channel embedding retrieve its own description among the layout's?

    Args:
        pred: `(N, C)` text id retrieved for each channel of each window.
        truth: `(C,)` the text id of each channel's own description.
        channels: the layout's channels (kind and axis of each).

    Returns:
        `channel_acc` (overall), `kind_acc` / `axis_acc` (the retrieved description names the right sensor
        kind / axis), accuracy per kind (`acc_acc`, `gyro_acc`) and per axis (`x_acc`, ...), and per channel.
    """
    ok = pred == truth[None, :]  # (N, C)
    out = {"channel_acc": float(ok.mean())}
    # The channel each retrieved text describes (the first channel with that text).
    first = {int(t): i for i, t in reversed(list(enumerate(truth)))}
    pred_ch = np.vectorize(lambda p: first[int(p)])(pred)  # (N, C)
    kinds = np.array([ch.sensor for ch in channels])
    axes = np.array([ch.axis for ch in channels])
    out["kind_acc"] = float((kinds[pred_ch] == kinds[None, :]).mean())
    out["axis_acc"] = float((axes[pred_ch] == axes[None, :]).mean())
    for k in dict.fromkeys(kinds):
        out[f"{k}_acc"] = float(ok[:, kinds == k].mean())
    for a in dict.fromkeys(axes):
        out[f"{a}_acc"] = float(ok[:, axes == a].mean())
    names = [f"{ch.sensor}_{ch.axis}" for ch in channels]
    if len(set(names)) < len(names):
        names = [f"s{i // 3}_{n}" for i, n in enumerate(names)]
    for i, n in enumerate(names):
        out[f"channel/{n}"] = float(ok[:, i].mean())
    return out


class Stage2Task(_ZeroHARTask):
    """Window embeddings <-> label texts of the seen classes (every class for `supervised`)."""

    gather_keys = ("windows",)
    metric = "val_acc"
    aug_deg, aug_scale = 10.0, 0.1

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        from zerohar.text.sensors import sensor_description

        t, d = cfg.train, self.data
        self.init_meta = None
        if cfg.init is not None:
            run = load_stage1_run(cfg.init)
            self._check_against_stage1(run)
            self.model = run.model.train()
            self.init_meta = run.meta
        else:
            logger.warning("%s without Stage I: the model starts from %s", cfg.stage,
                           f"the backbone {cfg.backbone_init}" if cfg.backbone_init else "random weights")
            self.model = build_zerohar_model(cfg, cfg.backbone_init)
        self.context_emb = self.embed([sensor_description(s) for s in self.layout.sensors])  # (S, d_text)
        # Label texts: the trained classes, then (transductive only) the unseen ones as extra negatives.
        trained = list(d.seen)
        extra = list(d.unseen) if t.transductive and cfg.stage != "supervised" else []
        texts = self._label_texts(trained + extra)
        self.text_labels = list(texts)  # row j of `desc` is the label text_labels[j]
        k = max(len(v) for v in texts.values())
        emb = self.embed([s for c in self.text_labels for s in texts[c]])  # (sum K, d_text)
        self.desc = torch.zeros(len(texts), k, emb.shape[1], device=self.device)  # (L, K, d_text)
        self.desc_mask = torch.zeros(len(texts), k, dtype=torch.bool, device=self.device)  # (L, K)
        i = 0
        for j, c in enumerate(self.text_labels):
            n = len(texts[c])
            self.desc[j, :n], self.desc_mask[j, :n] = emb[i : i + n], True
            i += n
        self.n_desc = self.desc_mask.sum(1).cpu().numpy()  # (L,)
        self.trained_ids = [d.classes.index(c) for c in trained]  # class ids, in the order of rows 0..len-1
        self.row_of_id = np.full(len(d.classes), -1)
        self.row_of_id[self.trained_ids] = np.arange(len(trained))
        self.extra_rows = list(range(len(trained), len(self.text_labels)))

    def _check_against_stage1(self, run) -> None:
        from zerohar.data.layout import SensorLayout

        s1 = SensorLayout.from_dict(run.meta["layout"], f"{run.path}/model.json")
        known = {s.sensor for s in s1.sensors}
        bad = sorted({s.sensor for s in self.layout.sensors} - known)
        if bad:
            raise ZeroharError(
                f"{self.data.source}: the layout has sensor kind(s) {', '.join(bad)} that the Stage I run {run.path} "
                f"does not know (it was trained on {', '.join(sorted(known))})"
            )
        if float(run.meta.get("window_s", self.cfg.data.window_s)) != self.cfg.data.window_s:
            raise ZeroharError(
                f"Stage I run {run.path} was trained on {run.meta['window_s']:g} s windows, but data.window_s is "
                f"{self.cfg.data.window_s:g}"
            )
        if run.text_identity != self.text.identity:
            raise ZeroharError(
                f"Stage I run {run.path} used the text encoder {run.meta.get('text_encoder_name')!r}, but this run "
                f"uses {self.text.name!r}"
            )

    def _label_texts(self, labels: list[str]) -> dict[str, list[str]]:
        if self.cfg.train.label_text == "names":
            return {c: [c] for c in labels}
        from zerohar.text.labels import descriptions_for, known_datasets

        src = self.cfg.data.descriptions or (self.data.dataset if self.data.dataset in known_datasets() else None)
        return descriptions_for(labels, known=src)

    def make_batch(self, idx, lo_hi, rng, device) -> dict:
        batch = super().make_batch(idx, lo_hi, rng, device)
        y_rows = self.row_of_id[self.y[batch["rows"]]]  # (B,) text row of each window of the global batch
        rows = sorted(set(y_rows.tolist())) + self.extra_rows  # the batch's labels (+ transductive negatives)
        pos = {r: i for i, r in enumerate(rows)}
        batch["text_rows"] = torch.tensor(rows, device=device)
        batch["targets"] = torch.tensor([pos[r] for r in y_rows], device=device)  # (B,) for the global batch
        if self.cfg.train.label_sampling == "description":
            pick = np.floor(rng.random(len(rows)) * self.n_desc[rows]).astype(np.int64)
            batch["desc_pick"] = torch.from_numpy(pick).to(device)
        return batch

    def forward(self, model, batch: dict) -> dict:
        w = model.encode_windows(batch["x"], self.context_emb, None, kinds=self.kinds)  # (b, E)
        rows = batch["text_rows"]
        if "desc_pick" in batch:
            txt = model.encode_text(self.desc[rows, batch["desc_pick"]])  # (U, E)
        else:
            txt = model.label_prototypes(self.desc[rows], self.desc_mask[rows])  # (U, E)
        return {"windows": w, "text": txt, "scale": model.logit_scale * 1}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        return self.criterion(out["windows"].float(), out["text"].float(), batch["targets"], out["scale"])

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        """Held-out subjects' windows of the trained classes, classified among all their prototypes."""
        from sklearn.metrics import f1_score

        model.eval()
        n = len(self.trained_ids)
        proto = model.label_prototypes(self.desc[:n], self.desc_mask[:n]).float()  # (L, E)
        preds, ys = [], []
        for rows, x in self._val_batches():
            with autocast(bf16, self.device):
                w = model.encode_windows(x, self.context_emb, None, kinds=self.kinds)  # (b, E)
            preds.append((w.float() @ proto.T).argmax(-1).cpu().numpy())
            ys.append(self.y[rows])
        model.train()
        pred = np.asarray(self.trained_ids)[np.concatenate(preds)]
        y = np.concatenate(ys)
        return {"val_acc": float((pred == y).mean()),
                "val_macro_f1": float(f1_score(y, pred, labels=self.trained_ids, average="macro", zero_division=0))}

    def metadata(self) -> dict:
        meta = super().metadata()
        if self.init_meta is not None:
            meta["stage1"] = {"run": str(self.cfg.init), "dataset": self.init_meta.get("dataset"),
                              "fold": self.init_meta.get("fold"), "init": self.init_meta.get("init")}
        return meta
