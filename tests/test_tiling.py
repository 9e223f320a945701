"""Tile grid, blend weights and padding maths (pure numpy): the axis profiles the tiled
predictor and the CASSI decoder blend with."""
import numpy as np
import pytest

from hsirestore.errors import HsiRestoreError, OptionError
from hsirestore.inference.tiling import (
    axis_profiles, axis_starts, axis_weight_sum, pad_to_multiple, ramp_profile, reflect_pad,
)

CASES = [
    (1, 1, 8, 2), (5, 7, 16, 3), (37, 53, 16, 5), (100, 130, 32, 8), (64, 64, 32, 0),
    (257, 256, 256, 32), (300, 41, 64, 63), (17, 1000, 16, 15), (33, 33, 2, 1), (99, 10, 7, 0),
]


def _blend_reconstruct(x, rows, cols, tile, overlap):
    """Accumulate profile-weighted tiles of x (bands, rows, cols), as the predictors do."""
    acc = np.zeros(x.shape, np.float64)
    wsum = np.zeros(x.shape[1:], np.float64)
    for r0, r1, wr in axis_profiles(rows, tile, overlap):
        for c0, c1, wc in axis_profiles(cols, tile, overlap):
            w = np.outer(wr, wc)
            acc[:, r0:r1, c0:c1] += w * x[:, r0:r1, c0:c1]
            wsum[r0:r1, c0:c1] += w
    return acc, wsum


@pytest.mark.parametrize("rows,cols,tile,overlap", CASES)
def test_grid_covers_and_stays_inside(rows, cols, tile, overlap):
    for n in (rows, cols):
        prof = axis_profiles(n, tile, overlap)
        cover = np.zeros(n, int)
        for s, e, w in prof:
            assert 0 <= s < e <= n and e - s == min(tile, n)  # all tiles the same size
            assert w.shape == (e - s,) and (w > 0).all() and w.max() <= 1
            cover[s:e] += 1
        assert cover.min() >= 1 and prof[-1][1] == n  # flush with the border
        starts = axis_starts(n, tile, overlap)
        assert [s for s, _, _ in prof] == starts and starts == sorted(starts)
        assert starts[0] == 0 and starts[-1] == max(n - tile, 0)
        if len(starts) > 1:
            gaps = np.diff(starts)
            assert gaps.min() >= 1 and gaps.max() <= tile - overlap  # overlap >= nominal


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
    for n, tile in ((10, 64), (64, 64)):
        (s, e, w), = axis_profiles(n, tile, 8)
        assert (s, e) == (0, n) and (w == 1).all()  # no taper at image borders


def test_profiles_ramp_towards_neighbours_only():
    (s0, e0, first), (s1, e1, last) = axis_profiles(56, 32, 8)
    assert (s0, e0, s1, e1) == (0, 32, 24, 56)
    assert first[0] == 1 and last[-1] == 1  # image borders: no taper
    assert (first[:24] == 1).all() and (np.diff(first[24:]) < 0).all()
    assert (last[8:] == 1).all() and (np.diff(last[:8]) > 0).all()
    # symmetric ramps of neighbours sum to 1 over the overlap (smooth cross-fade)
    np.testing.assert_allclose(first[24:] + last[:8], 1.0, atol=1e-12)
    assert (ramp_profile(6, 0, 0) == 1).all()


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
        axis_profiles(20, tile, overlap)
    assert isinstance(e.value, HsiRestoreError) and "\n" not in str(e.value)


def test_bad_multiple():
    with pytest.raises(OptionError):
        pad_to_multiple((4, 4), 0)
