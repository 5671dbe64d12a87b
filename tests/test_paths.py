"""Paths through etils.epath, and the metric lines written through them."""

import json
import logging
import os

from symmim_jax.train.metrics import MetricWriter
from symmim_jax.train.paths import as_path


def test_local_paths_become_absolute_and_urls_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(as_path("runs/a")) == os.path.join(str(tmp_path), "runs/a")
    bucket = as_path("gs://bucket/runs/a") / "checkpoints"
    assert str(bucket) == "gs://bucket/runs/a/checkpoints"


def test_metric_lines_survive_a_resume_trimmed_to_its_step(tmp_path):
    writer = MetricWriter(str(tmp_path))
    for step in (10, 20, 30):
        writer.write(step, {"loss": step / 10})
    writer.close()
    writer = MetricWriter(str(tmp_path), resume_step=20)  # step 30 is redone
    writer.write(30, {"loss": 9.0})
    writer.close()
    text = (tmp_path / "metrics.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [
        {"step": 10, "loss": 1.0},
        {"step": 20, "loss": 2.0},
        {"step": 30, "loss": 9.0},
    ]
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl", "tensorboard"]


def test_a_torn_last_metric_line_is_dropped_and_named(tmp_path, caplog):
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n{"step": 20, "lo')
    with caplog.at_level(logging.WARNING):
        writer = MetricWriter(str(tmp_path), resume_step=20)
    writer.write(20, {"loss": 2.0})
    writer.close()
    assert f"Dropped unreadable lines [2] of {tmp_path / 'metrics.jsonl'}" in caplog.text
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 2.0}]
