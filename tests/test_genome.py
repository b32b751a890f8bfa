"""Genome files: round trip, and a one-line error for every kind of bad file."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import ANT_SPEC, random_genome

from controller.cli import main
from controller.errors import UserError
from controller.genome import Genome, load_genome, save_genome
from controller.network import BACKENDS, NetworkSpec, StaticNetwork, resolve_backend


@pytest.mark.parametrize("kind", ["hebbian", "static"])
def test_round_trip_keeps_every_field(tmp_path, kind):
    genome = random_genome(kind=kind)
    genome.provenance.update(generation=7, fitness=12.5)
    loaded = load_genome(save_genome(genome, tmp_path / "g.npz"), task="ant")
    assert loaded.kind == genome.kind and loaded.task == "ant" and loaded.spec == genome.spec
    assert loaded.provenance["generation"] == 7 and loaded.provenance["fitness"] == 12.5
    assert loaded.provenance["seed"] == 0 and "code_version" in loaded.provenance
    for a, b in zip(loaded.coefficients + loaded.weights, genome.coefficients + genome.weights, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert np.array_equal(loaded.to_vector(), genome.to_vector())


def test_coevolved_genome_carries_initial_weights(tmp_path):
    spec = NetworkSpec((5, 4, 2), ("tanh", "tanh"), "AD_lr", init="coevolve")
    genome = random_genome(spec)
    assert len(genome.weights) == 2 and len(genome.coefficients) == 2
    net = load_genome(save_genome(genome, tmp_path / "g.npz")).build("numpy")
    net.reset(np.random.default_rng(3))
    assert np.array_equal(net.weights[0], genome.weights[0])


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    save_genome(random_genome(), tmp_path / "g.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"]


def _rewrite(path, meta_change=None, arrays_change=None):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays.pop("meta")))
    if meta_change:
        meta_change(meta)
    if arrays_change:
        arrays_change(arrays)
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def _nan(arrays):
    arrays["coefficients_1"][3, 4, 0] = np.nan


def _shape(arrays):
    arrays["coefficients_0"] = arrays["coefficients_0"][:, :, :4]


def _dtype(arrays):
    arrays["coefficients_2"] = arrays["coefficients_2"].astype(np.float64)


@pytest.mark.parametrize(
    ("meta_change", "arrays_change", "message"),
    [
        (None, _nan, "NaN"),
        (None, _shape, "shape"),
        (None, _dtype, "float32"),
        (lambda m: m.update(format_version=99), None, "format version"),
        (lambda m: m.update(rule="XYZ"), None, "unknown rule"),
        (lambda m: m.update(task="carracing"), None, "evolved for task 'carracing'"),
    ],
)
def test_bad_genome_gives_one_line_error(genome_file, meta_change, arrays_change, message, capsys):
    _rewrite(genome_file, meta_change, arrays_change)
    with pytest.raises(UserError, match=message):
        load_genome(genome_file, task="ant")
    assert main(["--sim", "ant", "--genome", str(genome_file), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_truncated_genome_is_refused(genome_file, capsys):
    data = genome_file.read_bytes()
    genome_file.write_bytes(data[: len(data) // 2])
    assert main(["--sim", "ant", "--genome", str(genome_file)]) == 2
    assert "not a readable .npz archive" in capsys.readouterr().err


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UserError):
        load_genome(path)


def test_missing_file_and_not_a_zip(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_genome(tmp_path / "nope.npz")
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(UserError, match="not a readable"):
        load_genome(tmp_path / "x.npz")
    assert zipfile.is_zipfile(save_genome(random_genome(), tmp_path / "ok.npz"))


def test_observation_size_mismatch_is_named(genome_file):
    with pytest.raises(UserError, match="observation size 27 but the robot gives 30"):
        load_genome(genome_file, obs_size=30)


def test_shipped_genomes_load_through_package_resources():
    genome = load_genome("ant", task="ant")
    assert genome.spec.layer_sizes == ANT_SPEC.layer_sizes and genome.kind == "hebbian"


def test_vector_round_trip_matches_parameter_count():
    n = Genome.parameter_count("hebbian", ANT_SPEC)
    assert n == (27 * 128 + 128 * 64 + 64 * 8) * 5
    vector = np.arange(n, dtype=np.float32)
    assert np.array_equal(Genome.from_vector("hebbian", ANT_SPEC, "ant", vector).to_vector(), vector)


def test_settle_ticks_follow_the_genome_when_its_run_recorded_them():
    genome = random_genome()
    assert genome.settle_ticks(40) == 40  # no record: the task's
    genome.provenance["settle_ticks"] = 0
    assert genome.settle_ticks(40) == 0


def test_auto_backend_is_numba_on_every_install():
    """One registry: "auto" names numba whatever extras are installed, so a command's figures do not
    depend on the install; an unknown name lists every backend, and onnx is only built from a genome."""
    assert resolve_backend("auto") == "numba" and random_genome().build().backend == "numba"
    assert list(BACKENDS) == ["numba", "numpy", "onnx"]
    with pytest.raises(ValueError, match="unknown backend 'nosuch'; choose auto, numba, numpy, onnx"):
        random_genome().build("nosuch")
    with pytest.raises(ValueError, match="build it with Genome.build"):
        StaticNetwork(NetworkSpec((3, 2), ("tanh",)), [np.zeros((3, 2))], "onnx")
