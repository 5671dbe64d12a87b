"""Optimizers from config, all optax: AdamW with its weight-decay mask, layer-wise
lr decay and clipping (pretraining, fine-tuning), LARS (linear probing), the
warm-up + cosine schedule. Each checks its own config fields."""

import jax
import optax

# The only parameters weight decay applies to: the weights of dense, convolution
# and embedding layers (flax's names). Biases, norm scales and biases, the
# [CLS] and mask tokens and position embeddings keep their values, whatever their
# rank (the qkv bias is [3, heads, head_dim]); docs/METHOD.md §4.
DECAYED_NAMES = ("kernel", "embedding")


def weight_decay_mask(params):
    """True where weight decay applies: by the parameter's name, not its rank."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: str(getattr(path[-1], "key", path[-1])) in DECAYED_NAMES, params
    )


def peak_learning_rate(optim_config, batch_size: int) -> float:
    """Base lr scaled linearly with the global batch (lr = base * B / base_batch)."""
    return optim_config.base_lr * batch_size / optim_config.base_batch_size


def warmup_cosine(
    optim_config, batch_size: int, total_steps: int, warmup_steps: int
) -> optax.Schedule:
    """Linear warm-up to the scaled peak lr, then a half cosine to min_lr (MAE)."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak_learning_rate(optim_config, batch_size),
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=optim_config.min_lr,
    )


def _check_lr(optim_config):
    if not (optim_config.base_lr > 0 and optim_config.base_batch_size > 0):
        raise ValueError("config.optim.base_lr and config.optim.base_batch_size must be > 0.")


def check_adamw(optim_config):
    """The fields of make_adamw (and make_finetune_adamw's layer_decay)."""
    _check_lr(optim_config)
    if not (0 <= optim_config.b1 < 1 and 0 <= optim_config.b2 < 1):
        raise ValueError(
            f"config.optim.b1={optim_config.b1} and b2={optim_config.b2} must be in [0, 1)."
        )
    for field in ("weight_decay", "min_lr", "grad_clip_norm"):
        if optim_config[field] < 0:
            raise ValueError(f"config.optim.{field}={optim_config[field]} must be >= 0.")
    decay = optim_config.get("layer_decay", 1.0)
    if not 0 < decay <= 1:
        raise ValueError(f"config.optim.layer_decay={decay} must be in (0, 1] (1 = off).")


def check_lars(optim_config):
    _check_lr(optim_config)
    if not (0 <= optim_config.momentum < 1 and optim_config.weight_decay >= 0):
        raise ValueError(
            f"config.optim.momentum={optim_config.momentum} must be in [0, 1) "
            f"and weight_decay={optim_config.weight_decay} >= 0."
        )


def make_lars(optim_config, batch_size: int, total_steps: int, warmup_steps: int):
    """LARS for linear probing (MAE): trust ratio and weight decay on weights
    only, not on biases or norms. -> (transformation, schedule)."""
    schedule = warmup_cosine(optim_config, batch_size, total_steps, warmup_steps)
    tx = optax.lars(
        schedule,
        weight_decay=optim_config.weight_decay,
        weight_decay_mask=weight_decay_mask,
        trust_ratio_mask=weight_decay_mask,
        momentum=optim_config.momentum,
    )
    return tx, schedule


def make_adamw(optim_config, batch_size: int, total_steps: int, warmup_steps: int):
    """AdamW with the weight-decay mask, clipping when set -> (transformation,
    learning-rate schedule)."""
    schedule = warmup_cosine(optim_config, batch_size, total_steps, warmup_steps)
    adamw = optax.adamw(
        schedule,
        b1=optim_config.b1,
        b2=optim_config.b2,
        weight_decay=optim_config.weight_decay,
        mask=weight_decay_mask,
    )
    if optim_config.grad_clip_norm:
        adamw = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), adamw)
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
        return int(parts[0][len("blocks_") :]) + 1
    return depth + 1


def layer_decay(depth: int, decay: float) -> optax.GradientTransformation:
    """Scales each parameter's update by decay ** (depth + 1 - layer_id): after
    AdamW, the same as BEiT's per-layer lr (weight decay included)."""

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: str(layer_id("/".join(str(getattr(k, "key", k)) for k in path), depth)),
            params,
        )

    scales = {str(layer): optax.scale(decay ** (depth + 1 - layer)) for layer in range(depth + 2)}
    return optax.multi_transform(scales, labels)


def make_finetune_adamw(
    optim_config, batch_size: int, total_steps: int, warmup_steps: int, depth: int
):
    """AdamW with layer-wise lr decay (`optim_config.layer_decay`; 1 turns it
    off) -> (transformation, schedule of the head's lr)."""
    tx, schedule = make_adamw(optim_config, batch_size, total_steps, warmup_steps)
    if optim_config.layer_decay == 1.0:
        return tx, schedule
    return optax.chain(tx, layer_decay(depth, optim_config.layer_decay)), schedule
