"""ViT classifier for fine-tuning: mean-pooled patch tokens -> fc_norm -> head.

The encoder runs without its final norm (`final_norm=False`): the pooled
tokens get their own LayerNorm `fc_norm`, as MAE/BEiT fine-tuning and timm's
VisionTransformer(global_pool='avg', fc_norm=True) do, where `norm` is the
identity. Parameters: {'encoder': ..., 'fc_norm': ..., 'head': ...}.
"""

import flax.linen as nn
import jax.numpy as jnp

from symmim_jax.models import vit


class Classifier(nn.Module):
    encoder: vit.VisionTransformer
    num_classes: int

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        """images [B, H, W, 3] normalized -> logits [B, num_classes] float32."""
        tokens = self.encoder(images, train=train)[:, 1:]  # [B, N, D]
        pooled = nn.LayerNorm(vit.LAYER_NORM_EPS, name="fc_norm")(
            tokens.astype(jnp.float32).mean(axis=1)
        )  # [B, D]
        # MAE: tiny head init, so the pretrained features lead the first steps.
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(2e-5), name="head")(
            pooled
        )


def build(model_config, num_classes: int) -> Classifier:
    encoder = vit.build_encoder(model_config).clone(final_norm=False, parent=None)
    return Classifier(encoder, num_classes)
