"""Small heads on the encoder's tokens: MLP projectors and predictors, the probe's
linear classifier."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class Mlp(nn.Module):
    """Dense layers with ReLU between them and none after the last (MoCo v3 style)."""

    features: Sequence[int]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.features):
            if i:
                x = nn.relu(x)
            x = nn.Dense(width, dtype=self.dtype, name=f"fc{i + 1}")(x)
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
