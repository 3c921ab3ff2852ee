"""`zerohar pretrain`: self-supervised pretraining of the HARNet backbone (arrow of time, permutation, time warp).

Unlabelled windows are welcome. The run directory holds the backbone (`model.safetensors`, usable as
`--backbone-weights` of Stage I); `--export-released FILE.mdl` also writes it in the released HARNet key format.
"""

from __future__ import annotations

from zerohar.commands._training import add_training_arguments, train_from_args
from zerohar.io import check_output


def add_arguments(parser) -> None:
    add_training_arguments(parser, "pretrain")
    parser.add_argument("--export-released", metavar="FILE.mdl",
                        help="also write the best backbone in the released HARNet format (module.feature_extractor.*)")


def run(args) -> int:
    from zerohar.train.loop import export_backbone, summary_line  # heavy: torch

    if args.export_released:
        check_output(args.export_released, force=args.force)  # before training, not after
    out = train_from_args("pretrain", args)
    print(summary_line(out))
    if args.export_released:
        path = export_backbone(out, args.export_released, force=args.force)
        print(f"backbone exported in the released HARNet format -> {path}")
    return 0
