import numpy as np
import pytest
import torch

from hsirestore.errors import ShapeError
from hsirestore.physics.cassi import (CASSI_WAVELENGTHS_28, cassi_adjoint, cassi_forward,
                                      check_geometry, interpolate_bands, mask_phi_sum,
                                      mean_intensity, shift_back)


def test_forward_shape_and_values():
    x = np.zeros((3, 4, 5), np.float32)
    x[1, 2, 3] = 2.0
    mask = np.ones((4, 5), np.float32)
    y = cassi_forward(x, mask, step=2)
    assert y.shape == (4, 5 + 2 * 2)
    assert y[2, 3 + 2] == 2.0 and y.sum() == 2.0


@pytest.mark.parametrize("bands,h,w,step", [(28, 16, 16, 2), (5, 7, 9, 1), (4, 6, 6, 3)])
def test_adjoint_is_exact(bands, h, w, step):
    rng = np.random.default_rng(0)
    x = rng.random((bands, h, w))
    mask = rng.random((h, w))
    y = rng.random((h, w + step * (bands - 1)))
    lhs = np.vdot(cassi_forward(x, mask, step), y)
    rhs = np.vdot(x, cassi_adjoint(y, mask, bands, step))
    assert np.isclose(lhs, rhs, rtol=1e-10)


def test_torch_and_numpy_agree_and_batch():
    rng = np.random.default_rng(1)
    x = rng.random((2, 28, 8, 8)).astype(np.float32)
    mask = rng.random((8, 8)).astype(np.float32)
    yn = cassi_forward(x, mask)
    yt = cassi_forward(torch.from_numpy(x), torch.from_numpy(mask))
    assert yn.shape == (2, 8, 8 + 54)
    np.testing.assert_allclose(yn, yt.numpy(), rtol=1e-6)
    back = shift_back(torch.from_numpy(yn), 28, 2)
    assert back.shape == (2, 28, 8, 8)


def test_phi_sum_is_diag_of_aat():
    rng = np.random.default_rng(2)
    mask = rng.random((5, 6))
    bands, step = 3, 2
    phi = mask_phi_sum(mask, bands, step)
    # A A^T applied to a delta at (r, c) returns phi[r, c] there
    y = np.zeros((5, 6 + step * (bands - 1)))
    y[2, 4] = 1.0
    aat = cassi_forward(cassi_adjoint(y, mask, bands, step), mask, step)
    assert np.isclose(aat[2, 4], phi[2, 4])


def test_geometry_errors_are_explained():
    check_geometry((256, 310), (256, 256), 28, 2)
    with pytest.raises(ShapeError, match="expected 256x310"):
        check_geometry((256, 300), (256, 256), 28, 2)
    with pytest.raises(ShapeError, match="2-D"):
        check_geometry((256, 310), (28, 256, 256), 28, 2)


def test_mean_intensity_linear():
    rng = np.random.default_rng(3)
    x = rng.random((28, 32, 32)).astype(np.float32)
    mask = (rng.random((32, 32)) > 0.5).astype(np.float32)
    y = cassi_forward(x, mask)
    m = mean_intensity(y, mask, 28)
    assert abs(m - x.mean()) < 0.02
    assert np.isclose(mean_intensity(3 * y, mask, 28), 3 * m)


def test_interpolate_bands_hits_samples():
    wl31 = np.arange(400, 701, 10.0)
    cube = np.broadcast_to(wl31[:, None, None], (31, 2, 2)).astype(np.float32)
    out = interpolate_bands(cube, wl31, CASSI_WAVELENGTHS_28)
    np.testing.assert_allclose(out[:, 0, 0], CASSI_WAVELENGTHS_28, rtol=1e-5)
    assert len(CASSI_WAVELENGTHS_28) == 28


def test_mean_intensities_is_mean_intensity_per_measurement():
    from hsirestore.physics.cassi import mean_intensities, mean_intensity

    rng = np.random.default_rng(3)
    x = rng.random((3, 8, 16, 16)).astype(np.float32)
    masks = rng.random((3, 16, 16)).astype(np.float32)
    y = np.stack([cassi_forward(x[i], masks[i], 2) for i in range(3)])
    expected = [mean_intensity(y[i], masks[i], 8) for i in range(3)]
    np.testing.assert_allclose(mean_intensities(y, masks, 8), expected, rtol=1e-6)
    got = mean_intensities(torch.from_numpy(y), torch.from_numpy(masks), 8)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert float(mean_intensities(y[0], np.zeros((16, 16), np.float32), 8)) >= 0  # no error
