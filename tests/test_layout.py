"""The repository's layout: imports follow the layers, and finished runs are not in git.

Layers, lowest first: the plastic-network library (``PLASTIC``) needs nothing else of the project;
``sim`` (simulated robots) and ``firmware_bridge`` (the serial robot link) stand beside each other and
need nothing of ``evolve``; nothing in ``firmware_bridge`` but its command and its emulators needs
``controller``, and an emulator only the plastic library and its C export (on-board mode runs the
genome's C tick); the commands sit on top, and ``controller.app``, which they share, needs none of
them. Every ``import`` counts, at module level or inside a function, since a function-local import is
still a dependency, only a later one. Each test takes one module, so an import that breaks a rule fails
that module's case.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("controller", "sim", "firmware_bridge", "evolve")
# the plastic-network library: network, rules, backends, genome files, the fixed-rate loop
PLASTIC = {
    f"controller.{name}"
    for name in (
        "network",
        "rules",
        "_fused",
        "genome",
        "loop",
        "conv",
        "onnx_backend",
        "onnx_export",
        "files",
        "errors",
    )
}
# the commands' code; controller.app is what the three commands share
CONTROLLER_COMMANDS = {
    f"controller.{name}" for name in ("app", "cli", "deploy", "suite_eval", "plotting", "analyse")
}
COMMANDS = {*CONTROLLER_COMMANDS, "evolve.cli", "firmware_bridge.cli"}
# the bridge modules that play a robot from a simulated one (servo_body: the emulator's servo-quad hardware,
# onboard: the emulated board running the genome's C tick)
EMULATORS = {f"firmware_bridge.{name}" for name in ("emulator", "opencat_emulator", "servo_body", "onboard")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _project_module(name: str) -> str | None:
    """The project module an imported dotted name lives in (its longest module prefix), if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in modules():
            return prefix
    return None


def _imported_names(module: str, path: Path) -> set[str]:
    """Dotted names the module imports anywhere in its body; ``from P import x`` gives ``P.x`` (a
    submodule, when there is one) and ``P``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@cache
def graph() -> dict[str, frozenset[str]]:
    """module -> the project modules it imports (itself excluded)."""
    edges = {}
    for module, path in modules().items():
        targets = {_project_module(name) for name in _imported_names(module, path)}
        edges[module] = frozenset(t for t in targets if t is not None and t != module)
    return edges


def _package(module: str) -> str:
    return module.split(".")[0]


def _on_cycle(start: str) -> list[str] | None:
    """A cycle through ``start`` as a list of modules (start ... start), or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in sorted(graph()[module]):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def _forbidden(module: str) -> set[str]:
    """The modules and packages ``module`` must not import, by the layer rules."""
    package = _package(module)
    forbidden = set()
    if package in ("sim", "firmware_bridge"):
        forbidden.add("evolve")
    if package == "sim":
        forbidden.add("firmware_bridge")
    if package == "firmware_bridge" and module not in EMULATORS:
        forbidden.add("sim")
    if module in PLASTIC:
        forbidden |= {"sim", "evolve", "firmware_bridge", *CONTROLLER_COMMANDS}
    if package == "firmware_bridge" and module not in COMMANDS | EMULATORS:  # a link needs no controller/
        forbidden.add("controller")
    if module in EMULATORS:  # the board's own code: the plastic library and its C export, no command
        forbidden |= {m for m in modules() if m.startswith("controller.")} - PLASTIC - {"controller.c_export"}
    if module == "controller.app":  # shared by every command, so it needs none of their packages
        forbidden |= {"sim", "evolve", "firmware_bridge", *(COMMANDS - {module})}
    return forbidden


def _violations(module: str) -> list[str]:
    forbidden = _forbidden(module)
    return sorted(t for t in graph()[module] if t in forbidden or _package(t) in forbidden)


def test_the_layer_rules_see_every_package_and_plastic_module():
    assert set(map(_package, modules())) == set(PACKAGES)
    assert set(modules()) >= PLASTIC | COMMANDS | EMULATORS


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_follow_the_layers(module):
    assert _violations(module) == [], f"{module} imports {_violations(module)} against the layers"


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_import_cycle(module):
    cycle = _on_cycle(module)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_finished_runs_are_not_in_git():
    """runs/ holds runs in progress only: a run still going may keep what resuming it needs committed
    (its checkpoint, config, log and latest genome), so a later session resumes it; a finished one (its
    final.npz written) leaves git, which keeps it in history."""
    listed = subprocess.run(
        ["git", "ls-files", "runs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    resumable = r"runs/[^/]+/(checkpoint\.npz|config\.yaml|log\.jsonl|latest\.npz)"
    assert [path for path in listed if not re.fullmatch(resumable, path)] == []
