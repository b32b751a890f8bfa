"""The controller command as a user runs it: a summary at the end, one-line errors with exit 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from controller.cli import main


def test_run_with_cut_leg_prints_the_summary(capsys):
    assert main(["--sim", "ant", "--cut-leg", "2", "--steps", "60", "--settle", "5"]) == 0
    out = capsys.readouterr().out
    assert "damage: cut-leg:2" in out
    assert "distance walked:" in out and "tick compute: p50" in out


def test_midrun_damage_reports_onset_speeds_and_recovery(tmp_path, capsys):
    log = tmp_path / "run.csv"
    args = ["--sim", "ant", "--damage", "weaken:hip_1:0.5@1", "--steps", "60", "--settle", "0"]
    assert main([*args, "--log", str(log), "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "damage onset: tick 20" in out or "fell over" in out
    with log.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and {"speed", "weight_norm_0", "obs_26", "action_7"} <= set(rows[0])
    assert main(["plot", str(log), "-o", str(tmp_path / "run.png")]) == 0
    assert (tmp_path / "run.png").stat().st_size > 10_000


def test_evaluate_reports_each_lifetimes_recovery_after_a_midrun_cut(tmp_path):
    out_json = tmp_path / "r.json"
    args = ["evaluate", "ant", "--sim", "ant", "--damage", "cut-leg:2@1", "--lifetimes", "3"]
    assert main([*args, "--steps", "200", "--json", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    ticks = result["recovery_ticks"]
    assert len(ticks) == 3 and result["recovered"] == sum(t is not None for t in ticks)
    # a full 1-s window after the onset (tick 20) at the earliest, and 5 s of hold left before tick 200
    assert all(t is None or 19 <= t <= 200 - 20 - 100 for t in ticks)
    if result["recovered"] == 3:
        assert result["recovery_ticks_median"] == sorted(ticks)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sim", "ant", "--cut-leg", "5"], "unknown leg 5"),
        (["--sim", "ant", "--damage", "cut-leg:two"], "must be a number"),
        (["--sim", "ant", "--damage", "bite:1"], "unknown damage"),
        (["--sim", "moon"], "unknown task"),
        (["--sim", "ant", "--genome", "missing.npz"], "not found"),
        (["plot", "missing.csv"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_console_script_has_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "--sim", "ant", "--cut-leg", "5"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "unknown leg 5" in result.stderr


def test_a_closed_stdout_pipe_stops_it_quietly():
    command = [sys.executable, "-m", "controller.cli", "evaluate", "ant", "--sim", "ant", "--lifetimes", "1"]
    process = subprocess.Popen([*command, "--steps", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -0` does, long before the first line is printed
    stderr = process.stderr.read().decode()
    assert process.wait() == 1 and stderr == ""


def test_evaluate_prints_mean_and_spread(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    args = ["evaluate", "ant", "--sim", "ant", "--lifetimes", "2", "--steps", "20", "--json", str(out_json)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "over 2 lifetimes" in out and "walked forward: " in out
    result = json.loads(out_json.read_text())
    assert result["lifetimes"] == 2 and result["walked_forward"] in (0, 1, 2)
    distances = result["distance"]
    assert len(distances) == 2 and sum(distances) / 2 == pytest.approx(result["distance_mean"])
    assert result["recovery_ticks"] is None  # no damage onset
    assert main([*args, "--forward", "-100"]) == 0  # every lifetime ends more than -100 m ahead
    assert json.loads(out_json.read_text())["walked_forward"] == 2


def test_export_writes_a_c_header_and_refuses_a_static_genome(tmp_path, capsys):
    header = tmp_path / "genome.h"
    assert main(["export", "servo-quad", "--format", "c", "-o", str(header)]) == 0
    assert "#define" in header.read_text()
    assert main(["export", "ant-static", "--format", "c", "-o", str(tmp_path / "s.h")]) == 2
    assert "static genome" in capsys.readouterr().err
