"""Frozen-encoder features: [CLS] or mean-pooled tokens after a chosen block.

Used by the linear probe and the k-NN monitor. Features of block k < depth are
the raw residual stream (no norm); those of the last block pass the encoder's
final norm, as the pretrained model sees them (MAE's linear probe).
"""

import jax
import jax.numpy as jnp
import numpy as np

from symmim_jax.models import vit
from symmim_jax.ops import patches
from symmim_jax.train import sharding


def truncated(encoder: vit.VisionTransformer, block: int | None):
    """(encoder up to `block` (1-based; None = last), a function trimming its params)."""
    depth = encoder.depth if block is None else block
    if not 1 <= depth <= encoder.depth:
        raise ValueError(f"feature block {block} is not in 1..{encoder.depth}")
    last = depth == encoder.depth
    module = encoder.clone(
        depth=depth, final_norm=encoder.final_norm and last, drop_path=0.0, parent=None
    )

    def trim(params):
        return {
            name: value
            for name, value in params.items()
            if not (name.startswith("blocks_") and int(name[7:]) >= depth)
            and (name != "norm" or module.final_norm)
        }

    return module, trim


def make_extractor(
    encoder: vit.VisionTransformer,
    *,
    block: int | None = None,
    pool: str = "cls",
    mean=None,
    std=None,
):
    """-> (extract(encoder params, uint8 or float images) -> [B, D] float32, jitted;
    trim(full encoder params) -> the params `extract` takes).

    uint8 images are normalized with `mean`/`std` first.
    """
    if pool not in ("cls", "mean"):
        raise ValueError(f"pool={pool!r}: use 'cls' or 'mean'")
    module, trim = truncated(encoder, block)

    def extract(params, images):
        if images.dtype == jnp.uint8:
            images = patches.normalize(images, mean, std)
        tokens = module.apply({"params": trim(params)}, images, train=False)
        pooled = tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(axis=1)
        return pooled.astype(jnp.float32)  # [B, D]

    return jax.jit(extract), trim


def extract_all(extract, params, batches, mesh=None):
    """Features of every valid example of `batches` (pipeline.make_eval_iterator)
    -> (features [n, D], labels [n]) as numpy, in the input's order."""
    feats, labels = [], []
    for batch in batches:
        images = batch["image"]
        if mesh is not None:
            images = sharding.global_batch({"image": images}, mesh)["image"]
        out = np.asarray(jax.device_get(extract(params, images)))
        valid = batch["valid"].astype(bool)
        feats.append(out[valid])
        labels.append(batch["label"][valid])
    return np.concatenate(feats), np.concatenate(labels)
