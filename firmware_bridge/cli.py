"""The ``firmware-bridge`` command: emulate a robot's firmware on a pty, or probe a serial robot.

firmware-bridge emulate --robot ant|servo-quad [--fault drop:0.01,corrupt:0.01,delay:5ms] [--state-rate 250]
firmware-bridge probe PORT [--baud 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from controller.app import run_command
from firmware_bridge.errors import BridgeError, LinkError
from firmware_bridge.faults import EXAMPLE, parse_faults
from firmware_bridge.protocol import CAP_BASE_ESTIMATE, MODE_NAMES, describe_faults


def _say(text: str) -> None:
    print(text, flush=True)


def emulate(args: argparse.Namespace) -> int:
    from firmware_bridge.emulator import BODIES, emulate

    if args.robot not in BODIES:
        raise BridgeError(f"no emulated robot {args.robot!r}; choose one of {', '.join(BODIES)}")
    if args.state_rate > args.physics_hz:
        raise BridgeError(f"--state-rate {args.state_rate} exceeds --physics-hz {args.physics_hz}; lower it")
    emulate(
        args.robot,
        parse_faults(args.fault),
        args.state_rate,
        args.physics_hz,
        args.watchdog_ms,
        args.seed,
        args.duration,
        _say,
    )
    return 0


def probe(args: argparse.Namespace) -> int:
    """Handshake, print what the robot says it is, its link round trip and one STATE."""
    from firmware_bridge.link import Link

    with Link.open(args.port, args.baud) as link:
        info = link.handshake()
        base = "yes" if info.capabilities & CAP_BASE_ESTIMATE else "no"
        _say(
            f"robot {info.robot_name}: protocol v{info.protocol_version}, "
            f"{MODE_NAMES.get(info.control_mode, info.control_mode)} mode, {len(info.joint_names)} joints, "
            f"{info.n_feet} feet, max rate {info.max_rate_hz} Hz, STATE {info.state_rate_hz} Hz, "
            f"watchdog {info.watchdog_ms} ms, base estimate {base}"
        )
        for name, lo, hi in zip(info.joint_names, info.joint_lower, info.joint_upper, strict=True):
            _say(f"  {name:<15s} [{lo:+.3f}, {hi:+.3f}] rad")
        rtts = link.ping(args.pings)
        if rtts:
            _say(f"heartbeat round trip: median {statistics.median(rtts) * 1e3:.2f} ms over {len(rtts)}")
        deadline = time.monotonic() + 1.0
        while link.latest_state is None and time.monotonic() < deadline:
            link.wait(0.05)
            link.poll()
        if link.latest_state is None:
            raise LinkError(f"robot on {args.port} answered HELLO but sends no STATE; check its firmware")
        state = link.latest_state.message
        _say(f"STATE: faults {describe_faults(state.faults)}, robot rx errors {state.rx_errors}")
        _say(f"link: {link.counters.summary()}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="firmware-bridge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    em = sub.add_parser(
        "emulate",
        help="play a robot's firmware on a pseudo-terminal, with MuJoCo as the robot",
        description="Open a pty, print its path and play the robot's microcontroller until Ctrl-C.",
    )
    em.add_argument("--robot", default="ant", help="emulated robot: ant, servo-quad")
    em.add_argument("--fault", default="", metavar="SPEC", help=f"link faults, e.g. {EXAMPLE}")
    em.add_argument("--state-rate", type=int, default=250, metavar="HZ", help="STATE rate (default 250)")
    em.add_argument(
        "--physics-hz", type=int, default=500, metavar="HZ", help="physics steps per second (default 500)"
    )
    em.add_argument("--watchdog-ms", type=int, default=100, help="no COMMAND this long -> safe pose")
    em.add_argument("--seed", type=int, default=0, help="initial pose noise and fault draws")
    em.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    em.set_defaults(run=emulate)
    pr = sub.add_parser("probe", help="handshake with a robot and print what it reports")
    pr.add_argument("port", help="serial port, e.g. /dev/ttyUSB0")
    pr.add_argument("--baud", type=int, default=1_000_000, help="baud rate (default 1000000)")
    pr.add_argument("--pings", type=int, default=20, help="heartbeats for the round-trip time")
    pr.set_defaults(run=probe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(lambda: args.run(args), lambda: (BridgeError,))


if __name__ == "__main__":
    sys.exit(main())
