"""Bad input to the controller command and to damage specs, fed at random: exit 0 or a one-line error
with exit 2, never a traceback."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from controller.cli import main
from sim.damage import KINDS, SpecError

WORDS = st.sampled_from(
    ["1", "2", "0", "-1", "0.5", "1e9", "nan", "inf", "hip_1", "ankle_3", "knee_2", "5,6", "x", "", "99"]
)
SPECS = st.one_of(
    st.builds(
        lambda kind, args, at: ":".join([kind, *args]) + at,
        st.sampled_from([*KINDS, "amputate", ""]),
        st.lists(WORDS, max_size=3),
        st.sampled_from(["", "@0.1", "@-1", "@x", "@nan", "@1e12"]),
    ),
    st.text(string.printable, max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(SPECS)
def test_any_damage_spec_builds_or_is_a_spec_error(spec):
    try:
        env = sim.make("ant", [spec])
    except SpecError as exc:
        assert "\n" not in str(exc)
        return
    env.reset(seed=0)
    for _ in range(2):
        env.step(env.action_space.sample())


VALUES = st.sampled_from(
    ["0", "1", "-5", "3", "1e99", "nan", "abc", "", "ant", "ant-static", "nosuch", "2@0.1"]
)
OPTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "--sim",
                "--cut-leg",
                "--damage",
                "--steps",
                "--seed",
                "--settle",
                "--backend",
                "--lifetimes",
                "--workers",
                "--genome",
                "--suite",
                "--against",
                "--randomise",
                "--forward",
            ]
        ),
        VALUES,
    ),
    max_size=4,
)


EVALUATE_ONLY = ("--lifetimes", "--workers", "--suite", "--against", "--forward")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([[], ["evaluate", "ant"], ["analyse", "ant"]]), OPTIONS)
def test_any_command_line_exits_0_or_2_with_one_line(capsys, tmp_path, command, options):
    argv = [*command, "--lifetimes", "1"] if command else ["--sim", "ant"]
    if command[:1] == ["analyse"]:  # two lifetimes at least, written where the test cleans up
        argv = [*command, "--lifetimes", "2", "--no-plots", "--out", str(tmp_path / "analysis")]
    argv += ["--steps", "3"]
    for option, value in options:
        if not command and option in EVALUATE_ONLY:
            continue
        if option in ("--steps", "--lifetimes", "--workers") and value in ("1", "3"):
            value = "2" if option == "--steps" else "1"  # valid values stay small: a short run
        argv += [option, value]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage error
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err
    if code == 2 and err.startswith("error:"):
        assert err.strip().count("\n") == 0, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sim", "ant", "--backend", "nosuch"], "invalid choice"),
        (["--sim", "ant", "--steps", "3", "--log", "/nonexistent/dir/run.csv"], "does not exist"),
        (["--sim", "ant", "--steps", "-3"], "out of range"),
        (["--sim", "ant", "--seed", "-1"], "out of range"),
        (["evaluate", "ant", "--lifetimes", "0"], "out of range"),
        (["export", "ant", "-o", "/nonexistent/dir/tick.onnx"], "does not exist"),
        (["--sim", "ant", "--damage", "latency:1000000000"], "between 0 and 100"),
        (["--sim", "ant", "--damage", "shorten-leg:1:0"], "between 0.05 and 1"),
    ],
)
def test_named_bad_inputs_exit_2(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
