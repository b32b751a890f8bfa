"""The wire codec: CRC and COBS against published values, every message round trip, the shared
vectors, stream resynchronisation, and fuzzing (the decoder raises its own error and nothing else)."""

from __future__ import annotations

import contextlib

import bridge_vectors
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import FrameError
from firmware_bridge.framing import REASONS, Deframer, cobs_decode, cobs_encode, crc16
from firmware_bridge.protocol import (
    EFFORT,
    ERROR_CODES,
    KNOWN_CAPS,
    KNOWN_FAULTS,
    LEADING_ZERO,
    MAX_ENCODED,
    MAX_FEET,
    MAX_JOINTS,
    MAX_LAYERS,
    ONBOARD_STATUS_NAMES,
    POSITION,
    REASON_NAMES,
    BaseEstimate,
    Command,
    Error,
    Estop,
    Heartbeat,
    Hello,
    Info,
    OnboardStart,
    OnboardStop,
    OnboardTelemetry,
    SafePose,
    State,
    decode,
    encode,
)


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the catalogued check value of CRC-16/CCITT-FALSE
    assert crc16(b"") == 0xFFFF


RUN = bytes(range(1, 255))  # 254 non-zero bytes: exactly one full block


@pytest.mark.parametrize(
    ("data", "encoded"),
    [  # the examples of the COBS article on Wikipedia
        (b"\x00", "0101"),
        (b"\x00\x00", "010101"),
        (b"\x00\x11\x00", "01021101"),
        (b"\x11\x22\x00\x33", "0311220233"),
        (b"\x11\x22\x33\x44", "0511223344"),
        (b"\x11\x00\x00\x00", "0211010101"),
        (RUN, "ff" + RUN.hex()),
        (b"\x00" + RUN, "01ff" + RUN.hex()),
        (RUN + b"\xff", "ff" + RUN.hex() + "02ff"),
        (RUN[1:] + b"\xff\x00", "ff" + RUN[1:].hex() + "ff0101"),
        (RUN[2:] + b"\xff\x00\x01", "fe" + RUN[2:].hex() + "ff0201"),
    ],
)
def test_cobs_matches_the_published_examples(data, encoded):
    assert cobs_encode(data).hex() == encoded
    assert cobs_decode(bytes.fromhex(encoded)) == data


@given(st.binary(max_size=1200))
def test_cobs_round_trips_and_removes_every_zero(data):
    encoded = cobs_encode(data)
    assert 0 not in encoded and len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("bad", [b"\x05\x01", b"\x00", b"\x03\x01\x00"])
def test_cobs_rejects_malformed_blocks(bad):
    with pytest.raises(FrameError) as err:
        cobs_decode(bad)
    assert err.value.reason == "cobs"


floats = st.floats(width=32, allow_nan=False)
names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=15)
u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)


@st.composite
def infos(draw):
    joints = draw(st.lists(names, max_size=MAX_JOINTS))
    limits = st.lists(floats, min_size=len(joints), max_size=len(joints)).map(tuple)
    robot = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=31))
    return Info(
        robot, draw(st.sampled_from([POSITION, EFFORT])), tuple(joints), draw(limits), draw(limits),
        draw(st.integers(0, MAX_FEET)), draw(u16), draw(u16), draw(u16),
        draw(st.integers(0, KNOWN_CAPS)),
    )  # fmt: skip


@st.composite
def states(draw):
    n, feet = draw(st.integers(0, MAX_JOINTS)), draw(st.integers(0, MAX_FEET))
    vec = lambda k: st.lists(floats, min_size=k, max_size=k).map(tuple)  # noqa: E731
    base = draw(st.none() | st.builds(BaseEstimate, floats, vec(3)))
    return State(
        draw(u32), draw(u16), draw(st.integers(0, KNOWN_FAULTS)), draw(u16), draw(vec(n)), draw(vec(n)),
        draw(vec(4)), draw(vec(3)), feet, draw(st.integers(0, (1 << feet) - 1)), base,
    )  # fmt: skip


any_message = st.one_of(
    st.just(Hello()),
    infos(),
    st.builds(Command, u32, st.lists(floats, max_size=MAX_JOINTS).map(tuple)),
    states(),
    st.builds(Heartbeat, u32),
    st.builds(Estop, st.integers(0, len(REASON_NAMES) - 1)),
    st.builds(SafePose, st.integers(0, len(REASON_NAMES) - 1)),
    st.builds(
        Error,
        st.sampled_from(ERROR_CODES),
        u16,
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
    ),
    st.builds(OnboardStart, st.integers(0, (1 << 64) - 1), u32, st.integers(1, 0xFFFF)),
    st.just(OnboardStop()),
    st.builds(
        OnboardTelemetry,
        *(u32, u16, st.integers(0, len(ONBOARD_STATUS_NAMES) - 1), u32, u32, u32, u16),
        st.lists(floats, max_size=MAX_LAYERS).map(tuple),
    ),
)


@given(any_message, u16)
def test_every_message_round_trips(message, seq):
    wire = encode(message, seq)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert decode(wire[:-1]) == (seq, message)


def test_non_finite_floats_pass_unchanged():
    """The codec carries NaN and infinity as they are: refusing them is the safety layer's job."""
    seq, message = decode(encode(Command(0, (float("nan"), float("inf"), -float("inf"))), 0)[:-1])
    assert np.isnan(message.targets[0]) and message.targets[1:] == (float("inf"), -float("inf"))


@pytest.mark.parametrize(
    "message",
    [
        Command(0, (0.0,) * (MAX_JOINTS + 1)),
        Info("x" * 32, 1, (), (), (), 0, 0, 0, 0),
        Info("robot", 1, ("hip",), (0.0,), (), 0, 0, 0, 0),
        Error(1, 0, "caf\u00e9"),
        State(0, 0, 0, 0, (), (), (1, 0, 0, 0), (0, 0, 0), 2, 0b100),
        Heartbeat(2**32),
        # enum and flag values this version does not define
        Estop(6),
        SafePose(255),
        Error(0, 0),
        Error(6, 0),
        Info("robot", 2, (), (), (), 0, 0, 0, 0),
        Info("robot", EFFORT, (), (), (), 0, 0, 0, 0, capabilities=0x08),
        Info("robot", EFFORT, (), (), (), 0, 0, 0, 0, protocol_version=2),
        State(0, 0, 0x0100, 0, (), (), (1, 0, 0, 0), (0, 0, 0), 0, 0),
        OnboardStart(1 << 64),
        OnboardStart(1, 0, 0),
        OnboardTelemetry(0, 0, len(ONBOARD_STATUS_NAMES), 0, 0, 0, 0, ()),
        OnboardTelemetry(0, 0, 0, 0, 0, 0, 0, (1.0,) * (MAX_LAYERS + 1)),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(message):
    with pytest.raises(FrameError) as err:
        encode(message, 0)
    assert err.value.reason == "range"


def test_python_codec_reproduces_the_shared_vectors():
    vectors = bridge_vectors.load()
    assert vectors == bridge_vectors.build(), "regenerate: PYTHONPATH=. python tests/bridge_vectors.py"
    for v in vectors["messages"]:
        message = bridge_vectors.from_json(v["type"], v["fields"])
        assert encode(message, v["seq"]).hex() == v["wire"], v["name"]
        assert decode(bytes.fromhex(v["wire"])[:-1]) == (v["seq"], message), v["name"]
    for v in vectors["bad_frames"]:
        with pytest.raises(FrameError) as err:
            decode(bytes.fromhex(v["wire"])[:-1])
        assert err.value.reason == v["reason"], v["name"]
    assert {v["reason"] for v in vectors["bad_frames"]} == set(REASONS)


@pytest.mark.parametrize("kind", [Estop.TYPE, SafePose.TYPE])
def test_a_reason_outside_0_to_5_is_a_range_error_never_an_exception(kind):
    """Issue 23 item 1: reason 6 used to decode, and crashed the emulator that named it."""
    for reason in range(256):
        wire = bridge_vectors.raw_frame(bytes([reason]), kind)[:-1]
        if reason < len(REASON_NAMES):
            assert decode(wire).message.reason == reason
        else:
            with pytest.raises(FrameError) as err:
                decode(wire)
            assert err.value.reason == "range"


def test_status_codes_are_numbered_and_checked_as_documented():
    """docs/protocol.md's Bad frames table: REASONS in the order of the hq_status numbers."""
    assert bridge_vectors.documented_status_codes() == {r: k + 1 for k, r in enumerate(REASONS)}
    # the order of checking, on frames with two problems: the first check that fails names the frame
    by_name = {name: (wire, reason) for name, wire, reason in bridge_vectors.bad_frames()}
    for name in ("version_2_bad_crc", "version_2_unknown_type", "unknown_type_with_payload",
                 "estop_reason_6_trailing_byte"):  # fmt: skip
        wire, reason = by_name[name]
        with pytest.raises(FrameError) as err:
            decode(wire[:-1])
        assert err.value.reason == reason, name


def test_crc_goes_low_byte_first_as_in_the_documented_example():
    documented = bridge_vectors.documented_hello()
    assert b"\x00" + encode(Hello(), 0) == documented
    raw = cobs_decode(documented[1:-1])
    assert raw[-2:] == crc16(raw[:-2]).to_bytes(2, "little")
    with pytest.raises(FrameError) as err:  # the same frame with its CRC high byte first
        decode(bridge_vectors.crc_swapped(documented[1:])[:-1])
    assert err.value.reason == "crc"


def test_frames_that_must_not_be_lost_are_the_documented_ones():
    assert bridge_vectors.documented_leading_zero() == LEADING_ZERO
    assert Error.TYPE in LEADING_ZERO  # issue 23: an ERROR right after the port opened was lost


def test_deframer_resyncs_after_garbage_whatever_the_read_boundaries():
    frames = [encode(Heartbeat(k), k) for k in range(20)]
    # joined mid-frame: the tail before the first 0x00 is skipped; garbage later spoils one frame
    stream = frames[0][5:] + b"\x17\x42garbage" + frames[1] + b"\x00\x00" + b"".join(frames[2:])
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(len(stream), 30, replace=False))
    deframer, got = Deframer(MAX_ENCODED), []
    for chunk in np.split(np.frombuffer(stream, np.uint8), cuts):
        complete, overflows = deframer.feed(chunk.tobytes())
        assert overflows == 0
        got += complete
    with pytest.raises(FrameError):
        decode(got[0])
    assert [decode(raw).message for raw in got[1:]] == [Heartbeat(k) for k in range(2, 20)]


def test_deframer_discards_an_oversized_run_once_and_recovers():
    deframer = Deframer(16)
    frames, overflows = deframer.feed(b"\x00" + b"\x01" * 40)
    assert (frames, overflows) == ([], 1)
    frames, overflows = deframer.feed(b"\x01" * 40 + b"\x00" + encode(Estop(0), 1))
    assert overflows == 0 and [decode(f).message for f in frames] == [Estop(0)]


# --- fuzzing ---------------------------------------------------------------------------------
SEEDS = bridge_vectors.SEEDS


def test_decoder_raises_only_its_own_error_on_100k_fuzzed_frames():
    outcomes = {"ok": 0, **dict.fromkeys(REASONS, 0)}
    for frame in bridge_vectors.fuzz_frames(100_000):
        try:
            decode(frame)
        except FrameError as exc:
            outcomes[exc.reason] += 1
        else:
            outcomes["ok"] += 1
    # the corpus reaches every check, not just the CRC
    assert all(outcomes[r] > 0 for r in ("ok", "cobs", "short", "crc", "type", "length", "range"))


def test_decoder_raises_only_its_own_error_on_fields_fuzzed_over_every_byte_value():
    outcomes = {"ok": 0, **dict.fromkeys(REASONS, 0)}
    for frame in bridge_vectors.field_fuzz_frames(20_000, seed=2):
        try:
            decode(frame)
        except FrameError as exc:
            outcomes[exc.reason] += 1
        else:
            outcomes["ok"] += 1
    assert all(outcomes[r] > 0 for r in ("ok", "version", "type", "length", "range", "overflow"))


def _fuzz_with_hypothesis(data: bytes, mutation: tuple[int, int, int]) -> None:
    """Decode ``data`` and one seed frame with one byte replaced: a FrameError or a message."""
    at, value, which = mutation
    seed = SEEDS[which % len(SEEDS)]
    for frame in (data, seed[:at] + bytes([value]) + seed[at + 1 :]):
        with contextlib.suppress(FrameError):
            decode(frame)


_mutations = st.tuples(st.integers(0, 400), st.integers(0, 255), st.integers(0, 100))


@settings(max_examples=2_000, deadline=None)
@given(st.binary(max_size=400), _mutations)
def test_decoder_raises_only_its_own_error_hypothesis(data, mutation):
    _fuzz_with_hypothesis(data, mutation)


@pytest.mark.slow
@settings(max_examples=100_000, deadline=None)
@given(st.binary(max_size=400), _mutations)
def test_decoder_raises_only_its_own_error_hypothesis_100k(data, mutation):
    _fuzz_with_hypothesis(data, mutation)
