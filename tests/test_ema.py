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


@pytest.mark.parametrize("steps", [937, 2000])
def test_run_length_momentum_leaves_little_of_the_initialization(steps):
    def memory(base):  # the target's share of its initialization after the run
        return float(jnp.prod(ema.momentum_schedule(base, steps, "cosine")(jnp.arange(steps))))

    assert memory(ema.run_length_momentum(steps)) < 1e-4
    assert memory(0.996) > 0.01  # what the long runs' momentum would leave


def test_run_length_momentum_is_the_long_runs_value_from_5000_steps_and_bounded():
    assert ema.run_length_momentum(5000) == ema.run_length_momentum(10**6) == 0.996
    assert ema.run_length_momentum(10) == 0.9
    momenta = [ema.run_length_momentum(steps) for steps in (100, 300, 937, 2000, 4000, 5000)]
    assert momenta == sorted(momenta) and len(set(momenta)) == 6
