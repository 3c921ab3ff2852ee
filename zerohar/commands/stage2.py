"""`zerohar stage2`: Stage II, align window embeddings with label descriptions of the seen classes."""

from __future__ import annotations


def add_arguments(parser) -> None:
    from zerohar.config import add_training_arguments

    add_training_arguments(parser, "stage2")


def run(args) -> int:
    from zerohar.train.loop import summary_line, train_from_args

    out = train_from_args("stage2", args)
    print(summary_line(out))
    return 0
