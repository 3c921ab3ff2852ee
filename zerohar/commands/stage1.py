"""`zerohar stage1`: Stage I, align each channel's embedding with the text of its sensor context."""

from __future__ import annotations

from zerohar.commands._training import add_training_arguments, run_stage


def add_arguments(parser) -> None:
    add_training_arguments(parser, "stage1")


def run(args) -> int:
    return run_stage("stage1", args)
