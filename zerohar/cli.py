"""`zerohar <command>`: the command line. Thin: each command lives in `zerohar/commands/<name>.py`, which
declares its arguments (`add_arguments(parser)`) and calls the library (`run(args) -> int`).

A :class:`~zerohar.errors.ZeroharError` (bad user input) is printed as one line, without a traceback, and
the process exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import signal
import sys
import threading

from zerohar import __version__
from zerohar.errors import ZeroharError

#: command -> one-line help. The module `zerohar.commands.<command>` implements it.
COMMANDS = {
    "prepare": "read a dataset's raw files into a cached window set (.npz)",
    "describe": "write activity-label descriptions with an LLM (OpenAI-compatible API)",
    "pretrain": "self-supervised pretraining of the HARNet backbone (SSL pretext tasks or RelCon)",
    "stage1": "Stage I: align channel embeddings with sensor descriptions",
    "stage2": "Stage II: align window embeddings with label descriptions (seen classes)",
    "distill": "a smaller backbone trained to match a run's, for long recordings (classify/eval --distilled)",
    "eval": "zero-shot evaluation of a trained run on its fold's unseen classes",
    "probe": "linear-probe macro-F1 of a frozen backbone (random, SSL, RelCon, released) on any dataset",
    "benchmark": "every method of BENCHMARK.md on every fold and seed, one results table",
    "index": "build a label index (faiss) from label names and descriptions",
    "classify": "name the activities of a recording with any label text (zero-shot)",
    "speed": "throughput and memory benchmarks (fast path next to plain fp32)",
}


def configure_logging(verbosity: int = 0) -> None:
    """One stderr handler for every logger: WARNING by default, INFO with `-v`, DEBUG with `-vv`.

    The level sits on the handler, so a library that raises its loggers' level (training does, for the run's
    log.txt) still shows the terminal only what was asked for.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_zerohar", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._zerohar = True
    root.addHandler(handler)
    root.setLevel(min(level, root.level) if root.level != logging.NOTSET else level)


def _add_verbosity(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="more messages: -v for progress notes (INFO), -vv for debugging (DEBUG)")


def _add_command(sub, name: str, load: bool) -> None:
    help_text = COMMANDS[name]
    p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    _add_verbosity(p, argparse.SUPPRESS)  # `zerohar CMD -v` as well as `zerohar -v CMD`
    if load:
        _module(name).add_arguments(p)


def build_parser(load_commands: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerohar",
        description="Zero-shot human activity recognition from wearable inertial sensors. "
        "Run `zerohar COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"zerohar {__version__}")
    _add_verbosity(parser, 0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is None or name == only:
            _add_command(sub, name, load_commands)
    return parser


def _module(name: str):
    return importlib.import_module(f"zerohar.commands.{name}")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every `finally` runs: temporary files are removed as on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_raises():
    """While a command runs, SIGTERM (a scheduler's or `kill`'s stop) raises :class:`Terminated` instead of
    ending the process on the spot; the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _non_finite(parser: argparse.ArgumentParser, args) -> tuple[str, str] | None:
    """The first number option given as nan or inf (argparse's `float` accepts both; no zerohar option means
    them), as (flag, value)."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = sub.choices.get(args.command) if sub is not None else None
    for action in command._actions if command is not None else ():
        if action.type is float and action.option_strings:
            values = getattr(args, action.dest, None)
            for v in values if isinstance(values, list) else [values]:
                if isinstance(v, float) and not math.isfinite(v):
                    return action.option_strings[0], str(v)
    return None


def _os_error(e: OSError) -> str:
    where = f" {e.filename}" if getattr(e, "filename", None) else ""
    return f"cannot access{where}: {(e.strerror or str(e)).lower()}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen command's module is imported (torch is slow to import); `zerohar --help` imports none.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        parser = build_parser(only=command)
    else:
        parser = build_parser(load_commands=False)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    bad = _non_finite(parser, args)
    if bad:
        print(f"zerohar {args.command}: error: {bad[0]} must be a finite number, found {bad[1]}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    try:
        with _sigterm_raises():
            return int(_module(args.command).run(args) or 0)
    except ZeroharError as e:
        print(f"zerohar {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # A file the user named cannot be read or written (permissions, a full disk, a read-only folder): one
        # sentence naming it, not a traceback. Outputs are written atomically, so nothing half-written remains.
        print(f"zerohar {args.command}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zerohar {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"zerohar {args.command}: terminated (SIGTERM); no output was left half-written", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
