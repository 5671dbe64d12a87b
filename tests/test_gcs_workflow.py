"""The whole workflow with every workdir on gs://: pretraining by the CLI and
its resume, fine-tuning (CLI) and linear probing from the gs:// pretraining,
the export of both to gs://. The bucket is the fake GCS of tests/fake_gcs.py:
etils.epath, orbax, TensorStore, TensorBoard and the exporter each run their
own gs:// code, only the endpoint is on loopback."""

import contextlib
import json
import os
import subprocess
import sys

from etils import epath
from fake_fashion_mnist import write_fake_set
import numpy as np
import orbax.checkpoint as ocp
import pytest
from safetensors.numpy import load as load_safetensors
import tensorflow as tf
import tiny_config

from symmim_jax import export, linear_probe, pretrain
from symmim_jax.interop import timm_vit

pytestmark = pytest.mark.slow  # the whole workflow, CLIs in subprocesses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CLIs run on one CPU device (eight cost many small per-device compiles)
# and compile with less LLVM optimisation (half the compile time of a step):
# what this test checks, where the files go, depends on neither.
CLI_XLA_FLAGS = (
    "--xla_force_host_platform_device_count=1 "
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)


@contextlib.contextmanager
def _cli(command: str, config: str, overrides: dict, workdir: str, log_path):
    """`python -m symmim_jax.COMMAND` runs in a subprocess during the `with`
    block, which then waits for it to succeed (it is killed if the block
    fails). It reaches the bucket through the environment it inherits."""
    args = [sys.executable, "-m", f"symmim_jax.{command}", f"--config={config}"]
    args += [f"--config.{key}={value}" for key, value in overrides.items()]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*args, f"--workdir={workdir}"],
            cwd=ROOT,
            env=dict(os.environ, XLA_FLAGS=CLI_XLA_FLAGS),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"{command}: " + log_path.read_text()[-3000:]


def _steps(workdir):
    """Checkpoint steps of a gs:// workdir, each complete (orbax writes a step
    in place on gs:// and marks it finished with commit_success.txt)."""
    steps = []
    for path in epath.Path(workdir, "checkpoints").iterdir():
        if path.name.isdigit():
            assert (path / "commit_success.txt").exists(), path
            steps.append(int(path.name))
    return sorted(steps)


def _metric_steps(workdir):
    lines = epath.Path(workdir, "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def _tensorboard_steps(workdir, tag):
    """Steps of `tag` in the event files (one per run) of a gs:// workdir."""
    files = epath.Path(workdir, "tensorboard").glob("events.out.tfevents.*")
    return sorted(
        event.step
        for path in files
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
        if value.tag == tag
    )


def _assert_exported(out, checkpoint_state, what):
    """The tensors of the .safetensors at `out` are the checkpoint's, mapped."""
    params = ocp.PyTreeCheckpointer().restore(checkpoint_state)["params"]
    params = timm_vit.exported_params(params, what)
    expected = timm_vit.state_dict(params, 16)
    got = load_safetensors(epath.Path(out).read_bytes())
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    np.testing.assert_array_equal(got["cls_token"], params["encoder"]["cls_token"])


@pytest.mark.filterwarnings("ignore:Sharding info not provided")  # restores as saved
def test_pretrain_finetune_probe_export_with_gcs_workdirs(fake_gcs, gcs_workdir, tmp_path, capsys):
    """Everything each stage writes is read back from the bucket; a CLI stage
    runs beside an in-process one that writes the workdir it reads."""
    write_fake_set(tmp_path, num_train=16, num_test=8)
    data = {
        "dataset.manual_dir": str(tmp_path),
        "dataset.data_dir": str(tmp_path / "tfds"),
        "dataset.shuffle_buffer": 16,
        "log_every": 1,
        "checkpoint_every": 1,
        "keep_checkpoints": 2,
    }
    pre, ft, lp = (f"{gcs_workdir}/{name}" for name in ("pre", "ft", "lp"))

    # Pretraining: 2 steps by the CLI.
    pretraining = {**data, "total_steps": 2, "visualize_every": 2}
    with _cli("pretrain", "tests/tiny_config.py", pretraining, pre, tmp_path / "pre.log"):
        pass
    assert _steps(pre) == [1, 2]

    # At once: fine-tuning by the CLI from step 2, and in this process (eight
    # devices) the pretraining resumed for a third step, then probed from it.
    finetuning = {**data, "init_from": pre, "init_step": 2, "total_steps": 2}
    with _cli("finetune", "tests/tiny_config.py:finetune", finetuning, ft, tmp_path / "ft.log"):
        config = tiny_config.get_config()
        config.update_from_flattened_dict({**data, "total_steps": 3})
        pretrain.train(config, pre)
        config = tiny_config.linear_probe()
        config.update_from_flattened_dict(
            {**data, "init_from": pre, "total_steps": 2, "eval_every": 2}
        )
        linear_probe.train(config, lp)
    assert _steps(pre) == [2, 3]  # step 1 deleted (keep_checkpoints)
    assert _metric_steps(pre) == [1, 2, 3]
    assert _tensorboard_steps(pre, "train/loss") == [1, 2, 3]
    assert _tensorboard_steps(pre, "train/reconstruction") == [2]
    assert json.loads(epath.Path(pre, "config.json").read_text())["model"]["variant"] == "mu/4"
    for workdir, init_step in ((ft, 2), (lp, 3)):
        results = json.loads(epath.Path(workdir, "results.json").read_text())
        assert (results["init_from"], results["init_step"], results["steps"]) == (pre, init_step, 2)
        assert _steps(workdir) == [1, 2] and _metric_steps(workdir) == [1, 2]
        assert _tensorboard_steps(workdir, "train/loss") == [1, 2]
        assert epath.Path(workdir, "config.json").exists()
    assert _steps(f"{ft}/best") == [2]

    # Export into a gs:// folder that does not exist yet.
    encoder = f"{gcs_workdir}/export/encoder.safetensors"
    export.main([f"--checkpoint={pre}", f"--out={encoder}"])
    _assert_exported(encoder, f"{pre}/checkpoints/3/state", "encoder")
    classifier = f"{gcs_workdir}/export/classifier.safetensors"
    export.main([f"--checkpoint={ft}/best", f"--out={classifier}", "--what=classifier"])
    _assert_exported(classifier, f"{ft}/best/checkpoints/2/state", "classifier")
    assert f"epath.Path({classifier!r}).read_bytes()" in capsys.readouterr().out

    # All of it is in the bucket (TensorStore's array data too), none on disk.
    bucket, _, prefix = gcs_workdir.removeprefix("gs://").partition("/")
    names = fake_gcs.list_objects(bucket, prefix + "/")
    assert f"{prefix}/pre/checkpoints/3/state/manifest.ocdbt" in names
    assert f"{prefix}/export/encoder.safetensors" in names
    assert not os.path.exists(os.path.join(ROOT, "gs:")) and not os.path.exists("gs:")
