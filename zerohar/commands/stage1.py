"""`zerohar stage1`: Stage I, align each channel's embedding with the text of its sensor context."""

from __future__ import annotations


def add_arguments(parser) -> None:
    from zerohar.config import add_training_arguments

    add_training_arguments(parser, "stage1")


def run(args) -> int:
    from zerohar.train.loop import summary_line, train_from_args

    out = train_from_args("stage1", args)
    print(summary_line(out))
    return 0
