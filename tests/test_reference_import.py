"""Coefficient files of the paper's reference code import as genomes that behave exactly the same."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pybullet")

import sim  # noqa: E402
from controller.cli import main  # noqa: E402
from controller.genome import Genome, load_genome  # noqa: E402
from controller.loop import run_lifetime  # noqa: E402
from controller.network import task_spec  # noqa: E402


def bullet_spec():
    env = sim.make("ant-bullet")
    return task_spec(env.observation_space, env.action_space, (128, 64), rule="ABCD_lr")


def reference_rows(genome: Genome) -> np.ndarray:
    """The reference layout: (synapses, k), input-major rows, layers in order."""
    return np.concatenate([c.reshape(-1, c.shape[-1]) for c in genome.coefficients])


def import_file(tmp_path, value, *extra: str, task: str = "ant-bullet", rule: str = "ABCD_lr") -> int:
    source = tmp_path / "heb_coeffs.pt"
    torch.save(value, source)
    return main(
        [
            "import-reference",
            str(source),
            "--rule",
            rule,
            "--task",
            task,
            "-o",
            str(tmp_path / "g.npz"),
            *extra,
        ]
    )


def run_on_the_ant(genome: Genome) -> tuple[np.ndarray, float]:
    actions: list[np.ndarray] = []
    life = run_lifetime(
        genome.build("numpy"),
        sim.make("ant-bullet"),
        40,
        seed=3,
        settle_ticks=40,
        on_tick=lambda tick, obs, action, info: actions.append(action),
    )
    return np.array(actions), life.distance


def test_imported_genome_behaves_exactly_as_the_native_one(tmp_path, capsys):
    spec = bullet_spec()
    vector = np.random.default_rng(0).normal(0.0, 0.1, Genome.parameter_count("hebbian", spec))
    native = Genome.from_vector("hebbian", spec, "ant-bullet", vector)
    assert import_file(tmp_path, torch.from_numpy(reference_rows(native))) == 0
    assert "12288 synapses" in capsys.readouterr().out
    imported = load_genome(tmp_path / "g.npz", task="ant-bullet")
    assert imported.spec == native.spec and not imported.spec.normalise  # Bullet ran unnormalised
    for a, b in zip(imported.coefficients, native.coefficients, strict=True):
        assert np.array_equal(a, b)
    native_actions, native_distance = run_on_the_ant(native)
    imported_actions, imported_distance = run_on_the_ant(imported)
    assert np.array_equal(native_actions, imported_actions) and native_distance == imported_distance


def test_rows_and_columns_follow_the_reference_layout(tmp_path):
    """Row i * n_out + j of a layer is synapse i -> j; columns A, B, C, eta, D give the paper's rule."""
    spec = bullet_spec()
    rng = np.random.default_rng(1)
    rows = rng.normal(0.0, 1.0, (spec.synapses, 5)).astype(np.float32)
    rows[:, 0] = np.arange(spec.synapses)  # A tags each row with its index
    assert import_file(tmp_path, rows) == 0  # a numpy array saved with torch.save is fine too
    network = load_genome(tmp_path / "g.npz").build("numpy")
    first, second = network.spec.layer_shapes[:2]
    network.reset(np.random.default_rng(0))
    before = [w.copy() for w in network.weights]
    network.tick(rng.uniform(-1, 1, 28))
    a = network.activations
    for layer, offset, (i, j) in ((0, 0, (5, 17)), (1, first[0] * first[1], (100, 63))):
        n_out = network.spec.layer_shapes[layer][1]
        A, B, C, eta, D = rows[offset + i * n_out + j].astype(np.float64)
        assert offset + i * n_out + j == A
        pre, post = float(a[layer][i]), float(a[layer + 1][j])
        dw = eta * (A * pre * post + B * pre + C * post + D)
        assert network.weights[layer][i, j] - before[layer][i, j] == pytest.approx(dw, rel=1e-5)
    assert second == (128, 64)


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"coefficients": torch.zeros(12288, 5)}, "holds a dict"),
        ([torch.zeros(12288, 5)], "holds a list"),
        (Opaque(), "not a plain tensor or array"),
        (torch.zeros(12288, 5, dtype=torch.int64), "expected floating point"),
        (torch.zeros(12288, 4), "coefficients per synapse would be another rule"),
        (torch.zeros(100, 5), "expected (12288, 5)"),
    ],
)
def test_anything_but_a_plain_float_array_of_the_right_shape_is_refused(tmp_path, capsys, value, message):
    assert import_file(tmp_path, value) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "g.npz").exists()


def test_a_file_torch_cannot_read_is_refused(tmp_path, capsys):
    source = tmp_path / "coeffs.dat"
    source.write_text("not a torch file\n")
    args = [
        "import-reference",
        str(source),
        "--rule",
        "ABCD_lr",
        "--task",
        "ant-bullet",
        "-o",
        str(tmp_path / "g"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a plain tensor or array" in err and "\n" not in err


@pytest.mark.parametrize(
    ("args", "message"), [(["--rule", "ABCDE"], "unknown rule"), (["--task", "moon"], "unknown task")]
)
def test_bad_rule_or_task_is_one_line(tmp_path, capsys, args, message):
    rule = args[1] if args[0] == "--rule" else "ABCD_lr"
    task = args[1] if args[0] == "--task" else "ant-bullet"
    assert import_file(tmp_path, torch.zeros(12288, 5), task=task, rule=rule) == 2
    assert message in capsys.readouterr().err


def test_carracing_import_sees_frames_as_the_reference_did(tmp_path):
    """The reference fed (C, W, H) frames; the import makes the same network for (C, H, W) ones."""
    pytest.importorskip("Box2D")
    rng = np.random.default_rng(2)
    rows = rng.normal(0.0, 1.0, (648 * 128 + 128 * 64 + 64 * 3, 5)).astype(np.float32)
    kernels = [rng.normal(0.0, 0.5, (6, 3, 3, 3)), rng.normal(0.0, 0.5, (8, 6, 5, 5))]
    conv = tmp_path / "cnn_parameters.pt"
    torch.save(torch.from_numpy(np.concatenate([k.reshape(-1) for k in kernels]).astype(np.float32)), conv)
    assert import_file(tmp_path, rows, task="carracing") == 2  # the conv kernels are required
    assert import_file(tmp_path, rows, "--conv", str(conv), task="carracing") == 0
    genome = load_genome(tmp_path / "g.npz", task="carracing")
    assert genome.spec.normalise and genome.spec.activations[-1] == "linear"

    frame = rng.random((3, 84, 84), dtype=np.float32)  # (C, H, W), as sim.carracing gives it
    pool = torch.nn.MaxPool2d(2, 2)
    x = torch.from_numpy(frame.swapaxes(1, 2).copy())[None]  # the reference's (C, W, H)
    for kernel, stride in zip(kernels, (1, 2), strict=True):
        x = pool(torch.tanh(torch.nn.functional.conv2d(x, torch.from_numpy(kernel).float(), stride=stride)))
    reference = x.reshape(-1).numpy()  # its 648 features, in its order

    ours = genome.build("numpy").frontend(frame)
    c, h, w = np.meshgrid(np.arange(8), np.arange(9), np.arange(9), indexing="ij")
    reference_index = (c * 81 + w * 9 + h).reshape(-1)  # where each of our features sits in its order
    assert ours == pytest.approx(reference[reference_index], abs=1e-5)
    assert np.array_equal(
        genome.coefficients[0].reshape(648, -1), rows[: 648 * 128].reshape(648, -1)[reference_index]
    )
