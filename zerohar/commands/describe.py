"""`zerohar describe LABEL... --llm-model MODEL --out FILE.json`: body-motion descriptions of labels by an LLM.

Any OpenAI-compatible server works through --base-url (vLLM, Ollama, llama.cpp); the API key is read from
OPENAI_API_KEY and never written anywhere. Answers are cached, so a rerun sends no request and an interrupted
run resumes. The output is a label-description file (the format of metadata/labels/), usable by
`zerohar classify --labels-file` and `zerohar index`.
"""

from __future__ import annotations

import argparse
import logging

from zerohar.commands import deprecated_alias
from zerohar.errors import ZeroharError
from zerohar.text.labels import N_DESCRIPTIONS, check_output, clean_labels, read_labels_file, write_label_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("positional_labels", nargs="*", metavar="LABEL", help="activity labels, e.g. 'rock climbing'")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="activity labels (as in classify and index)")
    p.add_argument("--labels-file", metavar="FILE",
                   help="more labels: one label per line, a JSON list, or a label-description JSON")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--llm-model", metavar="M", help="model name on the server, e.g. gpt-4o-mini or llama3.1:8b")
    deprecated_alias(g, "--model", "--llm-model", "llm_model", metavar="M")
    p.add_argument("--base-url", metavar="URL",
                   help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL or "
                   "the OpenAI API, which needs OPENAI_API_KEY)")
    p.add_argument("--n", type=int, default=N_DESCRIPTIONS, help="descriptions per label (default %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="label-description file to write")
    p.add_argument("--update", action="store_true", help="merge into an existing --out file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default %(default)s)")
    p.add_argument("--retries", type=int, default=5,
                   help="retries after a rate limit, server error or timeout (default %(default)s)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="seconds before the first retry, doubled each time (default %(default)s)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the server's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from zerohar.text.describe import DescribeOptions, describe_labels, describe_provenance  # heavy: openai

    if getattr(args, "verbose", 0) < 2:
        # The openai client's HTTP library logs every request at INFO; beside a progress bar that is noise.
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
    given = list(args.positional_labels) + list(args.labels or [])
    labels = clean_labels(given) if given else []
    if args.labels_file:
        labels += read_labels_file(args.labels_file)[0]
    if not labels:
        raise ZeroharError("no labels given: pass LABEL arguments or --labels-file FILE")
    labels = clean_labels(labels, source="the labels given")
    for flag, value, low in (("--retries", args.retries, 0), ("--timeout", args.timeout, 1e-3)):
        if value < low:
            raise ZeroharError(f"{flag} must be at least {low:g}, found {value:g}")
    if args.backoff < 0:
        raise ZeroharError(f"--backoff must be at least 0, found {args.backoff:g}")
    check_output(args.out, update=args.update, force=args.force)  # before any request is paid for
    options = DescribeOptions(
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        max_backoff=max(30.0, args.backoff),
        concurrency=args.concurrency,
        temperature=args.temperature,
        progress=not args.no_progress,
    )
    result = describe_labels(labels, args.llm_model, base_url=args.base_url, n=args.n, options=options)
    written = write_label_file(
        args.out, describe_provenance(args.llm_model, args.base_url, args.n), result, update=args.update,
        force=args.force,
    )
    print(
        f"wrote {args.n} descriptions for each of {_count(len(result), 'label')} to {args.out} "
        f"(the file now has {_count(len(written), 'label')})"
    )
    return 0


def _count(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"
