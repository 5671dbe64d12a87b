"""WORKDIR/runs.jsonl: one line per start of a run, saying what made it.

Each start appends `{"event": "start", ...}`: the time, the command line, the
code version (git commit and whether the checkout had changes, or the installed
package's version), the versions of the libraries that decide the numbers, the
devices and the mesh, and the step it resumed from. Other events (a config
change accepted on resume) append their own lines through `append`.
"""

import contextlib
import datetime
import importlib.metadata
import json
import pathlib
import shlex
import subprocess
import sys

import jax

from symmim_jax.train.paths import as_path

FILE_NAME = "runs.jsonl"
PACKAGES = (
    "symmim_jax",
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "libtpu",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "ml-collections",
    "etils",
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-datasets",
)


def append(workdir: str, line: dict):
    """Appends one JSON line to WORKDIR/runs.jsonl (process 0 only). The file is
    rewritten whole through a temporary file: buckets (gs://) cannot append,
    and a kill leaves the old file or the new one."""
    if jax.process_index() != 0:
        return
    path = as_path(workdir) / FILE_NAME
    text = path.read_text() if path.exists() else ""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text + json.dumps(line) + "\n")
    temporary.replace(path)


def read(workdir: str) -> list[dict]:
    path = as_path(workdir) / FILE_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _git(folder: pathlib.Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def code_version(package_folder: pathlib.Path | None = None) -> dict:
    """{'git_commit', 'git_dirty'} when the package runs from a git checkout,
    else {'package_version'} of the installed distribution."""
    folder = package_folder or pathlib.Path(__file__).resolve().parents[1]
    # A checkout has pyproject.toml beside the package; an installed copy (in
    # site-packages, perhaps inside some other repository) does not.
    if not (folder.parent / "pyproject.toml").exists():
        return {"package_version": package_versions(("symmim_jax",)).get("symmim_jax")}
    try:
        return {
            "git_commit": _git(folder, "rev-parse", "HEAD"),
            "git_dirty": bool(_git(folder, "status", "--porcelain")),
        }
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout
        return {"package_version": package_versions(("symmim_jax",)).get("symmim_jax")}


def package_versions(names=PACKAGES) -> dict:
    """{distribution: version} of those installed."""
    versions = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def start_line(mesh, resumed_from: int | None) -> dict:
    devices = jax.devices()
    return {
        "event": "start",
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "code": code_version(),
        "packages": package_versions(),
        "devices": {
            "platform": devices[0].platform,
            "kind": devices[0].device_kind,
            "count": len(devices),
            "processes": jax.process_count(),
        },
        "mesh": {name: int(size) for name, size in mesh.shape.items()},
        "resumed_from": resumed_from,
    }


def record_start(workdir: str, mesh, resumed_from: int | None):
    """Appends this start's line (process 0)."""
    if jax.process_index() == 0:
        append(workdir, start_line(mesh, resumed_from))
