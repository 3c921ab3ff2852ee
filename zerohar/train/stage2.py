"""Stage II: window embeddings against the label texts of the seen classes present in the batch; windows of
equal labels are positives. Selected on held-out subjects' accuracy among the prototypes of all seen classes.
The supervised upper bound is the same task on every class with a subject-disjoint test split.

Sensor dropout (`train.sensor_dropout`, layouts of 2 or more sensors): each training window hides each of its
sensors with that probability through the model's sensor mask, at least one kept.

Negatives (`train.negatives`): "batch" (default) contrasts each window with the labels of the batch's windows
only, as the original ZeroHAR did: a label absent from the batch is not pushed away at that step, which with
many classes and a batch of 64 means a rare class meets few of its confusers. "all" contrasts with every trained
label at every step (the prototypes of every trained label are computed anyway for validation; the cost is
one projection of every description per step). Measured once (HAPT fold1, seed 0, Stage II alone, 300 steps,
`zerohar stage2 ... --set train.negatives=all|batch`, then `zerohar eval`): unseen macro-F1 0.710 with "all"
vs 0.589 with "batch" (test subjects only 0.685 vs 0.560), but calibrated GZSL H 0.174 vs 0.332. One seed of
one fold, against a seed-to-seed spread of 0.05-0.09 on HAPT's folds, so the default stays
the original ZeroHAR's "batch" until a 3-seed benchmark says otherwise.

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
from zerohar.data.multi import SEP, class_text
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


def sensor_dropout_mask(n: int, n_sensors: int, rate: float, rng: np.random.Generator,
                        present: np.ndarray | None = None) -> np.ndarray | None:
    """`(n, n_sensors)` bool, True for the sensors a training window keeps: each is dropped with probability
    `rate`, and a window that would lose all of them keeps one, drawn at random. None when nothing is dropped
    (`rate` 0, or a layout of one sensor). With `present` (`(n, n_sensors)`, several sources) only present
    sensors can be kept, and a window keeps one of its own; the result is then never None.

    At inference a recording may lack sensors the model was trained with (a phone without a gyroscope): the
    sensor transformer then sees a mask, so it meets masks in training too.
    """
    if present is None and (rate <= 0 or n_sensors < 2):
        return None
    draw = rng.random((n, n_sensors))
    if present is None:
        keep = draw >= rate
        none = ~keep.any(axis=1)
        keep[np.flatnonzero(none), rng.integers(0, n_sensors, size=int(none.sum()))] = True
        return keep
    present = np.asarray(present, bool)
    keep = (draw >= rate) & present
    none = np.flatnonzero(~keep.any(axis=1))
    # one present sensor of each window that lost them all: the present one with the highest draw
    pick = np.where(present[none], draw[none], -1.0).argmax(axis=1)
    keep[none, pick] = True
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
        # Label texts: the trained classes, then (transductive only) the unseen ones as extra negatives. With
        # several sources a class is `source/label` and its text is the label's: equal labels share one row.
        trained = list(d.seen)
        extra = list(d.unseen) if t.transductive and cfg.stage != "supervised" else []
        texts = self._label_texts(trained + extra)
        text_of = {c: self._text_key(c) for c in trained + extra}
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
        self.trained_ids = [d.classes.index(c) for c in trained]  # class ids of the trained classes
        self.row_of_id = np.full(len(d.classes), -1)
        self.row_of_id[self.trained_ids] = [self.text_labels.index(text_of[c]) for c in trained]
        self.n_trained_rows = len({text_of[c] for c in trained})  # rows 0..n-1: trained texts; then extra
        self.extra_rows = list(range(self.n_trained_rows, len(self.text_labels)))
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

    def _text_key(self, cls: str) -> str:
        """The label text row a class trains with: its name, or for several sources the label after `source/`
        (or the text the label map gives it: :meth:`zerohar.data.multi.MultiData.class_text`)."""
        return self.data.class_text(cls) if self.present is not None else cls

    def _label_texts(self, labels: list[str]) -> dict[str, list[str]]:
        """Texts per label row. With several sources each source's classes get their texts by that source's rule
        (its descriptions file and dataset, under the class's own label), and two sources' equal labels (or
        labels the label map gives one text) become one row whose descriptions are the union of theirs."""
        if self.present is None:
            return self._source_label_texts(labels, self.cfg.data.descriptions, self.data.dataset)
        out: dict[str, list[str]] = {}
        for part in self.data.parts:
            mine = [c for c in labels if c.startswith(part.name + SEP)]
            if not mine:
                continue
            got = self._source_label_texts([class_text(c) for c in mine], part.descriptions, part.data.dataset)
            for c in mine:
                row = self._text_key(c)
                out[row] = list(dict.fromkeys(out.get(row, []) + list(got[class_text(c)])))
        return {k: out[k] for k in dict.fromkeys(self._text_key(c) for c in labels)}

    def _source_label_texts(self, labels: list[str], descriptions, dataset) -> dict[str, list[str]]:
        """The texts of the trained labels. With `train.label_text: descriptions` every one of them must have
        descriptions (in the run's descriptions file if one is given, else in a shipped file): training on name
        templates instead would be a silent substitute, so a class without any is an error."""
        c = self.cfg
        if descriptions and c.train.label_text != "names":
            written = {k.casefold() for k in load_label_descriptions(descriptions)}
            missing = [lab for lab in labels if normalize_label(lab).casefold() not in written]
            if missing:
                raise ZeroharError(
                    f"label description file {descriptions} has no descriptions for {len(missing)} of the "
                    f"classes this run trains on ({', '.join(map(repr, missing[:8]))}); add them (`zerohar "
                    "describe --update`) or leave --descriptions out"
                )
        texts = label_texts(labels, label_text=c.train.label_text, descriptions=descriptions, dataset=dataset)
        templated = [lab for lab in labels
                     if c.train.label_text != "names" and texts[lab] == template_descriptions(lab)]
        if templated:
            shipped = labels_dir() / f"{dataset}.json" if dataset in known_datasets() else None
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
        if self.cfg.train.negatives == "all":  # every trained label at every step
            rows = list(range(self.n_trained_rows)) + self.extra_rows
        else:  # the batch's labels (+ transductive negatives)
            rows = sorted(set(y_rows.tolist())) + self.extra_rows
        pos = {r: i for i, r in enumerate(rows)}
        batch["text_rows"] = torch.tensor(rows, device=device)
        batch["targets"] = torch.tensor([pos[r] for r in y_rows], device=device)  # (B,) for the global batch
        if self.cfg.train.label_sampling == "description":
            pick = np.floor(rng.random(len(rows)) * self.n_desc[rows]).astype(np.int64)
            batch["desc_pick"] = torch.from_numpy(pick).to(device)
        present = None if self.present is None else self.present[batch["rows"]]
        keep = sensor_dropout_mask(len(y_rows), len(self.layout.sensors), self.cfg.train.sensor_dropout, rng,
                                   present=present)
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
        n = self.n_trained_rows
        proto = model.label_prototypes(self.desc[:n], self.desc_mask[:n]).float()  # (L, E)
        sims, ys, all_rows = [], [], []
        for rows, x in self._val_batches():
            with autocast(bf16, self.device):
                w = model.encode_windows(x, self.context_emb, self.val_mask(rows), kinds=self.kinds)  # (b, E)
            sims.append((w.float() @ proto.T).cpu().numpy())  # (b, L)
            ys.append(self.y[rows])
            all_rows.append(rows)
        model.train()
        if not sims:
            self.val_best_scores = None
            return {"val_acc": float("nan"), "val_macro_f1": float("nan")}
        sims, y, rows = np.concatenate(sims), np.concatenate(ys), np.concatenate(all_rows)
        if self.present is None:
            groups = [(np.arange(len(y)), self.trained_ids)]
        else:  # each source's windows among its own trained classes; every source counts the same
            part = self.data.part_of[rows]
            groups = [(np.flatnonzero(part == i), [c for c in self.trained_ids if self.data.classes[c].startswith(
                p.name + SEP)]) for i, p in enumerate(self.data.parts)]
        out, accs, f1s, best = {}, [], [], np.full(len(y), np.nan, np.float32)
        for (idx, ids), name in zip(groups, [None] if self.present is None else [p.name for p in self.data.parts]):
            if not len(idx) or not ids:
                continue
            cand = self.row_of_id[ids]  # text rows of this group's classes
            s = sims[np.ix_(idx, cand)]
            pred = np.asarray(ids)[s.argmax(1)]
            best[idx] = s.max(1)
            acc = float((pred == y[idx]).mean())
            f1 = float(f1_score(y[idx], pred, labels=ids, average="macro", zero_division=0))
            accs.append(acc)
            f1s.append(f1)
            if name is not None:
                out[f"val_acc/{name}"], out[f"val_macro_f1/{name}"] = acc, f1
        self.val_best_scores = best[np.isfinite(best)]
        return {"val_acc": float(np.mean(accs)), "val_macro_f1": float(np.mean(f1s)), **out}

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
