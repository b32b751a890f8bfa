"""The evolve command end to end on the Ant: runs, genomes, configs, and exact resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import terminal_sigint

import sim
from controller.genome import load_genome
from controller.loop import Lifetime
from evolve.cli import RESUME_KEYS, main
from evolve.config import (
    KEYS,
    SECTIONS,
    Config,
    ConfigError,
    SearchConfig,
    config_to_dict,
    flat_values,
    load_config,
    make_config,
)
from evolve.fitness import (
    Batch,
    Evaluator,
    GaitTerms,
    Job,
    body_deficits,
    lifetime_score,
    make_bodies,
    pair_jobs,
)
from evolve.openai_es import ESParams, Population
from evolve.run import validation_jobs
from evolve.settings import types

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "launch" / "smoke" / "ant.yaml")
GENOMES = ROOT / "controller" / "genomes"
# the first static walker (launch/ant_static.yaml at commit f749a5f): seven joints pinned at a stop, on its
# back with leg 2 cut
ONE_JOINT_STATIC = str(ROOT / "tests" / "data" / "one_joint_static.npz")
# Long enough per generation (~0.2 s) that a kill lands mid-run, short enough for the default test run.
# A body with every hip dead walks nowhere, so the deficits that weigh which body each pair draws are
# not zero: they must come back from the checkpoint too.
RESUMABLE = [
    *("--set", "generations=6", "--set", "population=8", "--set", "ticks=60", "--workers", "1"),
    *("--set", "train_damage_sample=1", "--set", "hard_body_weight=50", "--set", "validation_ticks=60"),
    *("--set", "train_damages=[[], [weaken:hip_1:0, weaken:hip_2:0, weaken:hip_3:0, weaken:hip_4:0]]"),
]


def evolve_process(*args: str, preexec: Callable[[], None] = terminal_sigint) -> subprocess.Popen:
    """``evolve`` in its own process group, as a terminal would run it (Ctrl-C reaches the workers too)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "evolve.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def wait_for_generations(run: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not ((run / "log.jsonl").exists() and len(records(run)) >= count):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.01)


def genome_vector(path: Path) -> np.ndarray:
    return load_genome(path).to_vector()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("evolve") / "reference"
    code, out, err = finish(evolve_process("--config", SMOKE, "--out", str(run), *RESUMABLE))
    assert code == 0, err
    return run


def test_three_generation_ant_run_writes_a_loadable_genome_log_and_plot(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--config", SMOKE, "--out", str(run), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "gen    3/3" in out and "steps/s" in out and "ETA" in out
    genome = load_genome(run / "final.npz", task="ant")
    assert genome.kind == "hebbian" and genome.spec.rule == "ABCD_lr" and genome.spec.normalise
    assert genome.spec.layer_sizes == (27, 128, 64, 8)
    provenance = genome.provenance
    assert provenance["seed"] == 0 and provenance["generation"] == 3 and provenance["code_version"]
    assert "fitness" in provenance and "commit" in provenance
    assert provenance["control_period"] == pytest.approx(0.05)
    assert provenance["config"] == yaml.safe_load(
        (run / "config.yaml").read_text()
    )  # remade from the file alone
    assert genome.settle_ticks(40) == 5  # as evolved (ant_smoke.yaml): the controller's default settle
    network = genome.build()
    network.reset(np.random.default_rng(0))
    assert network.tick(np.zeros(27)).shape == (8,)
    for name in ("best.npz", "latest.npz", "checkpoint.npz", "config.yaml"):
        assert (run / name).is_file(), name
    log = records(run)
    assert [r["generation"] for r in log] == [0, 1, 2]
    # validate_every: 2 in the smoke config, and always after the last generation
    assert [("validation_score" in r) for r in log] == [False, True, True]
    assert set(log[1]["train"]) == {"intact", "shorten-leg:1:0.25"} and set(log[1]["validation"]) == {
        "cut-leg:2"
    }
    assert main(["plot", str(run)]) == 0
    assert (run / "curve.png").stat().st_size > 10_000


def test_snapshot_every_keeps_the_mean_genome_of_every_nth_generation(tmp_path):
    run = tmp_path / "run"
    args = ["--config", SMOKE, "--out", str(run), "--workers", "1", "--set", "snapshot_every=2"]
    assert main([*args, "--set", "generations=4"]) == 0
    assert sorted(p.name for p in run.glob("generation*.npz")) == ["generation2.npz", "generation4.npz"]
    assert load_genome(run / "generation2.npz").provenance["generation"] == 2
    np.testing.assert_array_equal(genome_vector(run / "generation4.npz"), genome_vector(run / "latest.npz"))
    assert not np.array_equal(genome_vector(run / "generation2.npz"), genome_vector(run / "latest.npz"))


def test_static_baseline_is_one_config_key(tmp_path):
    run = tmp_path / "static"
    args = ["--config", SMOKE, "--out", str(run), "--workers", "1", "--set", "genome_kind=static"]
    assert main([*args, "--set", "generations=1"]) == 0
    genome = load_genome(run / "final.npz")
    assert genome.kind == "static" and not genome.coefficients
    assert [w.shape for w in genome.weights] == [(27, 128), (128, 64), (64, 8)]


def test_sigkill_then_resume_ends_with_the_uninterrupted_genome(tmp_path, uninterrupted):
    run = tmp_path / "killed"
    process = evolve_process("--config", SMOKE, "--out", str(run), *RESUMABLE)
    wait_for_generations(run, 2, process)
    os.killpg(process.pid, signal.SIGKILL)  # the run and its workers, mid-generation
    assert finish(process)[0] == -signal.SIGKILL
    assert not (run / "final.npz").exists(), "the run finished before it was killed"
    code, out, err = finish(evolve_process("--resume", str(run)))
    assert code == 0, err
    assert "resuming" in out
    assert np.array_equal(genome_vector(run / "final.npz"), genome_vector(uninterrupted / "final.npz"))
    assert np.array_equal(genome_vector(run / "best.npz"), genome_vector(uninterrupted / "best.npz"))
    fitness = [(r["generation"], r["best"], r["mean"], r["min"]) for r in records(run)]
    assert fitness == [(r["generation"], r["best"], r["mean"], r["min"]) for r in records(uninterrupted)]


def test_ctrl_c_saves_and_exits_cleanly_then_resumes(tmp_path, uninterrupted):
    run = tmp_path / "interrupted"
    process = evolve_process("--config", SMOKE, "--out", str(run), *RESUMABLE)
    wait_for_generations(run, 1, process)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    code, out, err = finish(process)
    assert code == 130, err
    assert "Traceback" not in err and f"evolve --resume {run}" in err
    assert (run / "checkpoint.npz").is_file() and (run / "latest.npz").is_file()
    code, _, err = finish(evolve_process("--resume", str(run), "--workers", "2"))
    assert code == 0, err
    assert np.array_equal(genome_vector(run / "final.npz"), genome_vector(uninterrupted / "final.npz"))


def test_sigint_stops_a_run_started_as_a_background_job(tmp_path):
    """A shell starts ``evolve ... &`` with SIGINT ignored; ``kill -INT`` must still stop and save it."""
    run = tmp_path / "background"
    ignored = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    process = evolve_process(
        "--config", SMOKE, "--out", str(run), *RESUMABLE, "--set", "ticks=3000", preexec=ignored
    )
    wait_for_generations(run, 1, process)
    time.sleep(1)  # mid-generation (3000 ticks), not while it saves, when SIGINT is always caught
    process.send_signal(signal.SIGINT)  # the main process only: its workers ignore SIGINT anyway
    code, _, err = finish(process)
    assert code == 130, err
    assert f"evolve --resume {run}" in err and (run / "checkpoint.npz").is_file()


def test_unknown_config_key_is_a_one_line_error_with_exit_2(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("task: ant\npopulaton: 8\n")
    process = evolve_process("--config", str(config), "--out", str(tmp_path / "run"))
    code, out, err = finish(process)
    assert code == 2
    assert err.startswith("error: unknown config key 'populaton'") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "population=5"], "config key 'population' must be an even number"),
        (["--set", "lr=fast"], "config key 'lr' must be float, got 'fast'"),
        (["--set", "normalise=1"], "config key 'normalise' must be true or false"),
        (["--set", "rule=ABX"], "config key 'rule' must be one of"),
        (["--set", "train_damages=[[cut-leg:5]]"], "config key 'train_damages': unknown leg 5"),
        (
            ["--set", "validation_damages=[[melt:1]]"],
            "config key 'validation_damages': unknown damage 'melt'",
        ),
        (["--set", "train_damage_sample=9"], "config key 'train_damage_sample' must be between 0 and 2"),
        (
            ["--set", "hard_body_weight=3"],
            "config key 'hard_body_weight' weighs which train bodies are drawn",
        ),
        (["--set", "merge_every=10"], "config keys 'merge_every' and 'merge_to' go together"),
        (
            ["--set", "merge_to=[40, 300]", "--set", "merge_every=5"],
            "must be a list of decreasing rule counts",
        ),
        (["--set", "rules=per_layer", "--set", "genome_kind=static"], "a static genome has none"),
        (["--set", "rules=per_leg"], "config key 'rules' must be one of per_synapse, per_input_neuron"),
        (["--set", "hard_body_weight=-1"], "config key 'hard_body_weight' must be between 0 and 1000"),
        (["--set", "novalue"], "must look like key=value"),
        (["--set", "randomise=nowhere.yaml"], "config key 'randomise': cannot read randomisation file"),
        (["--set", "randomise={gravity: [0, 1]}"], "config key 'randomise': "),
        (["--backend", "ray", "--workers", "-1"], "config key 'workers' must be between 0 and 1024"),
        (
            ["--set", "symmetry=mirror", "--set", "task=ant-bullet"],
            "config key 'symmetry': task 'ant-bullet' has no mirror map; set symmetry: none",
        ),
        (["--set", "symmetry=mirror", "--set", "hidden=[5]"], "hidden neurons: sizes must be even, got 5"),
        (
            ["--set", "task=ant-bullet", "--set", "joint_limit_cost=0.1"],
            "config key 'joint_limit_cost': task 'ant-bullet' reports no joint limits",
        ),
        (
            ["--set", "task=carracing", "--set", "train_damages=[[]]", "--set", "validation_damages=[]"]
            + ["--set", "joint_motion_reward=0.1"],
            "config key 'joint_motion_reward': task 'carracing' reports no joint angles",
        ),
    ],
)
def test_bad_values_name_the_key(args, message, tmp_path, capsys):
    assert main(["--config", SMOKE, "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_invocations_are_one_line_errors(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [ant\n")
    cases = [
        (["--config", str(tmp_path / "missing.yaml")], "not found"),
        (["--config", str(broken)], "is not valid YAML at line"),
        ([], "give --config"),
        (["--resume", str(tmp_path)], "config.yaml not found"),
        (["plot", str(tmp_path)], "log.jsonl not found"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (args, err)


def test_resume_may_change_where_and_how_long_but_not_what(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--config", SMOKE, "--out", str(run), "--workers", "1", "--set", "generations=1"]) == 0
    assert main(["--config", SMOKE, "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["--resume", str(run), "--set", "sigma=0.5"]) == 2
    assert "only backend, workers, ray_address, generations may change" in capsys.readouterr().err
    assert main(["--resume", str(run), "--set", "search.sigma=0.5"]) == 2
    assert "may change, not ['sigma']" in capsys.readouterr().err
    # a run saved before the sections has a flat config.yaml: it resumes just the same
    saved = run / "config.yaml"
    saved.write_text(yaml.safe_dump(flat_values(yaml.safe_load(saved.read_text())), sort_keys=False))
    assert main(["--resume", str(run), "--set", "generations=2", "--set", "execution.workers=1"]) == 0
    assert [r["generation"] for r in records(run)] == [0, 1]
    assert load_genome(run / "final.npz").provenance["generation"] == 2


def test_mirrored_pairs_share_bodies_and_seeds_and_sampling_is_deterministic():
    config = make_config(
        {
            "population": 8,
            "train_damages": [[], ["cut-leg:2"], ["cut-leg:3"], ["lock:hip_1"]],
            "train_damage_sample": 1,
            "train_always_intact": True,
            "lifetimes": 2,
        }
    )
    jobs = pair_jobs(config, generation=5)
    assert [j.member for j in jobs] == list(range(8))
    for plus, minus in zip(jobs[::2], jobs[1::2], strict=True):
        assert (plus.morphologies, plus.seeds) == (minus.morphologies, minus.seeds)
        assert plus.morphologies[0] == () and len(plus.morphologies) in (1, 2) and len(plus.seeds) == 2
    assert jobs == pair_jobs(config, generation=5)
    assert jobs != pair_jobs(config, generation=6)
    assert len({j.seeds for j in jobs}) == 4  # every pair its own lifetimes


def test_hard_body_weight_draws_the_bodies_the_walker_fails_on_more_often():
    bodies = [[], ["cut-leg:2"], ["cut-leg:3"], ["lock:hip_1"]]
    config = make_config(
        {"population": 400, "train_damages": bodies, "train_damage_sample": 1, "hard_body_weight": 9}
    )
    deficits = body_deficits(
        config, {(): 40.0, ("cut-leg:2",): 40.0, ("cut-leg:3",): 0.0, ("lock:hip_1",): 50}
    )
    np.testing.assert_array_equal(deficits, [0, 0, 1, 0])  # walking further than intact is no deficit
    drawn = [j.morphologies[0] for j in pair_jobs(config, 3, deficits)[::2]]
    assert 0.7 < drawn.count(("cut-leg:3",)) / len(drawn) < 0.9  # weight 10 of 13
    uniform = [j.morphologies[0] for j in pair_jobs(config, 3)[::2]]
    assert 0.15 < uniform.count(("cut-leg:3",)) / len(uniform) < 0.35
    # without the weight the draws are those of every run before it, deficits or not
    plain = replace(config, training=replace(config.training, hard_body_weight=0.0))
    assert pair_jobs(plain, 3, deficits) == pair_jobs(plain, 3) == pair_jobs(config, 3)
    assert not body_deficits(config, {(): -1.0}).any()  # nothing walks: no body is harder


def test_randomised_training_draws_a_robot_per_lifetime_seed_and_validation_draws_others():
    config = make_config(
        {
            "task": "servo-quad",
            "hidden": [8],
            "population": 2,
            "ticks": 20,
            "settle_ticks": 5,
            "early_stop": False,
            "randomise": str(ROOT / "launch" / "randomisation" / "servo_quad.yaml"),
            "validation_lifetimes": 2,
            "lifetimes": 2,
        }
    )
    env = make_bodies(config)[()]

    def robot(seed: int) -> dict:
        return env.reset(seed=seed)[1]["randomisation"]

    train = [robot(s) for s in pair_jobs(config, generation=0)[0].seeds]
    held_out = [robot(s) for s in sorted({j.seeds[0] for j in validation_jobs(config, generation=0)})]
    drawn = [r["friction"] for r in train + held_out]
    assert len(set(drawn)) == len(drawn)  # every lifetime a different robot
    assert robot(pair_jobs(config, generation=0)[0].seeds[0])["friction"] == train[0]["friction"]


def test_lifetime_score_holds_every_training_term():
    """Each term on a made-up lifetime (no simulator): the pace cap and its overshoot charge, the fall
    charge per second cut short, the gait terms; the walked distance itself is left as it was."""

    class Gait:  # what GaitTerms measured: 5 s, 3 joints moving, 2 joint-seconds at a stop
        seconds, limit_seconds = 5.0, 2.0

        def moving_joints(self) -> float:
            return 3.0

    walked = Lifetime(fitness=12.0, ticks=100, dt=0.05)
    fell = Lifetime(fitness=12.0, ticks=60, dt=0.05, terminated=True)
    terms = {"fitness_cap": 10.0, "overshoot_cost": 0.5, "fall_cost": 2.0}
    config = make_config(terms | {"joint_motion_reward": 0.1, "joint_limit_cost": 0.3})
    assert lifetime_score(walked, 100, make_config({})) == 12.0
    assert lifetime_score(walked, 100, make_config(terms)) == 10.0 - 0.5 * 2.0
    assert lifetime_score(fell, 100, make_config(terms)) == pytest.approx(9.0 - 2.0 * 40 * 0.05)
    assert lifetime_score(fell, 100, make_config({"fall_cost": 2.0})) == pytest.approx(12.0 - 4.0)
    assert lifetime_score(walked, 100, config, Gait()) == pytest.approx(9.0 + 0.1 * 5 * 3 - 0.3 * 2)
    assert walked.fitness == fell.fitness == 12.0


def test_fitness_cap_clips_each_lifetime_before_the_mean():
    """The shipped walker covers more than 0.5 m in 100 ticks on every seed: capped, each lifetime
    scores exactly the cap; uncapped, more."""
    genome = load_genome("ant")
    values = {"ticks": 100, "settle_ticks": 0, "lifetimes": 2, "early_stop": False}
    mean = Population(genome.to_vector(), 0.1, 0, 0)
    job = Job(None, ((),), (11, 12))
    uncapped = Evaluator(make_config(values)).run_job(mean, job, 100).fitness
    capped = Evaluator(make_config({**values, "fitness_cap": 0.5})).run_job(mean, job, 100).fitness
    assert uncapped > 0.5 and capped == 0.5
    paced = Evaluator(make_config({**values, "fitness_cap": 0.5, "overshoot_cost": 1.0}))
    # each lifetime: the cap less its overshoot, 0.5 - (d - 0.5)
    assert paced.run_job(mean, job, 100).fitness == pytest.approx(1.0 - uncapped)


def test_overshoot_cost_needs_a_cap():
    with pytest.raises(ConfigError, match="overshoot_cost.*fitness_cap > 0"):
        make_config({"overshoot_cost": 1.0})


def test_joint_limit_cost_charges_each_joint_second_at_a_stop():
    """The Ant counts its joints at an end of their range (none at reset, all eight when every motor
    pushes one way); the fitness loses joint_limit_cost per joint-second there. The first static walker pins
    seven joints within a few ticks, so 100 ticks (5 s) cost it more than 6 joints x 4 s."""
    env = sim.make("ant")
    env.reset(seed=0)
    assert np.count_nonzero(env.unwrapped.at_limit()) == 0
    for _ in range(30):
        env.step(np.ones(8))
    assert np.count_nonzero(env.unwrapped.at_limit()) == 8
    values = {"ticks": 100, "settle_ticks": 0, "early_stop": False, "genome_kind": "static"}
    mean = Population(load_genome(ONE_JOINT_STATIC).to_vector(), 0.1, 0, 0)
    job = Job(None, ((),), (11,))
    free = Evaluator(make_config(values)).run_job(mean, job, 100).fitness
    charged = Evaluator(make_config({**values, "joint_limit_cost": 0.1})).run_job(mean, job, 100).fitness
    assert free - charged > 0.1 * 6 * 4


def test_joint_motion_reward_pays_per_joint_that_moves():
    """A joint counts as moving in proportion to its angular speed (fully from JOINT_TRAVEL): random
    torques move all eight, a body at rest none, the first static walker (seven pinned) one to three (it
    pins them within the 100 ticks) and the shipped Hebbian walker, evolved with this reward, more than
    four; the fitness gains joint_motion_reward per moving joint-second, the distance walked is unchanged."""
    env = sim.make("ant")
    config = make_config({"joint_motion_reward": 0.1})
    rng = np.random.default_rng(0)
    for torques, low, high in ((lambda: rng.uniform(-1, 1, 8), 7.5, 8.0), (lambda: np.zeros(8), 0.0, 0.5)):
        gait = GaitTerms(env, config)  # made before the reset, as the evaluator does: the jump from the
        env.reset(seed=0)  # last lifetime's pose to the reset pose is not a joint's motion
        for tick in range(100):
            gait(tick, env.step(torques())[0], None, {})
        assert low <= gait.moving_joints() <= high
    job = Job(None, ((),), (11,))
    for name, kind, low, high in ((ONE_JOINT_STATIC, "static", 0.8, 3.0), ("ant", "hebbian", 4.0, 8.0)):
        values = {"ticks": 100, "settle_ticks": 0, "early_stop": False, "genome_kind": kind}
        mean = Population(load_genome(name).to_vector(), 0.1, 0, 0)
        free = Evaluator(make_config(values)).run_job(mean, job, 100)
        paid = Evaluator(make_config({**values, "joint_motion_reward": 0.1})).run_job(mean, job, 100)
        assert 0.1 * 5 * low < paid.fitness - free.fitness < 0.1 * 5 * high
        assert paid.walked == free.walked == free.fitness  # validation reports the distance alone


def test_joint_motion_counts_the_pybullet_ants_joints_too():
    """The PyBullet Ant reports its joint angles, so its runs can pay the same gait term: random torques
    move nearly all eight joints, a body left alone only settles onto the floor."""
    env = sim.make("ant-bullet")
    config = make_config({"joint_motion_reward": 0.1})
    rng = np.random.default_rng(0)
    for torques, low, high in ((lambda: rng.uniform(-1, 1, 8), 6.5, 8.0), (lambda: np.zeros(8), 0.0, 1.0)):
        gait = GaitTerms(env, config)
        env.reset(seed=0)
        for tick in range(100):
            gait(tick, env.step(torques())[0], None, {})
        assert low <= gait.moving_joints() <= high


def test_fall_cost_charges_the_seconds_a_fall_cuts_short():
    """The first static walker ends most lifetimes with leg 2 cut on its back; each such lifetime loses
    fall_cost per second it did not live, one that lives to the end loses nothing."""
    values = {"genome_kind": "static", "train_damages": [["cut-leg:2"]], "ticks": 200, "early_stop": False}
    mean = Population(load_genome(ONE_JOINT_STATIC).to_vector(), 0.1, 0, 0)
    free_eval = Evaluator(make_config(values))
    charged_eval = Evaluator(make_config({**values, "fall_cost": 1.0}))
    falls = 0
    for seed in range(4):
        job = Job(None, (("cut-leg:2",),), (seed,))
        free, charged = free_eval.run_job(mean, job, 200), charged_eval.run_job(mean, job, 200)
        lost = free.fitness - charged.fitness
        assert lost > 0 if free.fell else lost == 0
        assert charged.walked == free.walked
        falls += free.fell
    assert falls >= 2


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in sorted((ROOT / "launch").rglob("*.yaml"))
        if p.parent.name not in ("deploy", "suites", "randomisation")
    ],
    ids=lambda p: str(p.relative_to(ROOT / "launch")),
)
def test_shipped_launch_configs_are_valid_and_round_trip(path):
    config = load_config(path)
    assert make_config(config_to_dict(config)) == config


def test_a_flat_file_and_its_nested_form_give_the_same_config(tmp_path):
    flat = "task: ant\nhidden: [64, 32]\nsigma: 0.2\ntrain_damages: [[], [cut-leg:2]]\nworkers: 1\n"
    nested = (
        "task: ant\nnetwork: {hidden: [64, 32]}\nsearch:\n  sigma: 0.2\n"
        "training: {train_damages: [[], [cut-leg:2]]}\nexecution.workers: 1\n"  # dotted in a file too
    )
    (tmp_path / "flat.yaml").write_text(flat)
    (tmp_path / "nested.yaml").write_text(nested)
    config = load_config(tmp_path / "flat.yaml")
    assert config == load_config(tmp_path / "nested.yaml") != Config()
    assert (config.network.hidden, config.search.sigma, config.execution.workers) == ((64, 32), 0.2, 1)
    # --set flat or dotted alike, and a nested stage overrides its flat base key by key
    assert load_config(tmp_path / "flat.yaml", ["network.hidden=[8]"]) == load_config(
        tmp_path / "nested.yaml", ["hidden=[8]"]
    )
    (tmp_path / "stage.yaml").write_text("base: flat.yaml\nsearch: {sigma: 0.3}\n")
    assert load_config(tmp_path / "stage.yaml") == replace(config, search=replace(config.search, sigma=0.3))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"hidden": [8], "network": {"hidden": [8]}},
            "'hidden' is given twice (as 'hidden' and 'network.hidden')",
        ),
        ({"search.sigma": 0.1, "search": {"sigma": 0.2}}, "config key 'sigma' is given twice"),
        ({"netwrk.hidden": [8]}, "unknown config section 'netwrk'; sections: network, search"),
        ({"netwrk": {"hidden": [8]}}, "unknown config key 'netwrk'; valid keys: "),
        (
            {"network": {"hiden": [8]}},
            "unknown config key 'network.hiden'; section 'network' holds genome_kind",
        ),
        (
            {"network": {"sigma": 0.1}},
            "unknown config key 'network.sigma'; 'sigma' belongs to section 'search'",
        ),
        ({"network": [8]}, "config section 'network' must be a mapping of its keys, got [8]"),
    ],
)
def test_a_key_twice_or_outside_its_section_is_a_one_line_error(values, message):
    with pytest.raises(ConfigError) as error:
        make_config(values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_key_is_in_one_section_and_the_es_keys_are_the_es_s_own():
    assert len(KEYS) == 2 + sum(len(fields(section)) for section in SECTIONS.values())  # no name twice
    es = {f.name: f for f in fields(ESParams)}
    shared = [f for f in fields(SearchConfig) if f.name in es]
    assert len(shared) == 7
    for f in shared:
        assert (f.default, f.metadata) == (es[f.name].default, es[f.name].metadata), f.name
        assert types(SearchConfig)[f.name] is types(ESParams)[f.name], f.name


def test_the_config_in_every_shipped_genome_loads_to_the_same_values():
    """Flat (written before the sections) or nested, a shipped genome's config reads back unchanged."""
    configs = {p.name: load_genome(p).provenance.get("config") for p in sorted(GENOMES.glob("*.npz"))}
    recorded = {name: flat_values(values) for name, values in configs.items() if values is not None}
    assert len(recorded) >= 6  # the genomes evolved here carry their run's config; imported ones none
    for name, values in recorded.items():
        config = make_config(values)
        assert make_config(config_to_dict(config)) == config, name
        written = flat_values(config_to_dict(config))
        assert {key: written[key] for key in values} == values, name


def _recorded_config(stem: str) -> dict | None:
    """The config a launch file's run recorded: the shipped genome's provenance, or a run in progress."""
    genome, run = GENOMES / f"{stem}.npz", ROOT / "runs" / stem / "config.yaml"
    if genome.is_file():
        return load_genome(genome).provenance.get("config")
    return yaml.safe_load(run.read_text()) if run.is_file() else None


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((ROOT / "launch" / "genomes").glob("*.yaml")) if _recorded_config(p.stem) is not None],
    ids=lambda p: p.name,
)
def test_launch_files_resolve_through_their_base_to_the_config_their_run_recorded(path):
    """A genome's launch file, read through its base chain today, is the config its run recorded (but
    for what a resume may change: generations, workers): the file reproduces the genome."""
    launched = flat_values(config_to_dict(load_config(path)))
    recorded = flat_values(config_to_dict(make_config(_recorded_config(path.stem))))
    assert {k: v for k, v in launched.items() if k not in RESUME_KEYS} == {
        k: v for k, v in recorded.items() if k not in RESUME_KEYS
    }


def test_base_key_layers_a_stage_on_its_predecessor_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "stages").mkdir()
    one = "seed: 3\nticks: 200\nsigma: 0.2\ntrain_damages: [[cut-leg:2]]\n"
    (tmp_path / "stages" / "one.yaml").write_text(one)
    (tmp_path / "stages" / "two.yaml").write_text("base: one.yaml\nseed: 4\n")
    (tmp_path / "three.yaml").write_text("base: stages/two.yaml\ntrain_damages: [[], [cut-leg:3]]\n")
    monkeypatch.chdir(ROOT)  # base paths are relative to the file, not to where evolve runs
    config = load_config(tmp_path / "three.yaml", ["sigma=0.3"])
    assert (config.seed, config.fitness.ticks, config.search.sigma) == (4, 200, 0.3)
    assert config.training.train_damages == ((), ("cut-leg:3",))


def test_a_missing_or_looping_base_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nseed: 1\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    (tmp_path / "c.yaml").write_text("base: gone.yaml\n")
    (tmp_path / "d.yaml").write_text("base: [a.yaml]\n")
    cases = [("a", "remove the loop"), ("c", "gone.yaml (the base of"), ("d", "must name a config file")]
    for name, message in cases:
        assert main(["--config", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_defaults_are_the_settings_that_learned_on_this_ant():
    search, network = Config().search, Config().network
    assert (search.population, search.lr, search.lr_decay, search.sigma, network.rule, network.normalise) == (
        64,
        0.05,
        0.999,
        0.1,
        "ABCD_lr",
        True,
    )
    assert (network.hidden, network.activation, network.init) == ((128, 64), "tanh", "uniform")
    assert Config().fitness.settle_ticks == 40


def test_local_and_ray_backends_give_identical_fitness_arrays():
    """A real local Ray cluster (started and stopped by the backend) against the process pool (~10 s)."""
    pytest.importorskip("ray")
    from evolve.backends import LocalBackend, RayBackend
    from evolve.openai_es import OpenAIES
    from evolve.run import es_params
    from evolve.shaping import centred_ranks

    config = load_config(SMOKE, ["population=6", "ticks=40", "workers=2"])
    es = OpenAIES(es_params(config), config.seed)

    def two_generations(backend) -> list[np.ndarray]:
        state = es.init(np.random.default_rng(0).normal(0, 1, 60_800))  # 27-128-64-8, 5 per synapse
        arrays = []
        try:
            for generation in range(2):
                batch = Batch(es.population(state), pair_jobs(config, generation))
                fitness = np.array([r.fitness for r in backend.run(batch)])
                arrays.append(fitness)
                state = es.tell(state, centred_ranks(fitness))
        finally:
            backend.close()
        return arrays

    local, ray_ = two_generations(LocalBackend(config)), two_generations(RayBackend(config))
    assert all(np.array_equal(a, b) for a, b in zip(local, ray_, strict=True))
    assert not np.array_equal(local[0], local[1])
