import math

import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.ops import ema


def test_ema_update_matches_formula_and_skips_online_only_subtrees():
    target = {"encoder": {"w": jnp.array([1.0, 2.0])}, "head": jnp.array(3.0)}
    online = {
        "encoder": {"w": jnp.array([5.0, -2.0])},
        "head": jnp.array(1.0),
        "predictor": jnp.array(7.0),
    }
    out = ema.ema_update(target, online, 0.9)
    assert set(out) == {"encoder", "head"}
    np.testing.assert_allclose(
        out["encoder"]["w"], [0.9 * 1 + 0.1 * 5, 0.9 * 2 - 0.1 * 2], rtol=1e-6
    )
    np.testing.assert_allclose(out["head"], 0.9 * 3 + 0.1 * 1, rtol=1e-6)


def test_momentum_one_keeps_target():
    target = {"w": jnp.array([1.0, 2.0])}
    out = ema.ema_update(target, {"w": jnp.array([9.0, 9.0])}, 1.0)
    np.testing.assert_array_equal(out["w"], target["w"])


def test_cosine_momentum_schedule():
    schedule = ema.momentum_schedule(0.996, 100, "cosine")
    for step in (0, 25, 50, 100):
        want = 1 - (1 - 0.996) * (math.cos(math.pi * step / 100) + 1) / 2
        assert float(schedule(step)) == pytest.approx(want, abs=1e-7)
    assert float(schedule(100)) == pytest.approx(1.0)


def test_constant_momentum_schedule_and_unknown():
    assert float(ema.momentum_schedule(0.99, 100, "constant")(70)) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="cosine"):
        ema.momentum_schedule(0.99, 100, "linear")
