"""Patch masks for masked image modeling.

Every function returns ``bool[B, N]`` with True = masked. The patch grid
``(gh, gw)`` is flattened row-major: ``N = gh * gw`` and patch ``(row, col)``
sits at index ``row * gw + col``. Sizes are static Python ints and randomness
comes only from the JAX key, so every function can be jitted.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _check_sizes(batch_size: int, grid: tuple[int, int], cell: int = 1) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be two positive ints, got {grid}")
    if cell < 1:
        raise ValueError(f"cell must be a positive patch count, got {cell}")


def checkerboard_mask(
    key: jax.Array,
    batch_size: int,
    grid: tuple[int, int],
    cell: int,
    *,
    random_phase: bool = True,
    random_offset: bool = False,
) -> jax.Array:
    """SymMIM symmetric mask: a checkerboard of ``cell x cell``-patch cells.

    Cell ``(u, v) = ((row + off_r) // cell, (col + off_c) // cell)`` is masked
    iff ``(u + v + phase) % 2 == 0``. ``phase`` in {0, 1} is drawn per image
    when ``random_phase`` (else 0); the two phases are exact complements.
    ``random_offset`` (not in the paper) draws ``off_r, off_c`` in
    ``[0, cell)`` per image (else 0) to shift the whole board by whole
    patches. Returns ``bool[B, N]``.
    """
    _check_sizes(batch_size, grid, cell)
    gh, gw = grid
    phase_key, offset_key = jax.random.split(key)
    if random_phase:
        phase = jax.random.randint(phase_key, (batch_size,), 0, 2)  # [B]
    else:
        phase = jnp.zeros((batch_size,), jnp.int32)
    if random_offset:
        offset = jax.random.randint(offset_key, (batch_size, 2), 0, cell)
    else:
        offset = jnp.zeros((batch_size, 2), jnp.int32)  # [B, 2]
    rows = jnp.arange(gh)[None, :, None] + offset[:, 0, None, None]
    cols = jnp.arange(gw)[None, None, :] + offset[:, 1, None, None]
    # [B, gh, 1] + [B, 1, gw] + [B, 1, 1] -> [B, gh, gw]
    parity = rows // cell + cols // cell + phase[:, None, None]
    return (parity % 2 == 0).reshape(batch_size, gh * gw)


def checkerboard_max_masked(
    grid: tuple[int, int], cell: int, *, random_phase: bool = True, random_offset: bool = False
) -> int:
    """The most patches `checkerboard_mask` masks in one image, over the phases
    and offsets it can draw: a static size for what runs on masked patches only
    (exactly half of the grid when each side holds an even number of cells)."""
    gh, gw = grid
    offsets = range(cell) if random_offset else (0,)
    counts = [
        int(
            np.sum(
                ((np.arange(gh)[:, None] + r) // cell + (np.arange(gw)[None] + c) // cell + phase)
                % 2
                == 0
            )
        )
        for r in offsets
        for c in offsets
        for phase in ((0, 1) if random_phase else (0,))
    ]
    return max(counts)


def random_mask(
    key: jax.Array, batch_size: int, grid: tuple[int, int], cell: int, ratio: float
) -> jax.Array:
    """SimMIM random mask: exactly ``round(ratio * num_cells)`` cells masked.

    The grid is split into ``cell x cell``-patch cells, ``ceil(gh / cell) x
    ceil(gw / cell)`` of them (edge cells are partial when the grid is not
    divisible), and a uniformly random subset of cells is masked per image.
    With ``cell=1`` this is MAE's per-patch masking. ``round`` is Python's
    (half to even). Returns ``bool[B, N]``.
    """
    _check_sizes(batch_size, grid, cell)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    gh, gw = grid
    ch, cw = -(-gh // cell), -(-gw // cell)
    num_masked = round(ratio * ch * cw)
    noise = jax.random.uniform(key, (batch_size, ch * cw))  # [B, ch * cw]
    # The ranks of i.i.d. noise are a uniformly random permutation.
    rank = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)
    cell_mask = (rank < num_masked).reshape(batch_size, ch, cw)
    rows = jnp.arange(gh) // cell  # [gh]
    cols = jnp.arange(gw) // cell  # [gw]
    patch_mask = cell_mask[:, rows[:, None], cols[None, :]]  # [B, gh, gw]
    return patch_mask.reshape(batch_size, gh * gw)


def _block_mask_one(
    uniforms: jax.Array,
    grid: tuple[int, int],
    target: int,
    min_block: int,
    aspect: tuple[float, float],
) -> jax.Array:
    """One image's block mask from ``float[attempts, 4]`` uniforms in
    [0, 1): area, log aspect, top and left of each attempt.

    Returns ``bool[gh, gw]``.
    """
    gh, gw = grid
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    rows, cols = jnp.arange(gh)[:, None], jnp.arange(gw)[None, :]

    def attempt(i, mask):
        u_area, u_aspect, u_top, u_left = uniforms[i]
        remaining = target - mask.sum()
        # BEiT's random.uniform(min_block, remaining), which also draws
        # between the two when remaining < min_block: smaller blocks can then
        # still fill the last few patches through their overlap.
        area = min_block + (remaining - min_block) * u_area
        ratio = jnp.exp(log_lo + (log_hi - log_lo) * u_aspect)
        h = jnp.round(jnp.sqrt(area * ratio)).astype(jnp.int32)
        w = jnp.round(jnp.sqrt(area / ratio)).astype(jnp.int32)
        # randint(0, gh - h) inclusive; min() as u * n can round up to n.
        top = jnp.minimum(jnp.floor(u_top * (gh - h + 1)), gh - h)
        left = jnp.minimum(jnp.floor(u_left * (gw - w + 1)), gw - w)
        block = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)  # [gh, gw]
        added = (block & ~mask).sum()
        # BEiT keeps blocks strictly smaller than the grid.
        accept = (h < gh) & (w < gw) & (added <= remaining)
        return mask | (block & accept)

    return jax.lax.fori_loop(0, uniforms.shape[0], attempt, jnp.zeros(grid, bool))


def block_mask(
    key: jax.Array,
    batch_size: int,
    grid: tuple[int, int],
    ratio: float,
    *,
    min_block: int = 16,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    max_attempts: int = 100,
) -> jax.Array:
    """BEiT block-wise mask (BEiT Algorithm 1, its ``MaskingGenerator``).

    Up to ``target = round(ratio * N)`` patches are masked by ``max_attempts``
    random rectangles per image: area uniform between ``min_block`` and the
    patches still to mask, aspect ratio log-uniform in ``aspect``, ``h`` and
    ``w`` rounded and smaller than the grid, position uniform. A block is kept
    only if the patches it newly masks keep the count ``<= target``, so the
    count never exceeds the target; attempts after it is reached change
    nothing. With the defaults on 14 x 14 at ratio 0.4, about 99.5% of masks
    reach exactly 78 and the rest end a patch or two short (BEiT's generator,
    which gives up after 10 failed attempts in a row, reaches its target about
    70% of the time).
    Returns ``bool[B, N]``.
    """
    _check_sizes(batch_size, grid)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if min_block < 1:
        raise ValueError(f"min_block must be a positive patch count, got {min_block}")
    if len(aspect) != 2 or not 0 < aspect[0] <= aspect[1]:
        raise ValueError(f"aspect must be (lo, hi) with 0 < lo <= hi, got {aspect}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be positive, got {max_attempts}")
    gh, gw = grid
    target = round(ratio * gh * gw)
    uniforms = jax.random.uniform(key, (batch_size, max_attempts, 4))
    masks = jax.vmap(_block_mask_one, in_axes=(0, None, None, None, None))(
        uniforms, grid, target, min_block, aspect
    )  # [B, gh, gw]
    return masks.reshape(batch_size, gh * gw)
