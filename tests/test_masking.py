"""Tests of symmim_jax.masking against slow NumPy references."""
import jax
import numpy as np
import pytest

from symmim_jax import masking

# Jitted once per shape: far faster than eager op-by-op dispatch on CPU.
# test_*_jit_matches_eager compare them with the eager functions.
checkerboard_mask = jax.jit(
    masking.checkerboard_mask, static_argnums=(1, 2, 3),
    static_argnames=("random_phase", "random_offset"))
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
            block = mask[:, u * cell:(u + 1) * cell, v * cell:(v + 1) * cell]
            assert (block == cells[:, u, v, None, None]).all()
    return cells


# ---------------------------------------------------------------- checkerboard


@pytest.mark.parametrize("grid,cell", [((14, 14), 1), ((14, 14), 2),
                                       ((5, 7), 2), ((6, 4), 3)])
def test_checkerboard_fixed_phase_matches_numpy(grid, cell):
    mask = checkerboard_mask(jax.random.key(0), 3, grid, cell,
                             random_phase=False)
    assert mask.dtype == bool and mask.shape == (3, grid[0] * grid[1])
    expected = _np_checkerboard(grid, cell, phase=0)
    np.testing.assert_array_equal(np.asarray(mask), np.tile(expected, (3, 1)))


@pytest.mark.parametrize("grid,cell", [((14, 14), 1), ((14, 14), 2),
                                       ((5, 7), 2)])
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
        np.testing.assert_array_equal(np.asarray(mask.sum(1)),
                                      grid[0] * grid[1] // 2)
    # 7 x 7 cells of 2 x 2 patches (c = 32 at p = 16): 25 cells at phase 0,
    # 24 at phase 1.
    mask = np.asarray(checkerboard_mask(jax.random.key(3), 32, (14, 14), 2))
    cells = _cell_values(mask, (14, 14), 2).reshape(32, -1).sum(1)
    assert set(cells.tolist()) == {24, 25}
    np.testing.assert_array_equal(mask.sum(1), 4 * cells)
    phase0 = np.asarray(checkerboard_mask(
        jax.random.key(3), 1, (14, 14), 2, random_phase=False))
    assert phase0.sum() == 100


@pytest.mark.parametrize("random_offset", [False, True])
def test_checkerboard_cell_structure(random_offset):
    grid, cell = (12, 12), 3
    mask = checkerboard_mask(jax.random.key(4), 8, grid, cell,
                             random_offset=random_offset)
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
    mask = np.asarray(checkerboard_mask(
        jax.random.key(5), 32, grid, cell, random_offset=True))
    params = [(ph, r, c) for ph in range(2) for r in range(cell)
              for c in range(cell)]
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
            masking.checkerboard_mask(key, 4, (6, 8), 2,
                                      random_offset=offset))


@pytest.mark.parametrize("batch_size,grid,cell", [
    (0, (4, 4), 1), (2, (0, 4), 1), (2, (4, 4), 0), (2, (4, 4), -2)])
def test_checkerboard_rejects_bad_sizes(batch_size, grid, cell):
    with pytest.raises(ValueError):
        masking.checkerboard_mask(jax.random.key(0), batch_size, grid, cell)


# ---------------------------------------------------------------- random


@pytest.mark.parametrize("grid,cell,ratio", [
    ((14, 14), 2, 0.6), ((5, 7), 2, 0.5), ((6, 6), 1, 0.75), ((7, 4), 3, 0.4)])
def test_random_mask_exact_cells_and_upsampling(grid, cell, ratio):
    batch = 8
    mask = random_mask(jax.random.key(9), batch, grid, cell, ratio)
    assert mask.dtype == bool and mask.shape == (batch, grid[0] * grid[1])
    cells = _cell_values(mask, grid, cell)
    num_cells = cells[0].size
    np.testing.assert_array_equal(cells.reshape(batch, -1).sum(1),
                                  round(ratio * num_cells))
    for b in range(batch):
        np.testing.assert_array_equal(
            np.asarray(mask[b]), _np_upsample(cells[b], grid, cell))


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
    mask = np.asarray(random_mask(jax.random.key(12), 4000, (4, 4), 1,
                                  0.25))
    freq = mask.mean(0)
    np.testing.assert_allclose(freq, 0.25, atol=0.04)
    # Images get different masks.
    assert len({row.tobytes() for row in mask[:50]}) > 40


def test_random_mask_keys_and_jit_matches_eager():
    key = jax.random.key(13)
    a = random_mask(key, 8, (6, 6), 2, 0.5)
    np.testing.assert_array_equal(a, random_mask(key, 8, (6, 6), 2, 0.5))
    assert (np.asarray(a) != np.asarray(
        random_mask(jax.random.key(14), 8, (6, 6), 2, 0.5))).any()
    np.testing.assert_array_equal(
        a, masking.random_mask(key, 8, (6, 6), 2, 0.5))


@pytest.mark.parametrize("cell,ratio", [(0, 0.5), (2, -0.1), (2, 1.5)])
def test_random_mask_rejects_bad_args(cell, ratio):
    with pytest.raises(ValueError):
        masking.random_mask(jax.random.key(0), 2, (4, 4), cell, ratio)
