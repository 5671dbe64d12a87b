"""AvgDist (SimMIM §4.1.2): how far masked pixels are from visible ones.

For one mask, the Euclidean distance from each masked pixel to the nearest
visible pixel (pixel centres; the image border is not visible), averaged over
the masked pixels; then averaged over sampled masks. Cells are in patches, as
in `masking`; the table gives them in pixels.
"""

import dataclasses
import itertools

import jax
import numpy as np
from scipy import ndimage

from symmim_jax.ops import masking

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclasses.dataclass(frozen=True)
class Row:
    """One masking setting: `ratio` as asked, `masked` the measured fraction."""

    strategy: str  # "checkerboard" or "random"
    cell_px: int
    ratio: float
    masked: float
    avgdist: float


def pixel_masks(masks, grid: tuple[int, int], patch: int) -> np.ndarray:
    """Patch masks bool[B, N] -> pixel masks bool[B, gh * patch, gw * patch]."""
    gh, gw = grid
    masks = np.asarray(masks, bool).reshape(-1, gh, gw)
    return masks.repeat(patch, axis=1).repeat(patch, axis=2)


def avg_dist(masks) -> float:
    """bool[B, H, W] pixel masks (True = masked) -> AvgDist in pixels.

    The mean over masks of each mask's mean over its masked pixels, so every
    mask weighs the same. Each mask needs a masked and a visible pixel.
    """
    per_mask = []
    for mask in np.asarray(masks, bool):
        if mask.all() or not mask.any():
            raise ValueError("AvgDist needs masked and visible pixels in every mask")
        # The EDT gives each nonzero (masked) pixel its distance to the nearest zero.
        per_mask.append(ndimage.distance_transform_edt(mask)[mask].mean())
    return float(np.mean(per_mask))


def table(
    image_size: int, patch: int, cells=(1, 2, 4), ratios=RATIOS, num_masks: int = 64, seed: int = 0
) -> list[Row]:
    """AvgDist of the checkerboard (both phases) and of random masks.

    One checkerboard row per cell (its ratio is 0.5; `masked` differs when the
    cells do not tile the image), then one random row per (cell, ratio) over
    `num_masks` masks drawn from `seed`. Cells in patches. Settings that mask
    no patch or every patch (few cells, extreme ratios) are left out: their
    AvgDist is undefined.
    """
    grid = (image_size // patch,) * 2
    key = jax.random.key(seed)
    settings = []
    for cell in cells:
        board = masking.checkerboard_mask(key, 1, grid, cell, random_phase=False)
        # The two phases are complements: both together are the board's average.
        settings.append(("checkerboard", cell, 0.5, np.concatenate([board, ~board])))
    for index, (cell, ratio) in enumerate(itertools.product(cells, ratios)):
        masks = masking.random_mask(
            jax.random.fold_in(key, index), num_masks, grid, cell, ratio
        )  # [num_masks, N]
        settings.append(("random", cell, ratio, masks))
    return [
        Row(
            strategy,
            cell * patch,
            ratio,
            float(np.mean(masks)),
            avg_dist(pixel_masks(masks, grid, patch)),
        )
        for strategy, cell, ratio, masks in settings
        if np.all(np.any(masks, axis=1) & ~np.all(masks, axis=1))
    ]


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| mask | cell (px) | ratio | masked | AvgDist (px) |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.strategy} | {r.cell_px} | {r.ratio:g} | {r.masked:.3f} | {r.avgdist:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
