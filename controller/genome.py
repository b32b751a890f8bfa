"""Genome files: what evolution found, with everything needed to run it and to know where it came from.

A genome file is an ``.npz`` archive (loaded with ``allow_pickle=False``, never unpickled) holding
one JSON metadata string and float32 arrays:

- ``meta``: format version, kind (``hebbian`` | ``static``), rule, layer sizes, activations,
  initial-weight distribution, normalisation, task id, observation/action sizes, provenance.
- ``coefficients_K`` (hebbian): layer K's per-synapse rule coefficients, shape (n_in, n_out, k).
- ``weights_K``: layer K's weights, shape (n_in, n_out): the static network's weights, or a
  Hebbian genome's co-evolved initial weights (``init: coevolve``).
- ``frontend_K`` (a network with a pixel front end, e.g. CarRacing's CNN): conv layer K's evolved
  kernels, shape (out channels, in channels, kh, kw), fixed for life.

Loading checks every field and says exactly what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import os
import reprlib
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from controller.errors import UserError
from controller.files import atomic_write, code_version
from controller.network import FeedForward, HebbianNetwork, NetworkSpec, StaticNetwork, resolve_backend
from controller.rules import get_rule

FORMAT_VERSION = 1
KINDS = ("hebbian", "static")
COEVOLVE = "coevolve"
META_BYTES = 1 << 20  # a genome's JSON metadata is a few kB
MAX_PARAMETERS = 1 << 26  # 256 MiB of float32; evolve's largest network (evolve/config.py) has under 25 M
MAX_MAGNITUDE = 1e6  # evolved parameters stay within +-10; from about 1e19 the plastic update overflows
MAX_SETTLE_TICKS = 100_000  # zero-action ticks before control, as the controller's --settle allows


@dataclass
class Genome:
    """Inherited parameters of a controller plus the metadata to rebuild and validate it."""

    kind: str
    spec: NetworkSpec
    task: str
    coefficients: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    frontend: list[np.ndarray] = field(default_factory=list)

    @property
    def obs_size(self) -> int:
        return self.spec.obs_size

    def settle_ticks(self, task_default: int) -> int:
        """Zero-action ticks before control, as in the genome's training (its provenance says, when
        evolve wrote it), else the task's: a plastic network starts from the state it was evolved in."""
        return int(self.provenance.get("settle_ticks", task_default))

    def control_period(self) -> float | None:
        """The control period (s) the genome was evolved at, as evolve records it in the provenance
        (``control_period``); None for a genome written before it did."""
        period = self.provenance.get("control_period")
        if period is None:
            return None
        if isinstance(period, bool) or not isinstance(period, int | float) or not 0 < period < math.inf:
            raise UserError(
                f"genome provenance control_period must be a positive number of seconds, got {period!r}"
            )
        return float(period)

    @property
    def action_size(self) -> int:
        return self.spec.action_size

    @property
    def coevolved(self) -> bool:
        return self.kind == "hebbian" and self.spec.init == COEVOLVE

    def build(self, backend: str = "auto") -> FeedForward:
        """The network this genome describes on a backend of :data:`controller.network.BACKENDS`, ready
        for ``reset(rng)``."""
        backend = resolve_backend(backend)
        if backend == "onnx":
            from controller.onnx_backend import OnnxNetwork

            return OnnxNetwork(self)
        if self.kind == "static":
            return StaticNetwork(self.spec, self.weights, backend, self.frontend)
        initial = self.weights if self.coevolved else None
        return HebbianNetwork(
            self.spec, self.coefficients, backend, initial_weights=initial, frontend_kernels=self.frontend
        )

    # --- flat parameter vectors, for the evolution strategy -------------------------------
    @staticmethod
    def array_shapes(kind: str, spec: NetworkSpec) -> list[tuple[str, tuple[int, ...]]]:
        """Names and shapes of the arrays a genome of this kind and spec holds, in vector order."""
        shapes: list[tuple[str, tuple[int, ...]]] = []
        if kind == "hebbian":
            k = get_rule(spec.rule).size
            shapes += [(f"coefficients_{i}", (a, b, k)) for i, (a, b) in enumerate(spec.layer_shapes)]
        if kind == "static" or spec.init == COEVOLVE:
            shapes += [(f"weights_{i}", (a, b)) for i, (a, b) in enumerate(spec.layer_shapes)]
        shapes += [(f"frontend_{i}", shape) for i, shape in enumerate(spec.frontend_shapes)]
        return shapes

    @classmethod
    def parameter_count(cls, kind: str, spec: NetworkSpec) -> int:
        return sum(math.prod(shape) for _, shape in cls.array_shapes(kind, spec))

    @classmethod
    def from_vector(
        cls, kind: str, spec: NetworkSpec, task: str, vector: np.ndarray, **provenance: Any
    ) -> Genome:
        """Split a flat parameter vector (the ES's search space) into a genome."""
        vector = np.asarray(vector, dtype=np.float32)
        expected = cls.parameter_count(kind, spec)
        if vector.shape != (expected,):
            raise ValueError(f"a {kind} genome of this spec has {expected} parameters, got {vector.shape}")
        arrays: dict[str, list[np.ndarray]] = {"coefficients": [], "weights": [], "frontend": []}
        start = 0
        for name, shape in cls.array_shapes(kind, spec):
            size = int(np.prod(shape))
            arrays[name.split("_")[0]].append(vector[start : start + size].reshape(shape).copy())
            start += size
        return cls(
            kind, spec, task, arrays["coefficients"], arrays["weights"], dict(provenance), arrays["frontend"]
        )

    def to_vector(self) -> np.ndarray:
        arrays = self.coefficients + self.weights + self.frontend
        return np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float32)

    # --- files ------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "rule": self.spec.rule if self.kind == "hebbian" else None,
            "layer_sizes": list(self.spec.layer_sizes),
            "activations": list(self.spec.activations),
            "init": self.spec.init,
            "normalise": self.spec.normalise,
            "plasticity_period": self.spec.plasticity_period,
            "frontend": self.spec.frontend,
            "task": self.task,
            "obs_size": self.obs_size,
            "action_size": self.action_size,
            "provenance": {"code_version": code_version(), **self.provenance},
        }


def save_genome(genome: Genome, path: str | os.PathLike) -> Path:
    """Write atomically (temporary file, then rename), so a crash never leaves half a genome."""
    arrays = {
        **{f"coefficients_{i}": c.astype(np.float32) for i, c in enumerate(genome.coefficients)},
        **{f"weights_{i}": w.astype(np.float32) for i, w in enumerate(genome.weights)},
        **{f"frontend_{i}": k.astype(np.float32) for i, k in enumerate(genome.frontend)},
    }
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(genome.metadata())), **arrays)
    return atomic_write(path, buffer.getvalue())


SHIPPED = {
    "ant": "ant_hebbian.npz",
    "ant-hebbian": "ant_hebbian.npz",
    "ant-static": "ant_static.npz",
    "ant-bullet": "ant_bullet_hebbian.npz",
    "ant-bullet-static": "ant_bullet_static.npz",
    "carracing": "carracing_hebbian.npz",
    "servo-quad": "servo_quad_hebbian.npz",
    "servo-quad-static": "servo_quad_static.npz",
    "ant-faults": "ant_faults.npz",
    "ant-faults-static": "ant_faults_static.npz",
    "ant-faults-coevolve": "ant_faults_coevolve.npz",
    "ant-merge": "ant_merge.npz",
    "servo-quad-faults": "servo_quad_faults.npz",
    "servo-quad-faults-static": "servo_quad_faults_static.npz",
    "servo-quad-opencat": "servo_quad_opencat.npz",
    "servo-quad-opencat-static": "servo_quad_opencat_static.npz",
}


def shipped_genome_path(name: str) -> Path:
    """Path of a genome shipped inside the package, found through the package's resources."""
    resource = resources.files("controller") / "genomes" / SHIPPED[name]
    return Path(str(resource))


def _fail(source: str, problem: str) -> UserError:
    return UserError(f"bad genome file {source}: {problem}")


# Each metadata field, the JSON type it must have and how to say so.
FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "a string"),
    "layer_sizes": (list, "a list"),
    "activations": (list, "a list"),
    "rule": ((str, type(None)), "a string or null"),
    "init": (str, "a string"),
    "normalise": (bool, "true or false"),
    "task": (str, "a string"),
    "provenance": (dict, "an object"),
}


def _header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a ``.npy`` member: only its header is unpacked."""
    with archive.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        fmt = np.lib.format
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(stream)
        return shape, fortran, dtype, stream.tell()


def _data(archive: zipfile.ZipFile, key: str, source: str, header: tuple) -> np.ndarray:
    """The member's array once its header is checked; its declared unpacked size must be what that
    shape holds, so a small file that inflates to gigabytes (a zip bomb) is refused before it is read."""
    shape, fortran, dtype, offset = header
    count = math.prod(shape)
    needed = count * dtype.itemsize
    declared = archive.getinfo(f"{key}.npy").file_size - offset
    if declared != needed:
        raise _fail(source, f"{key!r} would unpack to {declared:,} bytes, its shape {shape} holds {needed:,}")
    with archive.open(f"{key}.npy") as stream:
        stream.seek(offset)
        data = stream.read(needed)
    return np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran else "C").copy()


def _metadata(archive: zipfile.ZipFile, source: str) -> dict[str, Any]:
    """The ``meta`` entry: a JSON object whose fields have the types :data:`FIELDS` gives."""
    header = _header(archive, "meta")
    shape, _, dtype, _ = header
    if shape != () or dtype.kind != "U" or dtype.itemsize > META_BYTES:
        raise _fail(source, f"'meta' is a {dtype} array of shape {shape}, not a JSON string")
    try:
        meta = json.loads(str(_data(archive, "meta", source, header)[()]))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _fail(source, f"'meta' is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _fail(source, f"'meta' is a JSON {type(meta).__name__}, not an object of fields")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _fail(
            source,
            f"format version {reprlib.repr(meta.get('format_version'))}, this code reads {FORMAT_VERSION}",
        )
    for key, (types, what) in FIELDS.items():
        if key not in meta:
            raise _fail(source, f"metadata field {key!r} is missing")
        if not isinstance(meta[key], types):
            raise _fail(source, f"metadata field {key!r} must be {what}, got {reprlib.repr(meta[key])}")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in meta["layer_sizes"]):
        raise _fail(
            source,
            f"metadata field 'layer_sizes' must hold whole numbers, got {reprlib.repr(meta['layer_sizes'])}",
        )
    settle = meta["provenance"].get("settle_ticks", 0)
    if not isinstance(settle, int) or isinstance(settle, bool) or not 0 <= settle <= MAX_SETTLE_TICKS:
        raise _fail(
            source,
            f"provenance 'settle_ticks' must be a whole number 0-{MAX_SETTLE_TICKS}, "
            f"got {reprlib.repr(settle)}",
        )
    return meta


def _spec(meta: dict[str, Any], source: str) -> NetworkSpec:
    if meta["kind"] not in KINDS:
        raise _fail(source, f"kind {meta['kind']!r} is not one of {', '.join(KINDS)}")
    try:
        spec = NetworkSpec(
            layer_sizes=tuple(meta["layer_sizes"]),
            activations=tuple(meta["activations"]),
            rule=meta["rule"] or "ABCD_lr",
            init=meta["init"],
            normalise=meta["normalise"],
            frontend=meta.get("frontend"),  # absent in files written before front ends existed
            plasticity_period=meta.get("plasticity_period", 1),  # absent: every tick, as before it existed
        )
    except (TypeError, ValueError) as exc:
        raise _fail(source, f"malformed metadata ({exc})") from None
    count = Genome.parameter_count(meta["kind"], spec)
    if count > MAX_PARAMETERS:
        raise _fail(
            source, f"its metadata declares {count:,} parameters; a genome holds at most {MAX_PARAMETERS:,}"
        )
    return spec


def _read(path: Path, source: str) -> tuple[dict[str, Any], NetworkSpec, dict[str, np.ndarray]]:
    """Metadata, spec and arrays of a genome archive, each checked before the next is read."""
    with path.open("rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise _fail(
                source, "this is a .npy array, not a genome; a genome is the .npz archive evolve writes"
            )
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
        if "meta.npy" not in members:
            raise _fail(source, "no 'meta' entry; this is not a genome written by save_genome")
        meta = _metadata(archive, source)
        spec = _spec(meta, source)
        shapes = Genome.array_shapes(meta["kind"], spec)
        unexpected = members - {f"{key}.npy" for key in ("meta", *(key for key, _ in shapes))}
        if unexpected:
            raise _fail(source, f"unexpected entries {sorted(unexpected)}")
        arrays = {}
        for key, shape in shapes:
            if f"{key}.npy" not in members:
                raise _fail(source, f"missing array {key!r}")
            header = _header(archive, key)
            if header[0] != shape:
                raise _fail(source, f"array {key!r} has shape {header[0]}, the metadata says {shape}")
            if header[2] != np.float32:
                raise _fail(source, f"array {key!r} is {header[2]}, expected float32")
            arrays[key] = _data(archive, key, source, header)
    return meta, spec, arrays


def load_genome(
    source: str | os.PathLike,
    task: str | None = None,
    obs_size: int | None = None,
    action_size: int | None = None,
) -> Genome:
    """Read and validate a genome file or a shipped genome's short name (e.g. ``ant-static``).

    ``task``/``obs_size``/``action_size``, when given, must match what the genome was evolved for.
    Every problem is a :class:`UserError` whose message names it and the fix.
    """
    name = str(source)
    path = shipped_genome_path(name) if name in SHIPPED else Path(name)
    if not path.is_file():
        raise UserError(
            f"genome file {name} not found; give a path to a .npz genome or one of {', '.join(SHIPPED)}"
        )
    try:
        meta, spec, arrays = _read(path, name)
    except (
        zipfile.BadZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise _fail(name, f"not a readable .npz archive ({exc}); re-export or re-download it") from None
    loaded: dict[str, list[np.ndarray]] = {"coefficients": [], "weights": [], "frontend": []}
    for key, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise _fail(name, f"array {key!r} holds NaN or infinite values")
        largest = float(np.abs(array).max(initial=0.0))
        if largest > MAX_MAGNITUDE:
            raise _fail(
                name,
                f"array {key!r} holds values up to {largest:.3g}, beyond the +-{MAX_MAGNITUDE:g} a genome's "
                "parameters stay within (evolved ones: within +-10); the file is damaged",
            )
        loaded[key.split("_")[0]].append(array)
    genome_task = meta["task"]
    if task is not None and genome_task != task:
        raise UserError(
            f"genome {name} was evolved for task {genome_task!r}, not {task!r}; "
            f"pick a genome for {task!r} or run --sim {genome_task}"
        )
    for label, want, have in (
        ("observation", obs_size, spec.obs_size),
        ("action", action_size, spec.action_size),
    ):
        if want is not None and want != have:
            raise UserError(
                f"genome {name} expects {label} size {have} but the robot gives {want}; "
                "use a genome evolved for this robot"
            )
    return Genome(
        meta["kind"],
        spec,
        genome_task,
        loaded["coefficients"],
        loaded["weights"],
        meta["provenance"],
        loaded["frontend"],
    )
