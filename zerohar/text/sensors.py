"""Sensor-context text: what each channel and each sensor of a layout is, in words.

Stage I aligns every channel's embedding with its :func:`axis_description` ("x-axis of an accelerometer in a
smartphone worn on the waist"); Stage II gives every sensor (triad) its :func:`sensor_description`
("accelerometer in a smartwatch worn on the left wrist") as context. The wording lives in
``metadata/templates/sensors.yaml`` so it can be changed without touching code; the text of a channel depends
only on its sensor kind, axis, placement and device (never on the unit or the raw column name), so the same
sensor reads the same in every dataset.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path

from zerohar.data.layout import AXES, SENSOR_NAMES, Channel, Sensor, SensorLayout
from zerohar.errors import ZeroharError
from zerohar.io import load_yaml
from zerohar.paths import metadata_dir

_FIELDS = {"axis", "sensor", "a_sensor", "device", "a_device", "placement"}


def default_templates_path() -> Path:
    """`metadata/templates/sensors.yaml`."""
    return metadata_dir() / "templates" / "sensors.yaml"


@functools.lru_cache(maxsize=8)
def load_sensor_templates(path: str | Path | None = None) -> dict:
    """Read and check a sensor-template file (default: the shipped one).

    Args:
        path: A YAML file of the format of `metadata/templates/sensors.yaml`; None for that file.

    Returns:
        The parsed templates (a dict; treat it as read-only, it is shared).

    Raises:
        ZeroharError: the file is missing, not YAML, lacks a key or uses an unknown placeholder.
    """
    p = Path(path) if path is not None else default_templates_path()
    d = load_yaml(p, "sensor template file")
    need = {"axis", "sensor", "sensor_names", "placements", "articles"}
    if not isinstance(d, dict) or not need <= set(d):
        found = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise ZeroharError(f"sensor template file {p}: expected the keys {sorted(need)}, found {found}")
    for key in ("axis", "sensor"):
        _check_template(p, key, d[key])
    missing = [k for k in SENSOR_NAMES if not isinstance(d["sensor_names"], dict) or k not in d["sensor_names"]]
    if missing:
        raise ZeroharError(f"sensor template file {p}: 'sensor_names' lacks {missing}")
    pl = d["placements"]
    if not isinstance(pl, dict) or not isinstance(pl.get("default"), str) or not isinstance(pl.get("rules", []), list):
        raise ZeroharError(f"sensor template file {p}: 'placements' needs a 'default' phrase and a 'rules' list")
    for i, rule in enumerate(pl.get("rules") or []):
        if not isinstance(rule, dict) or set(rule) != {"contains", "phrase"}:
            raise ZeroharError(
                f"sensor template file {p}: placements rule {i} must have exactly the keys 'contains' and 'phrase'"
            )
    return d


def _check_template(path: Path, key: str, tpl) -> None:
    if not isinstance(tpl, str) or not tpl.strip():
        raise ZeroharError(f"sensor template file {path}: {key!r} must be a non-empty string")
    used = {f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None}
    unknown = used - _FIELDS
    if unknown:
        raise ZeroharError(
            f"sensor template file {path}: {key!r} uses unknown placeholders {sorted(unknown)}; "
            f"expected some of {sorted(_FIELDS)}"
        )


def with_article(phrase: str, templates: dict | None = None) -> str:
    """`phrase` preceded by "a" or "an" ("an accelerometer", "a smartwatch", "an MPU-9250 board")."""
    t = templates or load_sensor_templates()
    words = phrase.strip().split()
    if not words:
        return phrase
    first = words[0].lower()
    arts = t["articles"] or {}
    if first[0] in "aeiou":
        an = not any(first.startswith(w) for w in arts.get("a_prefixes") or [])
    else:
        lead = re.match(r"[a-z0-9]*", first).group(0)  # "mpu-9250" -> "mpu"
        an = lead in {str(w).lower() for w in arts.get("an_words") or []}
    return f"{'an' if an else 'a'} {phrase.strip()}"


def placement_phrase(placement: str, templates: dict | None = None) -> str:
    """How a device sits at a placement: "worn on the left wrist", "carried in the right trouser pocket"."""
    t = templates or load_sensor_templates()
    pl = t["placements"]
    placement = " ".join(placement.split())
    first = placement.split()[0].lower() if placement else ""
    if first in {str(w).lower() for w in pl.get("prepositions") or []}:
        return placement
    low = placement.lower()
    for rule in pl.get("rules") or []:
        if re.search(rf"\b{re.escape(str(rule['contains']).lower())}\b", low):
            return str(rule["phrase"]).format(placement=placement)
    return str(pl["default"]).format(placement=placement)


def _fields(sensor: str, axis: str, placement: str, device: str, t: dict) -> dict[str, str]:
    name = str(t["sensor_names"][sensor])
    device = " ".join(device.split())
    return {
        "axis": axis,
        "sensor": name,
        "a_sensor": with_article(name, t),
        "device": device,
        "a_device": with_article(device, t),
        "placement": placement_phrase(placement, t),
    }


def axis_description(ch: Channel, templates: dict | None = None) -> str:
    """Stage I text of one channel, e.g. "x-axis of an accelerometer in a smartphone worn on the waist".

    Args:
        ch: The channel (its sensor kind, axis, placement and device are used).
        templates: Parsed templates (:func:`load_sensor_templates`); None for the shipped ones.
    """
    t = templates or load_sensor_templates()
    return t["axis"].format(**_fields(ch.sensor, ch.axis, ch.placement, ch.device, t))


def sensor_description(s: Sensor, templates: dict | None = None) -> str:
    """Stage II context text of one sensor (triad), e.g. "accelerometer in a smartwatch worn on the left wrist".

    Args:
        s: The sensor (a :class:`Sensor`, or a :class:`Channel` for the sensor it belongs to).
        templates: Parsed templates (:func:`load_sensor_templates`); None for the shipped ones.
    """
    t = templates or load_sensor_templates()
    return t["sensor"].format(**_fields(s.sensor, AXES[0], s.placement, s.device, t))


def axis_descriptions(layout: SensorLayout, templates: dict | None = None) -> list[str]:
    """One Stage I text per channel of `layout`, in canonical channel order (length C = 3 * S)."""
    return [axis_description(c, templates) for c in layout.channels]


def sensor_descriptions(layout: SensorLayout, templates: dict | None = None) -> list[str]:
    """One Stage II context text per sensor of `layout`, in layout order (length S)."""
    return [sensor_description(s, templates) for s in layout.sensors]
