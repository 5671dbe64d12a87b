"""Patch masks for masked image modeling.

Every function returns ``bool[B, N]`` with True = masked. The patch grid
``(gh, gw)`` is flattened row-major: ``N = gh * gw`` and patch ``(row, col)``
sits at index ``row * gw + col``. Sizes are static Python ints and randomness
comes only from the JAX key, so every function can be jitted.
"""
import jax
import jax.numpy as jnp


def _check_sizes(batch_size: int, grid: tuple[int, int], cell: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"grid must be two positive ints, got {grid}")
    if cell < 1:
        raise ValueError(f"cell must be a positive patch count, got {cell}")


def checkerboard_mask(key: jax.Array, batch_size: int, grid: tuple[int, int],
                      cell: int, *, random_phase: bool = True,
                      random_offset: bool = False) -> jax.Array:
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


def random_mask(key: jax.Array, batch_size: int, grid: tuple[int, int],
                cell: int, ratio: float) -> jax.Array:
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
