"""Each damage has the physical effect it names, starting at the tick it is scheduled for."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.ant import JOINTS, leg_geom
from sim.damage import SpecError, parse


def _contacts_with(env, geom_name: str) -> int:
    model, data = env.unwrapped.model, env.unwrapped.data
    gid = model.geom(geom_name).id
    return sum(1 for c in data.contact[: data.ncon] if gid in (c.geom1, c.geom2))


def _walk(env, ticks: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(ticks):
        yield env.step(rng.uniform(-1, 1, 8))


def test_cut_leg_removes_contacts_and_the_segment_mass():
    intact = sim.make("ant")
    intact.reset(seed=0)
    ant = intact.unwrapped
    segment_mass = float(ant.model.body_mass[ant.model.body("lower_leg_2").id])
    mass_before = ant.total_mass()
    touched = 0
    for _ in _walk(intact, 200):
        touched += _contacts_with(intact, leg_geom(2))
    assert touched > 0, "the intact lower leg should touch the floor"

    env = sim.make("ant", ["cut-leg:2"])
    env.reset(seed=0)
    ant = env.unwrapped
    assert ant.total_mass() == pytest.approx(mass_before - segment_mass, abs=1e-5)
    assert ant.model.geom_rgba[ant.model.geom(leg_geom(2)).id][3] == 0.0  # not drawn
    for _ in _walk(env, 200):
        assert _contacts_with(env, leg_geom(2)) == 0


def test_shorten_leg_scales_the_segment():
    env = sim.make("ant", ["shorten-leg:1:0.25"])
    env.reset(seed=0)
    model = env.unwrapped.model
    intact = sim.make("ant").unwrapped.model
    gid = model.geom(leg_geom(1)).id
    assert model.geom_size[gid][1] == pytest.approx(0.25 * intact.geom_size[gid][1])
    body = model.body("lower_leg_1").id
    assert model.body_mass[body] < 0.5 * intact.body_mass[intact.body("lower_leg_1").id]


def test_lock_keeps_the_joint_still():
    env = sim.make("ant", ["lock:hip_3"])
    env.reset(seed=0)
    ant = env.unwrapped
    adr = ant.model.joint("hip_3").dofadr[0]
    speeds = [abs(float(ant.data.qvel[adr])) for _ in _walk(env, 100)]
    free = sim.make("ant")
    free.reset(seed=0)
    free_speeds = [abs(float(free.unwrapped.data.qvel[adr])) for _ in _walk(free, 100)]
    assert max(speeds) < 0.02 and max(free_speeds) > 1.0


def test_weaken_scales_the_applied_torque():
    env = sim.make("ant", ["weaken:hip_1:0.3"])
    env.reset(seed=0)
    action = np.full(8, 0.5)
    env.step(action)
    data, model = env.unwrapped.data, env.unwrapped.model
    torque = {j: data.qfrc_actuator[model.joint(j).dofadr[0]] for j in ("hip_1", "hip_2")}
    assert torque["hip_1"] == pytest.approx(0.3 * 150 * 0.5)
    assert torque["hip_2"] == pytest.approx(150 * 0.5)
    dead = sim.make("ant", ["weaken:ankle_4:0"])
    dead.reset(seed=0)
    dead.step(action)
    assert dead.unwrapped.data.qfrc_actuator[model.joint("ankle_4").dofadr[0]] == 0.0


def test_latency_applies_actions_k_ticks_late():
    env = sim.make("ant", ["latency:3"])
    env.reset(seed=0)
    actions = np.random.default_rng(1).uniform(-1, 1, (10, 8))
    applied = []
    for a in actions:
        env.step(a)
        applied.append(env.unwrapped.data.ctrl.copy())
    assert np.allclose(applied[:3], 0.0)
    assert np.allclose(applied[3:], actions[:-3])


def test_observation_noise_has_the_given_std():
    clean, noisy = sim.make("ant"), sim.make("ant", ["obs-noise:0.05"])
    o1, _ = clean.reset(seed=4)
    o2, _ = noisy.reset(seed=4)
    diffs = [o2 - o1]
    for _ in range(50):
        o1, *_ = clean.step(np.zeros(8))
        o2, *_ = noisy.step(np.zeros(8))
        diffs.append(o2 - o1)
    assert np.std(diffs) == pytest.approx(0.05, rel=0.1)
    assert abs(np.mean(diffs)) < 0.01


def test_dropout_zeroes_the_channels():
    env = sim.make("ant", ["dropout:0,5,26"])
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(np.ones(8) * 0.3)
        assert obs[0] == obs[5] == obs[26] == 0.0 and obs[1] != 0.0


def test_scheduled_damage_starts_at_its_tick():
    env = sim.make("ant", ["cut-leg:2@1", "obs-noise:0.1@0.5"])  # dt = 0.05 s: ticks 20 and 10
    _, info = env.reset(seed=0)
    assert info["damage"] == []
    mass0 = env.unwrapped.total_mass()
    for tick in range(30):
        _, _, _, _, info = env.step(np.zeros(8))
        expected = [t for t, on in (("obs-noise:0.1@0.5", tick >= 10), ("cut-leg:2@1", tick >= 20)) if on]
        assert info["damage"] == expected, tick
        assert (env.unwrapped.total_mass() < mass0) == (tick >= 20)
    env.reset(seed=0)
    assert env.unwrapped.total_mass() == pytest.approx(mass0)  # reset restores the intact body


def test_midrun_cut_keeps_the_state():
    env = sim.make("ant", ["cut-leg:3@0.5"])
    env.reset(seed=0)
    for _ in range(9):
        env.step(np.zeros(8))
    qpos = env.unwrapped.data.qpos.copy()
    env.step(np.zeros(8))
    assert np.abs(env.unwrapped.data.qpos - qpos).max() < 0.05  # no jump at the recompile


@pytest.mark.parametrize("damage", [[], ["cut-leg:1", "lock:ankle_2", "latency:2", "obs-noise:0.01"]])
def test_check_env(damage):
    check_env(sim.make("ant", damage), skip_render_check=True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cut-leg:5", "unknown leg 5"),
        ("cut-leg", "needs 1 argument"),
        ("amputate:1", "unknown damage"),
        ("weaken:hip_1:1.5", "between 0 and 1"),
        ("lock:knee_9", "unknown joint"),
        ("cut-leg:1@soon", "must be a number"),
        ("dropout:99", "do not exist"),
    ],
)
def test_bad_specs_are_named(spec, message):
    with pytest.raises(SpecError, match=message):
        sim.make("ant", [spec])


def test_spec_text_round_trips():
    for text in ("cut-leg:2", "shorten-leg:1:0.25@3", "weaken:hip_1:0.3@15"):
        assert parse(text).text == text


def test_joint_order_matches_actuators():
    model = sim.make("ant").unwrapped.model
    assert [model.actuator(i).name for i in range(model.nu)] == list(JOINTS)
    assert [
        mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[i][0]) for i in range(8)
    ] == list(JOINTS)


@pytest.mark.parametrize("task", ["ant", "servo-quad"])
def test_a_simulation_that_blows_up_ends_the_lifetime_where_the_tick_began(task):
    """MuJoCo resets a blown-up state (and may blow up again): no distance is credited from it."""
    env = sim.make(task)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape)
    for _ in range(5):
        _, _, terminated, _, info = env.step(action)
    assert not terminated
    before = info["x_distance"]
    env.unwrapped.data.qvel[:] = 1e30  # a blow-up
    obs, speed, terminated, _, info = env.step(action)
    assert terminated and speed == 0.0 and info["x_distance"] == before
    assert np.all(np.isfinite(obs))
