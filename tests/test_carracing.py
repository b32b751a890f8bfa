"""CarRacing from pixels: frames as the paper's CNN sees them, its squashing, early stop and front end."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("Box2D")

import pygame  # noqa: E402
from gymnasium.envs.box2d.car_racing import WINDOW_H, WINDOW_W, CarRacing  # noqa: E402
from pygame import gfxdraw  # noqa: E402
from scripted_env import ScriptedEnv  # noqa: E402

import sim  # noqa: E402
from controller.cli import main  # noqa: E402
from controller.conv import FRONTENDS, ConvFrontEnd  # noqa: E402
from controller.genome import Genome  # noqa: E402
from controller.loop import EarlyStop, run_lifetime  # noqa: E402
from controller.network import NetworkSpec, StaticNetwork, task_spec  # noqa: E402
from sim.carracing import (  # noqa: E402
    CarRacingEnv,
    area_matrix,
    covers_canvas,
    preprocess,
    rotate,
    squash,
)
from sim.damage import SpecError  # noqa: E402

EPISODES = ((0, 150), (1, 60))  # (seed, steps): the second reset builds a new track


class GymnasiumRenderer(CarRacingEnv):
    """The environment with gymnasium's own CarRacing drawing the frames."""

    box2d = CarRacing


def raw_outputs(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, 1.0, 3) + (0.0, 1.0, -3.0)


TINY = StaticNetwork(NetworkSpec((1, 1), ("tanh",)), [np.zeros((1, 1), np.float32)])


class RewardRecorder(gymnasium.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.rewards: list[float] = []

    def step(self, action):
        result = self.env.step(action)
        self.rewards.append(result[1])
        return result


class Fixed:
    """A controller that always gives the same raw outputs."""

    def __init__(self, outputs) -> None:
        self.outputs = np.asarray(outputs, np.float32)

    def reset(self, rng) -> None:
        pass

    def tick(self, obs: np.ndarray) -> np.ndarray:
        return self.outputs.copy()


@pytest.mark.parametrize("damage", [[], ["obs-noise:0.01", "dropout:1", "latency:2"]])
def test_check_env(damage):
    env = sim.make("carracing", damage)
    check_env(env if damage else env.unwrapped, skip_render_check=True)


def test_observation_is_84x84_rgb_in_unit_range_channels_first():
    obs, info = sim.make("carracing").reset(seed=0)
    assert obs.shape == (3, 84, 84) and obs.dtype == np.float32
    assert obs.min() >= 0.0 and obs.max() <= 1.0 and obs.std() > 0.01
    assert info["x_distance"] == 0.0


def test_frames_are_area_averaged_and_channels_first():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    # Exact area averaging: 96 * 7 = 84 * 8, so repeat every pixel 7x7 and average 8x8 blocks.
    fine = frame.astype(np.float64).repeat(7, 0).repeat(7, 1)
    expected = fine.reshape(84, 8, 84, 8, 3).mean(axis=(1, 3)) / 255.0
    assert preprocess(frame) == pytest.approx(np.moveaxis(expected, 2, 0), abs=1e-5)
    red_top = np.zeros((96, 96, 3), np.uint8)
    red_top[:48, :, 0] = 255
    out = preprocess(red_top)
    assert np.all(out[0, :42] == 1.0) and np.all(out[0, 42:] == 0.0) and np.all(out[1:] == 0.0)


def test_squashing_is_tanh_sigmoid_sigmoid():
    outputs = np.array([0.7, -1.2, 3.0])
    assert squash(outputs) == pytest.approx([np.tanh(0.7), 1 / (1 + np.exp(1.2)), 1 / (1 + np.exp(-3.0))])
    with np.errstate(over="raise"):
        assert squash(np.array([-1e4, -1e4, 1e4])) == pytest.approx([-1.0, 0.0, 1.0])


def test_early_stop_after_20_consecutive_negative_rewards():
    rewards = np.r_[np.ones(5), -0.1 * np.ones(19), 3.0, -0.1 * np.ones(100)]
    env = ScriptedEnv(CarRacingEnv, rewards=rewards)
    rule = EarlyStop.of(env)
    assert rule == EarlyStop(0, 20)
    life = run_lifetime(TINY, env, 1000, 0, early_stop=rule)
    assert life.early_stopped and life.ticks == 5 + 19 + 1 + 20
    assert life.fitness == life.reward == pytest.approx(rewards[:45].sum())


def test_a_braking_car_is_stopped_after_20_negative_rewards():
    env = RewardRecorder(sim.make("carracing"))
    network = Fixed([0.0, -5.0, 5.0])  # no gas, full brake (raw outputs, squashed by the env)
    life = run_lifetime(network, env, 300, 0, early_stop=EarlyStop.of(env))
    assert life.early_stopped and life.ticks <= 21
    assert all(r < 0 for r in env.rewards[-20:]) and len(env.rewards) == life.ticks
    assert life.fitness == pytest.approx(sum(env.rewards))


def test_render_is_what_the_car_sees():
    env = CarRacingEnv(render_mode="rgb_array")
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(np.zeros(3))
    frame = env.render()
    assert frame.shape == (84, 84, 3) and frame.dtype == np.uint8
    assert np.abs(frame / 255.0 - np.moveaxis(obs, 0, 2)).max() <= 0.5 / 255 + 1e-6


def test_video_writes_the_84x84_frames(tmp_path, capsys):
    imageio = pytest.importorskip("imageio.v2")
    video = tmp_path / "car.mp4"
    assert main(["--sim", "carracing", "--steps", "12", "--video", str(video), "--backend", "numpy"]) == 0
    assert "reward:" in capsys.readouterr().out
    reader = imageio.get_reader(str(video))
    assert reader.count_frames() == 12 and reader.get_data(0).shape == (84, 84, 3)


def test_body_damage_does_not_fit_a_car_sensor_damage_does():
    with pytest.raises(SpecError, match="unknown leg 1"):
        sim.make("carracing", ["cut-leg:1"])
    with pytest.raises(SpecError, match="unknown joint"):
        sim.make("carracing", ["lock:hip_1"])
    env = sim.make("carracing", ["dropout:1"])  # the green channel goes dark
    obs, _ = env.reset(seed=0)
    assert np.all(obs[1] == 0.0) and obs[0].max() > 0.0


def test_task_network_has_the_cnn_and_a_raw_linear_output():
    env = sim.make("carracing")
    spec = task_spec(env.observation_space, env.action_space, (128, 64), normalise=True)
    assert spec.frontend == "cnn84" and spec.layer_sizes == (648, 128, 64, 3)
    assert spec.activations == ("tanh", "tanh", "linear") and spec.obs_shape == (3, 84, 84)
    assert Genome.parameter_count("hebbian", spec) == 456_640 + 162 + 1200


def test_plastic_layers_see_raw_outputs_are_normalised_and_the_cnn_stays_fixed():
    env = sim.make("carracing")
    spec = task_spec(env.observation_space, env.action_space, (128, 64), normalise=True)
    vector = np.random.default_rng(0).normal(0.0, 1.0, Genome.parameter_count("hebbian", spec))
    genome = Genome.from_vector("hebbian", spec, "carracing", vector)
    network = genome.build("numpy")
    network.reset(np.random.default_rng(1))
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        last_layer = network.weights[-1].copy()
        action = network.tick(obs)
        assert np.array_equal(action, network.activations[-1])  # the update saw these values...
        assert action == pytest.approx(network.activations[-2] @ last_layer, abs=1e-6)  # ...raw, unsquashed
        obs, *_ = env.step(action)
    for w in network.weights:
        assert np.abs(w).max() == pytest.approx(1.0)
    for kernel, evolved in zip(network.frontend.kernels, genome.frontend, strict=True):
        assert np.array_equal(kernel, evolved)


def test_front_end_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    spec = FRONTENDS["cnn84"]
    kernels = [rng.normal(0, 0.5, shape).astype(np.float32) for shape in spec.kernels]
    image = rng.random(spec.input_shape, dtype=np.float32)
    pool = torch.nn.MaxPool2d(2, 2)
    x = torch.from_numpy(image)[None]
    x = pool(torch.tanh(torch.nn.functional.conv2d(x, torch.from_numpy(kernels[0]), stride=1)))
    x = pool(torch.tanh(torch.nn.functional.conv2d(x, torch.from_numpy(kernels[1]), stride=2)))
    assert ConvFrontEnd(spec, kernels)(image) == pytest.approx(x.reshape(-1).numpy(), abs=1e-5)


def test_the_renderer_draws_gymnasiums_frames_bit_for_bit():
    """The network sees exactly the pixels, and gets the rewards, that gymnasium's own renderer gives,
    stepped in lockstep in this process (a fixture of hashes recorded elsewhere would tie the test to
    that machine's BLAS rounding)."""
    ours, theirs = CarRacingEnv(), GymnasiumRenderer()
    for seed, steps in EPISODES:
        assert np.array_equal(ours.reset(seed=seed)[0], theirs.reset(seed=seed)[0])
        rng = np.random.default_rng(seed)
        for step in range(steps):
            action = raw_outputs(rng)
            (obs, reward, *_), (expected, expected_reward, *_) = ours.step(action), theirs.step(action)
            assert np.array_equal(obs, expected) and reward == expected_reward, f"seed {seed}, step {step}"


def _resized_in_source_order(frame: np.ndarray) -> np.ndarray:
    """rows @ channel @ cols.T with every sum in source order, rounded to float32 after each product,
    zero weights included (adding an exact zero product changes no sum)."""
    rows, cols = area_matrix(frame.shape[0], 84), area_matrix(frame.shape[1], 84)
    out = np.zeros((3, 84, 84), np.float32)
    for c in range(3):
        channel = frame[:, :, c].astype(np.float32) / np.float32(255.0)
        tall = np.zeros((84, frame.shape[1]), np.float32)
        for k in range(frame.shape[0]):
            tall = (tall + rows[:, k : k + 1] * channel[k]).astype(np.float32)
        for k in range(frame.shape[1]):
            out[c] = (out[c] + tall[:, k : k + 1] * cols[:, k]).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def test_the_resize_sums_in_one_fixed_order_whatever_the_blas():
    """The frames were BLAS products: to the bit on Intel's OpenBLAS kernel, one float32 rounding away
    on AMD's, so a CarRacing lifetime depended on the CPU. Now every sum runs in source order."""
    env = CarRacingEnv()
    env.reset(seed=0)
    frames = [env._car.state, *np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)]
    for frame in frames:
        np.testing.assert_array_equal(preprocess(frame), _resized_in_source_order(frame))


def test_rotation_is_pygames_to_the_last_bit():
    rng = np.random.default_rng(0)
    points = rng.normal(0.0, 300.0, (50, 2))
    quarter = np.pi / 2
    angles = [*rng.uniform(-20.0, 20.0, 30), 0.0, -0.0, quarter, -quarter, 3 * quarter, 4 * quarter, 1e-7]
    angles += [quarter + 5e-7, quarter + 2e-6, -np.pi, 2 * np.pi - 1e-7, 1e3]
    for angle in angles:
        x, y = rotate(points[:, 0], points[:, 1], angle)
        expected = np.array([tuple(pygame.math.Vector2(*p).rotate_rad(angle)) for p in points])
        assert np.array_equal(np.stack([x, y], axis=1), expected), angle


def test_a_polygon_covering_the_canvas_paints_what_a_fill_paints():
    """The renderer fills the canvas instead of drawing a background that covers it."""
    rng = np.random.default_rng(0)
    colour = np.array([102, 204, 102])
    covering = 0
    for _ in range(40):
        half, angle = rng.uniform(400.0, 1200.0), rng.uniform(0.0, 2 * np.pi)
        corners = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)]) * half
        x, y = rotate(corners[:, 0], corners[:, 1], angle)
        x, y = x + WINDOW_W / 2 + rng.uniform(-300, 300), y + WINDOW_H / 2 + rng.uniform(-300, 300)
        if not covers_canvas(x, y):
            continue
        covering += 1
        drawn, filled = pygame.Surface((WINDOW_W, WINDOW_H)), pygame.Surface((WINDOW_W, WINDOW_H))
        poly = list(zip(x.tolist(), y.tolist(), strict=True))
        gfxdraw.aapolygon(drawn, poly, colour)
        gfxdraw.filled_polygon(drawn, poly, colour)
        filled.fill(colour)
        assert np.array_equal(pygame.surfarray.pixels3d(drawn), pygame.surfarray.pixels3d(filled))
    assert 5 <= covering < 40  # some squares cover the canvas, some do not
    assert not covers_canvas(
        np.array([0.0, WINDOW_W, WINDOW_W, 0.0]), np.array([0.0, 0.0, WINDOW_H, WINDOW_H])
    )
