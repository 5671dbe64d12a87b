"""experiments/device_check.sh, the script a first GPU runs, in its CPU mode:
the tiny 224 px config measured on the CPU and predicted for one H100."""

import json
import pathlib
import subprocess

import pytest

pytestmark = pytest.mark.slow  # the device check script in its CPU mode

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_device_check_writes_measured_and_predicted_lines(tmp_path):
    result = subprocess.run(
        ["experiments/device_check.sh", str(tmp_path), "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = [json.loads(line) for line in (tmp_path / "measured.jsonl").read_text().splitlines()]
    predicted = [
        json.loads(line) for line in (tmp_path / "predicted.jsonl").read_text().splitlines()
    ]
    assert [(m["variant"], m["remat"], m["attention_impl"]) for m in measured] == [
        ("mu/16", "none", "xla")
    ]
    assert measured[0]["step_ms"] > 0 and measured[0]["image_size"] == 224
    assert [(p["attention"], p["target"], p["fits"]) for p in predicted] == [
        ("cudnn", "h100x1", True)
    ]
    # The same step: the benchmark's FLOP count is the AOT command's.
    assert predicted[0]["flops_per_step"] == measured[0]["flops_per_step"]
