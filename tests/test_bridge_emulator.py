"""The emulated firmware against the real MuJoCo Ant, with the MCU clock passed in: session
handshake, commands reaching the motors, the 100 ms command watchdog, safe pose and the latched
emergency stop; and the link faults it can inject."""

from __future__ import annotations

import contextlib
import os

import bridge_vectors
import numpy as np
import pytest

from firmware_bridge.emulator import AntBody, Firmware, open_pty, serve
from firmware_bridge.errors import BridgeError, FrameError
from firmware_bridge.faults import FaultSpec, Impairment, parse_faults
from firmware_bridge.framing import Deframer, cobs_encode, crc16
from firmware_bridge.protocol import (
    ERROR_ESTOPPED,
    ERROR_NOT_READY,
    ERROR_PAYLOAD,
    ERROR_TYPE,
    ERROR_VERSION,
    FAULT_CLAMPED,
    FAULT_ESTOP,
    FAULT_IDLE,
    FAULT_RX_ERROR,
    FAULT_SAFE_POSE,
    FAULT_WATCHDOG,
    MAX_ENCODED,
    REASON_OPERATOR,
    Command,
    Error,
    Estop,
    Heartbeat,
    Hello,
    Info,
    SafePose,
    State,
    decode,
    encode,
)


@pytest.fixture
def mcu():
    return Firmware(AntBody(seed=0, physics_hz=500), watchdog_ms=100)


def send(mcu: Firmware, message, now: float, seq: int = 0) -> list:
    """Deliver one frame (after a 0x00, as a host's first frame comes); returns the replies."""
    replies = mcu.receive(b"\x00" + encode(message, seq), now)
    return [decode(frame.strip(b"\x00")).message for frame in replies]


def state(mcu: Firmware, now: float):
    return decode(mcu.state_frame(now)[:-1])[1]


def test_hello_answers_info_describing_the_body(mcu):
    (info,) = send(mcu, Hello(), 0.0)
    assert isinstance(info, Info) and info.robot_name == "ant" and len(info.joint_names) == 8
    assert info.watchdog_ms == 100 and info.n_feet == 4
    assert info.joint_lower[1] == pytest.approx(np.radians(30), rel=1e-6)
    assert state(mcu, 0.0).faults == FAULT_SAFE_POSE | FAULT_IDLE


def test_command_needs_a_session_and_reaches_the_motors(mcu):
    (error,) = send(mcu, Command(0, (0.0,) * 8), 0.0)
    assert isinstance(error, Error) and error.code == ERROR_NOT_READY
    send(mcu, Hello(), 0.0)
    assert send(mcu, Command(0, (0.5,) * 7), 0.01)[0].code == ERROR_PAYLOAD
    assert send(mcu, Command(0, (np.nan,) * 8), 0.01)[0].code == ERROR_PAYLOAD
    assert send(mcu, Command(0, (0.5, -0.5, 2.0, 0, 0, 0, 0, 0)), 0.02, seq=41) == []
    mcu.control(0.02)
    np.testing.assert_allclose(mcu.body.data.ctrl, [0.5, -0.5, 1.0, 0, 0, 0, 0, 0])
    s = state(mcu, 0.02)
    assert s.last_command_seq == 41 and s.faults == FAULT_CLAMPED  # commanding, 2.0 clamped to 1.0
    assert state(mcu, 0.03).faults == 0  # clamping is reported once


def test_watchdog_puts_the_robot_in_safe_pose_after_100_ms_without_command(mcu):
    send(mcu, Hello(), 0.0)
    send(mcu, Command(0, (0.8,) * 8), 1.0, seq=7)
    mcu.control(1.0999)
    np.testing.assert_allclose(mcu.body.data.ctrl, 0.8)
    assert state(mcu, 1.0999).faults == 0
    mcu.control(1.1001)
    assert state(mcu, 1.1001).faults == FAULT_SAFE_POSE | FAULT_WATCHDOG
    assert mcu.counters.watchdog_trips == 1
    # the safe pose is held actively: a second of physics brings the joints to it
    for k in range(500):
        mcu.control(1.1 + k * 0.002)
        mcu.body.step()
    pose = state(mcu, 2.1).joint_pos
    np.testing.assert_allclose(pose, mcu.body.safe_pose, atol=0.2)
    # the next COMMAND resumes control and clears the watchdog flag
    send(mcu, Command(0, (0.1,) * 8), 2.2, seq=8)
    mcu.control(2.2)
    assert state(mcu, 2.2).faults == 0 and state(mcu, 2.2).last_command_seq == 8


def test_safe_pose_request_holds_until_the_next_command(mcu):
    send(mcu, Hello(), 0.0)
    send(mcu, Command(0, (0.8,) * 8), 0.0)
    send(mcu, SafePose(REASON_OPERATOR), 0.01)
    mcu.control(0.01)
    assert state(mcu, 0.01).faults == FAULT_SAFE_POSE
    assert abs(mcu.body.data.ctrl - 0.8).max() > 0.1  # the PD hold, not the old command


def test_estop_latches_motors_off_until_hello(mcu):
    send(mcu, Hello(), 0.0)
    send(mcu, Command(0, (0.8,) * 8), 0.0)
    assert send(mcu, Estop(REASON_OPERATOR), 0.01) == []
    mcu.control(0.01)
    assert not mcu.body.data.ctrl.any() and state(mcu, 0.01).faults & FAULT_ESTOP
    assert send(mcu, Command(0, (0.8,) * 8), 0.02)[0].code == ERROR_ESTOPPED
    mcu.control(0.5)
    assert not mcu.body.data.ctrl.any()
    send(mcu, Hello(), 0.6)
    assert state(mcu, 0.6).faults == FAULT_SAFE_POSE | FAULT_IDLE


def test_other_protocol_version_is_refused_by_name(mcu):
    body = bytes([2, Hello.TYPE, 0, 0])
    frame = cobs_encode(body + crc16(body).to_bytes(2, "little")) + b"\x00"
    (reply,) = mcu.receive(b"\x00" + frame, 0.0)
    assert reply.startswith(b"\x00")  # ERROR, like INFO, may be the first frame a host sees
    error = decode(reply[1:-1]).message
    assert error.code == ERROR_VERSION and "v1" in error.text
    assert mcu.rx_errors == 1 and not mcu.session


def test_heartbeat_is_echoed_and_garbage_counted(mcu):
    assert send(mcu, Heartbeat(1234), 0.0) == [Heartbeat(1234)]
    mcu.receive(b"\x13\x37garbage\x00", 0.0)
    assert mcu.rx_errors == 1


def test_fault_spec_parses_and_rejects_with_an_example():
    assert parse_faults("drop:0.01,corrupt:0.02,delay:5ms") == FaultSpec(0.01, 0.02, 0.005)
    assert parse_faults("") == FaultSpec() and str(FaultSpec()) == "none"
    for bad in ("drop:2", "delay:5", "jitter:1ms", "corrupt:x"):
        with pytest.raises(BridgeError, match="e.g. --fault drop:0.01"):
            parse_faults(bad)


def test_impairment_drops_corrupts_and_delays_bytes():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    lossy = Impairment(FaultSpec(drop=0.01, corrupt=0.01), rng)
    lossy.push(data, 0.0)
    out = lossy.pop(0.0)
    assert len(out) == len(data) - lossy.dropped
    assert 0.008 < lossy.dropped / len(data) < 0.012 and 0.008 < lossy.corrupted / len(data) < 0.012
    late = Impairment(FaultSpec(delay_s=0.005), rng)
    late.push(b"abc", 1.0)
    assert late.pop(1.004) == b"" and late.pop(1.005) == b"abc"


def test_frames_waiting_in_the_port_when_the_emulator_stops_are_still_handled(mcu):
    """The host's last commands can sit unread in the port when a stop lands while the emulator runs
    behind the wall clock: they are applied and counted, not lost with the port."""
    master, slave, _ = open_pty()
    try:
        frames = [Hello(), *(Command(0, (0.1 * k,) * 8) for k in range(5))]
        os.write(slave, b"\x00" + b"".join(encode(m, seq) for seq, m in enumerate(frames)))
        serve(master, mcu, parse_faults(""), should_stop=lambda: True)  # stops before its first read
    finally:
        os.close(master)
        os.close(slave)
    assert mcu.counters.commands == 5 and mcu.last_command_seq == 5


def test_firmware_keeps_serving_after_100k_fuzzed_frames(mcu):
    """Issue 23 item 1: every field of every message type over every byte value (reason 6 used to raise
    IndexError and close the pty). Fed to the state machine directly, in bursts, the body stepping."""
    frames = bridge_vectors.field_fuzz_frames(100_000, seed=3)
    bad = 0
    for start in range(0, len(frames), 100):
        burst = frames[start : start + 100]
        for frame in burst:
            with contextlib.suppress(FrameError):
                decode(frame)
                continue
            bad += 1
        now = start * 1e-4
        mcu.receive(b"\x00" + b"\x00".join(burst) + b"\x00", now)
        mcu.control(now)
        mcu.body.step()
        decode(mcu.state_frame(now)[:-1])
    assert mcu.rx_errors == bad > 10_000
    assert mcu.counters.frames_rx == len(frames) - bad
    (info,) = send(mcu, Hello(), 20.0)
    assert isinstance(info, Info)
    assert send(mcu, Command(0, (0.1,) * 8), 20.0, seq=77) == []
    assert state(mcu, 20.0).last_command_seq == 77


def test_an_unknown_reason_is_a_counted_bad_frame_not_an_estop(mcu):
    send(mcu, Hello(), 0.0)
    send(mcu, Command(0, (0.3,) * 8), 0.0)
    assert mcu.receive(b"\x00" + bridge_vectors.raw_frame(b"\x06", Estop.TYPE), 0.01) == []
    s = state(mcu, 0.01)
    assert mcu.rx_errors == 1 and s.faults == FAULT_RX_ERROR and mcu.counters.estops == 0


def test_an_overflow_is_a_bad_frame_and_sets_rx_error(mcu):
    """As the reference sketch does: an over-long run counts in rx_errors and flags the next STATE."""
    mcu.receive(b"\x00" + b"\x01" * (MAX_ENCODED + 1) + b"\x00", 0.0)
    s = state(mcu, 0.0)
    assert s.rx_errors == 1 and s.faults & FAULT_RX_ERROR


def test_unknown_type_is_only_counted_a_known_type_the_wrong_way_is_answered(mcu):
    assert mcu.receive(b"\x00" + bridge_vectors.raw_frame(b"", 0x55, seq=9), 0.0) == []
    assert mcu.rx_errors == 1
    wrong_way = State(0, 0, 0, 0, (), (), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0, 0)
    (reply,) = send(mcu, wrong_way, 0.0, seq=12)
    assert isinstance(reply, Error) and (reply.code, reply.seq) == (ERROR_TYPE, 12)
    assert mcu.rx_errors == 1


def test_error_frames_start_with_a_zero_so_a_freshly_opened_port_gets_them(mcu):
    (reply,) = mcu.receive(b"\x00" + encode(Command(0, (0.0,) * 8), 5), 0.0)
    assert reply.startswith(b"\x00") and decode(reply[1:-1]).message.code == ERROR_NOT_READY
    # a host deframer that has just opened the port (out of sync) still gets the ERROR
    frames, _ = Deframer(MAX_ENCODED).feed(reply)
    assert [decode(f).message.code for f in frames] == [ERROR_NOT_READY]


def test_last_command_seq_is_0_and_idle_set_until_the_first_command(mcu):
    assert (state(mcu, 0.0).last_command_seq, state(mcu, 0.0).faults & FAULT_IDLE) == (0, FAULT_IDLE)
    send(mcu, Hello(), 0.0)
    send(mcu, Command(0, (0.0,) * 8), 0.0, seq=0)  # seq 0: only the IDLE bit says it was applied
    s = state(mcu, 0.0)
    assert s.last_command_seq == 0 and not s.faults & FAULT_IDLE
    send(mcu, Command(0, (0.0,) * 8), 0.01, seq=3)
    send(mcu, Hello(), 0.02)  # a new session: IDLE again, the last seq kept
    s = state(mcu, 0.02)
    assert s.last_command_seq == 3 and s.faults & FAULT_IDLE
