"""The C plastic tick (firmware_bridge/firmware/plastic), built here with gcc and loaded with ctypes, is
the numba tick: the same actions and weights over a 1000-tick servo-quad lifetime for every rule, the
same initial weights from the same seed (PCG32 on both sides), and, cross-built for a Cortex-M4F and
run under qemu-arm, the same bits as the host build."""

from __future__ import annotations

import ctypes
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from controller.c_export import export_c
from controller.errors import UserError
from controller.genome import Genome, load_genome
from controller.network import PCG32, NetworkSpec, lifetime_seed
from controller.rules import RULES
from firmware_bridge.onboard import state_size

PLASTIC = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware" / "plastic"
SOURCES = [str(PLASTIC / "hq_plastic.c"), str(PLASTIC / "hq_pcg32.c")]
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wshadow"]
M4F = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os", "-ffp-contract=off"]
SERVO_QUAD = (17, 64, 32, 8)
TICKS = 1000

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (apt-get install gcc)")


class CTick:
    """The C tick of one exported genome, as a shared library; its state is one float32 array
    (hq_plastic: the weights, the activations, then a slower plasticity clock's sums)."""

    def __init__(self, genome: Genome, folder: Path) -> None:
        export_c(genome, folder / "genome.h")
        library = folder / "libhq_plastic.so"
        command = ["gcc", *STRICT, "-O2", "-shared", "-fPIC", f"-I{folder}", *SOURCES, "-o", str(library)]
        subprocess.run(command, check=True)
        self.lib = ctypes.CDLL(str(library))
        self.lib.hq_plastic_reset.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        self.lib.hq_plastic_tick.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        spec = genome.spec
        self.state = np.zeros(state_size(spec), dtype=np.float32)
        self.weights = self.state[: spec.synapses]
        end = spec.synapses + sum(spec.layer_sizes)  # the activations end with the action
        self.action = self.state[end - spec.action_size : end]

    def reset(self, seed: int) -> None:
        self.lib.hq_plastic_reset(self.state.ctypes.data, seed)

    def tick(self, obs: np.ndarray) -> np.ndarray:
        self.lib.hq_plastic_tick(self.state.ctypes.data, obs.ctypes.data)
        return self.action


@pytest.fixture(scope="module")
def recorded_obs() -> np.ndarray:
    """A servo-quad lifetime's observations (float32, TICKS of them), walked by the shipped genome in
    the simulator after its settle ticks."""
    import sim

    genome = load_genome("servo-quad")
    network = genome.build("numba")
    network.reset(np.random.default_rng(0))
    env = sim.make("servo-quad")
    obs, _ = env.reset(seed=0)
    for _ in range(genome.settle_ticks(env.unwrapped.settle_ticks)):
        obs, *_ = env.step(np.zeros(genome.action_size, dtype=np.float32))
    recorded = []
    for _ in range(TICKS):
        recorded.append(np.asarray(obs, dtype=np.float32))
        obs, _, terminated, _, _ = env.step(network.tick(obs))
        assert not terminated
    env.close()
    return np.array(recorded)


def _genome(
    rule: str, normalise: bool, activations=("tanh", "tanh", "tanh"), init="uniform_pcg32", period: int = 1
):
    """A servo-quad-sized genome with random coefficients, scaled so that every rule moves the weights
    in a lifetime and none overflows: effective terms (a learning rate times a coefficient) about 3e-4
    a tick, or 0.03 with normalisation."""
    spec = NetworkSpec(
        SERVO_QUAD, activations, rule, init=init, normalise=normalise, plasticity_period=period
    )
    scale = (0.03 if normalise else 3e-4) ** (0.5 if "eta" in RULES[rule].coefficients else 1.0)
    seed = list(RULES).index(rule)
    vector = np.random.default_rng(seed).normal(0.0, scale, Genome.parameter_count("hebbian", spec))
    return Genome.from_vector("hebbian", spec, "servo-quad", vector)


def _flat(weights: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([w.reshape(-1) for w in weights])


def _compare(genome: Genome, c_tick: CTick, observations: np.ndarray, seed: int = 11) -> float:
    """Run the numba and the C tick over the observations from the same seed; the largest absolute
    difference of the actions and the weights, over every tick."""
    network = genome.build("numba")
    network.reset(np.random.default_rng(seed))
    c_tick.reset(lifetime_seed(np.random.default_rng(seed)))
    np.testing.assert_array_equal(c_tick.weights, _flat(network.weights))
    initial = c_tick.weights.copy()
    worst = 0.0
    for obs in observations:
        action = network.tick(obs)
        worst = max(worst, float(np.max(np.abs(c_tick.tick(obs) - action))))
        worst = max(worst, float(np.max(np.abs(c_tick.weights - _flat(network.weights)))))
    assert np.all(np.isfinite(c_tick.weights)) and np.max(np.abs(c_tick.weights - initial)) > 1e-3
    return worst


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("rule", list(RULES))
def test_c_tick_matches_numba_for_a_recorded_lifetime(tmp_path, recorded_obs, rule, normalise):
    genome = _genome(rule, normalise)
    assert _compare(genome, CTick(genome, tmp_path), recorded_obs) <= 1e-5


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("period", [3, 8])
def test_a_slower_plasticity_clock_matches_numba(tmp_path, recorded_obs, period, normalise):
    genome = _genome("ABCD_lr", normalise, period=period)
    assert _compare(genome, CTick(genome, tmp_path), recorded_obs) <= 1e-5


def test_shipped_servo_quad_genome_matches_numba(tmp_path, recorded_obs):
    """The evolved coefficients on the observations they walked with (its uniform weights drawn by
    PCG32, as on the robot)."""
    genome = load_genome("servo-quad")
    genome.spec = dataclasses.replace(genome.spec, init="uniform_pcg32")
    assert _compare(genome, CTick(genome, tmp_path), recorded_obs) <= 1e-5


def test_coevolved_weights_and_a_linear_layer_match_numba(tmp_path, recorded_obs):
    """A genome's own initial weights (every lifetime, whatever the seed) and raw outputs."""
    genome = _genome("ABCD_lr", True, ("tanh", "tanh", "linear"), init="coevolve")
    genome.weights = [
        np.random.default_rng(k).uniform(-0.5, 0.5, shape).astype(np.float32)
        for k, shape in enumerate(genome.spec.layer_shapes)
    ]
    c_tick = CTick(genome, tmp_path)
    assert _compare(genome, c_tick, recorded_obs) <= 1e-5
    c_tick.reset(12345)
    np.testing.assert_array_equal(c_tick.weights, _flat(genome.weights))


@pytest.mark.parametrize("seed", [0, 1, 0x5EED, (1 << 64) - 1])
def test_c_and_python_draw_the_same_initial_weights(tmp_path, seed):
    genome = _genome("ABCD", False)
    c_tick = CTick(genome, tmp_path)
    c_tick.reset(seed)
    python = PCG32(seed).uniform_weights(genome.spec.synapses)
    np.testing.assert_array_equal(c_tick.weights.view(np.uint32), python.view(np.uint32))
    assert -0.1 <= python.min() < -0.099 and 0.099 < python.max() < 0.1
    assert abs(python.mean()) < 0.005 and abs(python.std() - 0.2 / np.sqrt(12)) < 0.002


def test_network_draws_uniform_pcg32_weights_from_the_lifetime_seed():
    spec = NetworkSpec(SERVO_QUAD, ("tanh",) * 3, "ABCD", init="uniform_pcg32")
    network = Genome.from_vector("hebbian", spec, "servo-quad", np.zeros(spec.synapses * 4)).build("numpy")
    network.reset(np.random.default_rng(3))
    expected = PCG32(lifetime_seed(np.random.default_rng(3))).uniform_weights(spec.synapses)
    np.testing.assert_array_equal(_flat(network.weights), expected)
    network.reset(np.random.default_rng(4))
    assert not np.array_equal(_flat(network.weights), expected)


def test_pcg32_gives_the_reference_sequence(tmp_path):
    """pcg32-demo's first outputs for seed 42, stream 54 (pcg-random.org's pcg-c-basic), in C and Python."""
    reference = [0xA15C02B7, 0x7B47F409, 0xBA1D3330, 0x83D2F293, 0xBFA4784B, 0xCBED606E]
    library = tmp_path / "libpcg.so"
    subprocess.run(["gcc", *STRICT, "-shared", "-fPIC", SOURCES[1], "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.hq_pcg32_seed.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.hq_pcg32_next.argtypes = [ctypes.c_void_p]
    lib.hq_pcg32_next.restype = ctypes.c_uint32
    state = (ctypes.c_uint64 * 2)()
    lib.hq_pcg32_seed(state, 42, 54)
    assert [lib.hq_pcg32_next(state) for _ in reference] == reference
    python = PCG32(42, 54)
    assert python.next_uint32(2).tolist() + python.next_uint32(4).tolist() == reference


def _header(genome: Genome, folder: Path, robot: str | None = None) -> str:
    return export_c(genome, folder / "genome.h", robot).read_text()


def test_header_carries_the_period_and_the_observation_layout(tmp_path):
    servo = _header(load_genome("servo-quad"), tmp_path)
    assert "#define HQ_PERIOD_US 20000" in servo and "#define HQ_SETTLE_TICKS 50" in servo
    assert "#define HQ_OBS_CLOCK_AT 15" in servo and "#define HQ_OBS_CLOCK_CYCLES_PER_TICK 0.04f" in servo
    assert "#define HQ_POSITION_CONTROL 1" in servo and "#define HQ_NORMALISE 1" in servo
    ant = _header(load_genome("ant"), tmp_path)
    assert "#define HQ_PERIOD_US 50000" in ant and "#define HQ_POSITION_CONTROL 0" in ant
    layout = dict(re.findall(r"#define HQ_OBS_(\w+)_AT (\d+)", ant))
    assert layout == {
        "HEIGHT": "0",
        "QUATERNION": "1",
        "JOINT_POSITIONS": "5",
        "LINEAR_VELOCITY": "13",
        "ANGULAR_VELOCITY": "16",
        "JOINT_VELOCITIES": "19",
    }
    rule_a = _header(_genome("A", False), tmp_path)
    assert "#define HQ_HAS_B 0" in rule_a and "hq_term_b" not in rule_a and "hq_term_a" in rule_a


@pytest.mark.parametrize(
    "change, robot, message",
    [
        ({"kind": "static"}, None, "static genome"),
        ({"spec": NetworkSpec(SERVO_QUAD, ("tanh",) * 3, init="normal")}, None, "'normal'"),
        ({"task": "ant-bullet"}, None, "no shipped robot config"),
        ({}, "ant", "robot ant runs task 'ant'"),
    ],
)
def test_export_refuses_what_the_c_tick_cannot_run(tmp_path, change, robot, message):
    genome = dataclasses.replace(_genome("ABCD_lr", True), **change)
    with pytest.raises(UserError, match=message):
        export_c(genome, tmp_path / "genome.h", robot)


def _arm_tools() -> None:
    for tool in ("arm-none-eabi-gcc", "qemu-arm"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt-get install gcc-arm-none-eabi qemu-user)")


def test_cortex_m4f_build_computes_the_host_builds_bits(tmp_path):
    """The tick cross-built for a Cortex-M4F (double-precision tanh in software) and run under qemu-arm
    prints the same action and state hash after 300 ticks as the host build; the kernel itself holds
    no RAM (no data, no bss: the caller owns the state)."""
    _arm_tools()
    export_c(load_genome("servo-quad"), tmp_path / "genome.h")
    bench = [str(PLASTIC / "bench_main.c"), *SOURCES, f"-I{tmp_path}", "-DHQ_BENCH_TICKS=300"]
    subprocess.run(["gcc", *STRICT, "-O2", *bench, "-o", str(tmp_path / "host")], check=True)
    arm = ["arm-none-eabi-gcc", *STRICT, *M4F, "--specs=nosys.specs", "-nostartfiles"]
    subprocess.run([*arm, *bench, "-o", str(tmp_path / "m4f.elf")], check=True)
    host = subprocess.run([str(tmp_path / "host")], capture_output=True, text=True, check=True).stdout
    m4f = subprocess.run(["qemu-arm", str(tmp_path / "m4f.elf")], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"([0-9a-f]{8} ){8}[0-9a-f]{8}\n", host) and m4f.stdout == host
    objects = []
    for source in SOURCES:
        objects.append(str(tmp_path / (Path(source).stem + ".o")))
        subprocess.run([*arm, "-c", source, f"-I{tmp_path}", "-o", objects[-1]], check=True)
    sizes = subprocess.run(["arm-none-eabi-size", *objects], capture_output=True, text=True, check=True)
    for row in sizes.stdout.splitlines()[1:]:
        _, data, bss, *_ = row.split()
        assert (data, bss) == ("0", "0"), row
