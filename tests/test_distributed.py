"""Multi-process runs on one machine: 2 processes x 4 CPU devices (gloo
collectives) through the real entry point equal 1 process x 8 devices."""

import json
import os
import socket
import subprocess
import sys

import fast_compile
import jax
import numpy as np
import pytest
import tiny_config

from symmim_jax import pretrain
from symmim_jax.train import checkpoint, distributed, optim

pytestmark = pytest.mark.slow  # two processes and a reference run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3
OVERRIDES = {
    "dataset.name": "synthetic",
    "total_steps": STEPS,
    "log_every": 1,
    "checkpoint_every": STEPS,
    "visualize_every": 0,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(workdir, port, process_id):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_NUM_CPU_DEVICES="4",
        XLA_FLAGS=f"--xla_force_host_platform_device_count=4 {fast_compile.FLAGS}",
        JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    )
    command = [
        sys.executable,
        "-m",
        "symmim_jax.pretrain",
        "--config=tests/tiny_config.py",
        f"--workdir={workdir}",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        f"--process_id={process_id}",
        "--distributed_timeout=60",
        *(f"--config.{name}={value}" for name, value in OVERRIDES.items()),
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_two_processes_equal_one_process(tmp_path):
    port = _free_port()
    workers = [_launch(tmp_path / "two", port, i) for i in range(2)]
    config = tiny_config.get_config()
    config.update_from_flattened_dict(OVERRIDES)
    try:
        # The 1 x 8 reference runs here meanwhile, same global batch and seed.
        pretrain.train(config, str(tmp_path / "one"))
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:  # a hung worker fails the test rather than blocking CI
        for worker in workers:
            worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    assert "8 devices (mesh data=8 x fsdp=1, 2 processes)" in outputs[0]
    assert "Training steps" not in outputs[1]  # only process 0 speaks
    diffs = []
    for subtree in ("params", "target_params"):
        one, _, step_one = checkpoint.load_params(str(tmp_path / "one"), subtree=subtree)
        two, record, step_two = checkpoint.load_params(str(tmp_path / "two"), subtree=subtree)
        assert step_one == step_two == STEPS
        assert record["data"]["process_count"] == 2
        diffs += [np.abs(a - b).ravel() for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two))]
    diffs = np.concatenate(diffs)
    print(
        f"max |params(2 x 4) - params(1 x 8)| after {STEPS} steps: {diffs.max():.3g}; "
        f"{np.mean(diffs > 1e-6):.2%} of {diffs.size} values differ by > 1e-6"
    )
    for line_one, line_two in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two")):
        for name in ("train/loss", "train/grad_norm", "train/param_norm"):
            np.testing.assert_allclose(line_one[name], line_two[name], rtol=1e-5)
    # The all-reduce sums in another order; Adam's first steps are +-lr wherever
    # |grad| >> eps, so a gradient that is zero up to float noise can flip an
    # update by up to 2 lr. Allow that, on a few values, and nothing more.
    assert diffs.max() <= 2 * optim.peak_learning_rate(config.optim, config.batch_size)
    assert np.mean(diffs > 1e-6) < 0.01


def _metrics(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def test_unreachable_coordinator_is_a_clear_error():
    # JAX itself would abort the process; the check raises after the timeout.
    port = _free_port()  # nothing listens there
    with pytest.raises(distributed.DistributedError, match="--coordinator_address"):
        distributed._wait_for_coordinator(f"localhost:{port}", timeout=1)


def test_reachable_coordinator_passes():
    with socket.socket() as server:
        server.bind(("localhost", 0))
        server.listen()
        distributed._wait_for_coordinator(f"localhost:{server.getsockname()[1]}", 1)
