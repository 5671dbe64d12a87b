"""Metric sinks of process 0: TensorBoard scalars and images, `metrics.jsonl` lines."""

import json

from absl import logging
from flax.metrics import tensorboard
import jax

from symmim_jax.train.paths import as_path


def namespaced(namespace: str, scalars: dict) -> dict:
    """{'loss': x} -> {'train/loss': x}: the names of README's metrics table."""
    return {f"{namespace}/{name}": value for name, value in scalars.items()}


class MetricWriter:
    """Writes one record per log step; a no-op on processes other than 0."""

    def __init__(self, workdir: str, resume_step: int = 0):
        """Lines of steps after `resume_step` (run, then lost to a crash) are
        dropped from metrics.jsonl: those steps run again and write anew."""
        self.workdir = workdir
        self.enabled = jax.process_index() == 0
        if self.enabled:
            self._tensorboard = tensorboard.SummaryWriter(str(as_path(workdir) / "tensorboard"))
            self._jsonl = as_path(workdir) / "metrics.jsonl"
            self._lines = []
            if self._jsonl.exists():
                self._lines = self._kept_lines(resume_step)
                self._rewrite()

    def _kept_lines(self, resume_step: int) -> list[str]:
        """The lines up to `resume_step`; a torn line (a copy or an editor cut
        short) is dropped and named."""
        kept, torn = [], []
        for number, line in enumerate(self._jsonl.read_text().splitlines(True), 1):
            if not line.strip():
                continue
            try:
                step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                torn.append(number)
                continue
            if step <= resume_step:
                kept.append(line if line.endswith("\n") else line + "\n")
        if torn:
            logging.warning("Dropped unreadable lines %s of %s.", torn, self._jsonl)
        return kept

    def _rewrite(self):
        # Whole, through a temporary file: a kill leaves the old or the new
        # file, never half a line, and buckets (gs://) cannot append anyway.
        # A few MB for the longest runs.
        temporary = self._jsonl.with_name(self._jsonl.name + ".tmp")
        temporary.write_text("".join(self._lines))
        temporary.replace(self._jsonl)

    def write(self, step: int, scalars: dict):
        if not self.enabled:
            return
        scalars = {name: float(value) for name, value in scalars.items()}
        for name, value in scalars.items():
            self._tensorboard.scalar(name, value, step)
        self._lines.append(json.dumps({"step": step, **scalars}) + "\n")
        self._rewrite()

    def image(self, step: int, name: str, image):
        """One uint8 [H, W, 3] image as a TensorBoard image summary."""
        if self.enabled:
            self._tensorboard.image(name, image, step)

    def close(self):
        if self.enabled:
            self._tensorboard.flush()
            self._tensorboard.close()
