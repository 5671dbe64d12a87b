"""The momentum (EMA) target branch: a pure update and its momentum schedule."""

import optax


def ema_update(target, online, momentum):
    """theta_k <- m * theta_k + (1 - m) * theta_q (SymMIM eq. 5), leaf by leaf.

    `online` may hold more subtrees than `target` (SymMIM's predictor has no
    target copy); only the subtrees the target has are averaged.
    """
    online = {name: online[name] for name in target}
    return optax.incremental_update(online, target, step_size=1.0 - momentum)


def momentum_schedule(base: float, total_steps: int, kind: str) -> optax.Schedule:
    """'cosine': base -> 1.0 over training (BYOL); 'constant': base throughout."""
    if kind == "constant":
        return optax.constant_schedule(base)
    if kind == "cosine":
        one_minus = optax.cosine_decay_schedule(1.0 - base, decay_steps=total_steps)
        return lambda step: 1.0 - one_minus(step)
    raise ValueError(f"momentum schedule {kind!r} is not 'cosine' or 'constant'")


# The rule for a base momentum the user did not set (docs/METHOD.md §2): the
# EMA's timescale 1 / (1 - m0) is at most this share of the run ...
TIMESCALE_SHARE = 0.05
# ... within BYOL's 0.996 (the long runs' value) and 0.9 (a 10-step timescale).
LOWEST_MOMENTUM, HIGHEST_MOMENTUM = 0.9, 0.996


def run_length_momentum(total_steps: int) -> float:
    """The base momentum m0 for a run of `total_steps`: 1 - 1 / (share * T),
    clipped to [0.9, 0.996]. Under the cosine schedule the target then keeps
    about exp(-(1 - m0) * T / 2) = exp(-1 / (2 * share)) = 5e-5 of its random
    initialization at the end (0.996 gives 0.15 after the 937-step demo). Runs
    of 5000 steps or more (every ImageNet preset) get 0.996; the demo 0.979."""
    momentum = 1.0 - 1.0 / (TIMESCALE_SHARE * total_steps)
    return min(max(momentum, LOWEST_MOMENTUM), HIGHEST_MOMENTUM)
