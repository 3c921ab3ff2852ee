"""`zerohar <command>`: the command line. Thin: each command lives in `zerohar/commands/<name>.py`, which
declares its arguments (`add_arguments(parser)`) and calls the library (`run(args) -> int`).

A :class:`~zerohar.errors.ZeroharError` (bad user input) is printed as one line, without a traceback, and
the process exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from zerohar import __version__
from zerohar.errors import ZeroharError

#: command -> one-line help. The module `zerohar.commands.<command>` implements it.
COMMANDS = {
    "prepare": "read a dataset's raw files into a cached window set (.npz)",
    "describe": "write activity-label descriptions with an LLM (OpenAI-compatible API)",
    "pretrain": "self-supervised pretraining of the HARNet backbone",
    "stage1": "Stage I: align channel embeddings with sensor descriptions",
    "stage2": "Stage II: align window embeddings with label descriptions (seen classes)",
    "eval": "zero-shot evaluation of a trained run on its fold's unseen classes",
    "benchmark": "every method of BENCHMARK.md on every fold and seed, one results table",
    "index": "build a label index (faiss) from label names and descriptions",
    "classify": "name the activities of a recording with any label text (zero-shot)",
    "speed": "throughput and memory benchmarks (fast path next to plain fp32)",
}


def build_parser(load_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerohar",
        description="Zero-shot human activity recognition from wearable inertial sensors. "
        "Run `zerohar COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"zerohar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if load_commands:
            _module(name).add_arguments(p)
    return parser


def _module(name: str):
    return importlib.import_module(f"zerohar.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen command's module is imported (torch is slow to import); `zerohar --help` imports none.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load_commands=False)
    if command in COMMANDS:
        parser = argparse.ArgumentParser(prog="zerohar", description=parser.description)
        parser.add_argument("--version", action="version", version=f"zerohar {__version__}")
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        p = sub.add_parser(command, help=COMMANDS[command], description=COMMANDS[command][0].upper()
                           + COMMANDS[command][1:] + ".")
        _module(command).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(_module(args.command).run(args) or 0)
    except ZeroharError as e:
        print(f"zerohar {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zerohar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
