"""zerohar: zero-shot human activity recognition from wearable inertial sensors."""

from __future__ import annotations

__version__ = "0.1.0"
