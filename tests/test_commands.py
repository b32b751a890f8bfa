"""What the three commands share (controller.app) and the deploy command's control rate."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import random_genome

from controller.app import run_command
from controller.cli import main as controller
from controller.deploy import DeploySettings, control_rate
from controller.errors import UserError
from firmware_bridge.errors import LinkError
from firmware_bridge.robot import load_robot

ROOT = Path(__file__).resolve().parents[1]


def _raise(exc: BaseException):
    def command() -> int:
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "code", "err"),
    [
        (UserError("no such file x; give another"), 2, "error: no such file x; give another\n"),
        (LinkError("port gone"), 2, "error: port gone\n"),  # a command's own user errors
        (KeyboardInterrupt(), 130, "\ninterrupted\n"),
    ],
)
def test_run_command_ends_each_way_as_one_line(capsys, exc, code, err):
    assert run_command(_raise(exc), lambda: (LinkError,)) == code
    assert capsys.readouterr().err == err


def test_run_command_lets_a_bug_through():
    with pytest.raises(ZeroDivisionError):
        run_command(_raise(ZeroDivisionError()), lambda: (LinkError,))


def test_a_closed_stdout_ends_a_command_quietly():
    """``controller ... | head -1``: the reader has gone; exit 1 with no BrokenPipeError traceback."""
    body = "import sys; from controller.app import run_command; print_a_lot = lambda: print('x' * 10**7)"
    body += "; sys.exit(run_command(print_a_lot))"
    shell = f'{sys.executable} -c "{body}" | head -c 1; exit ${{PIPESTATUS[0]}}'
    done = subprocess.run(
        ["bash", "-c", shell],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1 and done.stderr == "", done.stderr


SETTINGS = DeploySettings(port="/dev/null-robot", robot="ant")


def test_the_genome_rate_rules_a_deploy():
    """Issue 23 item 5: the Ant genome was evolved at 20 Hz; the robot config says so for a genome that
    records no period, and a genome's own provenance wins over it."""
    ant, genome = load_robot("ant"), random_genome()
    assert control_rate(SETTINGS, genome, ant) == pytest.approx(20.0)
    genome.provenance["control_period"] = 0.04
    assert control_rate(SETTINGS, genome, ant) == pytest.approx(25.0)


def test_a_robot_config_without_a_period_takes_its_tasks():
    ant = dataclasses.replace(load_robot("ant"), control_period_s=None)
    assert control_rate(SETTINGS, random_genome(), ant) == pytest.approx(20.0)  # sim.make("ant").dt


def test_another_rate_needs_the_flag_and_is_warned_about(capsys):
    ant, genome = load_robot("ant"), random_genome()
    with pytest.raises(UserError, match=r"--rate 100 Hz is not the 20 Hz the genome was evolved at"):
        control_rate(dataclasses.replace(SETTINGS, rate=100.0), genome, ant)
    allowed = dataclasses.replace(SETTINGS, rate=100.0, allow_rate_change=True)
    assert control_rate(allowed, genome, ant) == 100.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: control at 100 Hz" in err and "evolved at 20 Hz" in err


def test_another_rate_is_refused_before_the_port_is_opened(capsys):
    assert controller(["--serial", "/dev/no-such-robot", "--robot", "ant", "--rate", "100"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --rate 100 Hz is not the 20 Hz") and "--allow-rate-change" in err
    assert err.count("\n") == 1


def test_a_bad_period_in_a_genome_is_a_one_line_error():
    genome = random_genome()
    genome.provenance["control_period"] = "fast"
    with pytest.raises(UserError, match="control_period must be a positive number of seconds"):
        genome.control_period()
