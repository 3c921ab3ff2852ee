"""`zerohar index`: build a label index (faiss) for a model from label names and descriptions."""

from __future__ import annotations

import argparse

from zerohar.commands import add_label_arguments, add_llm_arguments, add_progress_argument, add_run_argument
from zerohar.models import resolve_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p, "a finished Stage II run directory: the model whose joint space the index lives in "
                     "(default: the shipped general model)", required=False)
    add_label_arguments(p, dataset=True)
    p.add_argument("--describe", action="store_true", help="ask an LLM for descriptions of labels that have none")
    add_llm_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="index directory to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing index directory")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from zerohar.inference.classify import build_label_index  # heavy: torch, faiss

    index = build_label_index(
        resolve_model(args.run), args.out, labels=args.labels, labels_file=args.labels_file, dataset=args.dataset,
        describe=args.describe, llm_model=args.llm_model, base_url=args.base_url, force=args.force,
        progress=not args.no_progress,
    )
    n_desc = len(index.description_texts)
    print(f"label index with {len(index)} labels ({n_desc} descriptions) -> {args.out}")
    return 0
