"""Tile grid, blend window and padding maths (pure numpy)."""
import numpy as np
import pytest

from hsirestore.errors import HsiRestoreError, OptionError
from hsirestore.inference.tiling import (
    axis_starts, axis_weight_sum, blend_window, pad_to_multiple, reflect_pad, tile_grid,
)

CASES = [
    (1, 1, 8, 2), (5, 7, 16, 3), (37, 53, 16, 5), (100, 130, 32, 8), (64, 64, 32, 0),
    (257, 256, 256, 32), (300, 41, 64, 63), (17, 1000, 16, 15), (33, 33, 2, 1), (99, 10, 7, 0),
]


def _blend_reconstruct(x, rows, cols, tile, overlap):
    """Accumulate blend-weighted tiles of x (bands, rows, cols) and divide by the weight sum."""
    grid = tile_grid(rows, cols, tile, overlap)
    rs = sorted({w[0] for w in grid})
    cs = sorted({w[2] for w in grid})
    acc = np.zeros(x.shape, np.float64)
    wsum = np.zeros(x.shape[1:], np.float64)
    for r0, r1, c0, c1 in grid:
        edges = (r0 == rs[0], r0 == rs[-1], c0 == cs[0], c0 == cs[-1])
        w = blend_window(r1 - r0, c1 - c0, overlap, edges).astype(np.float64)
        acc[:, r0:r1, c0:c1] += w * x[:, r0:r1, c0:c1]
        wsum[r0:r1, c0:c1] += w
    return acc, wsum


@pytest.mark.parametrize("rows,cols,tile,overlap", CASES)
def test_grid_covers_and_stays_inside(rows, cols, tile, overlap):
    grid = tile_grid(rows, cols, tile, overlap)
    cover = np.zeros((rows, cols), int)
    th, tw = min(tile, rows), min(tile, cols)
    for r0, r1, c0, c1 in grid:
        assert 0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols
        assert (r1 - r0, c1 - c0) == (th, tw)  # all tiles the same size
        cover[r0:r1, c0:c1] += 1
    assert cover.min() >= 1
    assert max(w[1] for w in grid) == rows and max(w[3] for w in grid) == cols  # flush
    assert grid == sorted(grid)  # raster order
    for n, t in ((rows, tile), (cols, tile)):
        s = axis_starts(n, t, overlap)
        assert s[0] == 0 and s[-1] == max(n - t, 0)
        if len(s) > 1:
            gaps = np.diff(s)
            assert gaps.min() >= 1 and gaps.max() <= t - overlap  # overlap >= nominal


@pytest.mark.parametrize("rows,cols,tile,overlap", CASES)
def test_blend_reconstructs_identity_exactly(rows, cols, tile, overlap):
    x = np.random.default_rng(rows * 7 + cols).normal(size=(2, rows, cols)).astype(np.float32)
    acc, wsum = _blend_reconstruct(x, rows, cols, tile, overlap)
    assert wsum.min() > 0
    out = (acc / wsum).astype(np.float32)
    np.testing.assert_array_equal(out, x)
    # the weight sum is separable: outer product of the per-axis sums
    np.testing.assert_allclose(wsum, np.outer(axis_weight_sum(rows, tile, overlap),
                                              axis_weight_sum(cols, tile, overlap)), rtol=1e-6)


def test_single_tile_when_image_smaller():
    assert tile_grid(10, 20, 64, 8) == [(0, 10, 0, 20)]
    assert tile_grid(64, 64, 64, 8) == [(0, 64, 0, 64)]


def test_rectangular_tiles():
    grid = tile_grid(50, 90, (20, 40), (4, 10))
    assert {(r1 - r0, c1 - c0) for r0, r1, c0, c1 in grid} == {(20, 40)}


def test_blend_window_shape_and_values():
    w = blend_window(40, 30, 8, edges=(True, False, False, True))
    assert w.dtype == np.float32 and w.shape == (40, 30)
    assert (w > 0).all() and w.max() <= 1
    # exactly 1 away from the ramps; no taper on border sides (top, right)
    assert (w[:32, 8:] == 1).all()
    assert w[0, -1] == 1
    # ramps rise monotonically towards the interior
    assert (np.diff(w[20, :8]) > 0).all() and (np.diff(w[32:, 20]) < 0).all()
    # an all-border tile is flat
    assert (blend_window(5, 6, 3) == 1).all()
    # symmetric ramps of neighbours sum to 1 over the overlap (smooth cross-fade)
    lead = blend_window(1, 16, 8, (True, True, False, True))[0, :8].astype(np.float64)
    trail = blend_window(1, 16, 8, (True, True, True, False))[0, -8:].astype(np.float64)
    np.testing.assert_allclose(lead + trail, 1.0, atol=1e-6)


def test_pad_to_multiple_and_reflect():
    assert pad_to_multiple((3, 10, 13), 8) == ((0, 6), (0, 3))
    assert pad_to_multiple((16, 16), 8) == ((0, 0), (0, 0))
    assert pad_to_multiple((5, 7), (2, 4)) == ((0, 1), (0, 1))
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    p = reflect_pad(x, ((0, 2), (0, 3)))
    assert p.shape == (2, 5, 7)
    np.testing.assert_array_equal(p[:, :3, :4], x)
    np.testing.assert_array_equal(p[:, 3, :4], x[:, 1])  # mirror without repeating the edge
    np.testing.assert_array_equal(p[:, :3, 4], x[:, :, 2])
    # pads longer than the axis and single-pixel axes still work
    q = reflect_pad(np.ones((1, 1, 2), np.float32), ((0, 7), (0, 9)))
    assert q.shape == (1, 8, 11) and (q == 1).all()
    r = reflect_pad(np.arange(3, dtype=np.float32)[None, None], ((0, 0), (0, 6)))
    assert r.shape == (1, 1, 9)


@pytest.mark.parametrize("tile,overlap", [(0, 0), (8, 8), (8, 9), (8, -1)])
def test_bad_tiling_options(tile, overlap):
    with pytest.raises(OptionError) as e:
        tile_grid(20, 20, tile, overlap)
    assert isinstance(e.value, HsiRestoreError) and "\n" not in str(e.value)


def test_bad_multiple():
    with pytest.raises(OptionError):
        pad_to_multiple((4, 4), 0)
