"""Fault suites: the shipped suites load, a bad suite is one line naming the condition, and
``controller evaluate --suite`` reports every condition the same way for any number of workers."""

from __future__ import annotations

import json

import pytest

import sim
from controller.cli import main
from evolve.config import ConfigError, load_config, make_config
from sim.suite import SuiteError, load_suite

SMALL = """task: ant
steps: 60
conditions:
  - {name: intact, damage: [], split: train}
  - {name: cut-leg-2, damage: [cut-leg:2], split: train}
  - {name: weak-hip-2-late, damage: [weaken:hip_2:0.3@1], split: held_out}
"""


@pytest.mark.parametrize(
    ("name", "task", "least"),
    [("ant", "ant", 60), ("servo-quad", "servo-quad", 40), ("servo-quad-opencat", "servo-quad-opencat", 40)],
)
def test_shipped_suites_cover_every_kind_in_both_splits(name, task, least):
    suite = load_suite(name)
    assert suite.task == task and len(suite.conditions) >= least
    kinds = {split: set() for split in ("train", "held_out")}
    for condition in suite.conditions:
        kinds[condition.split].update(spec.split(":")[0] for spec in condition.damage)
        sim.make(task, condition.damage)  # every condition fits the robot
    for kind in (
        "cut-leg",
        "shorten-leg",
        "weaken",
        "slow",
        "lock",
        "latency",
        "dropout",
        "bias",
        "obs-noise",
        "friction",
        "payload",
        "slope",
    ):
        assert kind in kinds["held_out"] and kind in kinds["train"], kind
    assert not set(suite.morphologies("train")) & set(suite.morphologies("held_out"))
    assert any(c.mid_run for c in suite.split("held_out"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SMALL.replace("cut-leg:2]", "cut-leg:9]"), None),  # fits-the-robot check: at evaluation
        (SMALL.replace("[cut-leg:2]", "[amputate:2]"), "condition 'cut-leg-2': unknown damage 'amputate'"),
        (SMALL.replace("split: held_out", "split: test"), "condition 'weak-hip-2-late': 'split' must be"),
        (SMALL.replace("name: intact", "name: whole"), "add a condition named 'intact'"),
        (SMALL.replace("name: cut-leg-2", "name: intact"), "intact used twice"),
        (SMALL.replace("steps: 60", "steps: -1"), "'steps' must be a whole number"),
        ("- just a list\n", "must be a mapping"),
        (SMALL + "colour: red\n", "unknown key"),
        (SMALL.replace("[cut-leg:2]", "cut-leg:2"), "'damage' must be a list"),
    ],
)
def test_a_bad_suite_is_one_line_naming_the_condition(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["evaluate", "ant", "--suite", str(path), "--lifetimes", "1", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:")
    assert (message or "unknown leg 9") in err


def test_a_suite_may_take_another_suites_conditions(tmp_path):
    (tmp_path / "base.yaml").write_text(SMALL)
    (tmp_path / "slow.yaml").write_text("task: ant\nsteps: 200\nconditions: base.yaml\n")
    base, slow = load_suite(tmp_path / "base.yaml"), load_suite(tmp_path / "slow.yaml")
    assert slow.conditions == base.conditions and slow.steps == 200 and slow.name == "slow"
    (tmp_path / "self.yaml").write_text("task: ant\nconditions: self.yaml\n")
    with pytest.raises(SuiteError, match="not another suite file"):
        load_suite(tmp_path / "self.yaml")
    (tmp_path / "a.yaml").write_text("task: ant\nconditions: b.yaml\n")  # a loop of two
    (tmp_path / "b.yaml").write_text("task: ant\nconditions: a.yaml\n")
    with pytest.raises(SuiteError, match="not another suite file"):
        load_suite(tmp_path / "a.yaml")


def test_an_unknown_suite_name_lists_the_shipped_ones(capsys):
    assert main(["evaluate", "ant", "--suite", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "suite 'nosuch' not found" in err and "ant, servo-quad" in err


def test_suite_options_conflicting_with_single_body_options_are_refused(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    assert main(["evaluate", "ant", "--suite", str(path), "--cut-leg", "1"]) == 2
    assert main(["evaluate", "ant", "--suite", str(path), "--sim", "servo-quad"]) == 2
    assert main(["evaluate", "ant", "--against", "ant-static"]) == 2
    assert main(["evaluate", "ant", "--suite", str(path), "--against", "ant"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 4


def test_suite_evaluation_reports_every_condition_the_same_for_any_number_of_workers(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    results = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.json"
        md = tmp_path / f"w{workers}.md"
        args = ["evaluate", "ant", "--suite", str(path), "--against", "ant-static", "--lifetimes", "2"]
        assert main([*args, "--workers", str(workers), "--json", str(out), "--markdown", str(md)]) == 0
        results.append(json.loads(out.read_text()))
        table = md.read_text()
        assert table.count("\n| ") == 3 and "| weak-hip-2-late | held_out |" in table
    assert results[0] == results[1]
    data = results[0]
    assert [c["name"] for c in data["conditions"]] == ["intact", "cut-leg-2", "weak-hip-2-late"]
    intact, late = data["conditions"][0]["ant"], data["conditions"][2]["ant"]
    assert intact["percent_of_intact"] == pytest.approx(100.0)
    assert intact["recovery_ticks"] is None and len(late["recovery_ticks"]) == 2  # the onset at 1 s
    assert len(late["distance"]) == 2 and late["distance_mean"] == pytest.approx(sum(late["distance"]) / 2)
    summary = data["summary"]["held_out"]
    assert summary["ant"]["conditions"] == 1 and "ahead" in summary
    assert sum(summary["ahead"].values()) == 1
    out = capsys.readouterr().out
    assert (
        "held_out (1 conditions), ant: min" in out
        and "ant ahead by more than the spread on 0, ant-static on" in out
    )


def test_train_suite_trains_on_the_train_split_only():
    config = make_config({"task": "ant", "train_suite": "ant"})
    suite = load_suite("ant")
    assert config.training.train_damages == suite.morphologies("train")
    assert not set(config.training.train_damages) & set(suite.morphologies("held_out"))
    with pytest.raises(ConfigError, match="is for task 'ant'"):
        make_config({"task": "servo-quad", "train_suite": "ant"})
    with pytest.raises(ConfigError, match="disagree"):
        make_config({"task": "ant", "train_suite": "ant", "train_damages": [[]]})


def test_a_stage_naming_a_suite_drops_its_bases_bodies(tmp_path):
    (tmp_path / "base.yaml").write_text("task: ant\ntrain_damages: [[], [cut-leg:1]]\n")
    (tmp_path / "stage.yaml").write_text("base: base.yaml\ntrain_suite: ant\n")
    bodies = load_config(tmp_path / "stage.yaml").training.train_damages
    assert bodies == load_suite("ant").morphologies("train") and ("cut-leg:1",) not in bodies
    with pytest.raises(SuiteError):
        load_suite(tmp_path / "missing.yaml")
