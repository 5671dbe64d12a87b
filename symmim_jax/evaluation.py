"""Top-1/top-5 over an evaluation pass, the best checkpoint, results.json.

Shared by fine-tuning and linear probing.
"""
import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from symmim_jax import checkpoint, sharding


def count_correct(logits, labels, valid) -> dict:
    """Counts (not rates) over one batch: top1, top5, n."""
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]  # [B, 5]
    hit = top5 == labels[:, None]
    return {"top1": jnp.sum(hit[:, 0] * valid), "top5": jnp.sum(hit.any(1) * valid),
            "n": jnp.sum(valid)}


def make_accuracy(predict, mesh):
    """predict(params, batch) -> logits [B, C] ==> accuracy(params, batches) ->
    {'top1', 'top5'} over the valid examples of `batches` (host batches with
    "label" and "valid", as data.make_eval_iterator yields). Compiled once."""
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


class BestCheckpoint:
    """Keeps the parameters of the best evaluation in WORKDIR/best/ (one orbax
    checkpoint: {'params': ...} and a record with the scores)."""

    def __init__(self, workdir: str):
        self.manager = checkpoint.open_manager(os.path.join(workdir, "best"), keep=1)
        latest = self.manager.latest_step()
        self.record = None
        if latest is not None:  # a resumed run: the best so far
            self.record = self.manager.restore(latest, args=ocp.args.Composite(
                **{checkpoint.RECORD: ocp.args.JsonRestore()}))[checkpoint.RECORD]

    def update(self, step: int, params, scores: dict) -> bool:
        if self.record is not None and scores["top1"] <= self.record["top1"]:
            return False
        self.record = {"step": step, **scores}
        checkpoint.save(self.manager, step, {"params": params}, self.record, force=True)
        return True

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def write_results(workdir: str, last: dict, best: BestCheckpoint, init_info: dict,
                  total_steps: int, **extra):
    """WORKDIR/results.json (process 0) once the run reached `total_steps`:
    the last evaluation, the best one, where the encoder came from."""
    if jax.process_index() or last.get("step") != total_steps:
        return  # stopped early (a signal): the run is not finished
    results = {**{k: v for k, v in last.items() if k != "step"},
               "best_top1": best.record["top1"], "best_step": best.record["step"],
               "init_from": init_info["init_from"], "init_step": init_info["step"],
               "steps": total_steps, **extra}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
