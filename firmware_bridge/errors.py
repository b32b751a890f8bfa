"""Errors of the serial bridge. The CLIs print any :class:`BridgeError` on one line and exit 2."""

from __future__ import annotations


class BridgeError(Exception):
    """A problem the user can fix (port, cable, config, firmware); the message names it and the fix."""


class FrameError(BridgeError):
    """A frame that does not decode. ``reason`` is one of :data:`firmware_bridge.framing.REASONS`,
    the same names as the C codec's ``hq_status`` codes, so both decoders can be compared."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"bad frame ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


class LinkError(BridgeError):
    """The serial link failed: port missing, closed mid-run, or the robot stopped answering."""


class RobotError(BridgeError):
    """The robot sent a valid frame that contradicts its own INFO (a STATE with other counts): the host
    cannot map it to the genome, so it stops the robot (ESTOP) rather than guess."""


class ConfigError(BridgeError):
    """A robot config or calibration file is wrong, or does not match what the robot reports."""
