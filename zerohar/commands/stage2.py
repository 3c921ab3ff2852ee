"""`zerohar stage2`: Stage II, align window embeddings with label descriptions of the seen classes."""

from __future__ import annotations

from zerohar.commands._training import add_training_arguments, run_stage


def add_arguments(parser) -> None:
    add_training_arguments(parser, "stage2")


def run(args) -> int:
    return run_stage("stage2", args)
