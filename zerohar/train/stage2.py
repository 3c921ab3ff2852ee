"""Stage II: window embeddings against the label texts of the seen classes present in the batch; windows of
equal labels are positives. Selected on held-out subjects' accuracy among the prototypes of all seen classes.
The supervised upper bound is the same task on every class with a subject-disjoint test split.

Sensor dropout (`train.sensor_dropout`, layouts of 2 or more sensors): each training window hides each of its
sensors with that probability through the model's sensor mask, at least one kept.

Label text per step (`train.label_sampling`): "prototype" (default) uses, for each label, the normalised mean
of its projected descriptions, exactly what zero-shot inference compares windows with; "description" draws one
of the label's descriptions per label and step (text-side augmentation). Unseen labels' text never enters
training unless `train.transductive` is true, in which case their prototypes join every step as negatives
(as the original ZeroHAR did).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.metrics import f1_score

from zerohar.config import Config
from zerohar.data.layout import SensorLayout
from zerohar.errors import ZeroharError
from zerohar.model.precision import autocast
from zerohar.text.label_rule import label_texts
from zerohar.text.labels import (
    known_datasets,
    labels_dir,
    load_label_descriptions,
    normalize_label,
    template_descriptions,
)
from zerohar.text.sensors import sensor_description
from zerohar.train.base import ZeroHARTask, build_zerohar_model, load_stage1_run
from zerohar.train.unknown import unknown_threshold

logger = logging.getLogger(__name__)


def sensor_dropout_mask(n: int, n_sensors: int, rate: float, rng: np.random.Generator) -> np.ndarray | None:
    """`(n, n_sensors)` bool, True for the sensors a training window keeps: each is dropped with probability
    `rate`, and a window that would lose all of them keeps one, drawn at random. None when nothing is dropped
    (`rate` 0, or a layout of one sensor).

    At inference a recording may lack sensors the model was trained with (a phone without a gyroscope): the
    sensor transformer then sees a mask, so it meets masks in training too.
    """
    if rate <= 0 or n_sensors < 2:
        return None
    keep = rng.random((n, n_sensors)) >= rate
    none = ~keep.any(axis=1)
    keep[np.flatnonzero(none), rng.integers(0, n_sensors, size=int(none.sum()))] = True
    return keep


class Stage2Task(ZeroHARTask):
    """Window embeddings <-> label texts of the seen classes (every class for `supervised`)."""

    gather_keys = ("windows",)
    metric = "val_acc"
    aug_deg, aug_scale = 10.0, 0.1

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)

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
        self.val_best_scores: np.ndarray | None = None  # (n,) of the last validation, for save_model

    def _check_against_stage1(self, run) -> None:
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
        """The texts of the trained labels. With `train.label_text: descriptions` every one of them must have
        descriptions (in the run's descriptions file if one is given, else in a shipped file): training on name
        templates instead would be a silent substitute, so a class without any is an error."""
        c = self.cfg
        if c.data.descriptions and c.train.label_text != "names":
            written = {k.casefold() for k in load_label_descriptions(c.data.descriptions)}
            missing = [lab for lab in labels if normalize_label(lab).casefold() not in written]
            if missing:
                raise ZeroharError(
                    f"label description file {c.data.descriptions} has no descriptions for {len(missing)} of the "
                    f"classes this run trains on ({', '.join(map(repr, missing[:8]))}); add them (`zerohar "
                    "describe --update`) or leave --descriptions out"
                )
        texts = label_texts(labels, label_text=c.train.label_text, descriptions=c.data.descriptions,
                            dataset=self.data.dataset)
        templated = [lab for lab in labels
                     if c.train.label_text != "names" and texts[lab] == template_descriptions(lab)]
        if templated:
            shipped = labels_dir() / f"{self.data.dataset}.json" if self.data.dataset in known_datasets() else None
            more = f" (nor do {len(templated) - 1} more classes)" if len(templated) > 1 else ""
            raise ZeroharError(
                f"class {templated[0]!r} has no descriptions in {shipped or 'any shipped descriptions file'}{more}: "
                "write them (`zerohar describe`) and pass --descriptions FILE, or train on names "
                "(--set train.label_text=names)"
            )
        return texts

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
        keep = sensor_dropout_mask(len(y_rows), len(self.layout.sensors), self.cfg.train.sensor_dropout, rng)
        if keep is not None:
            lo, hi = lo_hi
            batch["sensor_mask"] = torch.from_numpy(keep[lo:hi]).to(device)  # (b, S)
        return batch

    def forward(self, model, batch: dict) -> dict:
        w = model.encode_windows(batch["x"], self.context_emb, batch.get("sensor_mask"), kinds=self.kinds)  # (b, E)
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
        """Held-out subjects' windows of the trained classes, classified among all their prototypes.

        Each window's best score (cosine: both sides are normalised) is kept for the "none of these" threshold
        that :meth:`save_model` stores with the model just validated."""
        model.eval()
        n = len(self.trained_ids)
        proto = model.label_prototypes(self.desc[:n], self.desc_mask[:n]).float()  # (L, E)
        preds, best, ys = [], [], []
        for rows, x in self._val_batches():
            with autocast(bf16, self.device):
                w = model.encode_windows(x, self.context_emb, None, kinds=self.kinds)  # (b, E)
            sims = w.float() @ proto.T  # (b, L)
            top = sims.max(-1)
            preds.append(top.indices.cpu().numpy())
            best.append(top.values.cpu().numpy())
            ys.append(self.y[rows])
        model.train()
        self.val_best_scores = np.concatenate(best) if best else None
        pred = np.asarray(self.trained_ids)[np.concatenate(preds)]
        y = np.concatenate(ys)
        return {"val_acc": float((pred == y).mean()),
                "val_macro_f1": float(f1_score(y, pred, labels=self.trained_ids, average="macro", zero_division=0))}

    def save_model(self, model, out, info: dict) -> None:
        """The model, with the "none of these" threshold of `classify` (:mod:`zerohar.train.unknown`) from the
        best scores of the validation that chose it (none without held-out windows)."""
        got = unknown_threshold(self.val_best_scores) if self.val_best_scores is not None else None
        if got is None:
            logger.warning("no held-out windows: the run has no 'unknown' threshold, so classify names every window")
        super().save_model(model, out, {**info, "unknown": got})

    def metadata(self) -> dict:
        meta = super().metadata()
        if self.init_meta is not None:
            meta["stage1"] = {"run": str(self.cfg.init), "dataset": self.init_meta.get("dataset"),
                              "fold": self.init_meta.get("fold"), "init": self.init_meta.get("init")}
        return meta
