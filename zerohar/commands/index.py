"""`zerohar index`: build a label index (faiss) for a model from label names and descriptions."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="RUN", help="a finished Stage II run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", nargs="+", metavar="LABEL", help="activity labels")
    src.add_argument("--labels-file", metavar="F",
                     help="one label per line, or a label-description JSON (as `zerohar describe` writes)")
    src.add_argument("--dataset", metavar="NAME", help="every label of a shipped dataset (metadata/labels/NAME.json)")
    p.add_argument("--describe", action="store_true", help="ask an LLM for descriptions of labels that have none")
    p.add_argument("--llm-model", metavar="M", help="LLM for --describe")
    p.add_argument("--base-url", metavar="URL", help="OpenAI-compatible server for --describe")
    p.add_argument("--out", required=True, metavar="DIR", help="index directory to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing index directory")


def run(args: argparse.Namespace) -> int:
    from zerohar.inference.classify import build_label_index

    index = build_label_index(
        args.model, args.out, labels=args.labels, labels_file=args.labels_file, dataset=args.dataset,
        describe=args.describe, llm_model=args.llm_model, base_url=args.base_url, force=args.force,
    )
    n_desc = len(index.description_texts)
    print(f"label index with {len(index)} labels ({n_desc} descriptions) -> {args.out}")
    return 0
