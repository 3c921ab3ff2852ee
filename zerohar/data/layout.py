"""Channels and sensor layouts: what each column of a recording measures, and where.

A :class:`Channel` is one column: sensor kind, axis, body placement, device and unit. Channels that share
sensor, placement and device and cover x, y and z form a :class:`Sensor` (a triad). A :class:`SensorLayout`
is the ordered list of sensors of a recording; in canonical form the channels of a recording are stored
sensor by sensor, x then y then z, so a window `(C, T)` reshapes to `(S, 3, T)`.

Layout files (`metadata/sensors/<dataset>.yaml`, or a user's own) look like::

    name: hapt
    channels:
      - {column: acc_x, sensor: acc, axis: x, placement: waist, device: smartphone, unit: g}
      ...
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_yaml, load_yaml

SENSOR_KINDS = ("acc", "gyro", "mag")
AXES = ("x", "y", "z")
#: Units each sensor kind may be declared in; the first is canonical.
UNITS = {
    "acc": ("g", "m/s^2"),
    "gyro": ("rad/s", "deg/s"),
    "mag": ("uT", "mT", "gauss"),
}
SENSOR_NAMES = {"acc": "accelerometer", "gyro": "gyroscope", "mag": "magnetometer"}


@dataclass(frozen=True)
class Channel:
    """One signal column."""

    sensor: str  # one of SENSOR_KINDS
    axis: str  # x, y or z
    placement: str  # e.g. "waist", "left wrist", "right trouser pocket"
    device: str  # e.g. "smartphone", "smartwatch", "IMU"
    unit: str  # declared unit of the raw column, see UNITS
    column: str = ""  # column name in the raw file, if any

    def __post_init__(self):
        if self.sensor not in SENSOR_KINDS:
            raise ZeroharError(
                f"unknown sensor kind {self.sensor!r} for channel {self.column or self.axis!r}: "
                f"expected one of {', '.join(SENSOR_KINDS)}"
            )
        if self.axis not in AXES:
            raise ZeroharError(f"unknown axis {self.axis!r} for channel {self.column!r}: expected x, y or z")
        if self.unit not in UNITS[self.sensor]:
            raise ZeroharError(
                f"unknown unit {self.unit!r} for {self.sensor} channel {self.column or self.axis!r}: "
                f"expected one of {', '.join(UNITS[self.sensor])}"
            )

    @property
    def sensor_key(self) -> tuple[str, str, str]:
        return (self.sensor, self.placement, self.device)


@dataclass(frozen=True)
class Sensor:
    """A triad: three channels (x, y, z) of one sensor kind on one device at one placement."""

    sensor: str
    placement: str
    device: str
    unit: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.sensor, self.placement, self.device)

    def channels(self, unit: str | None = None) -> list[Channel]:
        u = unit or self.unit
        return [Channel(self.sensor, a, self.placement, self.device, u) for a in AXES]


@dataclass(frozen=True)
class SensorLayout:
    """Ordered sensors of a recording; channel `3*s + a` is axis `a` of sensor `s` (canonical order)."""

    sensors: tuple[Sensor, ...]
    name: str = ""
    columns: tuple[str, ...] = field(default=())  # raw column names in canonical order, if known
    source: str = field(default="", compare=False)  # the layout file it was read from, for messages

    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    @property
    def n_channels(self) -> int:
        return 3 * len(self.sensors)

    @property
    def channels(self) -> list[Channel]:
        out = []
        for i, s in enumerate(self.sensors):
            for j, a in enumerate(AXES):
                col = self.columns[3 * i + j] if self.columns else ""
                out.append(Channel(s.sensor, a, s.placement, s.device, s.unit, col))
        return out

    def canonical(self) -> SensorLayout:
        """The same layout with every unit canonical (g, rad/s, uT): what transforms produce."""
        return SensorLayout(
            tuple(Sensor(s.sensor, s.placement, s.device, UNITS[s.sensor][0]) for s in self.sensors),
            self.name,
            self.columns,
            self.source,
        )

    def select(self, keys: list[tuple[str, str, str]]) -> SensorLayout:
        """A sub-layout with the sensors whose (sensor, placement, device) key is in `keys`, in this order."""
        idx = [i for i, s in enumerate(self.sensors) if s.key in set(keys)]
        cols = tuple(c for i in idx for c in self.columns[3 * i : 3 * i + 3]) if self.columns else ()
        return SensorLayout(tuple(self.sensors[i] for i in idx), self.name, cols, self.source)

    def channel_indices(self, keys: list[tuple[str, str, str]]) -> list[int]:
        """Channel indices (canonical order) of the sensors with these keys."""
        return [3 * i + a for i, s in enumerate(self.sensors) if s.key in set(keys) for a in range(3)]

    # ------------------------------------------------------------------ construction / (de)serialisation
    @classmethod
    def from_channels(cls, channels: list[Channel], name: str = "", source: str = "layout") -> SensorLayout:
        """Group channels into triads (sensor, placement, device); every triad must have x, y and z once.

        Returns the layout and keeps each channel's column name in canonical order.
        """
        groups: dict[tuple[str, str, str], dict[str, Channel]] = {}
        for ch in channels:
            g = groups.setdefault(ch.sensor_key, {})
            if ch.axis in g:
                raise ZeroharError(
                    f"{source}: {ch.sensor} at {ch.placement} on {ch.device} has two {ch.axis}-axis channels "
                    f"({g[ch.axis].column!r} and {ch.column!r})"
                )
            g[ch.axis] = ch
        sensors, cols = [], []
        for key, g in groups.items():
            missing = [a for a in AXES if a not in g]
            if missing:
                raise ZeroharError(
                    f"{source}: {key[0]} at {key[1]} on {key[2]} lacks axis {', '.join(missing)}; "
                    "every sensor needs x, y and z"
                )
            units = {g[a].unit for a in AXES}
            if len(units) != 1:
                raise ZeroharError(f"{source}: {key[0]} at {key[1]} on {key[2]} mixes units {sorted(units)}")
            sensors.append(Sensor(key[0], key[1], key[2], units.pop()))
            cols.extend(g[a].column for a in AXES)
        return cls(tuple(sensors), name, tuple(cols) if all(cols) else ())

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": [_channel_dict(c) for c in self.channels]}

    @classmethod
    def from_dict(cls, d: dict, source: str = "layout") -> SensorLayout:
        """A layout from its file form (``name``, ``channels``); every problem is one ZeroharError naming
        `source`, the channel and the key."""
        if not isinstance(d, dict) or not isinstance(d.get("channels"), list) or not d["channels"]:
            raise ZeroharError(f"{source}: expected a mapping with a non-empty 'channels' list")
        extra = sorted(str(k) for k in set(d) - {"name", "channels"})
        if extra:
            raise ZeroharError(f"{source}: unknown top-level key {extra[0]!r}; expected only 'name' and 'channels'")
        if not isinstance(d.get("name", ""), str):
            raise ZeroharError(f"{source}: 'name' must be a text, found {type(d['name']).__name__}")
        required = ("sensor", "axis", "placement", "device", "unit")
        allowed = {"column", *required}
        chans = []
        for i, c in enumerate(d["channels"]):
            if not isinstance(c, dict):
                raise ZeroharError(f"{source}: channel {i} is not a mapping (found {type(c).__name__}); expected "
                                   f"keys {sorted(allowed)}")
            extra = sorted(str(k) for k in set(c) - allowed)
            missing = [k for k in required if k not in c]
            if extra or missing:
                raise ZeroharError(
                    f"{source}: channel {i} has unknown keys {extra} / lacks {missing}; expected keys "
                    f"{sorted(allowed)}"
                )
            for k in allowed & set(c):
                v = c[k]
                if not isinstance(v, str) or not v.strip() or "\n" in v:
                    raise ZeroharError(f"{source}: channel {i}: {k!r} must be a non-empty one-line text, found "
                                       f"{v!r}")
            try:
                chans.append(Channel(c["sensor"], c["axis"], c["placement"].strip(), c["device"].strip(), c["unit"],
                                     c.get("column", "")))
            except ZeroharError as e:
                raise ZeroharError(f"{source}: channel {i}: {e}") from None
        named = [i for i, c in enumerate(d["channels"]) if "column" in c]
        if named and len(named) != len(chans):
            i = next(i for i in range(len(chans)) if i not in named)
            raise ZeroharError(
                f"{source}: channel {i} has no 'column' but other channels do; give every channel its column (or "
                "none, to find the columns by their names)"
            )
        seen: dict[str, int] = {}
        for i, ch in enumerate(chans):
            if ch.column and ch.column in seen:
                raise ZeroharError(
                    f"{source}: column {ch.column!r} is named by two channels ({seen[ch.column]} and {i}); expected "
                    "one channel per column"
                )
            seen.setdefault(ch.column, i)
        lay = cls.from_channels(chans, str(d.get("name", "")), source)
        return cls(lay.sensors, lay.name, lay.columns, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SensorLayout:
        return cls.from_dict(load_yaml(path, "sensor layout file"), f"sensor layout file {path}")

    def to_yaml(self, path: str | Path) -> None:
        atomic_write_yaml(path, self.to_dict())


def check_layout_flags(layout, placement: str | None, device: str | None) -> None:
    """A layout names the placement and device of every sensor, so --placement / --device cannot go with it
    (neither would silently win)."""
    given = [f for f, v in (("--placement", placement), ("--device", device)) if v is not None]
    if layout is not None and given:
        raise ZeroharError(
            f"give either --layout (its file names the placement and device of every sensor) or {' and '.join(given)}"
            ", not both"
        )
    for flag, v in (("--placement", placement), ("--device", device)):
        if v is not None and (not str(v).strip() or "\n" in str(v)):
            raise ZeroharError(f"{flag} must be a non-empty one-line text, found {v!r}")


def _channel_dict(c: Channel) -> dict:
    d = asdict(c)
    if not d["column"]:
        d.pop("column")
    return d
