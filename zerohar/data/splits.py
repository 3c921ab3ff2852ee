"""A stage's windows and their three-way subject split (train / validation / test).

:func:`load_stage_data` reads the window set of a config, checks the fold against it, keeps the windows the
stage may train on (seen classes; pretraining also keeps unlabelled windows) and splits the subjects with
:func:`split_subjects`.

The split, for every stage alike (pretrain, stage1, stage2, supervised):

- **train**: the subjects a stage trains on;
- **validation** (`train.val_fraction`): checkpoint selection and early stopping only;
- **test** (`train.test_fraction`): never trained or selected on, by any stage; they score GZSL seen accuracy,
  choose the calibrated-stacking margin, give the demo its example recording and score the supervised upper
  bound (whose unseen-class windows of the training subjects were trained on).

The split depends only on the data's subjects (after `data.subjects`, before any class is dropped), `train.seed`
and the two fractions, never on the stage or the fold: test subjects come first in one seeded permutation, so
they do not even depend on `val_fraction`. Hence a pretraining run, the Stage I run on it, the Stage II run on
that and the supervised bound of one seed hold out the same test subjects, and the provenance check
(:mod:`zerohar.train.provenance`) refuses an init of another seed or test fraction that trained on this run's
test subjects.

Few subjects: a group asked for gets at least one subject and training keeps at least one. When the data has too
few subjects for all three groups (2 subjects with validation, 1 without), a zero-shot stage holds out no test
subjects and logs a warning saying so; its evaluation then reports GZSL seen accuracy and calibration as not
measured (it never falls back to the validation subjects). The supervised bound cannot do without test subjects:
that is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from zerohar.config import VARIANTS, Config
from zerohar.data.folds import load_folds
from zerohar.data.prepare import load_windowset
from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

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


def split_subjects(subjects: list[str], val_fraction: float, test_fraction: float, seed: int, *,
                   test_optional: bool = False) -> tuple[list[str], list[str], list[str]]:
    """Seeded subject-disjoint split into (train, val, test).

    Args:
        subjects: subject ids (repeats are fine: one per window).
        val_fraction, test_fraction: fractions of the subjects held out for validation / test; a fraction above 0
            gets at least one subject. Test subjects are the first of a permutation seeded by `seed` alone, so they
            do not depend on `val_fraction`.
        seed: the permutation's seed (`train.seed`).
        test_optional: when the subjects are too few for three groups, hold out no test subjects instead of
            failing (zero-shot stages; the caller logs it).

    Raises:
        ZeroharError: too few subjects for the groups asked for.
    """
    subs = sorted(set(map(str, subjects)))
    order = [subs[i] for i in np.random.default_rng([seed, 0x5B]).permutation(len(subs))]
    n_test = max(1, round(test_fraction * len(subs))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(subs))) if val_fraction > 0 else 0
    if n_test + n_val >= len(subs) and test_optional and n_val < len(subs):
        n_test = 0
    if n_test + n_val >= len(subs):
        raise ZeroharError(
            f"{len(subs)} subject(s) cannot be split into training, validation ({val_fraction:.0%}) and test "
            f"({test_fraction:.0%}) subjects; use data with more subjects or set train.val_fraction=0"
        )
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return sorted(train), sorted(val), sorted(test)


def touches_classes(ws, class_ids: list[int]) -> np.ndarray:
    """`(N,)` bool: windows that may hold a sample of one of `class_ids`, from window labels only.

    The fallback of :func:`holds_classes` for window sets without `sample_classes` (saved before it existed).
    Such a set keeps one label per window (the class covering more than half of it), not per sample; what it
    keeps besides is each window's recording and start time. So a window is marked when it is labelled one of
    `class_ids`, or when it shares a sample with such a window (same recording, starts less than one window
    length apart): with overlapping sliding windows this catches every window at the edge of a segment of those
    classes. A segment of such a class too short to be the majority of any window (under half a window) leaves
    no labelled window, and its neighbours cannot be found this way.
    """
    hit = np.isin(ws.y, class_ids)
    if not hit.any():
        return hit
    length = ws.window_length / float(ws.rate) - 0.5 / float(ws.rate)  # strictly overlapping, float-safe
    out = hit.copy()
    for r in np.unique(ws.recording[hit]):
        mine = np.flatnonzero(ws.recording == r)
        bad = np.sort(ws.start[mine[hit[mine]]])
        st = ws.start[mine]
        # the nearest labelled window on either side of each window's start
        j = np.searchsorted(bad, st)
        left = np.abs(st - bad[np.clip(j - 1, 0, len(bad) - 1)])
        right = np.abs(bad[np.clip(j, 0, len(bad) - 1)] - st)
        out[mine] |= np.minimum(left, right) < length
    return out


def holds_classes(ws, class_ids: list[int], source: str = "") -> np.ndarray:
    """`(N,)` bool: windows holding at least one sample of one of `class_ids`.

    Exact when the window set records its windows' per-sample classes (`WindowSet.sample_classes`); a set saved
    before that falls back to :func:`touches_classes` (logged once per call, at info level).
    """
    held = ws.holds_samples_of(class_ids)
    if held is not None:
        return held
    if class_ids:
        logger.info("%s: the window set records no per-sample classes (prepared by an older zerohar); windows "
                    "holding samples of the unseen classes are found from the window labels and their "
                    "neighbours (misses segments shorter than half a window; prepare it again for the exact "
                    "filter)", source or "data")
    return touches_classes(ws, class_ids)


def load_stage_data(cfg: Config) -> StageData:
    """Load the windows of `cfg`'s data, check the fold against them and split subjects (module docstring).

    Raises:
        ZeroharError: unknown fold, unseen classes missing from the data, window length that does not fit the
            backbone, too few subjects, no training windows.
    """

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
    # The split is made here, before any class is dropped: every stage of this data and seed gets the same one.
    train_s, val_s, test_s = split_subjects(ws.subject.tolist(), t.val_fraction, t.test_fraction, t.seed,
                                            test_optional=stage != "supervised")
    if not test_s and t.test_fraction > 0:
        logger.warning(
            "%s: %d subject(s) are too few for training, validation and test subjects: this %s run holds out no "
            "test subjects, so GZSL seen accuracy and the calibration margin of its evaluation are not measured "
            "(the validation subjects are never reused for them)", source, len(set(ws.subject.tolist())), stage)
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
        # Unlabelled windows are welcome; no sample of an unseen class is.
        touching = holds_classes(ws, [classes.index(c) for c in unseen], str(source))
        mask = ~touching
        if unseen:
            logger.info("%s: pretraining leaves out %d windows that hold samples of the unseen classes (%d of them "
                        "labelled unseen)", source, int(touching.sum()),
                        int(np.isin(ws.y, [classes.index(c) for c in unseen]).sum()))
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
    idx = np.arange(len(ws))
    data = StageData(
        ws=ws, dataset=dataset, classes=classes, seen=seen, unseen=unseen, fold=d.fold,
        train_idx=idx[np.isin(ws.subject, train_s)], val_idx=idx[np.isin(ws.subject, val_s)],
        test_idx=idx[np.isin(ws.subject, test_s)], subjects={"train": train_s, "val": val_s, "test": test_s},
        source=str(source),
    )
    if len(data.train_idx) == 0:
        raise ZeroharError(
            f"{source}: the training subjects {train_s} have no windows to train {stage} on (fold {d.fold!r}); "
            "use data with more subjects or another train.seed"
        )
    if t.max_val_windows is not None and len(data.val_idx) > t.max_val_windows:
        pick = np.random.default_rng([t.seed, 0x7A1]).choice(len(data.val_idx), t.max_val_windows, replace=False)
        data.val_idx = np.sort(data.val_idx[pick])
    logger.info(
        "%s: %d training windows (%d subjects), %d validation windows (%d subjects), %d test windows (subjects %s; "
        "seed %d, never trained or selected on)", source, len(data.train_idx), len(train_s), len(data.val_idx),
        len(val_s), len(data.test_idx), ", ".join(test_s) or "none", t.seed,
    )
    return data


def _check_window_for_model(cfg: Config, t: int, source: str) -> None:
    m = cfg.model
    if getattr(m, "encoder", "harnet") == "harnet" or cfg.stage == "pretrain":
        variant = getattr(m, "backbone", "harnet5")
        if VARIANTS.get(variant) != t:
            raise ZeroharError(
                f"{source}: windows have {t} samples, but the {variant} backbone needs {VARIANTS.get(variant)} "
                f"(set data.window_s={VARIANTS.get(variant, 150) / 30:g} or another model.backbone)"
            )

