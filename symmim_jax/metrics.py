"""Metric sinks of process 0: TensorBoard scalars and images, `metrics.jsonl` lines."""
import json
import os

import jax
from flax.metrics import tensorboard


class MetricWriter:
    """Writes one record per log step; a no-op on processes other than 0."""

    def __init__(self, workdir: str, resume_step: int = 0):
        """Lines of steps after `resume_step` (run, then lost to a crash) are
        dropped from metrics.jsonl: those steps run again and write anew."""
        self.enabled = jax.process_index() == 0
        if self.enabled:
            self._tensorboard = tensorboard.SummaryWriter(
                os.path.join(workdir, "tensorboard"))
            path = os.path.join(workdir, "metrics.jsonl")
            if os.path.exists(path):
                with open(path) as f:
                    kept = [line for line in f
                            if line.strip() and json.loads(line)["step"] <= resume_step]
                with open(path, "w") as f:
                    f.writelines(kept)
            self._jsonl = open(path, "a")

    def write(self, step: int, scalars: dict):
        if not self.enabled:
            return
        scalars = {name: float(value) for name, value in scalars.items()}
        for name, value in scalars.items():
            self._tensorboard.scalar(name, value, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def image(self, step: int, name: str, image):
        """One uint8 [H, W, 3] image as a TensorBoard image summary."""
        if self.enabled:
            self._tensorboard.image(name, image, step)

    def close(self):
        if self.enabled:
            self._tensorboard.flush()
            self._tensorboard.close()
            self._jsonl.close()
