"""ccMIM (Zhang et al. 2023; docs/METHOD.md §6): MAE whose masked set is sampled by
importance from the encoder's [CLS] attention, plus an InfoNCE between the
[CLS] of the visible set (student) and of the masked set (teacher, no gradient).

Per step: (1) encoder on the full image, no gradient, for the [CLS] attention
of its last block (eq. 4); (2) `mask_ratio * N` patches sampled without
replacement with probability proportional to it (Gumbel top-k), so important
patches are masked more often; (3) encoder on the visible set -> MAE decoder
-> MSE on the masked patches; (4) encoder on the masked set, stop-gradient;
(5) loss = MSE + lambda * InfoNCE over the batch (eq. 7, 10).
"""

import jax
import jax.numpy as jnp
import optax

from symmim_jax.methods import base, mae
from symmim_jax.models import heads, vit
from symmim_jax.ops import losses, patches, tokens
from symmim_jax.train.step import LossOutput


def importance_mask(key, importance, num_masked: int):
    """importance [B, N] > 0 -> bool[B, N] with `num_masked` True per row, drawn
    without replacement with probability proportional to importance."""
    gumbel = jax.random.gumbel(key, importance.shape)
    scores = jnp.log(jnp.maximum(importance, 1e-30)) + gumbel  # [B, N]
    threshold = jax.lax.top_k(scores, num_masked)[0][:, -1:]  # [B, 1]
    return scores >= threshold


def cls_infonce(visible, masked, temperature: float):
    """ccMIM eq. 7 over the batch: visible [B, C] (student), masked [B, C]
    (teacher, gradient stopped here). The positive of visible i is masked i;
    its negatives are the other visible j and the other masked j (SimCLR eq. 2
    with the visible [CLS] as anchor)."""
    unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-6)
    v = unit(visible.astype(jnp.float32))  # [B, C], float32 whatever the compute dtype
    m = unit(jax.lax.stop_gradient(masked).astype(jnp.float32))
    batch = v.shape[0]
    precision = jax.lax.Precision.HIGHEST
    self_logits = jnp.where(
        jnp.eye(batch, dtype=bool), -jnp.inf, jnp.matmul(v, v.T, precision=precision)
    )  # [B, B], j != i
    cross_logits = jnp.matmul(v, m.T, precision=precision)  # [B, B]
    logits = jnp.concatenate([self_logits, cross_logits], axis=1) / temperature
    labels = batch + jnp.arange(batch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class CCMIM(mae.MAE):
    """MAE's encoder, decoder and `reconstruct`; `masks` (MAE's random masks)
    only serves the reconstruction pictures, training masks come from `select`."""

    name = "ccmim"
    defaults = dict(
        mask_ratio=0.75,  # importance-sampled patches (MAE's ratio)
        norm_pix_target=True,
        decoder_width=512,
        decoder_depth=2,  # ccMIM §4.1: "two-layer MHSA blocks"
        decoder_heads=16,
        projector_hidden_dim=4096,  # two-layer MLP on the [CLS] tokens
        projector_out_dim=256,
        temperature=0.2,  # not in the paper; MoCo v3's value for ViTs
        weight_nce=0.2,  # lambda of eq. 10
    )

    def __init__(self, config, total_steps: int):
        super().__init__(config, total_steps)
        cc = self.config
        self.projector = heads.Mlp((cc.projector_hidden_dim, cc.projector_out_dim), self.dtype)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        cc = config[cls.name]
        if cc.temperature <= 0 or cc.weight_nce < 0:
            raise ValueError(
                f"config.ccmim.temperature={cc.temperature} must be > 0 and "
                f"config.ccmim.weight_nce={cc.weight_nce} >= 0."
            )
        base.at_least_two_images(config, "ccMIM", "needs other images as negatives")

    def init_params(self, key, images):
        key, proj_key = jax.random.split(key)
        params = super().init_params(key, images)
        params["projector"] = self.projector.init(proj_key, jnp.zeros((1, self.encoder.width)))[
            "params"
        ]
        return params

    def select(self, params, images, key):
        """Importance-sampled mask bool[B, N] (True = masked); no gradient."""
        attention = jax.lax.stop_gradient(
            vit.cls_attention(self.encoder, params["encoder"], images)
        )  # [B, N]
        return importance_mask(key, attention, self.num_masked)

    def project(self, params, cls_token):
        return self.projector.apply({"params": params["projector"]}, cls_token)

    def loss(self, params, batch, key, *, target_params, method_state):
        images = batch["image"]
        select_key, drop_key = jax.random.split(key)
        mask = self.select(params, images, select_key)
        encoded = self.encode_visible(params, images, mask, drop_key)  # [B, 1 + N, D]
        pred = self.decode(params, encoded, mask)
        target = patches.pixel_targets(images, self.patch, self.norm_pix_target)
        num_visible = self.num_patches - self.num_masked
        masked_set = self.encoder.apply(
            {"params": params["encoder"]}, images, keep=tokens.visible_first(mask)[:, num_visible:]
        )
        terms = {
            "loss_rec": losses.masked_mse(pred, target, mask),
            "loss_nce": cls_infonce(
                self.project(params, encoded[:, 0]),
                self.project(params, masked_set[:, 0]),
                self.config.temperature,
            ),
        }
        return LossOutput(terms["loss_rec"] + self.config.weight_nce * terms["loss_nce"], terms)
