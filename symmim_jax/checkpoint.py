"""Orbax checkpoints of a run: the train state and a JSON record per step.

Saves are asynchronous and atomic (orbax writes to a tmp dir and renames it), so
a crash mid-save leaves the previous checkpoints intact.
"""
import time

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from symmim_jax.paths import as_path

STATE, RECORD = "state", "record"


def open_manager(workdir: str, *, checkpoint_every: int = 1, keep: int | None = None,
                 read_only: bool = False) -> ocp.CheckpointManager:
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        # Every N steps and on preemption; orbax's default would also save step 1.
        # A custom policy replaces the default one, so preemption is named here.
        save_decision_policy=policies.AnySavePolicy([
            policies.FixedIntervalPolicy(checkpoint_every),
            policies.PreemptionCheckpointingPolicy()]),
        preservation_policy=(ocp.checkpoint_managers.LatestN(keep) if keep else None),
        create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
    return ocp.CheckpointManager(as_path(workdir) / "checkpoints",
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


class CheckpointMismatch(ValueError):
    """A readable checkpoint of another model or optimizer."""


def _saved_tree(directory, step: int):
    """The saved state's tree of array metadata (shapes, dtypes)."""
    return ocp.PyTreeCheckpointer().metadata(
        as_path(directory) / str(step) / STATE).item_metadata.tree


def _leaf_shapes(tree) -> list:
    return sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(tree))


def restore_newest_intact(manager: ocp.CheckpointManager, abstract_state,
                          quarantine_dir: str):
    """Restores the newest checkpoint that reads back -> (state, record, step).

    Unreadable newer ones (torn, truncated, files missing) are named in a
    warning and moved into `quarantine_dir`, so the run can save those steps
    again; nothing is deleted. Returns None when there is no checkpoint and
    raises when checkpoints exist but none can be read: a run never silently
    starts from scratch.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    for step in steps:
        try:
            saved_shapes = _leaf_shapes(_saved_tree(manager.directory, step))
        except Exception:  # unreadable metadata: handled below as unreadable
            saved_shapes = None
        if saved_shapes is not None and saved_shapes != _leaf_shapes(abstract_state):
            raise CheckpointMismatch(
                f"Checkpoint {step} in {manager.directory} holds {len(saved_shapes)} "
                f"arrays that do not match the {len(_leaf_shapes(abstract_state))} of "
                "the model and optimizer this config builds: resume with the config it "
                "was written with (saved in its record and in config.json) or use "
                "another --workdir.")
        try:
            state, record = restore(manager, step, abstract_state)
        except Exception as err:  # orbax/tensorstore raise many types here
            reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            logging.warning("Checkpoint %d in %s cannot be read (%s); moving it to %s "
                            "and trying an older one.", step, manager.directory,
                            reason, quarantine_dir)
            if jax.process_index() == 0:
                quarantine = as_path(quarantine_dir)
                quarantine.mkdir(parents=True, exist_ok=True)
                (as_path(manager.directory) / str(step)).rename(
                    quarantine / f"{step}-{int(time.time())}")
            continue
        manager.reload()
        return state, record, step
    if steps:
        raise RuntimeError(
            f"None of the checkpoints {sorted(steps)} in {manager.directory} can be read "
            f"(moved to {quarantine_dir}); not starting from scratch. Move them back "
            "or use another --workdir.")
    return None


def latest_or(workdir: str, step: int | None) -> int:
    """`step`, or the newest step in `workdir`; a clear error when absent."""
    manager = open_manager(workdir, read_only=True)
    steps = manager.all_steps()
    manager.close()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {as_path(workdir) / 'checkpoints'}")
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
    path = as_path(workdir) / "checkpoints" / str(step) / STATE
    saved = {subtree: _saved_tree(as_path(workdir) / "checkpoints", step)[subtree]}
    checkpointer = ocp.PyTreeCheckpointer()
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), saved)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
    restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
    return restored[subtree], record, step
