"""Every command of README.md's ```bash blocks: run as written, or named with
the test that runs its entry point on fakes (the hardware, data or network it
needs is not here). A new command fails the first test until it is placed."""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest
import tiny_config

from symmim_jax import pretrain

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Run as written by test_readme_commands_run_as_written, in a folder laid out as
# the repository after `make demo` (a tiny workdirs/demo), with .venv/bin first
# on PATH as after `source .venv/bin/activate`.
RUN_AS_WRITTEN = (
    "python -m symmim_jax.visualize reconstruction --checkpoint=workdirs/demo "
    "--out=reconstruction.png",
    "python -m symmim_jax.visualize reconstruction --checkpoint=workdirs/demo "
    "--out=docs/figures/reconstruction_demo.png",
    "python -m symmim_jax.visualize masks --out=docs/figures/masks.png",
    "python -m symmim_jax.visualize avgdist --out=docs/figures/avgdist.png",
    "tensorboard --logdir workdirs/demo/tensorboard",
    "tensorboard --logdir workdirs/demo_profile/tensorboard",
)
# Expanded by `make -n` as written (test_make_commands_expand_as_documented);
# the demo itself (15 minutes) is not run by the tests, `make test` is CI.
MAKE = (
    "make test",
    "make demo",
    "make demo DEMO_ARGS=--config.total_steps=1500",
    'make demo DEMO_ARGS="--config.profile.start_step=30 --config.total_steps=40" '
    "DEMO_WORKDIR=workdirs/demo_profile",
    "make demo FASHION_MNIST_DIR=$HOME/fashion-mnist",
)
# The same entry point, run by these tests on fakes of what it needs.
ELSEWHERE = {
    "python -m symmim_jax.prepare_data --config=symmim_jax/configs/symmim.py:B/16": (
        "ImageNet tars: tests/test_prepare_data.py (fake tars in the real layout)"
    ),
    "python -m symmim_jax.pretrain --config=symmim_jax/configs/symmim.py:B/16": (
        "ImageNet on accelerators: tests/test_prepare_data.py, tests/test_pretrain.py"
    ),
    "python -m symmim_jax.pretrain --distributed": (
        "a TPU pod and a bucket: tests/test_distributed.py, tests/test_gcs_workflow.py"
    ),
    "srun python -m symmim_jax.pretrain --distributed": "SLURM: tests/test_distributed.py",
    "python -m symmim_jax.aot": "minutes of compiling per target: tests/test_aot.py",
    "python -m symmim_jax.finetune --config=symmim_jax/configs/demo_finetune.py": (
        "the demo's fine-tuning (minutes): tests/test_finetune.py"
    ),
    "python -m symmim_jax.linear_probe --config=symmim_jax/configs/demo_linear_probe.py": (
        "the demo's probe: tests/test_linear_probe.py"
    ),
    "mkdir -p $HOME/fashion-mnist && for f in": "a download: no network in the tests",
    "python -m symmim_jax.export --checkpoint=workdirs/demo --out=": (
        "run as written, in-process: tests/test_hub.py "
        "(test_the_readmes_export_examples_run_as_written)"
    ),
    "python -m symmim_jax.finetune --config=symmim_jax/configs/finetune.py:B/16 "
    "--config.init_from=": (
        "ImageNet; a timm state dict imported and fine-tuned: tests/test_importers.py"
    ),
}


def readme_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks: continuation lines joined, comments
    dropped, a `for ...; do ... done` loop kept whole."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        pending = ""
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#"):
                continue
            pending = f"{pending} {line}".strip()
            if " for " in f" {pending}" and not pending.endswith("done"):
                continue
            commands.append(re.sub(r"\s+", " ", pending))
            pending = ""
    return commands


def test_every_readme_command_is_run_or_placed():
    for command in readme_commands(README.read_text()):
        assert (
            command in RUN_AS_WRITTEN
            or command in MAKE
            or any(command.startswith(prefix) for prefix in ELSEWHERE)
        ), f"README command not run by a test nor placed in tests/test_readme.py: {command}"


def test_the_parser_joins_lines_and_keeps_loops_whole():
    text = (
        "```bash\na --x \\\n  --y  # note\n# only a comment\nfor f in 1 2; do\n  echo $f; done\n```"
    )
    assert readme_commands(text) == ["a --x --y", "for f in 1 2; do echo $f; done"]


def test_make_commands_expand_as_documented(tmp_path):
    """`make -n` as written (the data folder given, so no apt-get): each demo
    expands into the pretraining command with its flags."""
    fashion = tmp_path / "fashion-mnist"
    fashion.mkdir()
    (fashion / "train-images-idx3-ubyte.gz").write_bytes(b"")
    env = {**os.environ, "HOME": str(tmp_path), "FASHION_MNIST_DIR": str(fashion)}
    for command in MAKE:
        words = shlex.split(command.replace("$HOME", str(tmp_path)))
        out = subprocess.run(
            [*words, "-n"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        assert "apt-get" not in out
        if "demo" in words:
            assert "-m symmim_jax.pretrain --config=symmim_jax/configs/demo.py" in out
            assert f"--config.dataset.manual_dir={fashion}" in out
            for word in words[2:]:
                assert word.partition("=")[2] in out


@pytest.mark.slow  # a 2-step run, six commands: minutes
def test_readme_commands_run_as_written(tmp_path, fake_fmnist):
    source, data_dir, _ = fake_fmnist
    for name in ("symmim_jax", "experiments"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    config = tiny_config.get_config()  # stands in for `make demo`
    config.dataset.manual_dir, config.dataset.data_dir = str(source), str(data_dir)
    config.total_steps = 2
    pretrain.train(config, str(tmp_path / "workdirs" / "demo"))
    (tmp_path / "workdirs" / "demo_profile" / "tensorboard").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["PYTHONPATH"] = f"{ROOT}:{env.get('PYTHONPATH', '')}"
    for command in RUN_AS_WRITTEN:
        if command.startswith("tensorboard"):
            assert_serves(command, tmp_path, env)
        else:
            subprocess.run(shlex.split(command), cwd=tmp_path, env=env, check=True, timeout=600)
    for out in ("reconstruction.png", "docs/figures/masks.png"):
        assert (tmp_path / out).stat().st_size > 0


def assert_serves(command: str, cwd, env, timeout: float = 180):
    """TensorBoard starts on the logdir and says where it serves (a free port
    is added: two runs of the tests may share the machine)."""
    process = subprocess.Popen(
        [*shlex.split(command), "--port=0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        for line in process.stdout:
            if re.search(r"TensorBoard \S+ at http://", line) or time.monotonic() > deadline:
                break
        assert re.search(r"TensorBoard \S+ at http://", line), line
    finally:
        process.terminate()
        process.wait(timeout=30)
