"""AvgDist on hand-computable masks and against a brute-force NumPy reference."""

import math

import numpy as np
import pytest

from symmim_jax.figures import avgdist


def _mask(shape, masked):
    """bool[H, W] with the (row, col) pixels in `masked` set."""
    out = np.zeros(shape, bool)
    for pixel in masked:
        out[pixel] = True
    return out


def _brute_force(mask):
    """Mean over masked pixels of the distance to the nearest visible pixel."""
    masked, visible = np.argwhere(mask), np.argwhere(~mask)
    dist = np.sqrt(((masked[:, None, :] - visible[None, :, :]) ** 2).sum(-1))
    return dist.min(axis=1).mean()


def test_single_masked_pixel_is_one_pixel_away():
    assert avgdist.avg_dist(_mask((5, 5), [(2, 2)])[None]) == 1.0


def test_masked_block_inside_the_image():
    block = np.zeros((7, 7), bool)
    block[2:5, 2:5] = True
    # Eight border pixels at distance 1, the centre at 2.
    assert avgdist.avg_dist(block[None]) == pytest.approx(10 / 9)


def test_the_image_border_is_not_visible():
    corner = np.zeros((4, 4), bool)
    corner[:3, :3] = True
    # Visible pixels are only in row 3 and column 3: distance min(3 - i, 3 - j).
    assert avgdist.avg_dist(corner[None]) == pytest.approx(14 / 9)


def test_distances_are_euclidean():
    mask = ~_mask((3, 3), [(0, 0)])  # only the top-left pixel is visible
    expected = (1 + 2 + 1 + math.sqrt(2) + 2 * math.sqrt(5) + 2 + math.sqrt(8)) / 8
    assert avgdist.avg_dist(mask[None]) == pytest.approx(expected)


def test_every_mask_weighs_the_same():
    block = np.zeros((5, 5), bool)
    block[1:4, 1:4] = True
    single = _mask((5, 5), [(2, 2)])
    # Pooling the 10 masked pixels would give 11 / 10 instead.
    assert avgdist.avg_dist(np.stack([single, block])) == pytest.approx((1 + 10 / 9) / 2)


def test_matches_brute_force_on_random_masks():
    masks = np.random.default_rng(0).random((4, 12, 10)) < 0.7
    expected = np.mean([_brute_force(mask) for mask in masks])
    assert avgdist.avg_dist(masks) == pytest.approx(expected)


@pytest.mark.parametrize("value", [True, False])
def test_a_mask_without_masked_or_visible_pixels_is_refused(value):
    with pytest.raises(ValueError, match="masked and visible"):
        avgdist.avg_dist(np.full((1, 3, 3), value))


def test_pixel_masks_upsample_each_patch():
    masks = np.array([[True, False, False, True, True, False]])  # grid 2 x 3
    expected = np.kron(masks.reshape(2, 3), np.ones((4, 4), bool))
    np.testing.assert_array_equal(avgdist.pixel_masks(masks, (2, 3), 4), expected[None])


def test_table_on_a_two_by_two_cell_grid():
    rows = avgdist.table(8, 4, cells=(1,), ratios=(0.5,), num_masks=16)
    board, random = rows
    # Each phase masks two opposite 4 x 4 corners, each with visible cells to
    # two sides: distances min(4 - i, 4 - j) sum to 30 over 16 pixels.
    assert board == avgdist.Row("checkerboard", 4, 0.5, 0.5, 30 / 16)
    # Two of the four cells: opposite corners (30 / 16) or a half (rows 4..1: 2.5).
    assert (random.strategy, random.cell_px, random.ratio, random.masked) == ("random", 4, 0.5, 0.5)
    assert 30 / 16 <= random.avgdist <= 2.5


def test_table_orders_settings_and_writes_markdown():
    rows = avgdist.table(16, 4, cells=(1, 2), ratios=(0.25, 0.75), num_masks=4)
    assert [(r.strategy, r.cell_px, r.ratio) for r in rows] == [
        ("checkerboard", 4, 0.5),
        ("checkerboard", 8, 0.5),
        ("random", 4, 0.25),
        ("random", 4, 0.75),
        ("random", 8, 0.25),
        ("random", 8, 0.75),
    ]
    # 16 cells of 1 patch: round(0.25 * 16) = 4 masked; 4 cells of 2: 1 masked.
    assert [r.masked for r in rows[2:]] == [0.25, 0.75, 0.25, 0.75]
    # Larger cells and higher ratios put masked pixels further from visible ones.
    assert rows[0].avgdist < rows[1].avgdist
    assert rows[2].avgdist < rows[3].avgdist
    lines = avgdist.markdown(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[2] == f"| checkerboard | 4 | 0.5 | 0.500 | {rows[0].avgdist:.2f} |"


def test_table_leaves_out_settings_that_mask_nothing_or_everything():
    # A 4 x 4 patch grid. Cell 4: one cell, fully masked or visible: no row.
    # Cell 2: four cells; round(0.1 * 4) = 0 and round(0.9 * 4) = 4 are left out.
    rows = avgdist.table(16, 4, cells=(1, 2, 4), num_masks=2)
    assert [(r.strategy, r.cell_px) for r in rows[:2]] == [("checkerboard", 4), ("checkerboard", 8)]
    assert [r.ratio for r in rows if r.cell_px == 4][1:] == list(avgdist.RATIOS)
    assert [r.ratio for r in rows if r.cell_px == 8][1:] == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    assert len(rows) == 2 + 9 + 7
