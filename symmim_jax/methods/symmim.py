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
from ml_collections.config_dict import placeholder

from symmim_jax.methods import base
from symmim_jax.models import heads, vit
from symmim_jax.ops import ema, losses, masking, patches, tokens
from symmim_jax.train.step import LossOutput


class SymMIMNet(nn.Module):
    """Encoder + linear pixel head + projector (+ predictor on the online side)."""

    encoder: vit.VisionTransformer
    projector_features: tuple[int, ...]
    predictor_features: tuple[int, ...]
    head_norm: str = "none"  # 'none' or 'batch' (docs/METHOD.md §2)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, mask, *, train: bool, branch: str, head_tokens=None, in_m1=None):
        """branch 'online': pixels and predictions at `head_tokens`; 'target':
        pixels at `head_tokens` and projections of every patch (the keys of
        L_con); 'pixels': pixels only. head_tokens int[B, K], or None for every
        patch (K = N); the online heads' batch statistics count only the tokens
        where in_m1 bool[B, K] is True (all when None)."""
        encoded = self.encoder(images, mask, train=train)[:, 1:]  # [B, N, D]
        selected = encoded if head_tokens is None else tokens.gather(encoded, head_tokens)
        p = self.encoder.patch_size
        pixel_head = nn.Dense(p * p * images.shape[-1], dtype=self.dtype, name="pixel_head")
        out = {"pixels": pixel_head(selected)}  # [B, K, P]
        if branch == "pixels":
            return out
        projector = heads.Mlp(
            self.projector_features, self.dtype, self.head_norm, norm_output=True, name="projector"
        )
        if branch == "online":
            predictor = heads.Mlp(
                self.predictor_features,
                self.dtype,
                self.head_norm,
                norm_output=True,
                name="predictor",
            )
            out["prediction"] = predictor(projector(selected, mask=in_m1), mask=in_m1)  # [B, K, C]
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
        # Unset: from the run's length, ema.run_length_momentum (0.996 from 5000 steps on).
        momentum_base=placeholder(float),
        momentum_schedule="cosine",  # 'cosine' (base -> 1) or 'constant'
        head_norm="batch",  # projector and predictor: 'batch' (SimCLR, MoCo v3) or 'none'
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
            head_norm=sc.head_norm,
            dtype=self.dtype,
        )
        base_momentum = sc.momentum_base
        if base_momentum is None:
            base_momentum = ema.run_length_momentum(total_steps)
        self.momentum = ema.momentum_schedule(base_momentum, total_steps, sc.momentum_schedule)
        # The losses read the online branch at M1's patches only (exactly half
        # of them when the board has an even number of cells per side), so its
        # heads run on those: a static K per image, with a validity mask.
        self.num_m1 = masking.checkerboard_max_masked(
            self.grid,
            sc.online_cell_size // self.patch,
            random_phase=sc.random_phase,
            random_offset=sc.random_offset,
        )

    def init_variables(self, key, images) -> dict:
        mask = jnp.zeros(images.shape[:1] + (self.num_patches,), bool)
        return self.net.init(key, images, mask, train=False, branch="online")

    def init_params(self, key, images):
        return self.init_variables(key, images)["params"]

    def init(self, key, images):
        """-> (online params, target params, method state); the target starts
        as a copy. With BatchNorm heads the state holds each branch's running
        statistics, {"online": ..., "target": ...}; else it is empty."""
        variables = self.init_variables(key, images)
        params = variables["params"]
        target = jax.tree.map(jnp.copy, {name: params[name] for name in self.target_parts})
        stats = variables.get("batch_stats")
        if not stats:
            return params, target, {}
        target_stats = jax.tree.map(jnp.copy, {"projector": stats["projector"]})
        return params, target, {"online": stats, "target": target_stats}

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
        online, target, observations = self.branches(
            params, target_params, method_state, images, (m1, m2), m1_patches, drop_key
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
        return LossOutput(loss, terms, observations)

    def branches(self, params, target_params, method_state, images, masks, m1_patches, drop_key):
        """-> (online outputs, target outputs, new running statistics): the
        online branch under M1 with drop path, its heads on M1's patches and
        their batch statistics over those; the target under M2, deterministic,
        no gradient, its projector's statistics over every patch. Both heads
        normalize with the batch (MoCo v3), each branch keeping its own running
        averages; the EMA averages the norms' scales and shifts like any
        parameter."""
        m1, m2 = masks
        batch_norm = self.config.head_norm == "batch"
        stats = lambda part: {"batch_stats": method_state[part]} if batch_norm else {}
        online, online_stats = self.net.apply(
            {"params": params, **stats("online")},
            images,
            m1,
            train=True,
            branch="online",
            head_tokens=m1_patches,
            in_m1=tokens.gather(m1, m1_patches),
            rngs={"drop_path": drop_key},
            mutable=["batch_stats"],
        )
        target, target_stats = jax.lax.stop_gradient(
            self.net.apply(
                {"params": target_params, **stats("target")},
                images,
                m2,
                train=False,
                branch="target",
                head_tokens=m1_patches,
                mutable=["batch_stats"],
            )
        )
        if not batch_norm:
            return online, target, {}
        new_stats = {"online": online_stats["batch_stats"], "target": target_stats["batch_stats"]}
        return online, target, new_stats

    def reconstruct(self, params, images, mask):
        """Online pixel predictions [B, N, p*p*3] for `mask` (no drop path)."""
        return self.net.apply({"params": params}, images, mask, train=False, branch="pixels")[
            "pixels"
        ]

    def after_step(self, params, target_params, method_state, observations, step):
        """The EMA step of the target branch (eq. 5); the heads' running
        statistics of this step (none without BatchNorm)."""
        momentum = self.momentum(step)
        return (
            ema.ema_update(target_params, params, momentum),
            observations,
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
        if sc.momentum_base is not None and not 0.0 <= sc.momentum_base <= 1.0:
            raise ValueError(f"config.symmim.momentum_base={sc.momentum_base} must be in [0, 1].")
        if sc.momentum_schedule not in ("cosine", "constant"):
            raise ValueError(
                f"config.symmim.momentum_schedule={sc.momentum_schedule!r}: "
                "use 'cosine' or 'constant'."
            )
        if sc.head_norm not in ("none", "batch"):
            raise ValueError(
                f"config.symmim.head_norm={sc.head_norm!r}: use 'batch' (BatchNorm in the "
                "projector and predictor, SimCLR / MoCo v3) or 'none'."
            )
        if sc.contrast_dictionary not in ("image", "batch"):
            raise ValueError(
                f"config.symmim.contrast_dictionary={sc.contrast_dictionary!r}: "
                "use 'image' (the paper's K = N) or 'batch'."
            )
