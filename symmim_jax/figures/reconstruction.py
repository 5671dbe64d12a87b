"""Reconstructions as pictures: masked inputs and predictions pasted into images.

Array functions only (no flags, no files): `panels.py` draws them into figures
and the pretraining loop logs `reconstruction_grid` to TensorBoard.
"""

import jax.numpy as jnp
import numpy as np

from symmim_jax.figures import avgdist
from symmim_jax.ops import masking, patches

SYMMETRIC_CELLS = {"very small": 1, "small": 2, "large": 4}  # patches per cell side
RANDOM_CELL, RANDOM_RATIO = SYMMETRIC_CELLS["small"], 0.6  # SimMIM
GRAY = 128  # masked patches in the masked input


def _to_uint8(normalized, mean, std) -> np.ndarray:
    """Normalized float [..., 3] -> uint8, inverse of patches.normalize."""
    pixels = (np.asarray(normalized) * np.asarray(std) + np.asarray(mean)) * 255.0
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def masked_and_reconstructed(method, params, images, mask, mean, std):
    """uint8 images [B, H, W, 3], mask bool[B, N] -> (masked input, reconstruction).

    Both uint8 [B, H, W, 3]; masked patches are gray in the input and predicted
    in the reconstruction, visible patches keep the input's own pixels.
    """
    inputs = patches.normalize(images, mean, std)  # [B, H, W, 3]
    pred = method.reconstruct(params, inputs, mask)  # [B, N, P]
    if method.norm_pix_target:
        # Targets were per-patch normalized: restore each patch's own mean and
        # std (as MAE's visualization and patches.pixel_targets do).
        target = patches.patchify(inputs, method.patch)  # [B, N, P]
        pred = pred * jnp.sqrt(target.var(-1, keepdims=True) + 1e-6) + target.mean(
            -1, keepdims=True
        )
    pred = _to_uint8(patches.unpatchify(pred, method.patch, method.grid), mean, std)
    hidden = avgdist.pixel_masks(mask, method.grid, method.patch)[..., None]
    images = np.asarray(images)
    return np.where(hidden, GRAY, images).astype(np.uint8), np.where(hidden, pred, images)


def _tile(columns: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """uint8 [B, H, W, 3] per column -> one uint8 image, a row per image."""
    b, h, w, _ = columns[0].shape
    out = np.full((b * (h + gap) - gap, len(columns) * (w + gap) - gap, 3), 255, np.uint8)
    for col, images in enumerate(columns):
        for row, image in enumerate(images):
            out[row * (h + gap) : row * (h + gap) + h, col * (w + gap) : col * (w + gap) + w] = (
                image
            )
    return out


def reconstruction_grid(method, params, images_uint8, key, mean, std) -> np.ndarray:
    """A row per image: original, masked input, reconstruction; uint8 [H, W, 3].
    The mask is the method's first training mask (SymMIM's M1)."""
    mask = method.masks(key, len(images_uint8))[0]
    masked, reconstructed = masked_and_reconstructed(method, params, images_uint8, mask, mean, std)
    return _tile([np.asarray(images_uint8), masked, reconstructed])


def reconstruction_panel(method, params, images, key, mean, std):
    """SymMIM Fig. 3: -> (titles, columns of uint8 [B, H, W, 3]).

    The original, then masked input and reconstruction for SimMIM's random mask
    and the very small, small and large checkerboards (phase 0).
    """
    batch = len(images)
    masks = [masking.random_mask(key, batch, method.grid, RANDOM_CELL, RANDOM_RATIO)]
    masks += [
        masking.checkerboard_mask(key, batch, method.grid, cell, random_phase=False)
        for cell in SYMMETRIC_CELLS.values()
    ]
    # One forward pass for all masks.
    masked, reconstructed = masked_and_reconstructed(
        method, params, np.concatenate([images] * len(masks)), np.concatenate(masks), mean, std
    )
    names = [f"random {RANDOM_RATIO}"] + [f"{name} sym." for name in SYMMETRIC_CELLS]
    titles, columns = ["original"], [np.asarray(images)]
    for index, name in enumerate(names):
        part = slice(index * batch, (index + 1) * batch)
        titles += [f"{name}\nmasked", f"{name}\nrecon."]
        columns += [masked[part], reconstructed[part]]
    return titles, columns
