"""Checkpoints: save, restore, partial loads, damaged steps; the pretrained
encoder restored from them (equal to the saved one, placed on a mesh, wrong
sizes and paths refused with what was found and expected, other image sizes)."""

import json
import logging
import random

from fake_pretraining import encoder_params, vit_config, write_workdir
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import pytest

from symmim_jax.models import vit
from symmim_jax.train import checkpoint, sharding


def _state(seed):
    key = jax.random.key(seed)
    return {
        "step": jnp.asarray(seed),
        "params": {"w": jax.random.normal(key, (3, 2))},
        "target_params": {"w": jnp.ones((3, 2))},
        "opt_state": {"mu": jnp.zeros(4)},
    }


def test_save_restore_and_partial_load(tmp_path):
    manager = checkpoint.open_manager(str(tmp_path), keep=2)
    for step in (1, 2, 3):
        checkpoint.save(manager, step, _state(step), {"step": step}, force=True)
    manager.wait_until_finished()
    assert manager.all_steps() == [2, 3]  # keeps the last 2
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))
    state, record = checkpoint.restore(manager, 3, abstract)
    manager.close()
    assert record["step"] == 3 and set(record["fingerprints"]["arrays"]) == {
        "step",
        "params/w",
        "target_params/w",
        "opt_state/mu",
    }
    np.testing.assert_array_equal(state["params"]["w"], _state(3)["params"]["w"])

    params, record, step = checkpoint.load_params(str(tmp_path))
    assert step == 3 and record["step"] == 3 and set(params) == {"w"}
    np.testing.assert_array_equal(params["w"], _state(3)["params"]["w"])
    target, _, _ = checkpoint.load_params(str(tmp_path), 2, subtree="target_params")
    np.testing.assert_array_equal(target["w"], 1.0)


def test_missing_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        checkpoint.load_params(str(tmp_path / "empty"))
    manager = checkpoint.open_manager(str(tmp_path))
    checkpoint.save(manager, 5, _state(5), {"step": 5}, force=True)
    manager.close()
    with pytest.raises(FileNotFoundError, match=r"step 4 .* available: \[5\]"):
        checkpoint.load_params(str(tmp_path), 4)


def test_restored_encoder_equals_saved_one_on_the_mesh(tmp_path):
    saved = encoder_params("mu/4", 16, seed=3)
    workdir = write_workdir(tmp_path / "pre", saved)
    encoder = vit.build_encoder(vit_config("mu/4"))
    loaded, info = checkpoint.load_encoder(workdir, None, encoder, image_size=16)
    assert info["step"] == 7 and info["init_from"] == str(tmp_path / "pre")
    assert jax.tree.structure(loaded) == jax.tree.structure(saved)
    # Placed as an FSDP state places it: large leaves split over 4 devices.
    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=2, fsdp=4)))
    placed = sharding.place(loaded, sharding.state_shardings(loaded, mesh, min_size=64))
    kernel = placed["patch_embed"]["kernel"]
    assert kernel.sharding.spec == P(None, None, None, "fsdp")
    assert kernel.addressable_shards[0].data.shape == (4, 4, 3, 8)
    for a, b in zip(jax.tree.leaves(placed), jax.tree.leaves(saved)):
        assert len(a.sharding.device_set) == jax.device_count()
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_new_image_size_rebuilds_the_position_table(tmp_path):
    """Pretrained at 16 px, used at 24 px: the same parameters, a 6 x 6 grid."""
    saved = encoder_params("mu/4", 16)
    encoder = vit.build_encoder(vit_config("mu/4"))
    loaded, _ = checkpoint.load_encoder(
        write_workdir(tmp_path / "pre", saved), None, encoder, image_size=24
    )
    tokens = encoder.apply({"params": loaded}, jnp.ones((1, 24, 24, 3)))
    assert tokens.shape == (1, 1 + 36, 32)


def test_wrong_model_size_names_found_and_expected(tmp_path):
    workdir = write_workdir(tmp_path / "pre", encoder_params("mu/4", 16))
    encoder = vit.build_encoder(vit_config("mu/8"))
    with pytest.raises(
        checkpoint.CheckpointMismatch,
        match=r"width 32, depth 2, patch 4\).*\(width 32, depth 2, patch 8\)"
        r".*patch_embed/kernel",
    ):
        checkpoint.load_encoder(workdir, None, encoder, image_size=16)
    deeper = encoder.clone(depth=3, parent=None)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"missing \['blocks_2/"):
        checkpoint.load_encoder(workdir, None, deeper, image_size=16)


def test_missing_path_and_step_are_named(tmp_path):
    encoder = vit.build_encoder(vit_config("mu/4"))
    with pytest.raises(FileNotFoundError, match="is not a pretraining workdir"):
        checkpoint.load_encoder(str(tmp_path / "nowhere"), None, encoder, image_size=16)
    workdir = write_workdir(tmp_path / "pre", encoder_params("mu/4", 16))
    with pytest.raises(FileNotFoundError, match=r"step 3 .* available: \[7\]"):
        checkpoint.load_encoder(workdir, 3, encoder, image_size=16)


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def _data_files(directory):
    """The array data files of a saved step, largest first."""
    files = [p for p in directory.rglob("*") if p.is_file() and p.parent.name == "d"]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def _damage(path, kind, rng):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    if kind == "flipped":
        for i in range(middle, min(len(data), middle + 64)):
            data[i] ^= 1 + rng.randrange(255)
        path.write_bytes(bytes(data))
    elif kind == "truncated":
        path.write_bytes(bytes(data[:middle]))
    elif kind == "zeroed":
        path.write_bytes(bytes(len(data)))
    else:
        path.unlink()


@pytest.mark.parametrize("kind", ["flipped", "truncated", "zeroed", "deleted"])
def test_damaged_newest_step_is_quarantined_and_the_previous_restored(tmp_path, kind, caplog):
    manager = checkpoint.open_manager(str(tmp_path))
    big = lambda seed: {"w": jax.random.normal(jax.random.key(seed), (64, 64)), "b": jnp.ones(4)}
    for step in (1, 2):
        checkpoint.save(manager, step, big(step), {"step": step}, force=True)
    manager.wait_until_finished()
    for path in _data_files(tmp_path / "checkpoints" / "2"):
        _damage(path, kind, random.Random(step))
    with caplog.at_level(logging.WARNING):
        state, record, step = checkpoint.restore_newest_intact(
            manager, _abstract(big(0)), str(tmp_path / "quarantine")
        )
    manager.close()
    assert step == 1 and record["step"] == 1
    np.testing.assert_array_equal(state["w"], big(1)["w"])
    assert "Checkpoint 2 in" in caplog.text
    assert [p.name.split("-")[0] for p in (tmp_path / "quarantine").iterdir()] == ["2"]


def _edit_record_fingerprint(step_dir, name):
    """Changes one saved fingerprint, as if that array's bytes had changed and
    still decoded: what only the fingerprint can catch."""
    path = step_dir / "record" / "metadata"
    record = json.loads(path.read_text())
    saved = record["fingerprints"]["arrays"][name]
    record["fingerprints"]["arrays"][name] = saved[:-1] + ("0" if saved[-1] != "0" else "1")
    path.write_text(json.dumps(record))


def test_a_fingerprint_mismatch_is_quarantined_like_an_unreadable_step(tmp_path, caplog):
    manager = checkpoint.open_manager(str(tmp_path))
    for step in (1, 2):
        checkpoint.save(manager, step, _state(step), {"step": step}, force=True)
    manager.wait_until_finished()
    _edit_record_fingerprint(tmp_path / "checkpoints" / "2", "opt_state/mu")
    with caplog.at_level(logging.WARNING):
        _, record, step = checkpoint.restore_newest_intact(
            manager, _abstract(_state(0)), str(tmp_path / "quarantine")
        )
    manager.close()
    assert step == 1 and record["step"] == 1
    assert "fingerprint differs for opt_state/mu" in caplog.text


def test_a_damaged_step_read_alone_names_the_intact_ones(tmp_path):
    manager = checkpoint.open_manager(str(tmp_path))
    for step in (1, 2, 3):
        checkpoint.save(manager, step, _state(step), {"step": step}, force=True)
    manager.close()
    _edit_record_fingerprint(tmp_path / "checkpoints" / "3", "params/w")
    with pytest.raises(
        checkpoint.CheckpointDamaged,
        match=r"Checkpoint 3 .* damaged \(fingerprint differs for params/w\)\. "
        r"Intact steps there: \[2, 1\]",
    ):
        checkpoint.load_params(str(tmp_path))
    # Another subtree of the same step is intact and still loads.
    target, _, _ = checkpoint.load_params(str(tmp_path), 3, subtree="target_params")
    np.testing.assert_array_equal(target["w"], 1.0)


def test_a_non_finite_state_is_never_saved(tmp_path):
    manager = checkpoint.open_manager(str(tmp_path))
    state = _state(1)
    state["params"]["w"] = state["params"]["w"].at[0, 0].set(jnp.inf)
    with pytest.raises(checkpoint.NonFiniteState, match="params/w"):
        checkpoint.save(manager, 1, state, {"step": 1}, force=True)
    manager.close()
    assert checkpoint.open_manager(str(tmp_path), read_only=True).all_steps() == []


def test_one_process_saves_replicated_arrays_without_slicing_them(tmp_path, monkeypatch):
    """Replica-parallel saving (orbax's default off GPUs) would cut each array
    replicated over the 8 devices into 8 eager slices; one process writes it whole."""
    slices = []
    slice_in_dim = jax.lax.slice_in_dim
    monkeypatch.setattr(
        jax.lax, "slice_in_dim", lambda *a, **k: slices.append(a) or slice_in_dim(*a, **k)
    )
    state = {"w": jnp.arange(64.0).reshape(16, 4), "step": jnp.asarray(1)}
    state = jax.device_put(state, jax.sharding.NamedSharding(sharding.make_mesh(), P()))
    manager = checkpoint.open_manager(str(tmp_path))
    checkpoint.save(manager, 1, state, {}, force=True)
    manager.wait_until_finished()
    restored, _ = checkpoint.restore(manager, 1, state)
    manager.close()
    assert len(state["w"].sharding.device_set) == 8 and not slices
    jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_a_long_tensorstore_error_keeps_the_file_and_the_os_error():
    spec = '[tensorstore_spec=\'{\\"context\\":{\\"cache_pool\\":{}}' + "x" * 900 + "}']"
    text = (
        'ValueError: OUT_OF_RANGE: Error writing "w/.zarray" in OCDBT database at local file '
        f'"/run/checkpoints/6/": Failed to write 9386 bytes: File too large {spec}'
    )
    short = checkpoint.shortened(text)
    assert short.startswith("ValueError: OUT_OF_RANGE: Error writing")
    assert short.endswith("File too large") and len(short) <= 305
