"""Orbax checkpoints of a run (the train state and a JSON record per step), and
the pretrained encoder that fine-tuning and probing restore from them.

Saves are asynchronous and atomic, so a crash mid-save leaves the previous
checkpoints intact. On a local disk orbax writes a step to a tmp dir and renames
it; on gs:// (no atomic rename) it writes the step in place and marks it
complete with a final commit_success.txt: a step without one is ignored, and
the next writable manager deletes it.

Every save stores per-array fingerprints in the record (integrity.py); every
restore, whole or partial, checks them and that the arrays are finite, so bytes
damaged on disk never load silently: a damaged step is treated as unreadable.

The encoder is read alone (`params['encoder']`, an orbax partial restore) and
checked against the encoder the config builds, so a checkpoint of another
model size fails with what was found and what was expected rather than loading
in part. Its position embedding is the fixed 2-D sin-cos table, rebuilt for the
grid at every call and never saved, and the patch embedding does not depend on
the grid: an encoder pretrained at 224 px fine-tunes at 384 px as is.
"""

import functools
import re
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from symmim_jax.models import vit
from symmim_jax.train import integrity
from symmim_jax.train.paths import as_path

STATE, RECORD = "state", "record"
FINGERPRINTS = "fingerprints"  # the record's field of integrity.record_entry


@functools.cache
def _save_replicas_in_parallel(parallel: bool):
    """Replica-parallel saving shares a replicated array's writing between the
    processes holding a copy; within one process it only adds an eager slice
    per array and device (most of a small model's save time on 8 devices)."""
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=parallel), override=True
    )


def open_manager(
    workdir: str, *, checkpoint_every: int = 1, keep: int | None = None, read_only: bool = False
) -> ocp.CheckpointManager:
    _save_replicas_in_parallel(jax.process_count() > 1)
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        # Every N steps and on preemption; orbax's default would also save step 1.
        # A custom policy replaces the default one, so preemption is named here.
        save_decision_policy=policies.AnySavePolicy(
            [
                policies.FixedIntervalPolicy(checkpoint_every),
                policies.PreemptionCheckpointingPolicy(),
            ]
        ),
        preservation_policy=(ocp.checkpoint_managers.LatestN(keep) if keep else None),
        create=not read_only,
        read_only=read_only,
        cleanup_tmp_directories=not read_only,
    )
    return ocp.CheckpointManager(
        as_path(workdir) / "checkpoints", options=options, item_names=(STATE, RECORD)
    )


def save(
    manager: ocp.CheckpointManager, step: int, state, record: dict, *, force: bool = False
) -> bool:
    """Starts an async save when the policy (or `force`) says so, with the
    state's fingerprints in the record. Raises NonFiniteState rather than
    write non-finite arrays."""
    if not (force or manager.should_save(step)):
        return False
    prints, non_finite = integrity.summary(state)
    if non_finite:
        raise NonFiniteState(f"non-finite values in {', '.join(non_finite[:3])}; not saved")
    record = {**record, FINGERPRINTS: integrity.record_entry(prints)}
    args = ocp.args.Composite(
        **{STATE: ocp.args.StandardSave(state), RECORD: ocp.args.JsonSave(record)}
    )
    return manager.save(step, args=args, force=force)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state):
    """-> (state, record). `abstract_state` holds ShapeDtypeStructs with the
    target shardings, so a checkpoint restores onto the current mesh."""
    args = ocp.args.Composite(
        **{STATE: ocp.args.StandardRestore(abstract_state), RECORD: ocp.args.JsonRestore()}
    )
    restored = manager.restore(step, args=args)
    return restored[STATE], restored[RECORD]


class CheckpointMismatch(ValueError):
    """A readable checkpoint of another model or optimizer than the config's."""


class CheckpointDamaged(ValueError):
    """A checkpoint that cannot be read back as it was written."""


class NonFiniteState(ValueError):
    """A state with non-finite arrays, never saved."""


def _damage(state, record: dict, prefix: str = "") -> str | None:
    """What is wrong with a restored state (None: intact); `prefix` names a
    subtree restored alone."""
    found = integrity.problems(state, record.get(FINGERPRINTS), prefix)
    return "; ".join(found) if found else None


def shortened(text: str, length: int = 300) -> str:
    """Without TensorStore's spec dump, then its start and its end: TensorStore
    names the file first, the OS error last."""
    text = re.sub(r" ?\[tensorstore_spec='.*?'\]", "", text)
    if len(text) <= length:
        return text
    return f"{text[: length // 3]} ... {text[-(length - length // 3) :]}"


def first_line(err: BaseException) -> str:
    """'Type: first line of the message', shortened."""
    return shortened(f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}")


def _innermost(err: BaseException) -> str:
    """first_line of the error that caused `err`: orbax's own names the array
    index and dumps a TensorStore spec; TensorStore's names the array, the file
    and what failed."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return first_line(err)


def _saved_tree(directory, step: int):
    """The saved state's tree of array metadata (shapes, dtypes)."""
    return (
        ocp.PyTreeCheckpointer().metadata(as_path(directory) / str(step) / STATE).item_metadata.tree
    )


def _leaf_shapes(tree) -> list:
    return sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(tree))


def restore_newest_intact(manager: ocp.CheckpointManager, abstract_state, quarantine_dir: str):
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
                "another --workdir."
            )
        try:
            state, record = restore(manager, step, abstract_state)
            reason = _damage(state, record)
        except Exception as err:  # orbax/tensorstore raise many types here
            reason = _innermost(err)
        if reason is not None:
            logging.warning(
                "Checkpoint %d in %s cannot be read (%s); moving it to %s and trying an older one.",
                step,
                manager.directory,
                reason,
                quarantine_dir,
            )
            if jax.process_index() == 0:
                quarantine = as_path(quarantine_dir)
                quarantine.mkdir(parents=True, exist_ok=True)
                (as_path(manager.directory) / str(step)).rename(
                    quarantine / f"{step}-{int(time.time())}"
                )
            continue
        manager.reload()
        return state, record, step
    if steps:
        raise RuntimeError(
            f"None of the checkpoints {sorted(steps)} in {manager.directory} can be read "
            f"(moved to {quarantine_dir}); not starting from scratch. Move them back "
            "or use another --workdir."
        )
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
        raise FileNotFoundError(
            f"no checkpoint of step {step} in {workdir}; available: {sorted(steps)}"
        )
    return step


def _read_subtree(workdir: str, step: int, subtree: str):
    """-> (numpy subtree, record) of one step, read alone (partial restore)."""
    manager = open_manager(workdir, read_only=True)
    try:
        record = manager.restore(step, args=ocp.args.Composite(**{RECORD: ocp.args.JsonRestore()}))[
            RECORD
        ]
    finally:
        manager.close()
    path = as_path(workdir) / "checkpoints" / str(step) / STATE
    saved = {subtree: _saved_tree(as_path(workdir) / "checkpoints", step)[subtree]}
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), saved)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
    restored = ocp.PyTreeCheckpointer().restore(
        path,
        args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True),
    )
    return restored[subtree], record


def _checked_subtree(workdir: str, step: int, subtree: str):
    """-> (subtree, record, None) when intact, else (None, None, what is wrong)."""
    try:
        params, record = _read_subtree(workdir, step, subtree)
        reason = _damage({subtree: params}, record, prefix=f"{subtree}/")
    except Exception as err:  # orbax/tensorstore raise many types here
        return None, None, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return (None, None, reason) if reason else (params, record, None)


def load_params(workdir: str, step: int | None = None, subtree: str = "params"):
    """Host (numpy) copy of one subtree of a saved state, without the rest.

    -> (subtree, record, step). `subtree` is "params" (online branch) or
    "target_params". Only that subtree is read from disk (partial restore),
    and checked against its fingerprints: a damaged step raises
    CheckpointDamaged naming the steps whose subtree is intact.
    """
    step = latest_or(workdir, step)
    params, record, reason = _checked_subtree(workdir, step, subtree)
    if reason is None:
        return params, record, step
    others = sorted(open_manager(workdir, read_only=True).all_steps(), reverse=True)
    intact = [s for s in others if s != step and _checked_subtree(workdir, s, subtree)[2] is None]
    raise CheckpointDamaged(
        f"Checkpoint {step} in {as_path(workdir) / 'checkpoints'} is damaged ({reason}). "
        + (
            f"Intact steps there: {intact}; choose one (export --step=N, "
            "config.init_step=N for fine-tuning and probing)."
            if intact
            else "No other step there is intact."
        )
    )


def _flat_shapes(tree) -> dict:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def expected_encoder_shapes(encoder: vit.VisionTransformer, image_size: int) -> dict:
    """{'path/to/leaf': shape} of the encoder's parameters."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    abstract = jax.eval_shape(lambda x: encoder.init(jax.random.key(0), x), images)
    return _flat_shapes(abstract["params"])


def describe(shapes: dict) -> str:
    """'width 192, depth 12, patch 4' read off an encoder's parameter shapes."""
    depth = len({k.split("/")[0] for k in shapes if k.startswith("blocks_")})
    kernel = shapes.get("patch_embed/kernel")
    if kernel is None:
        return f"{len(shapes)} arrays without a patch embedding"
    return f"width {kernel[-1]}, depth {depth}, patch {kernel[0]}"


def check_encoder(found: dict, expected: dict, source: str):
    """Raises CheckpointMismatch naming the first differences."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    if not (missing or extra or wrong):
        return
    first = lambda names: f"{names[:3]}{' ...' if len(names) > 3 else ''}"
    details = (
        ([f"missing {first(missing)}"] if missing else [])
        + ([f"unexpected {first(extra)}"] if extra else [])
        + (
            ["shapes differ: " + ", ".join(f"{k} {found[k]} != {expected[k]}" for k in wrong[:3])]
            if wrong
            else []
        )
    )
    raise CheckpointMismatch(
        f"The encoder in {source} ({describe(found)}) is not the one "
        f"config.model.variant builds ({describe(expected)}): {'; '.join(details)}. "
        "Set config.model.variant to the pretraining run's variant (its config.json)."
    )


def load_encoder(init_from: str, step: int | None, encoder: vit.VisionTransformer, image_size: int):
    """-> (encoder params as numpy, {"init_from", "step"}).

    The whole encoder, final `norm` included, is checked against `encoder`
    built with its final norm; callers drop what their model does not use.
    """
    if not (as_path(init_from) / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"config.init_from={init_from!r} is not a pretraining workdir: "
            f"{as_path(init_from) / 'checkpoints'} does not exist."
        )
    params, _, step = load_params(init_from, step, "params")
    source = f"{init_from} step {step}"
    if "encoder" not in params:
        raise CheckpointMismatch(
            f"{source} holds no 'encoder' in its params (found {sorted(params)})."
        )
    check_encoder(
        _flat_shapes(params["encoder"]),
        expected_encoder_shapes(encoder.clone(final_norm=True, parent=None), image_size),
        source,
    )
    return params["encoder"], {"init_from": str(as_path(init_from)), "step": step}


def describe_init(info: dict) -> str:
    """'WORKDIR step N' or 'FILE (timm)': where an encoder came from."""
    if info.get("format"):
        return f"{info['init_from']} ({info['format']})"
    return f"{info['init_from']} step {info['step']}"


def import_encoder(path: str, encoder: vit.VisionTransformer, image_size: int):
    """The encoder from a file written elsewhere (timm, MAE, SimMIM, big_vision:
    interop/importers.py), checked like a workdir's -> (numpy params, init info)."""
    from symmim_jax.interop import importers  # imports this module

    if not as_path(path).is_file():
        raise FileNotFoundError(f"config.init_from={path!r}: no such file.")
    expected = expected_encoder_shapes(encoder.clone(final_norm=True, parent=None), image_size)
    params, kind = importers.load_encoder(path, expected, encoder, image_size)
    check_encoder(_flat_shapes(params), expected, f"{path} ({kind})")
    return params, {"init_from": str(as_path(path)), "step": None, "format": kind}


def load_init_encoder(config, encoder: vit.VisionTransformer):
    """The encoder of `config.init_from` (a workdir, at step `config.init_step`,
    or a checkpoint file of timm, MAE, SimMIM or big_vision) checked against
    `encoder` -> (numpy params, init info), or (None, info) when init_from is
    unset (random initialization). Raises ValueError."""
    from symmim_jax.interop import importers

    if not config.init_from:
        return None, {"init_from": None, "step": None}
    try:
        if importers.is_import(config.init_from):
            return import_encoder(config.init_from, encoder, config.input.image_size)
        return load_encoder(config.init_from, config.init_step, encoder, config.input.image_size)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
