"""Shared test vectors of the wire protocol: messages with their exact frames, and bad frames with
the reason each decoder must give. ``PYTHONPATH=. python tests/bridge_vectors.py`` rewrites
firmware_bridge/firmware/test_vectors.json (only when the protocol changes on purpose)."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.framing import cobs_decode, cobs_encode, crc16
from firmware_bridge.protocol import (
    CAP_BASE_ESTIMATE,
    CAP_ONBOARD,
    EFFORT,
    MAX_ENCODED,
    MESSAGES,
    ONBOARD_RUNNING,
    ONBOARD_WATCHDOG,
    POSITION,
    BaseEstimate,
    Command,
    Error,
    Estop,
    Heartbeat,
    Hello,
    Info,
    Message,
    OnboardStart,
    OnboardStop,
    OnboardTelemetry,
    SafePose,
    State,
    encode,
)

PATH = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware" / "test_vectors.json"
FLOAT_FIELDS = {
    "joint_lower", "joint_upper", "targets", "joint_pos", "joint_vel", "quaternion", "gyro", "weight_norms",
}  # fmt: skip
ANT_JOINTS = ("hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3", "hip_4", "ankle_4")


def f32(x: float) -> float:
    """The value as a float32 would hold it (what survives the wire)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32s(*values: float) -> tuple[float, ...]:
    return tuple(f32(v) for v in values)


def raw_frame(payload: bytes, kind: int, seq: int = 1, version: int = 1) -> bytes:
    """A frame with a correct CRC around any header and payload: reaches the payload checks."""
    body = struct.pack("<BBH", version, kind, seq) + payload
    return cobs_encode(body + struct.pack("<H", crc16(body))) + b"\x00"


def messages() -> list[tuple[str, int, Message]]:
    servo = tuple(f"leg{leg}_joint{k}" for leg in range(1, 5) for k in range(1, 5))
    return [
        ("hello", 0, Hello()),
        (
            "info_ant",
            1,
            Info(
                "ant",
                EFFORT,
                ANT_JOINTS,
                f32s(*[-0.5235988, 0.5235988] * 4),
                f32s(*[0.5235988, 1.2217305] * 4),
                4,
                500,
                250,
                100,
                CAP_BASE_ESTIMATE,
            ),
        ),
        (
            "info_servo_long",  # a run of more than 254 non-zero bytes: a full COBS block
            2,
            Info(
                'servo quadruped "v2"',
                POSITION,
                servo,
                f32s(*[-1.1] * 16),
                f32s(*[1.3] * 16),
                4,
                200,
                200,
                100,
            ),
        ),
        ("command_ant", 0xFFFF, Command(0xFFFFFFFF, f32s(0.5, -1.0, 0.0, 1.0, -0.25, 0.125, 0.1, -0.7))),
        ("command_empty", 3, Command(0, ())),
        (
            "state_ant",
            4,
            State(
                123456789,
                65535,
                0x0003,
                7,
                f32s(*[0.1 * k for k in range(8)]),
                f32s(*[-1.5 * k for k in range(8)]),
                f32s(0.9238795, 0.0, 0.3826834, 0.0),
                f32s(0.01, -0.02, 3.0),
                4,
                0b1010,
                BaseEstimate(f32(0.55), f32s(1.25, -0.5, 0.0)),
            ),
        ),
        (
            "state_zeros_no_base",  # many zero bytes: every one becomes a COBS block boundary
            5,
            State(0, 0, 0, 0, (0.0,) * 12, (0.0,) * 12, (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 8, 0xFF),
        ),
        ("heartbeat", 6, Heartbeat(0x01020304)),
        ("estop", 7, Estop(0)),
        ("safe_pose", 8, SafePose(3)),
        ("error", 9, Error(5, 4242, "send HELLO first")),
        ("error_empty_text", 10, Error(1, 0, "")),
        (
            "info_onboard",
            11,
            Info(
                "servo-quad",
                POSITION,
                ("hip_1", "knee_1"),
                f32s(-1.2, -1.0),
                f32s(1.2, 1.4),
                0,
                500,
                250,
                100,
                CAP_ONBOARD,
            ),
        ),
        ("onboard_start", 12, OnboardStart(0xFEDCBA9876543210, 1000, 5)),
        ("onboard_start_max", 13, OnboardStart((1 << 64) - 1, 0xFFFFFFFF, 0xFFFF)),
        ("onboard_stop", 14, OnboardStop()),
        (
            "onboard_telemetry",
            15,
            OnboardTelemetry(987654321, 11, ONBOARD_RUNNING, 250, 61, 140, 2, f32s(8.25, 5.5, 1.875)),
        ),
        ("onboard_telemetry_no_layers", 16, OnboardTelemetry(0, 0, ONBOARD_WATCHDOG, 0, 0, 0, 0, ())),
    ]


def bad_frames() -> list[tuple[str, bytes, str]]:
    body = struct.pack("<BBHIB2f", 1, 0x10, 1, 1, 2, 0.5, 0.5)
    bad_crc = cobs_encode(body + struct.pack("<H", crc16(body) ^ 0x0001)) + b"\x00"

    def state_head(contacts: int, blocks: int) -> bytes:  # no joints, 2 feet
        return struct.pack("<IHHHBBBB", 0, 0, 0, 0, 0, 2, contacts, blocks)

    return [
        ("crc_off_by_one_bit", bad_crc, "crc"),
        ("cobs_block_past_end", bytes([0x09, 1, 2, 3, 0]), "cobs"),
        ("short", cobs_encode(b"\x01\x01\x00") + b"\x00", "short"),
        ("version_2", raw_frame(b"", 0x01, version=2), "version"),
        ("unknown_type", raw_frame(b"", 0x55), "type"),
        ("command_missing_float", raw_frame(struct.pack("<IB7f", 0, 8, *[0.0] * 7), 0x10), "length"),
        ("hello_trailing_byte", raw_frame(b"\x00", 0x01), "length"),
        ("command_33_targets", raw_frame(struct.pack("<IB", 0, 33), 0x10), "range"),
        ("state_contact_beyond_feet", raw_frame(state_head(0b100, 0), 0x11), "range"),
        ("state_unknown_block", raw_frame(state_head(0, 0x02), 0x11), "range"),
        ("error_text_not_ascii", raw_frame(struct.pack("<BHB", 1, 0, 2) + b"\xc3\xa9", 0x7F), "range"),
        ("overflow", b"\x01" * (MAX_ENCODED + 1) + b"\x00", "overflow"),
        # every enum and flag field: a value this version does not define is out of range
        ("estop_reason_6", raw_frame(b"\x06", 0x30), "range"),
        ("safe_pose_reason_255", raw_frame(b"\xff", 0x31), "range"),
        ("info_mode_2", raw_frame(bytes([1, 2, 0]), 0x02), "range"),
        ("info_protocol_version_2", raw_frame(bytes([2, 0, 0]), 0x02), "range"),
        ("info_capability_bit_3", raw_frame(bytes([1, 0, 8]), 0x02), "range"),
        ("state_fault_bit_8", raw_frame(struct.pack("<IHHH", 0, 0, 0x0100, 0), 0x11), "range"),
        ("error_code_0", raw_frame(struct.pack("<BHB", 0, 0, 0), 0x7F), "range"),
        ("error_code_6", raw_frame(struct.pack("<BHB", 6, 0, 0), 0x7F), "range"),
        ("onboard_start_telemetry_every_0", raw_frame(struct.pack("<QIH", 1, 1, 0), 0x40), "range"),
        ("onboard_start_short", raw_frame(struct.pack("<QI", 1, 1), 0x40), "length"),
        ("onboard_stop_trailing_byte", raw_frame(b"\x00", 0x41), "length"),
        ("onboard_telemetry_status_10", raw_frame(struct.pack("<IHB", 0, 0, 10), 0x42), "range"),
        (
            "onboard_telemetry_9_layers",
            raw_frame(struct.pack("<IHBIIIHB", 0, 0, 1, 0, 0, 0, 0, 9), 0x42),
            "range",
        ),
        (
            "onboard_telemetry_missing_norm",
            raw_frame(struct.pack("<IHBIIIHBf", 0, 0, 1, 0, 0, 0, 0, 2, 1.0), 0x42),
            "length",
        ),
        # the order of the checks: a bad CRC hides the version, a version hides the type, ...
        ("version_2_bad_crc", crc_swapped(raw_frame(b"", 0x01, version=2)), "crc"),
        ("crc_sent_big_endian", crc_swapped(raw_frame(b"", 0x01)), "crc"),
        ("version_2_unknown_type", raw_frame(b"", 0x55, version=2), "version"),
        ("unknown_type_with_payload", raw_frame(b"\x06" * 830, 0x55), "overflow"),
        ("estop_reason_6_trailing_byte", raw_frame(b"\x06\x00", 0x30), "range"),
    ]


def crc_swapped(wire: bytes) -> bytes:
    """The frame with its two CRC bytes in the other order (big-endian instead of little-endian)."""
    raw = cobs_decode(wire[:-1])
    return cobs_encode(raw[:-2] + raw[-1:] + raw[-2:-1]) + b"\x00"


# --- what docs/protocol.md states, read from it so that both codecs are tested against the text --------
DOC = PATH.parents[2] / "docs" / "protocol.md"


def documented_status_codes() -> dict[str, int]:
    """The Bad frames table: reason -> its hq_status number."""
    return {m[2]: int(m[1]) for m in re.finditer(r"^\| (\d) \| `(\w+)` \|", DOC.read_text(), re.M)}


def documented_leading_zero() -> set[int]:
    """The message types the framing section says get a 0x00 before them."""
    text = re.search(r"before every ([A-Za-z_, \n*]+) frame", DOC.read_text()).group(1)
    names = {name.replace("_", "") for name in re.findall(r"\b[A-Z_]{4,}\b", text)}
    return {cls.TYPE for cls in MESSAGES.values() if cls.__name__.upper() in names}


def documented_hello() -> bytes:
    """The worked example of a HELLO on the wire, leading and trailing 0x00 included."""
    return bytes.fromhex(re.search(r"the wire carries `([0-9a-f ]+)`", DOC.read_text()).group(1))


def to_json(message: Message) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(message)))


def from_json(kind: int, fields: dict[str, Any]) -> Message:
    """A message from JSON fields; floats may be numbers or C99 hex-float strings (C's output)."""

    def number(v: Any) -> float:
        return float.fromhex(v) if isinstance(v, str) else float(v)

    values = {}
    for key, value in fields.items():
        if key in FLOAT_FIELDS:
            value = tuple(number(v) for v in value)
        elif key == "joint_names":
            value = tuple(value)
        elif key == "base" and value is not None:
            value = BaseEstimate(number(value["height"]), tuple(number(v) for v in value["velocity"]))
        values[key] = value
    return MESSAGES[kind](**values)


# --- fuzzing corpus ---------------------------------------------------------------------------
SEEDS = [encode(m, k)[:-1] for k, (_, _, m) in enumerate(messages())]


def _raw_payload_frame(rng: np.random.Generator) -> bytes:
    """A valid header and CRC around a random or truncated payload: reaches the payload parsers."""
    kind = rng.choice(
        [0x01, 0x02, 0x10, 0x11, 0x20, 0x30, 0x31, 0x40, 0x41, 0x42, 0x7F, int(rng.integers(256))]
    )
    body = cobs_decode(SEEDS[rng.integers(len(SEEDS))])[4:-2]
    if rng.random() < 0.5:
        body = rng.integers(0, 256, rng.integers(0, 80), dtype=np.uint8).tobytes()
    head = struct.pack("<BBH", 1, kind, 0) + body[: rng.integers(0, len(body) + 1)]
    return cobs_encode(head + struct.pack("<H", crc16(head)))


def _mutated(rng: np.random.Generator) -> bytes:
    frame = bytearray(SEEDS[rng.integers(len(SEEDS))])
    for _ in range(rng.integers(1, 4)):
        at = int(rng.integers(len(frame)))
        op = rng.integers(3)
        if op == 0:
            frame[at] = int(rng.integers(256))
        elif op == 1:
            del frame[at:]
        else:
            frame.insert(at, int(rng.integers(256)))
        if not frame:
            break
    return bytes(frame)


def fuzz_frames(count: int, seed: int = 0) -> list[bytes]:
    """Random bytes, mutated valid frames, and random payloads behind a valid header and CRC."""
    rng = np.random.default_rng(seed)
    makers = (
        lambda: rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes(),
        lambda: _mutated(rng),
        lambda: _raw_payload_frame(rng),
    )
    return [makers[k % 3]() for k in range(count)]


class _FieldFuzzer:
    """Frames built field by field, each field drawn over every byte value half the time and from its
    valid values otherwise, so the checks behind the first bad field are reached too; valid CRC.
    (Python's ``random``: a scalar draw from it is many times cheaper than one from numpy.)"""

    KINDS = [m.TYPE for m in MESSAGES.values()]
    PRINTABLE = bytes(0x20 + b % 95 for b in range(256))  # translation table: any byte -> printable

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, valid: range | list[int]) -> int:
        return self.rng.randrange(256) if self.rng.random() < 0.5 else self.rng.choice(valid)

    def raw(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def name(self, limit: int, minimum: int = 1) -> bytes:
        size = self.pick(range(minimum, limit + 1))
        text = self.raw(min(size, limit + 1))  # a longer name is refused by its length byte alone
        return bytes([size]) + (text if self.rng.random() < 0.5 else text.translate(self.PRINTABLE))

    def payload(self, kind: int) -> bytes:
        pick, raw = self.pick, self.raw
        if kind == Info.TYPE:
            head = bytes([pick([1]), pick([0, 1]), pick(range(4)), pick(range(9))]) + raw(6) + self.name(31)
            n = pick(range(33))
            return head + bytes([n]) + b"".join(self.name(15) + raw(8) for _ in range(min(n, 33)))
        if kind == Command.TYPE:
            n = pick(range(33))
            return raw(4) + bytes([n]) + raw(4 * min(n, 33))
        if kind == State.TYPE:
            n, feet, blocks = pick(range(33)), pick(range(9)), pick([0, 1])
            head = raw(6) + bytes([pick(range(256)), pick([0])]) + raw(2)
            head += bytes([n, feet, pick(range(1 << min(feet, 8))), blocks])
            return head + raw(28 + 8 * min(n, 33) + (16 if blocks & 1 else 0))
        if kind == Heartbeat.TYPE:
            return raw(4)
        if kind in (Estop.TYPE, SafePose.TYPE):
            return bytes([pick(range(6))])
        if kind == Error.TYPE:
            return bytes([pick(range(1, 6))]) + raw(2) + self.name(63, minimum=0)
        if kind == OnboardStart.TYPE:
            return raw(12) + bytes([pick(range(1, 256)), pick([0, 1, 255])])
        if kind == OnboardTelemetry.TYPE:
            n = pick(range(9))
            return raw(6) + bytes([pick(range(10))]) + raw(14) + bytes([n]) + raw(4 * min(n, 9))
        return raw(self.rng.randrange(8))  # HELLO, ONBOARD_STOP, or a type this version does not define

    def frame(self) -> bytes:
        rng = self.rng
        version = 1 if rng.random() < 0.95 else rng.randrange(256)
        kind = rng.choice(self.KINDS) if rng.random() < 0.9 else rng.randrange(256)
        body = self.payload(kind)
        if rng.random() < 0.1:  # one byte short or one too many
            body = body[:-1] if body and rng.random() < 0.5 else body + self.raw(1)
        elif rng.random() < 0.02:  # too long for any receiver
            body += self.raw(MAX_ENCODED)
        head = bytes([version, kind]) + self.raw(2) + body
        return cobs_encode(head + struct.pack("<H", crc16(head)))


def field_fuzz_frames(count: int, seed: int = 0) -> list[bytes]:
    """Fuzzed frames (no delimiter) of every message type, field by field over every byte value."""
    fuzzer = _FieldFuzzer(seed)
    return [fuzzer.frame() for _ in range(count)]


def build() -> dict[str, list[dict[str, Any]]]:
    return {
        "messages": [
            {"name": name, "type": m.TYPE, "seq": seq, "fields": to_json(m), "wire": encode(m, seq).hex()}
            for name, seq, m in messages()
        ],
        "bad_frames": [
            {"name": name, "wire": wire.hex(), "reason": reason} for name, wire, reason in bad_frames()
        ],
    }


def load() -> dict[str, list[dict[str, Any]]]:
    return json.loads(PATH.read_text())


if __name__ == "__main__":
    PATH.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {PATH}")
