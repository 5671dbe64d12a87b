"""runs.jsonl: what made a run, one line per start."""

import subprocess

import jax

from symmim_jax.train import provenance, sharding


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_a_checkout_gives_its_commit_and_whether_it_has_changes(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "pkg").mkdir()
    git(tmp_path, "init", "-q")
    git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert provenance.code_version(tmp_path / "pkg") == {"git_commit": head, "git_dirty": True}
    git(tmp_path, "add", "pyproject.toml")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y")
    assert provenance.code_version(tmp_path / "pkg")["git_dirty"] is False


def test_an_installed_copy_gives_the_package_version(tmp_path):
    # site-packages: no pyproject.toml beside the package, even inside a repository.
    git(tmp_path, "init", "-q")
    (tmp_path / "pkg").mkdir()
    version = provenance.code_version(tmp_path / "pkg")
    assert version == {"package_version": provenance.package_versions()["symmim_jax"]}


def test_the_start_line_names_code_packages_devices_and_mesh(monkeypatch):
    monkeypatch.setattr(provenance.sys, "argv", ["-m symmim_jax.pretrain", "--workdir=a b"])
    line = provenance.start_line(sharding.make_mesh(), resumed_from=6)
    assert line["event"] == "start" and line["resumed_from"] == 6
    assert line["command"].endswith("'-m symmim_jax.pretrain' '--workdir=a b'")
    assert line["packages"]["jax"] == jax.__version__
    assert {"git_commit", "git_dirty"} <= set(line["code"])  # the tests run from a checkout
    assert line["devices"] == {"platform": "cpu", "kind": "cpu", "count": 8, "processes": 1}
    assert line["mesh"] == {sharding.DATA_AXIS: 8, sharding.FSDP_AXIS: 1}


def test_lines_are_appended(tmp_path):
    provenance.append(str(tmp_path), {"event": "start", "n": 1})
    provenance.append(str(tmp_path), {"event": "config_drift_accepted"})
    assert provenance.read(str(tmp_path)) == [
        {"event": "start", "n": 1},
        {"event": "config_drift_accepted"},
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.jsonl"]
