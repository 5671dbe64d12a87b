"""The code stays as the README promises: ruff-clean and ruff-formatted, no
module over 400 lines and no function over 60 in the package."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "symmim_jax"
RUFF = pathlib.Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    if not RUFF.exists():
        pytest.fail(f"{RUFF} is missing: `make setup` installs it (requirements.txt).")
    result = subprocess.run(
        [str(RUFF), *command, "symmim_jax", "tests", "experiments"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_modules_and_functions_stay_small():
    too_long = []
    for path in _modules():
        source = path.read_text()
        name = path.relative_to(ROOT)
        if source.count("\n") > 400:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long
