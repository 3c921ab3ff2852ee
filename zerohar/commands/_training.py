"""The flags every training command shares (`zerohar pretrain|stage1|stage2`, `stage1/train.py`, ...), and how
they become a resolved :class:`~zerohar.config.Config` and a run."""

from __future__ import annotations

from pathlib import Path

from zerohar.commands import deprecated_alias
from zerohar.config import (
    PRECISIONS,
    PRETRAIN_METHODS,
    VARIANTS,
    Config,
    default_out_dir,
    merge_settings,
    parse_set,
    resolve_config,
    split_sources,
)
from zerohar.errors import ZeroharError


def add_training_arguments(parser, stage: str) -> None:
    """The flags every training command shares (`zerohar pretrain|stage1|stage2`, `stage1/train.py`, ...)."""
    g = parser.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="dataset name (metadata/folds/NAME.yaml); default hapt (embedded). Several, "
                     "comma-separated (hapt,shoulder,spswhar,uschad), train one model on all of them at once, "
                     "every class of each (per-dataset folds and roots: a --config YAML with data.sources)")
    src.add_argument("--data", metavar="FILE.npz", nargs="+",
                     help="window set(s) written by `zerohar prepare` (your own data); several train at once")
    g.add_argument("--root", metavar="DIR", help="folder of the raw dataset (several datasets: the folder that holds "
                   "each dataset's folder, e.g. ../shared/data)")
    g.add_argument("--folds", metavar="FILE.yaml", help="folds file (default metadata/folds/<dataset>.yaml)")
    g.add_argument("--fold", help="fold whose unseen classes are held out" + (" (optional)" if stage == "pretrain"
                                                                                else " (default fold1)"))
    if stage != "pretrain":
        g.add_argument("--descriptions", metavar="FILE.json", help="label descriptions (default: the dataset's)")
    if stage == "stage2":
        g.add_argument("--label-map", metavar="FILE.yaml", help="several datasets: classes that are one label "
                       "(`uschad/walking forward: walking`; metadata/label_map.example.yaml)")
    g = parser.add_argument_group("model")
    if stage in ("pretrain", "stage1"):
        g.add_argument("--backbone", choices=tuple(VARIANTS), help="HARNet variant (default harnet5: 5 s windows)")
        weights_help = {
            "pretrain": "backbone weights to continue from: a released HARNet file (.mdl) or a pretrain run",
            "stage1": "backbone weights: a released HARNet file (.mdl), a pretrain run, or none (random)",
        }[stage]
        g.add_argument("--backbone-weights", dest="init", metavar="FILE", help=weights_help)
        if stage == "pretrain":
            g.add_argument("--method", choices=PRETRAIN_METHODS,
                           help="ssl: SSL-Wearables' pretext tasks (default); motif-distance: train RelCon's "
                           "learnable motif distance; relcon: relative contrastive pretraining ranked by a motif "
                           "distance")
            g.add_argument("--distance", metavar="RUN",
                           help="--method relcon: the finished motif-distance run that ranks the candidates")
        deprecated_alias(g, "--init", "--backbone-weights", "init", metavar="FILE")
    else:
        g.add_argument("--stage1", dest="init", metavar="RUN",
                       help="the Stage I run to start from (without it: Stage II without Stage I)")
        deprecated_alias(g, "--init", "--stage1", "init", metavar="RUN")
        g.add_argument("--backbone-weights", dest="backbone_init", metavar="FILE",
                       help="without --stage1: backbone weights, a released HARNet file (.mdl) or a pretrain run "
                       "(default random)")
        deprecated_alias(g, "--backbone-init", "--backbone-weights", "backbone_init", metavar="FILE")
        g.add_argument("--supervised", action="store_true",
                       help="train on every class with a subject-disjoint test split (the benchmark's upper bound)")
    g.add_argument("--allow-transductive-init", action="store_true",
                   help="accept starting weights that saw this fold's unseen classes or this run's test subjects "
                   "(refused by default; the run is then marked transductive)")
    g = parser.add_argument_group("training")
    g.add_argument("--config", metavar="YAML", help="settings file (the shape of a run's config.yaml)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="any setting, e.g. --set train.lr=3e-4 (repeatable)")
    g.add_argument("--epochs", type=int, metavar="N",
                   help="train exactly N passes over the training windows (default: the length adapts to the data: "
                   "early stopping on the validation subjects; see --set train.max_steps=N, train.patience=N)")
    g.add_argument("--batch-size", type=int, metavar="N", help="global batch size (split over torchrun processes)")
    g.add_argument("--lr", type=float, metavar="LR", help="peak learning rate of AdamW (after warm-up)")
    g.add_argument("--seed", type=int, metavar="N",
                   help="seed of the subject split, shuffling, augmentation and initialisation (default 0)")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="auto: bf16 autocast where the CPU has native bf16 and bf16 measured faster than fp32 here "
                        "(timed once per machine)")
    g = parser.add_argument_group("run")
    g.add_argument("--out", metavar="RUN", help="run directory (default runs/<stage>/<dataset>-<fold>)")
    g.add_argument("--resume", action="store_true", help="continue an unfinished run in --out")
    g.add_argument("--force", action="store_true", help="overwrite a run in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def overrides_from_args(args) -> dict:
    """The explicit settings of parsed training flags (flags not given do not override anything)."""
    over: dict = {}

    def put(section: str | None, key: str, value) -> None:
        if value is None:
            return
        (over.setdefault(section, {}) if section else over)[key] = value

    sources = _sources_from_args(args)
    if sources is not None:
        over["data"] = {"sources": sources}
    elif getattr(args, "data", None) is not None:
        data = args.data[0] if isinstance(args.data, list) else args.data
        over["data"] = {"data": data, "dataset": getattr(args, "dataset", None)}
    else:
        put("data", "dataset", getattr(args, "dataset", None))
    for key in ("root", "folds", "fold", "descriptions"):
        if sources is None:
            put("data", key, getattr(args, key, None))
    put("data", "label_map", getattr(args, "label_map", None))
    put("model", "backbone", getattr(args, "backbone", None))
    put("train", "pretrain_method", getattr(args, "method", None))
    put("train", "relcon_distance", getattr(args, "distance", None))
    put(None, "init", getattr(args, "init", None))
    put(None, "backbone_init", getattr(args, "backbone_init", None))
    if getattr(args, "allow_transductive_init", False):
        put(None, "allow_transductive_init", True)
    for key in ("epochs", "batch_size", "lr", "seed", "precision"):
        put("train", key, getattr(args, key, None))
    return merge_settings(over, parse_set(getattr(args, "set", []) or []), "command line")


def _sources_from_args(args) -> list[dict] | None:
    """`--dataset a,b` / `--data a.npz b.npz` as `data.sources` (None for one source).

    With several sources `--root DIR` is the folder holding each dataset's folder; `--fold`, `--folds` and
    `--descriptions` are per source, so they are refused here (a --config YAML with data.sources sets them)."""
    names = split_sources(getattr(args, "dataset", None))
    files = list(getattr(args, "data", None) or [])
    if len(names) < 2 and len(files) < 2:
        return None
    for flag in ("fold", "folds", "descriptions"):
        if getattr(args, flag, None) is not None:
            raise ZeroharError(f"--{flag} names one dataset's file or fold; with several datasets give each its own "
                               "in a --config YAML (data.sources: [{dataset: hapt, fold: fold1}, ...])")
    if files:
        if getattr(args, "root", None) is not None:
            raise ZeroharError("--root is for raw datasets; window sets (--data) need none")
        return [{"data": f} for f in files]
    root = getattr(args, "root", None)
    if root is None:
        return [{"dataset": n} for n in names]
    from zerohar.data.sources import dataset_roots  # the source registry: only for --root with several datasets

    return [{"dataset": n, "root": d} for n, d in dataset_roots(names, root).items()]


def config_from_args(stage: str, args) -> Config:
    """Resolve the config of a training command from its parsed flags."""
    return resolve_config(stage, config_file=getattr(args, "config", None), overrides=overrides_from_args(args))


def train_from_args(stage: str, args) -> Path:
    """What `zerohar pretrain|stage1|stage2` and the stage scripts do with their parsed flags."""
    if stage == "stage2" and getattr(args, "supervised", False):
        stage = "supervised"
    cfg = config_from_args(stage, args)
    out = Path(args.out) if getattr(args, "out", None) else default_out_dir(cfg)
    from zerohar.train.loop import train_stage  # heavy: torch

    return train_stage(stage, cfg, out, force=args.force, resume=args.resume, progress=not args.no_progress)


def run_stage(stage: str, args) -> int:
    """What `zerohar stage1|stage2` do: train, then one summary line."""
    from zerohar.train.loop import summary_line  # heavy: torch

    print(summary_line(train_from_args(stage, args)))
    return 0
