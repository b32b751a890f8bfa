"""Bad genome files, configs and run folders: each is a one-line error naming the input and the fix,
exit 2, nothing lost; fed at random, the loaders give exit 0 or such an error, never a traceback."""

from __future__ import annotations

import json
import math
import shutil
import string
import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tomllib
from conftest import random_genome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import controller.cli
import evolve.run
from controller.errors import UserError
from controller.genome import Genome, load_genome, save_genome
from controller.network import NetworkSpec, resolve_backend
from evolve.cli import main
from evolve.config import KEYS, SECTIONS, ConfigError, make_config
from evolve.openai_es import ESParams, OpenAIES

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "launch" / "smoke" / "ant.yaml")
TINY = ["--workers", "1", "--set", "population=2", "--set", "ticks=5", "--set", "validation_ticks=5"]
SMALL_SPEC = NetworkSpec((27, 4, 8), ("tanh", "tanh"), "ABCD_lr")


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def arrays_of(genome: Genome) -> dict[str, np.ndarray]:
    return {
        **{f"coefficients_{i}": c for i, c in enumerate(genome.coefficients)},
        **{f"weights_{i}": w for i, w in enumerate(genome.weights)},
    }


def write_genome(path: Path, meta: object, arrays: dict[str, np.ndarray]) -> Path:
    """A genome archive with any JSON value as its metadata."""
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def controller_error(path: Path, capsys) -> str:
    """The controller's message for a run of this genome file, which must exit 2."""
    code = controller.cli.main(["--sim", "ant", "--genome", str(path), "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    return err


# --- genome files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "fragment"),
    [
        ([1, 2], "'meta' is a JSON list, not an object"),
        (7, "'meta' is a JSON int, not an object"),
    ],
)
def test_genome_metadata_that_is_not_an_object_is_named(tmp_path, capsys, meta, fragment):
    path = write_genome(tmp_path / "g.npz", meta, arrays_of(random_genome()))
    one_line_error(2, controller_error(path, capsys), fragment)


def test_genome_with_null_provenance_is_named(tmp_path, capsys):
    genome = random_genome()
    path = write_genome(tmp_path / "g.npz", {**genome.metadata(), "provenance": None}, arrays_of(genome))
    one_line_error(2, controller_error(path, capsys), "metadata field 'provenance' must be an object")


def test_npy_file_given_as_a_genome_is_named(tmp_path, capsys):
    path = tmp_path / "coefficients.npy"
    np.save(path, np.zeros((3, 4), np.float32))
    one_line_error(2, controller_error(path, capsys), "is a .npy array, not a genome")


def test_random_bytes_as_a_genome_do_not_mention_pickles(tmp_path, capsys):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    err = controller_error(path, capsys)
    one_line_error(2, err, "not a readable .npz archive")
    assert "pickle" not in err


def test_finite_but_absurd_parameters_are_refused_at_load(tmp_path, capsys):
    genome = random_genome()
    genome.coefficients[0][0, 0, 0] = 1e30
    path = save_genome(genome, tmp_path / "g.npz")
    one_line_error(2, controller_error(path, capsys), "'coefficients_0' holds values up to 1e+30", "+-1e+06")


# a header for 64 MiB of float32 that the metadata never declared, or the declared one and 64 MiB more
@pytest.mark.parametrize("claimed", [(1 << 24,), None])
def test_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, claimed):
    genome = random_genome(SMALL_SPEC)
    header = {"descr": "<f4", "fortran_order": False, "shape": claimed or genome.coefficients[0].shape}
    path = save_genome(genome, tmp_path / "g.npz")
    with zipfile.ZipFile(path) as original:
        entries = {name: original.read(name) for name in original.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            if name == "coefficients_0.npy":
                with archive.open(name, "w") as member:
                    np.lib.format.write_array_header_1_0(member, header)
                    for _ in range(64):
                        member.write(bytes(1 << 20))
            else:
                archive.writestr(name, data)
    assert path.stat().st_size < 1 << 20  # a small file ...
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="coefficients_0") as error:
            load_genome(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB read"  # ... refused without unpacking its 64 MiB
    assert "\n" not in str(error.value)


# --- configs ------------------------------------------------------------------------------------------


@pytest.fixture
def stopped_before_running():
    """The evolve command up to the point where the run would start: the config and everything
    :func:`evolve.run.plan` checks, then exit 0 without evolving."""
    with mock.patch.object(evolve.run, "evolve", lambda config, out, **_: evolve.run.plan(config)) as stub:
        yield stub


def evolve_with_file(tmp_path: Path, content: bytes | str, *args: str) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    return ["--config", str(config), "--out", str(tmp_path / "run"), *args]


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"task: ant\nnote: caf\xe9\n", ("not UTF-8", "0xe9", "save it as UTF-8")),
        ("task: ant\nlr: 0.1\npopulation: 8\nlr: 0.2\n", ("line 4", "key 'lr' appears twice; keep one")),
        ("task: ant\nrandomise: {gravity: [0.9, 1.1], gravity: [1, 1]}\n", ("key 'gravity' appears twice",)),
        ("", ("is empty", "name a task (task: ant) or start from a file in launch/")),
        ("# only a comment\n", ("is empty",)),
        ("{}\n", ("is empty",)),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path, capsys, stopped_before_running, content, fragments):
    code = main(evolve_with_file(tmp_path, content))
    one_line_error(code, capsys.readouterr().err, *fragments)
    assert not (tmp_path / "run").exists()


def test_a_key_twice_in_a_set_override_is_named(tmp_path, capsys, stopped_before_running):
    code = main(["--config", SMOKE, "--out", str(tmp_path / "run"), "--set", "randomise={a: 1, a: 2}"])
    one_line_error(code, capsys.readouterr().err, "key 'a' appears twice")


FLOAT_KEYS = [name for name, key in KEYS.items() if key.kind is float]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1.0e+400", "1" + "0" * 400])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_every_float_key_must_be_finite(tmp_path, capsys, stopped_before_running, key, value):
    code = main(["--config", SMOKE, "--out", str(tmp_path / "run"), "--set", f"{key}={value}"])
    one_line_error(code, capsys.readouterr().err, f"config key {key!r} must be a finite number")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed=-5", "config key 'seed' must be between 0 and 2147483647, got -5"),
        ("seed=-1", "config key 'seed' must be between 0"),
        ("population=1000000000", "config key 'population' must be an even number 2-10000"),
        ("ticks=1000000000000", "config key 'ticks' must be between 1 and 100000"),
        ("validation_ticks=1000000000000", "config key 'validation_ticks' must be between 1 and 100000"),
        ("settle_ticks=1000000000", "config key 'settle_ticks' must be between 0 and 100000"),
        ("generations=1000000000", "config key 'generations' must be between 1 and 100000"),
        ("lifetimes=1000000", "config key 'lifetimes' must be between 1 and 100"),
        ("validation_lifetimes=1000000", "config key 'validation_lifetimes' must be between 1 and 100"),
        ("workers=100000", "config key 'workers' must be between 0 and 1024"),
        ("hidden=[1000000]", "config key 'hidden' must be a list of up to 4 layer sizes 1-1024"),
        ("hidden=[8,8,8,8,8]", "config key 'hidden' must be a list of up to 4"),
        ("parameter_init_std=1000000000", "config key 'parameter_init_std' must be between 0 and 100"),
    ],
)
def test_negative_seeds_and_absurd_sizes_are_refused(
    tmp_path, capsys, stopped_before_running, override, fragment
):
    code = main(["--config", SMOKE, "--out", str(tmp_path / "run"), "--set", override])
    one_line_error(code, capsys.readouterr().err, fragment)


def test_an_update_that_would_not_fit_in_memory_is_refused(tmp_path, capsys, stopped_before_running):
    overrides = ["--set", "population=10000", "--set", "hidden=[1024,1024,1024,1024]"]
    code = main(["--config", SMOKE, "--out", str(tmp_path / "run"), *overrides])
    one_line_error(code, capsys.readouterr().err, "population 10000 over", "lower population or hidden")


def test_the_es_refuses_what_would_make_nan_genomes():
    with pytest.raises(ValueError, match="finite"):
        OpenAIES(ESParams(lr=math.inf), seed=0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        OpenAIES(ESParams(), seed=-1)


# --- run folders --------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_onto_an_existing_file_is_refused_and_the_file_kept(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code = main(["--config", SMOKE, "--out", str(target), *TINY])
    one_line_error(
        code, capsys.readouterr().err, f"cannot make the run folder {target}", "pick another --out"
    )
    assert target.read_text() == "keep me"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["--config", SMOKE, "--out", str(run), "--set", "generations=2", *TINY]) == 0
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_resume_with_a_truncated_checkpoint_refuses_and_keeps_the_folder(run_copy, capsys):
    checkpoint = run_copy / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    before = snapshot(run_copy)
    code = main(["--resume", str(run_copy)])
    one_line_error(code, capsys.readouterr().err, "checkpoint.npz is damaged", "init_from=")
    assert snapshot(run_copy) == before


def test_resume_with_a_malformed_log_line_refuses_and_keeps_the_folder(run_copy, capsys):
    with (run_copy / "log.jsonl").open("a") as log:
        log.write('{"generation": 2, "best": \n')
    before = snapshot(run_copy)
    code = main(["--resume", str(run_copy)])
    one_line_error(code, capsys.readouterr().err, "log.jsonl line 3 is not a generation record")
    assert snapshot(run_copy) == before


def test_resume_after_a_kill_mid_line_drops_the_unfinished_line(run_copy, capsys):
    log = run_copy / "log.jsonl"
    finished = log.read_text()
    log.write_text(finished + '{"generation": 2, "be')  # the log is written before the checkpoint
    assert main(["--resume", str(run_copy), "--set", "generations=2"]) == 0
    assert log.read_text() == finished


def test_resume_without_a_checkpoint_refuses_and_keeps_the_log(run_copy, capsys):
    (run_copy / "checkpoint.npz").unlink()
    before = snapshot(run_copy)
    code = main(["--resume", str(run_copy)])
    one_line_error(
        code, capsys.readouterr().err, "holds no checkpoint.npz", f"--config {run_copy}/config.yaml"
    )
    assert snapshot(run_copy) == before


# --- one default backend ------------------------------------------------------------------------------


def test_numba_is_a_core_dependency_so_the_default_backend_is_the_same_on_every_install():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("numba") for d in project["dependencies"])
    assert project["optional-dependencies"]["fast"] == []  # old install commands still work
    assert resolve_backend("auto") == "numba"


# --- at random ----------------------------------------------------------------------------------------

NUMBERS = ["0", "1", "-5", "2", "8", "0.5", ".inf", "-.inf", ".nan", "1.0e+400", "10000000000"]
OTHERS = ["null", "true", "ant", "'cut-leg:2'", "[]", "[[]]", "[[cut-leg:9]]", "[64,32]", "{}", "{a:1}", "''"]
SCALARS = st.sampled_from(NUMBERS + OTHERS)
CONFIG_KEYS = [*KEYS, *SECTIONS, *(f"{key.section}.{name}" for name, key in KEYS.items() if key.section)]
KEYS_GIVEN = st.sampled_from([*CONFIG_KEYS, "base", "populaton", "1", "network.populaton", "nowhere.hidden"])
YAML_CONFIGS = st.one_of(
    st.lists(st.tuples(KEYS_GIVEN, SCALARS), max_size=5).map(
        lambda kv: "".join(f"{k}: {v}\n" for k, v in kv)
    ),
    st.text(string.printable, max_size=60),
    st.binary(max_size=60),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(YAML_CONFIGS)
def test_any_config_file_exits_0_or_2_with_one_line(capsys, stopped_before_running, content):
    with tempfile.TemporaryDirectory() as folder:
        code = main(evolve_with_file(Path(folder), content))
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        one_line_error(code, err)


# a section's mapping of real keys (some in the wrong section, some given flat too)
SECTION_MAPPINGS = st.dictionaries(st.sampled_from(sorted(KEYS)), JSON, max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        KEYS_GIVEN, JSON | SECTION_MAPPINGS | st.integers(min_value=-(10**400), max_value=10**400), max_size=5
    )
)
def test_any_config_mapping_is_a_config_or_a_one_line_error(values):
    try:
        make_config(values)
    except ConfigError as exc:
        assert "\n" not in str(exc)


VALID_META = random_genome(SMALL_SPEC).metadata()
METAS = JSON | st.builds(
    lambda changes, dropped: {k: v for k, v in {**VALID_META, **changes}.items() if k not in dropped},
    st.dictionaries(st.sampled_from(sorted(VALID_META)), JSON, max_size=3),
    st.sets(st.sampled_from(sorted(VALID_META)), max_size=2),
)


@settings(max_examples=80, deadline=None)
@given(METAS)
def test_any_genome_metadata_loads_or_is_a_one_line_error(meta):
    with tempfile.TemporaryDirectory() as folder:
        path = write_genome(Path(folder) / "g.npz", meta, arrays_of(random_genome(SMALL_SPEC)))
        try:
            load_genome(path)
        except UserError as exc:
            assert "\n" not in str(exc)
