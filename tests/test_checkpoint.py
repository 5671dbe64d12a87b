import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax import checkpoint


def _state(seed):
    key = jax.random.key(seed)
    return {"step": jnp.asarray(seed), "params": {"w": jax.random.normal(key, (3, 2))},
            "target_params": {"w": jnp.ones((3, 2))}, "opt_state": {"mu": jnp.zeros(4)}}


def test_save_restore_and_partial_load(tmp_path):
    manager = checkpoint.open_manager(str(tmp_path), keep=2)
    for step in (1, 2, 3):
        checkpoint.save(manager, step, _state(step), {"step": step}, force=True)
    manager.wait_until_finished()
    assert manager.all_steps() == [2, 3]  # keeps the last 2
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))
    state, record = checkpoint.restore(manager, 3, abstract)
    manager.close()
    assert record == {"step": 3}
    np.testing.assert_array_equal(state["params"]["w"], _state(3)["params"]["w"])

    params, record, step = checkpoint.load_params(str(tmp_path))
    assert step == 3 and record == {"step": 3} and set(params) == {"w"}
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
