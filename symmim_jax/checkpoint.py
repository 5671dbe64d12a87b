"""Orbax checkpoints of a run: the train state and a JSON record per step.

Saves are asynchronous and atomic (orbax writes to a tmp dir and renames it), so
a crash mid-save leaves the previous checkpoints intact. The default save policy
is kept on purpose: passing a `save_decision_policy` would drop orbax's
preemption saves.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE, RECORD = "state", "record"


def open_manager(workdir: str, *, checkpoint_every: int = 1, keep: int | None = None,
                 read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=checkpoint_every,
        preservation_policy=(ocp.checkpoint_managers.LatestN(keep) if keep else None),
        create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                 options=options, item_names=(STATE, RECORD))


def save(manager: ocp.CheckpointManager, step: int, state, record: dict, *,
         force: bool = False) -> bool:
    """Starts an async save when the policy (or `force`) says so."""
    args = ocp.args.Composite(**{STATE: ocp.args.StandardSave(state),
                                 RECORD: ocp.args.JsonSave(record)})
    return manager.save(step, args=args, force=force)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state):
    """-> (state, record). `abstract_state` holds ShapeDtypeStructs with the
    target shardings, so a checkpoint restores onto the current mesh."""
    args = ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract_state),
                                 RECORD: ocp.args.JsonRestore()})
    restored = manager.restore(step, args=args)
    return restored[STATE], restored[RECORD]


def latest_or(workdir: str, step: int | None) -> int:
    """`step`, or the newest step in `workdir`; a clear error when absent."""
    manager = open_manager(workdir, read_only=True)
    steps = manager.all_steps()
    manager.close()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {os.path.join(workdir, 'checkpoints')}")
    if step is None:
        return max(steps)
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint of step {step} in {workdir}; "
                                f"available: {sorted(steps)}")
    return step


def load_params(workdir: str, step: int | None = None, subtree: str = "params"):
    """Host (numpy) copy of one subtree of a saved state, without the rest.

    -> (subtree, record, step). `subtree` is "params" (online branch) or
    "target_params". Only that subtree is read from disk (partial restore).
    """
    step = latest_or(workdir, step)
    manager = open_manager(workdir, read_only=True)
    record = manager.restore(step, args=ocp.args.Composite(
        **{RECORD: ocp.args.JsonRestore()}))[RECORD]
    manager.close()
    path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), STATE)
    checkpointer = ocp.PyTreeCheckpointer()
    saved = {subtree: checkpointer.metadata(path).item_metadata.tree[subtree]}
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), saved)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
    restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
    return restored[subtree], record, step
