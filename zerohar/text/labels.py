"""Activity-label descriptions: the texts Stage II aligns windows with and the label index searches.

A label-description file (``metadata/labels/<dataset>.json``, or one written by ``zerohar describe``) is::

    {"provenance": {"generator": ..., "instruction_version": ..., "date": ...},
     "labels": {"walking": ["legs swing forward in turn ...", ... 10 descriptions], ...}}

A label without descriptions falls back to its name in a few templates (``metadata/templates/labels.yaml``);
``zerohar describe`` (or ``classify --describe``) writes real ones.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_text, check_input_file, load_json, load_yaml, parse_json, read_input_text
from zerohar.io import check_output as io_check_output
from zerohar.paths import metadata_dir

logger = logging.getLogger(__name__)

#: Descriptions per label in the shipped files and the default of `zerohar describe`.
N_DESCRIPTIONS = 10

def labels_dir() -> Path:
    """`metadata/labels/`: the shipped description files, one per dataset."""
    return metadata_dir() / "labels"


def known_datasets() -> list[str]:
    """Datasets with a shipped label-description file, sorted."""
    return sorted(p.stem for p in labels_dir().glob("*.json"))


def normalize_label(label: str) -> str:
    """A label as stored: surrounding whitespace removed, inner runs of whitespace made one space."""
    return " ".join(str(label).split())


def _resolve(dataset_or_path: str | Path) -> Path:
    p = Path(dataset_or_path)
    if p.suffix.lower() == ".json" or p.is_file() or len(p.parts) > 1:
        if not p.is_file():
            raise ZeroharError(f"label description file {p} does not exist")
        return p
    q = labels_dir() / f"{dataset_or_path}.json"
    if not q.is_file():
        raise ZeroharError(
            f"no label descriptions for dataset {str(dataset_or_path)!r}: expected a .json file or one of "
            f"{', '.join(known_datasets()) or '(none shipped)'}"
        )
    return q


def read_label_file(path: str | Path) -> tuple[dict, dict[str, list[str]]]:
    """Read and validate a label-description file.

    Args:
        path: The JSON file.

    Returns:
        (provenance, labels): the provenance mapping ({} if absent) and label -> descriptions, in file order.

    Raises:
        ZeroharError: one sentence naming the file and what is wrong with it.
    """
    p = Path(path)
    return _validate(load_json(p, "label description file"), str(p))


def _validate(d, source: str) -> tuple[dict, dict[str, list[str]]]:
    expect = "a JSON object with a 'labels' mapping of label -> list of descriptions"
    if not isinstance(d, dict) or "labels" not in d:
        found = f"keys {sorted(d)}" if isinstance(d, dict) else f"a JSON {_json_type(d)}"
        raise ZeroharError(f"label description file {source}: expected {expect}, found {found}")
    extra = sorted(set(d) - {"labels", "provenance"})
    if extra:
        raise ZeroharError(f"label description file {source}: unexpected top-level keys {extra}; expected {expect}")
    prov = d.get("provenance", {})
    if not isinstance(prov, dict):
        raise ZeroharError(
            f"label description file {source}: 'provenance' must be an object, found a JSON {_json_type(prov)}"
        )
    labels = d["labels"]
    if not isinstance(labels, dict) or not labels:
        found = "an empty object" if isinstance(labels, dict) else f"a JSON {_json_type(labels)}"
        raise ZeroharError(f"label description file {source}: 'labels' must map labels to descriptions, found {found}")
    out: dict[str, list[str]] = {}
    for label, descs in labels.items():
        name = normalize_label(label)
        if not name:
            raise ZeroharError(f"label description file {source}: a label name is empty")
        if _LINE_BREAK.search(label):
            raise ZeroharError(f"label description file {source}: label {label!r} holds a line break or control "
                               "character; expected a one-line activity name")
        if name in out:
            raise ZeroharError(f"label description file {source}: label {name!r} appears twice")
        if (
            not isinstance(descs, list)
            or not descs
            or not all(isinstance(s, str) and s.strip() for s in descs)
        ):
            raise ZeroharError(
                f"label description file {source}: label {name!r} must have a non-empty list of non-empty "
                f"description strings, found {_describe_value(descs)}"
            )
        out[name] = [" ".join(s.split()) for s in descs]
    return prov, out


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number" if isinstance(v, (int, float)) else type(v).__name__
    )


def _describe_value(v) -> str:
    if isinstance(v, list):
        if not v:
            return "an empty array"
        bad = next(x for x in v if not (isinstance(x, str) and x.strip()))
        return f"an array holding {json.dumps(bad)}"
    return f"a JSON {_json_type(v)}"


def load_label_descriptions(dataset_or_path: str | Path) -> dict[str, list[str]]:
    """Label -> descriptions of a shipped dataset ("hapt") or of a label-description file.

    Args:
        dataset_or_path: A dataset name with a file in `metadata/labels/`, or the path of a JSON file in that
            format (e.g. written by `zerohar describe`).

    Returns:
        label -> list of descriptions, in file order.

    Raises:
        ZeroharError: unknown dataset, missing file, or a file not in the expected format.
    """
    return read_label_file(_resolve(dataset_or_path))[1]


@functools.lru_cache(maxsize=1)
def _label_templates() -> tuple[str, ...]:
    p = metadata_dir() / "templates" / "labels.yaml"
    d = load_yaml(p, "label template file")
    t = d.get("templates") if isinstance(d, dict) else None
    if not isinstance(t, list) or not t or not all(isinstance(s, str) and "{label}" in s for s in t):
        raise ZeroharError(f"label template file {p}: expected 'templates', a list of strings containing {{label}}")
    return tuple(t)


def template_descriptions(label: str) -> list[str]:
    """Fallback descriptions of a label without written ones: its name in each template of
    `metadata/templates/labels.yaml` ("a person is rock climbing.").

    Args:
        label: The activity label.

    Returns:
        One text per template (10), all distinct.
    """
    name = normalize_label(label)
    if not name:
        raise ZeroharError("an activity label is empty: expected a non-empty activity name")
    return list(dict.fromkeys(t.replace("{label}", name) for t in _label_templates()))


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, tuple[str, ...]]:
    """Every shipped file merged (a label shared by datasets has the same descriptions in each)."""
    merged: dict[str, tuple[str, ...]] = {}
    for name in known_datasets():
        for label, descs in load_label_descriptions(name).items():
            if label in merged and list(merged[label]) != descs:
                logger.debug("label %r has other descriptions in %s; keeping the first dataset's", label, name)
            merged.setdefault(label, tuple(descs))
    return merged


def _known_map(known) -> dict[str, list[str]]:
    if known is None:
        return {k: list(v) for k, v in _shipped().items()}
    if isinstance(known, (str, Path)):
        return load_label_descriptions(known)
    if isinstance(known, Mapping):
        return {normalize_label(k): list(v) for k, v in known.items()}
    if isinstance(known, Iterable):
        merged: dict[str, list[str]] = {}
        for k in known:
            for label, descs in _known_map(k).items():
                merged.setdefault(label, descs)
        return merged
    raise TypeError(f"known must be a dataset name, a path, a mapping or a list of these, not {type(known).__name__}")


def descriptions_for(labels: Iterable[str], known=None) -> dict[str, list[str]]:
    """Descriptions of each label: written ones where known, else :func:`template_descriptions`.

    Args:
        labels: Activity labels (duplicates are dropped, order kept).
        known: Where written descriptions come from: None = every shipped file; a dataset name or file path;
            a mapping label -> descriptions; or a list of these (earlier ones win). A label matches exactly,
            else ignoring case and repeated whitespace.

    Returns:
        label (exactly as given) -> descriptions, in the order of `labels`.

    Raises:
        ZeroharError: a label is empty.
    """
    if isinstance(labels, str):
        labels = [labels]
    table = _known_map(known)
    folded = {k.casefold(): k for k in table}
    out: dict[str, list[str]] = {}
    templated = []
    for i, raw in enumerate(labels):
        if not isinstance(raw, str) or not normalize_label(raw):
            raise ZeroharError(f"activity label {i + 1} is empty: expected a non-empty activity name")
        if raw in out:
            continue
        label = normalize_label(raw)
        hit = table.get(label)
        if hit is None and label.casefold() in folded:
            hit = table[folded[label.casefold()]]
        if hit is None:
            templated.append(label)
            hit = template_descriptions(label)
        out[raw] = list(hit)
    if templated:
        logger.info(
            "no written descriptions for %s; using the label name in templates (`zerohar describe` writes real ones)",
            ", ".join(repr(t) for t in templated),
        )
    return out


# ---------------------------------------------------------------------------------------------- label lists
#: Longest label accepted (an activity name, not a paragraph).
MAX_LABEL_CHARS = 200
#: Characters a label may not hold: line breaks and other control characters (tabs are whitespace).
_LINE_BREAK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def clean_labels(labels: Iterable[str], source: str = "--labels", *, at_least: int = 1) -> list[str]:
    """The one rule for a list of labels a user gives: whitespace normalised, each checked (a string, not
    empty, at most :data:`MAX_LABEL_CHARS` characters), repeats dropped ignoring case (the first spelling
    kept) with one warning naming them.

    Args:
        labels: raw labels.
        source: where they came from, for messages ("--labels", a file name).
        at_least: fewest distinct labels accepted (zero-shot classification needs two: with one, every
            window would get it).

    Raises:
        ZeroharError: a label that is not a string, empty or overlong; fewer than `at_least` labels.
    """
    out: list[str] = []
    first: dict[str, str] = {}
    repeated: Counter[str] = Counter()
    for i, raw in enumerate(labels, 1):
        if not isinstance(raw, str):
            raise ZeroharError(f"label {i} in {source} is a {type(raw).__name__}: expected an activity name")
        if _LINE_BREAK.search(raw):
            raise ZeroharError(f"label {i} in {source} ({raw[:60]!r}) holds a line break or control character: "
                               "expected a one-line activity name")
        label = normalize_label(raw)
        if not label:
            raise ZeroharError(f"label {i} in {source} is empty: expected a non-empty activity name")
        if len(label) > MAX_LABEL_CHARS:
            raise ZeroharError(
                f"label {i} in {source} has {len(label)} characters: expected an activity name of at most "
                f"{MAX_LABEL_CHARS}"
            )
        key = label.casefold()
        if key in first:
            repeated[first[key]] += 1
            continue
        first[key] = label
        out.append(label)
    if repeated:
        logger.warning(
            "%s: repeated labels used once: %s", source, ", ".join(f"{k!r} (x{n + 1})" for k, n in repeated.items())
        )
    if not out:
        raise ZeroharError(f"{source}: the label list is empty; expected at least {_labels(max(at_least, 1))}")
    if len(out) < at_least:
        raise ZeroharError(
            f"{source}: only {_labels(len(out), 'label')} ({', '.join(map(repr, out))}); zero-shot classification "
            f"needs at least {_labels(at_least, 'candidate label')}"
        )
    return out


def _labels(n: int, what: str = "activity label") -> str:
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return f"{words[n] if n < len(words) else n} {what}{'' if n == 1 else 's'}"


def read_labels_file(path: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """Labels, and their written descriptions if the file has any, from a file a user gives.

    The file is UTF-8 text with one label per line (blank lines and `#` comments skipped), a JSON list of
    labels, or a label-description file (as `zerohar describe` writes; its descriptions are checked and kept).

    Returns:
        (the cleaned labels in file order, label -> descriptions for the labels the file describes)

    Raises:
        ZeroharError: the file is missing, binary, not valid JSON, malformed or names no labels.
    """
    p = Path(path)
    expect = "expected UTF-8 text with one label per line, or a JSON list of labels"
    p = check_input_file(p, "labels file")
    try:
        text = read_input_text(p, "labels file")
    except ZeroharError as e:
        raise ZeroharError(f"{e}: {expect}") from None
    descs: dict[str, list[str]] = {}
    if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        d = parse_json(text, f"labels file {p}")
        if isinstance(d, dict) and isinstance(d.get("labels"), dict):
            _, descs = _validate(d, str(p))  # a label-description file: checked as such
            d = list(descs)
        elif isinstance(d, dict) and isinstance(d.get("labels"), list):
            extra = sorted(set(d) - {"labels", "provenance"})
            if extra:
                raise ZeroharError(f"labels file {p}: unexpected top-level keys {extra}; {expect}")
            d = d["labels"]
        if not isinstance(d, list):
            raise ZeroharError(f"labels file {p} holds a JSON {_json_type(d)}: {expect}")
        labels = d
    else:
        labels = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        labels = [ln for ln in labels if ln]
    if not labels:
        raise ZeroharError(f"labels file {p} names no labels: {expect}")
    return clean_labels(labels, source=str(p)), descs


# ---------------------------------------------------------------------------------------------- writing
def check_output(path: str | Path, update: bool = False, force: bool = False) -> None:
    """Refuse a label-file output early (before any work): :func:`zerohar.io.check_output`, and with `update`
    an existing file must be a valid label-description file (it will be merged into)."""
    p = io_check_output(path, force=force, update=update)
    if update and p.exists():
        read_label_file(p)


def write_label_file(
    path: str | Path,
    provenance: dict,
    labels: Mapping[str, list[str]],
    *,
    update: bool = False,
    force: bool = False,
) -> dict[str, list[str]]:
    """Write a label-description file atomically.

    Args:
        path: The .json file.
        provenance: Who wrote the descriptions, how and when.
        labels: label -> descriptions.
        update: Merge into an existing file: its labels are kept, these added (or replaced), and `provenance`
            is appended to the file's provenance under "updates" with the labels it covers.
        force: Overwrite an existing file (without `update`).

    Returns:
        The labels of the written file.

    Raises:
        ZeroharError: the file exists and neither `update` nor `force` is set, or the existing file is invalid.
    """
    p = Path(path)
    check_output(p, update, force)
    merged = {normalize_label(k): list(v) for k, v in labels.items()}
    prov = dict(provenance)
    if update and p.exists():
        old_prov, old = read_label_file(p)
        merged = {**old, **merged}
        if old_prov:
            prov = dict(old_prov)
            prov["updates"] = list(old_prov.get("updates", [])) + [{**provenance, "labels": list(labels)}]
    _validate({"provenance": prov, "labels": merged}, str(p))  # never write a file we would refuse to read
    text = json.dumps({"provenance": prov, "labels": merged}, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(p, text)
    return merged


