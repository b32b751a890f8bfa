"""What every file the package writes shares: atomic writes (a crash or kill -9 leaves the old file or
the new one, never half of one) and the code version it records."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def code_version() -> str:
    """The installed package version, recorded in each genome's provenance."""
    try:
        from importlib.metadata import version

        return version("hebbian-quadruped")
    except Exception:  # not installed (running from a source tree)
        return "source"
