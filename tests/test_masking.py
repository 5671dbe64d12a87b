"""Tests of symmim_jax.masking against slow NumPy references."""

import jax
import numpy as np
import pytest

from symmim_jax.ops import masking

# Jitted once per shape: far faster than eager op-by-op dispatch on CPU.
# test_*_jit_matches_eager compare them with the eager functions.
checkerboard_mask = jax.jit(
    masking.checkerboard_mask,
    static_argnums=(1, 2, 3),
    static_argnames=("random_phase", "random_offset"),
)
random_mask = jax.jit(masking.random_mask, static_argnums=(1, 2, 3, 4))


def _np_checkerboard(grid, cell, phase, off_r=0, off_c=0):
    """bool[N] by looping over patches; True = masked."""
    gh, gw = grid
    out = np.zeros((gh, gw), bool)
    for row in range(gh):
        for col in range(gw):
            u, v = (row + off_r) // cell, (col + off_c) // cell
            out[row, col] = (u + v + phase) % 2 == 0
    return out.reshape(-1)


def _np_upsample(cell_mask, grid, cell):
    """Cell mask [ch, cw] -> patch mask [N] by looping over patches."""
    gh, gw = grid
    out = np.zeros((gh, gw), bool)
    for row in range(gh):
        for col in range(gw):
            out[row, col] = cell_mask[row // cell, col // cell]
    return out.reshape(-1)


def _cell_values(mask, grid, cell):
    """[B, N] -> [B, ch, cw] value of each (possibly partial) cell, checking
    that all patches of a cell agree."""
    gh, gw = grid
    ch, cw = -(-gh // cell), -(-gw // cell)
    mask = np.asarray(mask).reshape(-1, gh, gw)
    cells = mask[:, ::cell, ::cell]
    assert cells.shape[1:] == (ch, cw)
    for u in range(ch):
        for v in range(cw):
            block = mask[:, u * cell : (u + 1) * cell, v * cell : (v + 1) * cell]
            assert (block == cells[:, u, v, None, None]).all()
    return cells


# ---------------------------------------------------------------- checkerboard


@pytest.mark.parametrize("grid,cell", [((14, 14), 1), ((14, 14), 2), ((5, 7), 2), ((6, 4), 3)])
def test_checkerboard_fixed_phase_matches_numpy(grid, cell):
    mask = checkerboard_mask(jax.random.key(0), 3, grid, cell, random_phase=False)
    assert mask.dtype == bool and mask.shape == (3, grid[0] * grid[1])
    expected = _np_checkerboard(grid, cell, phase=0)
    np.testing.assert_array_equal(np.asarray(mask), np.tile(expected, (3, 1)))


@pytest.mark.parametrize("grid,cell", [((14, 14), 1), ((14, 14), 2), ((5, 7), 2)])
def test_checkerboard_random_phase_gives_both_complements(grid, cell):
    mask = np.asarray(checkerboard_mask(jax.random.key(1), 64, grid, cell))
    phase0 = _np_checkerboard(grid, cell, phase=0)
    phase1 = _np_checkerboard(grid, cell, phase=1)
    np.testing.assert_array_equal(phase1, ~phase0)
    is0 = (mask == phase0).all(axis=1)
    is1 = (mask == phase1).all(axis=1)
    assert (is0 ^ is1).all()
    assert is0.any() and is1.any()


def test_checkerboard_masked_fraction():
    # Even number of cells on each axis: exactly half.
    for grid, cell in [((14, 14), 1), ((14, 14), 7), ((8, 12), 2)]:
        mask = checkerboard_mask(jax.random.key(2), 16, grid, cell)
        np.testing.assert_array_equal(np.asarray(mask.sum(1)), grid[0] * grid[1] // 2)
    # 7 x 7 cells of 2 x 2 patches (c = 32 at p = 16): 25 cells at phase 0,
    # 24 at phase 1.
    mask = np.asarray(checkerboard_mask(jax.random.key(3), 32, (14, 14), 2))
    cells = _cell_values(mask, (14, 14), 2).reshape(32, -1).sum(1)
    assert set(cells.tolist()) == {24, 25}
    np.testing.assert_array_equal(mask.sum(1), 4 * cells)
    phase0 = np.asarray(checkerboard_mask(jax.random.key(3), 1, (14, 14), 2, random_phase=False))
    assert phase0.sum() == 100


@pytest.mark.parametrize("random_offset", [False, True])
def test_checkerboard_cell_structure(random_offset):
    grid, cell = (12, 12), 3
    mask = checkerboard_mask(jax.random.key(4), 8, grid, cell, random_offset=random_offset)
    if random_offset:
        # Shifted cells do not line up with the unshifted cell grid, so find
        # the cell boundaries from where the values flip.
        mask = np.asarray(mask).reshape(8, 12, 12)
        for b in range(8):
            flips_r = np.nonzero((mask[b, 1:] != mask[b, :-1]).any(1))[0]
            flips_c = np.nonzero((mask[b, :, 1:] != mask[b, :, :-1]).any(0))[0]
            assert (np.diff(flips_r) == cell).all()
            assert (np.diff(flips_c) == cell).all()
            # Every flip row flips the whole row: a true checkerboard.
            assert (mask[b, flips_r + 1] != mask[b, flips_r]).all()
            assert (mask[b, :, flips_c + 1] != mask[b, :, flips_c]).all()
    else:
        cells = _cell_values(mask, grid, cell)
        assert (cells[:, 1:] != cells[:, :-1]).all()
        assert (cells[:, :, 1:] != cells[:, :, :-1]).all()


def test_checkerboard_random_offset_matches_some_shifted_board():
    grid, cell = (8, 8), 4
    mask = np.asarray(checkerboard_mask(jax.random.key(5), 32, grid, cell, random_offset=True))
    params = [(ph, r, c) for ph in range(2) for r in range(cell) for c in range(cell)]
    boards = {p: _np_checkerboard(grid, cell, *p) for p in params}
    matched = []
    for row in mask:
        hits = [p for p in params if (boards[p] == row).all()]
        assert len(hits) == 1
        matched.append(hits[0])
        # The complement is the same shifted board at the other phase.
        ph, r, c = hits[0]
        np.testing.assert_array_equal(~row, boards[(1 - ph, r, c)])
    assert len({p[1:] for p in matched}) > 1


def test_checkerboard_keys():
    args = (16, (6, 6), 1)
    a = checkerboard_mask(jax.random.key(6), *args)
    b = checkerboard_mask(jax.random.key(6), *args)
    c = checkerboard_mask(jax.random.key(7), *args)
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a) != np.asarray(c)).any()


def test_checkerboard_jit_matches_eager():
    key = jax.random.key(8)
    for offset in (False, True):
        np.testing.assert_array_equal(
            checkerboard_mask(key, 4, (6, 8), 2, random_offset=offset),
            masking.checkerboard_mask(key, 4, (6, 8), 2, random_offset=offset),
        )


@pytest.mark.parametrize(
    "batch_size,grid,cell", [(0, (4, 4), 1), (2, (0, 4), 1), (2, (4, 4), 0), (2, (4, 4), -2)]
)
def test_checkerboard_rejects_bad_sizes(batch_size, grid, cell):
    with pytest.raises(ValueError):
        masking.checkerboard_mask(jax.random.key(0), batch_size, grid, cell)


# ---------------------------------------------------------------- random


@pytest.mark.parametrize(
    "grid,cell,ratio", [((14, 14), 2, 0.6), ((5, 7), 2, 0.5), ((6, 6), 1, 0.75), ((7, 4), 3, 0.4)]
)
def test_random_mask_exact_cells_and_upsampling(grid, cell, ratio):
    batch = 8
    mask = random_mask(jax.random.key(9), batch, grid, cell, ratio)
    assert mask.dtype == bool and mask.shape == (batch, grid[0] * grid[1])
    cells = _cell_values(mask, grid, cell)
    num_cells = cells[0].size
    np.testing.assert_array_equal(cells.reshape(batch, -1).sum(1), round(ratio * num_cells))
    for b in range(batch):
        np.testing.assert_array_equal(np.asarray(mask[b]), _np_upsample(cells[b], grid, cell))


def test_random_mask_spec_counts():
    # SimMIM at 224 px: 7 x 7 cells of 32 px, 0.6 -> 29 cells = 116 patches.
    mask = random_mask(jax.random.key(10), 4, (14, 14), 2, 0.6)
    np.testing.assert_array_equal(mask.sum(1), 116)
    # MAE: per patch, 0.75 of 196 = 147.
    mask = random_mask(jax.random.key(10), 4, (14, 14), 1, 0.75)
    np.testing.assert_array_equal(mask.sum(1), 147)


def test_random_mask_extreme_ratios():
    none = random_mask(jax.random.key(11), 2, (4, 6), 2, 0.0)
    full = random_mask(jax.random.key(11), 2, (4, 6), 2, 1.0)
    assert not np.asarray(none).any() and np.asarray(full).all()


def test_random_mask_is_uniform_over_cells():
    mask = np.asarray(random_mask(jax.random.key(12), 4000, (4, 4), 1, 0.25))
    freq = mask.mean(0)
    np.testing.assert_allclose(freq, 0.25, atol=0.04)
    # Images get different masks.
    assert len({row.tobytes() for row in mask[:50]}) > 40


def test_random_mask_keys_and_jit_matches_eager():
    key = jax.random.key(13)
    a = random_mask(key, 8, (6, 6), 2, 0.5)
    np.testing.assert_array_equal(a, random_mask(key, 8, (6, 6), 2, 0.5))
    assert (np.asarray(a) != np.asarray(random_mask(jax.random.key(14), 8, (6, 6), 2, 0.5))).any()
    np.testing.assert_array_equal(a, masking.random_mask(key, 8, (6, 6), 2, 0.5))


@pytest.mark.parametrize("cell,ratio", [(0, 0.5), (2, -0.1), (2, 1.5)])
def test_random_mask_rejects_bad_args(cell, ratio):
    with pytest.raises(ValueError):
        masking.random_mask(jax.random.key(0), 2, (4, 4), cell, ratio)


# ---------------------------------------------------------------- block-wise

block_mask = jax.jit(
    masking.block_mask,
    static_argnums=(1, 2, 3),
    static_argnames=("min_block", "aspect", "max_attempts"),
)


def _np_block_mask(uniforms, grid, target, min_block, aspect):
    """BEiT's MaskingGenerator on given uniforms [attempts, 4] (area, log
    aspect, top, left), one attempt at a time; bool[N]."""
    gh, gw = grid
    log_lo, log_hi = np.log(aspect[0]), np.log(aspect[1])
    mask = np.zeros((gh, gw), bool)
    for u_area, u_aspect, u_top, u_left in np.asarray(uniforms, np.float64):
        remaining = target - mask.sum()
        area = min_block + (remaining - min_block) * u_area
        ratio = np.exp(log_lo + (log_hi - log_lo) * u_aspect)
        h = int(round(np.sqrt(area * ratio)))
        w = int(round(np.sqrt(area / ratio)))
        if h >= gh or w >= gw:
            continue
        top = min(int(u_top * (gh - h + 1)), gh - h)
        left = min(int(u_left * (gw - w + 1)), gw - w)
        window = mask[top : top + h, left : left + w]
        if (~window).sum() <= remaining:
            window[:] = True
    return mask.reshape(-1)


@pytest.mark.parametrize(
    "grid,target,min_block,aspect",
    [
        ((14, 14), 78, 16, (0.3, 1 / 0.3)),
        ((14, 14), 75, 16, (0.3, 1 / 0.3)),
        ((6, 9), 20, 4, (0.5, 3.0)),
        ((5, 5), 25, 1, (1.0, 1.0)),
    ],
)
def test_block_mask_matches_numpy(grid, target, min_block, aspect):
    uniforms = jax.random.uniform(jax.random.key(15), (16, 40, 4))
    one = jax.jit(
        jax.vmap(masking._block_mask_one, in_axes=(0, None, None, None, None)),
        static_argnums=(1, 2, 3, 4),
    )
    mask = np.asarray(one(uniforms, grid, target, min_block, aspect))
    assert mask.shape == (16, *grid)
    for b in range(16):
        np.testing.assert_array_equal(
            mask[b].reshape(-1), _np_block_mask(uniforms[b], grid, target, min_block, aspect)
        )


def test_block_mask_count_reaches_the_target_never_more():
    # BEiT at 224 px, ViT/16: round(0.4 * 196) = 78 patches.
    mask = np.asarray(block_mask(jax.random.key(16), 256, (14, 14), 0.4))
    assert mask.dtype == bool and mask.shape == (256, 196)
    counts = mask.sum(1)
    assert counts.max() == 78
    assert (counts == 78).mean() > 0.97
    assert counts.min() >= 75
    # Too few attempts stop short, still never above the target.
    counts = np.asarray(block_mask(jax.random.key(16), 256, (14, 14), 0.4, max_attempts=3)).sum(1)
    assert counts.max() <= 78 and (counts < 78).mean() > 0.5


def test_block_mask_is_made_of_blocks():
    mask = np.asarray(block_mask(jax.random.key(17), 64, (14, 14), 0.4))
    mask = mask.reshape(64, 14, 14)
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    neighbour = (
        padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    )
    # Blocks of >= 16 patches: almost every masked patch has a masked
    # 4-neighbour (about 0.3 of them at random, as a random_mask would).
    assert (neighbour & mask).sum() / mask.sum() > 0.98
    # Blocks are smaller than the grid and land anywhere: each row and
    # column of the grid is masked in some image and visible in others.
    assert mask.any(0).all() and not mask.all(0).any()


def test_block_mask_extreme_ratios_and_aspect():
    none = block_mask(jax.random.key(18), 4, (14, 14), 0.0)
    assert not np.asarray(none).any()
    # Target = min_block = 16 and square blocks: the first block is a 4 x 4
    # square that fills the budget, at a random position.
    mask = np.asarray(block_mask(jax.random.key(18), 32, (8, 8), 0.25, aspect=(1.0, 1.0)))
    corners = set()
    for row in mask.reshape(32, 8, 8):
        rows, cols = np.nonzero(row)
        assert len(rows) == 16 and np.ptp(rows) == np.ptp(cols) == 3
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 10


def test_block_mask_keys_and_jit_matches_eager():
    key = jax.random.key(19)
    a = block_mask(key, 8, (6, 6), 0.5, min_block=4)
    np.testing.assert_array_equal(a, block_mask(key, 8, (6, 6), 0.5, min_block=4))
    b = np.asarray(block_mask(jax.random.key(20), 8, (6, 6), 0.5, min_block=4))
    assert (np.asarray(a) != b).any()
    assert len({row.tobytes() for row in np.asarray(a)}) > 1
    np.testing.assert_array_equal(a, masking.block_mask(key, 8, (6, 6), 0.5, min_block=4))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(grid=(0, 4)),
        dict(ratio=-0.1),
        dict(ratio=1.5),
        dict(min_block=0),
        dict(aspect=(0.0, 2.0)),
        dict(aspect=(2.0, 0.5)),
        dict(max_attempts=0),
    ],
)
def test_block_mask_rejects_bad_args(kwargs):
    args = dict(batch_size=2, grid=(4, 4), ratio=0.5) | kwargs
    with pytest.raises(ValueError):
        masking.block_mask(jax.random.key(0), **args)
