"""Optimizer from config: AdamW, weight-decay mask, warm-up + cosine, clipping."""
import jax
import optax

# Parameters that carry no weight decay besides biases and norms (METHOD §4).
NO_DECAY_NAMES = ("cls_token", "mask_token", "pos_embed")


def weight_decay_mask(params):
    """True where weight decay applies: matrices and kernels, not tokens or norms."""
    def decays(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        return leaf.ndim > 1 and name not in NO_DECAY_NAMES
    return jax.tree_util.tree_map_with_path(decays, params)


def peak_learning_rate(optim_config, batch_size: int) -> float:
    """Base lr scaled linearly with the global batch (lr = base * B / base_batch)."""
    return optim_config.base_lr * batch_size / optim_config.base_batch_size


def make_optimizer(optim_config, batch_size: int, total_steps: int,
                   warmup_steps: int):
    """Returns (optax transformation, learning-rate schedule)."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak_learning_rate(optim_config, batch_size),
        warmup_steps=warmup_steps, decay_steps=max(total_steps, warmup_steps + 1),
        end_value=optim_config.min_lr)
    adamw = optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                        weight_decay=optim_config.weight_decay,
                        mask=weight_decay_mask)
    if optim_config.grad_clip_norm:
        adamw = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm),
                            adamw)
    return adamw, schedule
