"""Classification evaluation, shared by fine-tuning and linear probing: top-1 and
top-5 over an evaluation pass, the best parameters in WORKDIR/best/, and
WORKDIR/results.json."""

from collections.abc import Callable
import json

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from symmim_jax.train import checkpoint, sharding
from symmim_jax.train.paths import as_path


def check_config(config):
    if config.eval_every < 0:
        raise ValueError(f"config.eval_every={config.eval_every} must be >= 0 (0 = every epoch).")


def count_correct(logits, labels, valid) -> dict:
    """Counts (not rates) over one batch: top1, top5, n."""
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]  # [B, 5]
    hit = top5 == labels[:, None]
    return {
        "top1": jnp.sum(hit[:, 0] * valid),
        "top5": jnp.sum(hit.any(1) * valid),
        "n": jnp.sum(valid),
    }


def make_accuracy(predict, mesh):
    """predict(params, batch) -> logits [B, C] ==> accuracy(params, batches) ->
    {'top1', 'top5'} over the valid examples of `batches` (host batches with
    "label" and "valid", as pipeline.make_eval_iterator yields). Compiled once."""

    @jax.jit
    def counts(params, batch):
        return count_correct(predict(params, batch), batch["label"], batch["valid"])

    def accuracy(params, batches) -> dict:
        totals = {"top1": 0, "top5": 0, "n": 0}
        for batch in batches:
            found = jax.device_get(counts(params, sharding.global_batch(batch, mesh)))
            totals = {k: totals[k] + int(found[k]) for k in totals}
        n = max(totals["n"], 1)
        return {"top1": totals["top1"] / n, "top5": totals["top5"] / n}

    return accuracy


class Evaluation:
    """Scores every `every` steps and at `total_steps`; keeps the best in
    WORKDIR/best/ (one orbax checkpoint: the kept tree and a record with the
    scores); writes WORKDIR/results.json when the run is complete.

    `score(state) -> (scores with 'top1', the tree to keep if best)`.
    """

    def __init__(self, workdir: str, score: Callable, every: int, total_steps: int):
        self.workdir, self.score = workdir, score
        self.every, self.total_steps = every, total_steps
        self.manager = checkpoint.open_manager(as_path(workdir) / "best", keep=1)
        self.best = None
        self.last = {}
        latest = self.manager.latest_step()
        if latest is not None:  # a resumed run: the best so far
            self.best = self.manager.restore(
                latest, args=ocp.args.Composite(**{checkpoint.RECORD: ocp.args.JsonRestore()})
            )[checkpoint.RECORD]

    def __call__(self, step: int, state) -> dict | None:
        if step % self.every and step != self.total_steps:
            return None
        scores, keep = self.score(state)
        if self.best is None or scores["top1"] > self.best["top1"]:
            self.best = {"step": step, **scores}
            checkpoint.save(self.manager, step, {"params": keep}, self.best, force=True)
        self.last = {"step": step, **scores}
        return scores

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()

    def write_results(self, init_info: dict, **extra):
        """WORKDIR/results.json (process 0) once the run reached `total_steps`:
        the last evaluation, the best one, where the encoder came from."""
        if jax.process_index() or self.last.get("step") != self.total_steps:
            return  # stopped early (a signal): the run is not finished
        results = {
            **{k: v for k, v in self.last.items() if k != "step"},
            "best_top1": self.best["top1"],
            "best_step": self.best["step"],
            "init_from": init_info["init_from"],
            "init_step": init_info["step"],
            "steps": self.total_steps,
            **extra,
        }
        (as_path(self.workdir) / "results.json").write_text(json.dumps(results, indent=2))
