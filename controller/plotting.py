"""matplotlib for the commands that draw figures: headless, and optional (the ``plot`` extra)."""

from __future__ import annotations

from types import ModuleType

from controller.errors import UserError


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend, or a one-line error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install 'hebbian-quadruped[plot]'") from None
    return plt
