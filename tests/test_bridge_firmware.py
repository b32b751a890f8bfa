"""The reference firmware's C99 codec, compiled here with gcc: it decodes and encodes exactly as the
Python codec does, on the shared vectors and on fuzzed frames."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import bridge_vectors
import pytest

from firmware_bridge.errors import FrameError
from firmware_bridge.protocol import LEADING_ZERO, MESSAGES, Message, decode, encode

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware"
SRC = FIRMWARE / "hq_servo_robot" / "src"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wshadow"]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (apt-get install gcc)")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("c") / "check_vectors"
    sources = [str(FIRMWARE / "test" / "check_vectors.c"), str(SRC / "hq_protocol.c")]
    subprocess.run(["gcc", *STRICT, "-O2", f"-I{SRC}", *sources, "-o", str(exe)], check=True)
    return exe


def run_c(harness: Path, frames: list[bytes]) -> list[dict]:
    """Decode each frame (no delimiter) with the C codec; one JSON result per frame."""
    lines = "".join(frame.hex() + "\n" for frame in frames)
    out = subprocess.run([str(harness)], input=lines, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def canonical(message: Message) -> str:
    """Fields as text with NaN spelled out, so two decodes of the same bits compare equal."""

    def clean(value):
        if isinstance(value, float):
            return "nan" if math.isnan(value) else value
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return json.dumps(clean(dataclasses.asdict(message)))


@pytest.mark.parametrize("compiler", ["gcc", "avr-gcc"])
def test_codec_builds_for_a_small_microcontroller(tmp_path, compiler):
    """Eight joints' buffers; with avr-gcc, for an ATmega2560 (8-bit, 16-bit int) as well."""
    if shutil.which(compiler) is None:
        pytest.skip(f"needs {compiler} (apt-get install gcc-avr avr-libc)")
    target = ["-mmcu=atmega2560"] if compiler == "avr-gcc" else []
    source, out = str(SRC / "hq_protocol.c"), str(tmp_path / "hq.o")
    subprocess.run(
        [compiler, *target, *STRICT, "-DHQ_MAX_JOINTS=8", "-Os", "-c", source, "-o", out], check=True
    )


@pytest.mark.parametrize("compiler", ["g++", "avr-g++"])
def test_sketch_type_checks_against_the_library_interfaces(compiler):
    """The Arduino sketch, compiled (not linked) against declarations of the Arduino core and the
    Adafruit libraries it uses (tests/arduino_stubs). Not a test of behaviour: see the README."""
    if shutil.which(compiler) is None:
        pytest.skip(f"needs {compiler}")
    target = ["-mmcu=atmega2560"] if compiler == "avr-g++" else []
    stubs = Path(__file__).parent / "arduino_stubs"
    sketch = FIRMWARE / "hq_servo_robot" / "hq_servo_robot.ino"
    subprocess.run(
        [compiler, *target, "-std=gnu++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{stubs}",
         "-include", "Arduino.h", "-x", "c++", str(sketch)],
        check=True,
    )  # fmt: skip


def test_c_codec_agrees_with_the_vectors(harness):
    vectors = bridge_vectors.load()
    frames = [bytes.fromhex(v["wire"])[:-1] for v in vectors["messages"] + vectors["bad_frames"]]
    results = run_c(harness, frames)
    for v, got in zip(vectors["messages"], results, strict=False):
        assert got["status"] == "ok", v["name"]
        assert (got["type"], got["seq"]) == (v["type"], v["seq"]), v["name"]
        assert bridge_vectors.from_json(got["type"], got["fields"]) == bridge_vectors.from_json(
            v["type"], v["fields"]
        ), v["name"]
        assert got["wire"] == v["wire"], v["name"]  # C's encoder, byte for byte
    for v, got in zip(vectors["bad_frames"], results[len(vectors["messages"]) :], strict=True):
        assert got["status"] == v["reason"], v["name"]


@pytest.mark.parametrize("fuzz", [bridge_vectors.fuzz_frames, bridge_vectors.field_fuzz_frames])
def test_c_and_python_decoders_agree_on_fuzzed_frames(harness, fuzz):
    """Random and mutated frames, and frames fuzzed field by field over every byte value (every enum
    and count included): both codecs accept and refuse the same, for the same reason."""
    frames = fuzz(20_000, seed=1)
    accepted = 0
    for frame, got in zip(frames, run_c(harness, frames), strict=True):
        try:
            seq, message = decode(frame)
        except FrameError as exc:
            assert got["status"] == exc.reason, frame.hex()
            continue
        accepted += 1
        assert got["status"] == "ok" and got["seq"] == seq, frame.hex()
        theirs = bridge_vectors.from_json(got["type"], got["fields"])
        assert canonical(theirs) == canonical(message), frame.hex()
        if "nan" not in canonical(message):  # NaN payload bits may be quieted by Python's floats
            assert got["wire"] == encode(message, seq).hex(), frame.hex()
    assert accepted > 100


def test_c_status_codes_are_numbered_and_checked_as_documented(harness):
    """hq_status numbers are the Bad frames table's; each vector with two problems names the first."""
    documented = bridge_vectors.documented_status_codes()
    bad = bridge_vectors.bad_frames()
    results = run_c(harness, [wire[:-1] for _, wire, _ in bad])
    for (name, _, reason), got in zip(bad, results, strict=True):
        assert (got["status"], got["code"]) == (reason, documented[reason]), name
    assert {reason for _, _, reason in bad} == set(documented)


@pytest.mark.parametrize("kind", [0x30, 0x31])
def test_c_refuses_a_reason_outside_0_to_5(harness, kind):
    frames = [bridge_vectors.raw_frame(bytes([reason]), kind)[:-1] for reason in range(256)]
    statuses = [got["status"] for got in run_c(harness, frames)]
    assert statuses == ["ok"] * 6 + ["range"] * 250


def test_c_puts_a_leading_zero_before_the_documented_types(harness):
    vectors = bridge_vectors.load()["messages"]
    results = run_c(harness, [bytes.fromhex(v["wire"])[:-1] for v in vectors])
    leading = {got["type"] for got in results if got["leading_zero"]}
    assert leading == bridge_vectors.documented_leading_zero() == LEADING_ZERO
    assert {got["type"] for got in results} == set(MESSAGES)  # every type asked


def test_c_sends_the_crc_low_byte_first_as_in_the_documented_example(harness):
    documented = bridge_vectors.documented_hello()
    (got,) = run_c(harness, [documented[1:-1]])
    assert got["status"] == "ok" and got["type"] == 0x01 and got["seq"] == 0
    assert got["wire"] == documented[1:].hex()  # C's encoder: the same bytes, CRC 0xC544 as 44 c5
    (swapped,) = run_c(harness, [bridge_vectors.crc_swapped(documented[1:])[:-1]])
    assert swapped["status"] == "crc"
