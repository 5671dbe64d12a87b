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
