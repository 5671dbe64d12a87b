"""Small heads on the encoder's tokens: MLP projectors and predictors, the probe's
linear classifier."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class Mlp(nn.Module):
    """Dense layers with ReLU between them and none after the last (MoCo v3 style).

    norm="batch" (SimCLR, MoCo v3): BatchNorm after every hidden layer, before
    its ReLU, and with `norm_output` one without scale or shift after the last
    layer (MoCo v3's ViT projector and predictor); a layer followed by BatchNorm
    has no bias (the norm's shift replaces it). Statistics are over every axis but the features
    (all tokens of the batch), counting only the tokens where `mask`
    (x.shape[:-1]) is True. Under jit the batch may be split over devices: the
    mean over its axis is still the global one (XLA inserts the all-reduce).

    The heads serve only the pretraining loss, which normalizes with the batch's
    statistics in both branches (MoCo v3 runs both in train mode), so they
    always do; the running averages in `batch_stats` are kept up to date, as
    torch's buffers are, for anyone who runs a head in inference mode.
    """

    features: Sequence[int]
    dtype: Any = jnp.float32
    norm: str = "none"  # 'none' or 'batch'
    norm_output: bool = False

    @nn.compact
    def __call__(self, x, *, mask=None):
        last = len(self.features) - 1
        mask = None if mask is None else mask[..., None]
        for i, width in enumerate(self.features):
            normed = self.norm == "batch" and (i < last or self.norm_output)
            x = nn.Dense(width, use_bias=not normed, dtype=self.dtype, name=f"fc{i + 1}")(x)
            if normed:
                affine = i < last
                x = nn.BatchNorm(
                    use_running_average=False,
                    use_scale=affine,
                    use_bias=affine,
                    momentum=0.9,  # torch's BatchNorm1d default (its momentum 0.1)
                    epsilon=1e-5,
                    dtype=self.dtype,
                    name=f"bn{i + 1}",
                )(x, mask=mask)
            if i < last:
                x = nn.relu(x)
        return x


class LinearClassifier(nn.Module):
    """The linear probe's head (MAE): BatchNorm without affine, as torch's
    BatchNorm1d(affine=False), then a linear layer. feats [B, D] -> logits [B, C]."""

    num_classes: int

    @nn.compact
    def __call__(self, feats, *, train: bool):
        x = nn.BatchNorm(
            use_running_average=not train,
            use_bias=False,
            use_scale=False,
            momentum=0.9,
            epsilon=1e-6,
            name="bn",
        )(feats)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), name="head")(x)
