"""Deploy a controller to a robot over serial: wire protocol, serial link, robot adapter, safety,
and a firmware emulator that plays a robot's microcontroller on a pseudo-terminal.

The deploy path (``protocol``, ``link``, ``robot``, ``safety``) needs numpy, pyserial and PyYAML
only; the emulator loads MuJoCo through ``sim`` when it starts. See docs/protocol.md.
"""

from firmware_bridge.protocol import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
