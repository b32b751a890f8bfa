"""A noisy cable for the emulator: byte drops, byte corruption and latency, from a one-line spec.

``drop:0.01,corrupt:0.01,delay:5ms`` drops each byte with probability 0.01, replaces each with a
different random byte with probability 0.01, and delivers everything 5 ms late; the emulator
applies one :class:`Impairment` to each direction.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from firmware_bridge.errors import BridgeError

EXAMPLE = "drop:0.01,corrupt:0.01,delay:5ms"
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class FaultSpec:
    drop: float = 0.0  # probability per byte
    corrupt: float = 0.0  # probability per byte
    delay_s: float = 0.0

    def __str__(self) -> str:
        parts = [f"drop:{self.drop:g}", f"corrupt:{self.corrupt:g}", f"delay:{self.delay_s * 1e3:g}ms"]
        return ",".join(parts) if any((self.drop, self.corrupt, self.delay_s)) else "none"


def _seconds(text: str) -> float:
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    raise ValueError("needs a unit: us, ms or s")


def parse_faults(text: str) -> FaultSpec:
    """Parse a fault spec; a malformed item is a BridgeError naming it and the expected form."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition(":")
        try:
            if key in ("drop", "corrupt"):
                probability = float(value)
                if not 0.0 <= probability <= 1.0:
                    raise ValueError("must be a probability in [0, 1]")
                values[key] = probability
            elif key == "delay":
                values["delay_s"] = _seconds(value)
                if not 0.0 <= values["delay_s"] <= 10.0:
                    raise ValueError("must be between 0 and 10 s")
            else:
                raise ValueError("unknown fault; use drop, corrupt or delay")
        except ValueError as exc:
            raise BridgeError(f"bad --fault item {item!r}: {exc}; e.g. --fault {EXAMPLE}") from None
    return FaultSpec(**values)


class Impairment:
    """One direction of the link: bytes go in with :meth:`push`, come out of :meth:`pop` when due."""

    def __init__(self, spec: FaultSpec, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng
        self._queue: deque[tuple[float, bytes]] = deque()
        self.dropped = 0  # bytes
        self.corrupted = 0  # bytes

    def push(self, data: bytes, now: float) -> None:
        if self.spec.drop or self.spec.corrupt:
            raw = np.frombuffer(data, dtype=np.uint8)
            hit = self.rng.random(raw.size) < self.spec.corrupt
            raw = np.where(hit, raw ^ self.rng.integers(1, 256, raw.size, dtype=np.uint8), raw)
            keep = self.rng.random(raw.size) >= self.spec.drop
            self.corrupted += int(np.count_nonzero(hit & keep))
            self.dropped += int(raw.size - np.count_nonzero(keep))
            data = raw[keep].tobytes()
        if data:
            self._queue.append((now + self.spec.delay_s, data))

    def pop(self, now: float) -> bytes:
        out = bytearray()
        while self._queue and self._queue[0][0] <= now:
            out += self._queue.popleft()[1]
        return bytes(out)
