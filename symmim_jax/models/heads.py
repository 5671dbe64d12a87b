"""Small heads that sit on the encoder's patch tokens."""
from typing import Any, Sequence

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
