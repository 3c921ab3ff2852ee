"""One module per `zerohar` command: `add_arguments(parser)` and `run(args) -> int`; thin doors into the library.

The options every command spells the same way live here, so one meaning has one flag name across commands:
`--run RUN` (a run directory), `--labels` / `--labels-file` (candidate labels), `--llm-model` (an LLM),
`--no-progress`. Old spellings stay one release as hidden aliases that print a one-line deprecation note.
"""

from __future__ import annotations

import argparse
import sys

from zerohar.config import PRECISIONS


class _Deprecated(argparse.Action):
    """Stores like the new flag, and says once on stderr that the old spelling is deprecated."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"zerohar: {option_string} is deprecated and will be removed in the next release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(group, old: str, new: str, dest: str, **kwargs) -> None:
    """Add the hidden flag `old`, which sets `dest` as `new` does and prints a deprecation note."""
    group.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS, **kwargs)


def add_run_argument(p: argparse.ArgumentParser, help: str, *, old: str | None = "--model", required: bool = True
                     ) -> None:
    """`--run RUN` (required unless `required=False`: then None means the shipped general model), with `old`
    as a deprecated alias."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--run", metavar="RUN", help=help)
    if old:
        deprecated_alias(g, old, "--run", "run", metavar="RUN")


def add_label_arguments(p: argparse.ArgumentParser, *, required: bool = True, index: bool = False,
                        dataset: bool = False) -> None:
    """The candidate labels, given the same way in describe, classify and index."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--labels", nargs="+", metavar="LABEL", help="activity labels, e.g. walking 'rock climbing'")
    g.add_argument("--labels-file", metavar="FILE",
                   help="one label per line, a JSON list, or a label-description JSON (as `zerohar describe` writes)")
    if dataset:
        g.add_argument("--dataset", metavar="NAME", help="every label of a shipped dataset (metadata/labels/*.json)")
    if index:
        g.add_argument("--index", metavar="DIR", help="a label index built by `zerohar index` for this run")


def add_llm_arguments(p: argparse.ArgumentParser, *, purpose: str = "for --describe") -> None:
    """`--llm-model` and `--base-url`: the OpenAI-compatible LLM that writes label descriptions."""
    p.add_argument("--llm-model", metavar="M", help=f"LLM {purpose} (e.g. gpt-4o-mini, llama3.1:8b)")
    p.add_argument("--base-url", metavar="URL",
                   help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL or the "
                   "OpenAI API, which needs OPENAI_API_KEY)")


#: `--precision int8` in `--help` (classify, eval): what it needs, what it costs, how it is calibrated.
INT8_HELP = ("int8 = the backbone in int8 on ONNX Runtime (needs pip install 'zerohar[onnx]'): about 2x fp32 "
             "per core on an AVX2 CPU for long recordings, the same label as fp32 on 99.6%% of the labelled HAPT "
             "windows and 97.5%% of the USC-HAD ones (fold1 runs; zero-shot macro-F1 0.589 vs 0.589 and 0.686 vs "
             "0.695), the input and first convolution kept in fp32; it calibrates its "
             "activation ranges on the input's own windows (classify: 256 spread over the recording's first "
             "2,048; no labels), which costs 5-15 s per recording, so short recordings run slower than fp32")


def add_inference_arguments(p: argparse.ArgumentParser, *, precision: str = "auto", int8: bool = False) -> None:
    """`--batch-size` and `--precision` of the inference path.

    Args:
        precision: the default: "auto" where speed matters (classify), "fp32" where the numbers are the
            result (eval, benchmark: a table must not depend on the CPU it was computed on).
        int8: offer `--precision int8` (the "less work per window" option, :data:`INT8_HELP`) where the input
            calibrates it (classify, eval); not where a table of many runs must be exact (benchmark).
    """
    p.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    why = {"auto": "auto = bf16 where the CPU has native bf16 and it measured faster than fp32 here (timed once "
                   "per machine; default), fp32 to force it",
           "fp32": "default fp32: an evaluation is exact and the same on every CPU; auto = bf16 where the CPU has "
                   "native bf16 and it measured faster here"}[precision]
    choices = PRECISIONS + (("int8",) if int8 else ())
    p.add_argument("--precision", choices=choices, default=precision,
                   help=f"inference precision: {why}" + (f"; {INT8_HELP}" if int8 else ""))


def add_distilled_argument(p: argparse.ArgumentParser) -> None:
    """`--distilled`: run the run's distilled backbone (`zerohar distill`) instead of its own (classify, eval)."""
    p.add_argument("--distilled", action="store_true",
                   help="run the smaller backbone `zerohar distill --run RUN` made (RUN/distilled/) in place of the "
                   "run's own, every other part of the model unchanged: less work per window for long recordings, "
                   "at the cost of some labels (compare `zerohar eval` with and without it); combines with "
                   "--precision")


def add_cascade_argument(p: argparse.ArgumentParser) -> None:
    """`--cascade`: the distilled backbone, checked by the run's own where it could change a label (classify)."""
    p.add_argument("--cascade", action="store_true",
                   help="run the distilled backbone (`zerohar distill`) on every window, then the run's own backbone "
                   "again on the windows whose label the smaller one could have got wrong: bounds on its error are "
                   "measured on 256 windows of the recording's start and on one window in 64 throughout (both "
                   "backbones run on those), no labels needed; info.json and the log "
                   "give the share checked again. Closer to the run's own labels than --distilled (99.6-99.9%% vs "
                   "95.4-99.1%% on two benchmark folds; 99.3-99.9%% of a week's), and faster than the run's own "
                   "backbone alone as far as few windows are close calls (a week: 2.0x with 14%% checked, 1.2x with "
                   "49%%, two trained runs)")


def check_precision(precision: str) -> None:
    """`--precision int8` without onnxruntime: the one-sentence error, before any work."""
    if precision == "int8":
        from zerohar.model.onnx_backend import require_onnxruntime  # heavy (torch): only when int8 is asked for

        require_onnxruntime("--precision int8")


def add_progress_argument(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
