"""Numerical fixes from a correctness audit: root-polynomial terms at zero channels, band
widths in RGB rendering, motion-blur kernel length, unsorted wavelengths, SAM of all-zero
predictions."""
import numpy as np
import pytest

from hsirestore.baselines import root_poly_features
from hsirestore.metrics import sam_deg
from hsirestore.physics.cassi import interpolate_bands
from hsirestore.physics.degradations import motion_kernel
from hsirestore.physics.rgb import render_rgb


def test_root_poly_features_are_continuous_at_zero_channels():
    rgb = np.array([[0.0, 1e-12], [0.3, 0.3], [0.6, 0.6]])
    f = root_poly_features(rgb, 3)
    np.testing.assert_allclose(f[:, 0], f[:, 1], atol=1e-3)
    # sqrt(g b) is not zero because r is
    terms = root_poly_features(np.array([[0.0], [0.3], [0.6]]), 2)[:, 0]
    assert np.isclose(terms, np.sqrt(0.3 * 0.6)).any()
    assert np.isfinite(root_poly_features(np.zeros((3, 4)), 3)).all()


def test_rgb_rendering_weights_bands_by_width():
    wl_resp = np.arange(400, 701, 1.0)
    resp = np.stack([np.exp(-0.5 * ((wl_resp - c) / 30) ** 2) for c in (600, 540, 460)])
    dense = np.arange(400, 701, 1.0)
    sparse = np.concatenate([np.arange(400, 500, 2.0), np.arange(500, 701, 20.0)])  # uneven grid
    white = [render_rgb(np.ones((w.size, 1, 1)), w, wl_resp, resp, clip=False)[:, 0, 0]
             for w in (dense, sparse)]
    np.testing.assert_allclose(white[1], white[0], rtol=0.03)


@pytest.mark.parametrize("length", [4, 9, 10, 16])
def test_motion_kernel_has_the_requested_length(length):
    assert (motion_kernel(length, 0) > 0).sum() == length
    assert (motion_kernel(length, 90) > 0).sum() == length


def test_interpolate_bands_accepts_descending_wavelengths():
    wl = np.linspace(400, 700, 31)
    cube = np.random.default_rng(0).random((31, 4, 4)).astype(np.float32)
    target = np.linspace(450, 650, 28)
    np.testing.assert_allclose(interpolate_bands(cube[::-1], wl[::-1], target),
                               interpolate_bands(cube, wl, target), rtol=1e-6)


def test_sam_counts_zero_predictions_as_90_degrees():
    ref = np.ones((5, 2, 2))
    pred = ref.copy()
    pred[:, 0, 0] = 0  # one of four pixels predicted as zero
    assert sam_deg(pred, ref) == pytest.approx(22.5)
    ref0 = ref.copy()
    ref0[:, 1, 1] = 0  # a zero reference spectrum is left out
    assert sam_deg(pred, ref0) == pytest.approx(30.0)


def test_ergas_ratio():
    from hsirestore.metrics import compute_metrics

    rng = np.random.default_rng(0)
    ref = rng.random((4, 16, 16)) + 0.5
    pred = ref + 0.01 * rng.standard_normal(ref.shape)
    one = compute_metrics(pred, ref)["ergas"]
    assert compute_metrics(pred, ref, ergas_ratio=0.25)["ergas"] == pytest.approx(one / 4)
