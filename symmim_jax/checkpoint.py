"""Orbax checkpoints of a run: the train state and a JSON record per step.

Saves are asynchronous and atomic (orbax writes to a tmp dir and renames it), so
a crash mid-save leaves the previous checkpoints intact. The default save policy
is kept on purpose: passing a `save_decision_policy` would drop orbax's
preemption saves.
"""
import os

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
