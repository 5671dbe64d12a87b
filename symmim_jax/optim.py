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


def warmup_cosine(optim_config, batch_size: int, total_steps: int,
                  warmup_steps: int) -> optax.Schedule:
    """Linear warm-up to the scaled peak lr, then a half cosine to min_lr (MAE)."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak_learning_rate(optim_config, batch_size),
        warmup_steps=warmup_steps, decay_steps=max(total_steps, warmup_steps + 1),
        end_value=optim_config.min_lr)


def make_lars(optim_config, batch_size: int, total_steps: int, warmup_steps: int):
    """LARS for linear probing (MAE): trust ratio and weight decay on matrices
    only. -> (transformation, schedule)."""
    schedule = warmup_cosine(optim_config, batch_size, total_steps, warmup_steps)
    matrices = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    tx = optax.lars(schedule, weight_decay=optim_config.weight_decay,
                    weight_decay_mask=matrices, trust_ratio_mask=matrices,
                    momentum=optim_config.momentum)
    return tx, schedule


def make_optimizer(optim_config, batch_size: int, total_steps: int,
                   warmup_steps: int):
    """Returns (optax transformation, learning-rate schedule)."""
    schedule = warmup_cosine(optim_config, batch_size, total_steps, warmup_steps)
    adamw = optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                        weight_decay=optim_config.weight_decay,
                        mask=weight_decay_mask)
    if optim_config.grad_clip_norm:
        adamw = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm),
                            adamw)
    return adamw, schedule


def layer_id(path: str, depth: int) -> int:
    """BEiT/MAE layer index of a parameter path: 0 for the embeddings and
    tokens, i + 1 for `blocks_i`, depth + 1 for everything after the blocks
    (the final/fc norm and the head)."""
    parts = path.split("/")
    if parts[0] == "encoder":
        parts = parts[1:]
    if parts[0] in ("patch_embed", "cls_token", "mask_token", "pos_embed"):
        return 0
    if parts[0].startswith("blocks_"):
        return int(parts[0][len("blocks_"):]) + 1
    return depth + 1


def layer_decay_scales(params, depth: int, decay: float):
    """Tree of lr multipliers decay ** (depth + 1 - layer_id)."""
    def scale(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return decay ** (depth + 1 - layer_id(name, depth))
    return jax.tree_util.tree_map_with_path(scale, params)


def make_finetune_optimizer(optim_config, batch_size: int, total_steps: int,
                            warmup_steps: int, depth: int):
    """AdamW with layer-wise lr decay: each parameter's update is scaled by its
    layer's multiplier (`optim_config.layer_decay`; 1 turns it off).
    -> (transformation, schedule of the head's lr)."""
    tx, schedule = make_optimizer(optim_config, batch_size, total_steps, warmup_steps)
    if optim_config.layer_decay == 1.0:
        return tx, schedule

    def scale_by_layer():
        def init(params):
            del params
            return optax.EmptyState()

        def update(updates, state, params=None):
            del params
            scales = layer_decay_scales(updates, depth, optim_config.layer_decay)
            return jax.tree.map(lambda u, s: u * s, updates, scales), state
        return optax.GradientTransformation(init, update)
    # Scaling AdamW's final update equals scaling its lr (and its weight decay,
    # as BEiT's per-group lr does).
    return optax.chain(tx, scale_by_layer()), schedule
