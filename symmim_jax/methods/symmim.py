"""SymMIM (docs/METHOD.md §2-3): two checkerboard views, an EMA target, three losses.

The online branch sees the image with small-cell mask M1 and reconstructs pixels,
the target branch (EMA, no gradient) sees the large-cell mask M2. Losses:
  L_rec1: L1 to the pixels over M1;
  L_rec2: L1 to the target's reconstruction over M1 & M2;
  L_con:  per-patch InfoNCE between online predictions and target projections.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from symmim_jax.methods import base
from symmim_jax.models import heads, vit
from symmim_jax.ops import ema, losses, masking, patches, tokens
from symmim_jax.train.step import LossOutput


class SymMIMNet(nn.Module):
    """Encoder + linear pixel head + projector (+ predictor on the online side)."""

    encoder: vit.VisionTransformer
    projector_features: tuple[int, ...]
    predictor_features: tuple[int, ...]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, mask, *, train: bool, online: bool, head_tokens=None):
        """The online branch: pixels and predictions at `head_tokens`; the target
        branch: pixels at `head_tokens` and projections of every patch (the keys
        of L_con). head_tokens int[B, K], or None for every patch (K = N)."""
        encoded = self.encoder(images, mask, train=train)[:, 1:]  # [B, N, D]
        selected = encoded if head_tokens is None else tokens.gather(encoded, head_tokens)
        p = self.encoder.patch_size
        pixel_head = nn.Dense(p * p * images.shape[-1], dtype=self.dtype, name="pixel_head")
        projector = heads.Mlp(self.projector_features, self.dtype, name="projector")
        out = {"pixels": pixel_head(selected)}  # [B, K, P]
        if online:
            predictor = heads.Mlp(self.predictor_features, self.dtype, name="predictor")
            out["prediction"] = predictor(projector(selected))  # [B, K, C]
        else:
            out["projection"] = projector(encoded)  # [B, N, C]
        return out


class SymMIM(base.Method):
    """The SymMIM method: how to mask, what to encode, what to predict, the loss."""

    name = "symmim"
    defaults = dict(
        online_cell_size=16,  # pixels; M1, the online view's checkerboard
        target_cell_size=32,  # pixels; M2, the target view's checkerboard
        random_phase=True,
        random_offset=False,  # not in the paper: shift the board by patches
        projector_hidden_dim=4096,
        projector_out_dim=256,
        predictor_hidden_dim=4096,
        temperature=0.1,
        contrast_dictionary="image",  # 'image': K = N patches of the same image
        weight_rec1=1.0,
        weight_rec2=1.0,
        weight_con=1.0,
        norm_pix_target=False,  # MAE per-patch normalized pixel targets
        momentum_base=0.996,
        momentum_schedule="cosine",  # 'cosine' (base -> 1) or 'constant'
    )
    # The parts with an EMA copy in the target branch (the predictor has none).
    target_parts = ("encoder", "pixel_head", "projector")

    def __init__(self, config, total_steps: int):
        super().__init__(config, total_steps)
        sc = self.config
        self.net = SymMIMNet(
            self.encoder,
            projector_features=(
                sc.projector_hidden_dim,
                sc.projector_hidden_dim,
                sc.projector_out_dim,
            ),
            predictor_features=(sc.predictor_hidden_dim, sc.projector_out_dim),
            dtype=self.dtype,
        )
        self.momentum = ema.momentum_schedule(sc.momentum_base, total_steps, sc.momentum_schedule)
        # The losses read the online branch at M1's patches only (exactly half
        # of them when the board has an even number of cells per side), so its
        # heads run on those: a static K per image, with a validity mask.
        self.num_m1 = masking.checkerboard_max_masked(
            self.grid,
            sc.online_cell_size // self.patch,
            random_phase=sc.random_phase,
            random_offset=sc.random_offset,
        )

    def init_params(self, key, images):
        mask = jnp.zeros(images.shape[:1] + (self.num_patches,), bool)
        return self.net.init(key, images, mask, train=False, online=True)["params"]

    def init(self, key, images):
        """-> (online params, target params, {}); the target starts as a copy."""
        params = self.init_params(key, images)
        target = {name: params[name] for name in self.target_parts}
        return params, jax.tree.map(jnp.copy, target), {}

    def masks(self, key, batch_size: int):
        """(M1, M2): bool[B, N] checkerboards of the online and target cell sizes."""
        sc = self.config
        key1, key2 = jax.random.split(key)
        mask = lambda k, cell: masking.checkerboard_mask(
            k,
            batch_size,
            self.grid,
            cell // self.patch,
            random_phase=sc.random_phase,
            random_offset=sc.random_offset,
        )
        return mask(key1, sc.online_cell_size), mask(key2, sc.target_cell_size)

    def loss(self, params, batch, key, *, target_params, method_state):
        """batch["image"] [B, H, W, 3] normalized -> the three terms and their sum."""
        sc = self.config
        images = batch["image"]
        mask_key, drop_key = jax.random.split(key)
        m1, m2 = self.masks(mask_key, images.shape[0])
        m1_patches = tokens.visible_first(~m1)[:, : self.num_m1]  # [B, K]: M1's patches first
        in_m1 = tokens.gather(m1, m1_patches)  # [B, K]: all True unless M1 holds fewer
        online = self.net.apply(
            {"params": params},
            images,
            m1,
            train=True,
            online=True,
            head_tokens=m1_patches,
            rngs={"drop_path": drop_key},
        )
        target = jax.lax.stop_gradient(
            self.net.apply(
                {"params": target_params},
                images,
                m2,
                train=False,
                online=False,
                head_tokens=m1_patches,
            )
        )
        pixels = tokens.gather(
            patches.pixel_targets(images, self.patch, sc.norm_pix_target), m1_patches
        )  # [B, K, P]
        terms = {
            "loss_rec1": losses.masked_l1(online["pixels"], pixels, in_m1),
            "loss_rec2": losses.masked_l1(
                online["pixels"], target["pixels"], in_m1 & tokens.gather(m2, m1_patches)
            ),
            "loss_con": losses.patch_infonce(
                online["prediction"],
                target["projection"],
                in_m1,
                sc.temperature,
                sc.contrast_dictionary,
                positions=m1_patches,
            ),
        }
        loss = (
            sc.weight_rec1 * terms["loss_rec1"]
            + sc.weight_rec2 * terms["loss_rec2"]
            + sc.weight_con * terms["loss_con"]
        )
        return LossOutput(loss, terms)

    def reconstruct(self, params, images, mask):
        """Online pixel predictions [B, N, p*p*3] for `mask` (no drop path)."""
        return self.net.apply({"params": params}, images, mask, train=False, online=False)["pixels"]

    def after_step(self, params, target_params, method_state, observations, step):
        """The EMA step of the target branch (eq. 5)."""
        momentum = self.momentum(step)
        return (
            ema.ema_update(target_params, params, momentum),
            method_state,
            {"momentum": momentum},
        )

    @classmethod
    def check_config(cls, config):
        sc = config.symmim
        for field in ("online_cell_size", "target_cell_size"):
            base.mask_cell(config, cls.name, field)
            if config.input.image_size % sc[field]:
                raise ValueError(
                    f"config.symmim.{field}={sc[field]} must divide config.input.image_size="
                    f"{config.input.image_size} so the checkerboard has whole cells."
                )
        weights = (sc.weight_rec1, sc.weight_rec2, sc.weight_con)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError(
                "config.symmim.weight_rec1/weight_rec2/weight_con must be >= 0 "
                f"with at least one > 0, got {weights}."
            )
        if sc.temperature <= 0:
            raise ValueError(f"config.symmim.temperature={sc.temperature} must be > 0.")
        if not 0.0 <= sc.momentum_base <= 1.0:
            raise ValueError(f"config.symmim.momentum_base={sc.momentum_base} must be in [0, 1].")
        if sc.momentum_schedule not in ("cosine", "constant"):
            raise ValueError(
                f"config.symmim.momentum_schedule={sc.momentum_schedule!r}: "
                "use 'cosine' or 'constant'."
            )
        if sc.contrast_dictionary not in ("image", "batch"):
            raise ValueError(
                f"config.symmim.contrast_dictionary={sc.contrast_dictionary!r}: "
                "use 'image' (the paper's K = N) or 'batch'."
            )
