"""What every pretraining method is: the `Method` base class, and the config
checks that several methods' sections share.

A method says how to mask, what to encode, what to predict and which loss to
take; the train step, the data, the checkpoints and the evaluations are shared.
Its config section is `config.<name>`, with the defaults in `defaults`; its
encoder's parameters live under `params["encoder"]`, which fine-tuning, the
probe and export read.
"""

import copy
from typing import Any, ClassVar

import jax.numpy as jnp
import ml_collections

from symmim_jax.models import vit
from symmim_jax.ops import masking
from symmim_jax.train import step


class Method(step.Objective):
    """The shared set-up: encoder, patch size and grid; no target branch and no
    method state unless a subclass adds them (see SymMIM's EMA target)."""

    name: ClassVar[str]  # config.method, and the config section's name
    defaults: ClassVar[dict]  # config.<name> in the pretraining configs

    def __init__(self, config, total_steps: int):
        self.config = config[self.name]
        self.total_steps = total_steps
        self.encoder = vit.build_encoder(config.model)
        self.dtype = jnp.dtype(config.model.dtype)
        self.patch = self.encoder.patch_size
        self.grid = (config.input.image_size // self.patch,) * 2
        self.num_patches = self.grid[0] * self.grid[1]

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        # A copy: a placeholder in `defaults` would otherwise be one reference
        # shared by every config made from it.
        return ml_collections.ConfigDict(copy.deepcopy(cls.defaults))

    @classmethod
    def check_config(cls, config):
        """Raises ValueError naming a field of config.<name> and the fix."""

    def init(self, key, images):
        return self.init_params(key, images), {}, {}

    def init_params(self, key, images) -> dict:
        """images [1, H, W, 3] -> the online parameters, {"encoder": ..., ...}."""
        raise NotImplementedError

    def masks(self, key, batch_size: int) -> tuple:
        """The training masks bool[B, N] (True = masked); the first is the one
        the reconstruction pictures show."""
        raise NotImplementedError

    def random_cell_masks(self, key, batch_size: int) -> tuple:
        """(mask,): bool[B, N], random cells of the section's `mask_cell_size`
        px at its `mask_ratio` (SimMIM's masks, MixMIM's partner patches)."""
        cell = self.config.mask_cell_size // self.patch
        return (masking.random_mask(key, batch_size, self.grid, cell, self.config.mask_ratio),)

    def reconstruct(self, params, images, mask) -> Any:
        """Pixel predictions [B, N, p*p*3] of normalized images for `mask`."""
        raise NotImplementedError

    @property
    def norm_pix_target(self) -> bool:
        """Whether the pixel targets are per-patch normalized (MAE)."""
        return self.config.get("norm_pix_target", False)


def grid_side(config) -> int:
    """Patches per side of the (square) input."""
    return config.input.image_size // vit.decode_variant(config.model.variant).patch_size


def mask_cell(config, name: str, field: str) -> int:
    """config.<name>.<field>, a mask cell in pixels -> the cell in patches."""
    cell, patch = config[name][field], vit.decode_variant(config.model.variant).patch_size
    if cell <= 0 or cell % patch:
        raise ValueError(
            f"config.{name}.{field}={cell} must be a positive multiple of "
            f"the patch size {patch} (a cell is a whole number of patches)."
        )
    return cell // patch


def mask_ratio(config, name: str, field: str, num_units: int):
    """config.<name>.<field> must leave at least one of `num_units` masked and
    one visible."""
    ratio = config[name][field]
    if not 0 < round(ratio * num_units) < num_units:
        raise ValueError(
            f"config.{name}.{field}={ratio} masks {round(ratio * num_units)} of "
            f"{num_units}: use a ratio that leaves at least one masked and one visible."
        )


def at_least_two_images(config, name: str, why: str):
    if config.batch_size < 2:
        raise ValueError(f"config.batch_size={config.batch_size}: {name} {why}; use >= 2.")
