import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from hsirestore.errors import InvalidValueError, ShapeError

from hsirestore.metrics import (compute_metrics, ergas, mpsnr, mrae, mssim, psnr_global,
                                psnr_per_band, rmse, sam_deg, ssim_per_band)


def test_psnr_known_values():
    ref = np.zeros((3, 8, 8))
    pred = ref + 0.1  # MSE 0.01 -> 20 dB at peak 1
    assert np.allclose(psnr_per_band(pred, ref), 20.0)
    assert mpsnr(pred, ref) == pytest.approx(20.0)
    assert psnr_global(pred, ref, data_range=2.0) == pytest.approx(20 + 20 * np.log10(2))
    pred2 = ref.copy()
    pred2[0] += 0.1
    pred2[1] += 0.01
    # MPSNR averages per-band dB; band 2 is exact (inf per band) and counts as the 100 dB
    # cap in the mean, so one exact band does not make MPSNR infinite; the global one pools
    assert np.isinf(psnr_per_band(pred2, ref)[2])
    assert mpsnr(pred2, ref) == pytest.approx((20 + 40 + 100) / 3)
    assert compute_metrics(pred2, ref)["mpsnr"] == pytest.approx((20 + 40 + 100) / 3)
    assert np.isinf(mpsnr(ref, ref)) and np.isinf(compute_metrics(ref, ref)["per_band"]["psnr"][0])
    assert psnr_global(pred2, ref) == pytest.approx(10 * np.log10(1 / ((0.01 + 0.0001) / 3)))


def test_identical_cubes():
    rng = np.random.default_rng(0)
    x = rng.random((4, 20, 20))
    assert np.allclose(ssim_per_band(x, x), 1.0)
    assert sam_deg(x, x) == pytest.approx(0.0, abs=1e-6)
    assert rmse(x, x) == 0 and ergas(x, x) == 0 and mrae(x, x) == 0


def test_ssim_matches_direct_formula_on_constant_shift():
    """For constant images SSIM reduces to the luminance term (2ab + c1)/(a^2 + b^2 + c1)."""
    a, b = 0.3, 0.5
    x, y = np.full((1, 32, 32), a), np.full((1, 32, 32), b)
    c1 = 0.01**2
    assert mssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_penalises_noise_more_than_offset():
    rng = np.random.default_rng(1)
    x = np.clip(rng.random((2, 40, 40)), 0, 1)
    noisy = x + rng.normal(0, 0.2, x.shape)
    assert mssim(noisy, x) < 0.8 < mssim(x + 0.01, x)


def test_sam_degrees_and_zero_pixels():
    ref = np.zeros((2, 1, 2))
    ref[:, 0, 0] = [1, 0]
    pred = np.zeros((2, 1, 2))
    pred[:, 0, 0] = [1, 1]
    # pixel 2 is all zero in both: left out
    assert sam_deg(pred, ref) == pytest.approx(45.0)


def test_mrae_ignores_tiny_references_and_valid_mask():
    ref = np.array([[[0.5, 0.0]]])
    pred = np.array([[[0.6, 0.3]]])
    assert mrae(pred, ref) == pytest.approx(0.2)
    valid = np.array([[True, False]])
    m = compute_metrics(pred, ref, valid=valid)
    assert m["rmse"] == pytest.approx(0.1)
    assert set(m) >= {"mpsnr", "psnr_global", "mssim", "sam_deg", "ergas", "rmse", "mrae", "per_band"}


def test_ergas_ratio_scales():
    rng = np.random.default_rng(2)
    ref = rng.random((3, 10, 10)) + 0.5
    pred = ref + 0.05
    assert ergas(pred, ref, ratio=4) == pytest.approx(4 * ergas(pred, ref, ratio=1))


def test_shape_mismatch_and_bad_range():
    with pytest.raises(ShapeError, match="shape mismatch"):
        mpsnr(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(ShapeError, match="valid mask"):
        rmse(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), valid=np.ones((3, 4), bool))
    with pytest.raises(InvalidValueError):
        mpsnr(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), data_range=0)


def _direct_ssim(x, y, data_range=1.0):
    """Textbook SSIM: explicit 11x11 Gaussian window (sigma 1.5) at every interior pixel."""
    t = np.arange(-5, 6)
    g = np.exp(-(t**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(5, x.shape[0] - 5):
        for j in range(5, x.shape[1] - 5):
            a, b = x[i - 5:i + 6, j - 5:j + 6], y[i - 5:i + 6, j - 5:j + 6]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cab = (w * (a - ma) * (b - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_window_implementation():
    rng = np.random.default_rng(5)
    x = gaussian_filter(rng.random((2, 24, 27)), 1.0)
    y = x + rng.normal(0, 0.03, x.shape)
    got = ssim_per_band(y, x, data_range=0.5)
    want = [_direct_ssim(y[b], x[b], 0.5) for b in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_non_finite_pixels_are_left_out():
    rng = np.random.default_rng(3)
    ref = rng.random((3, 20, 20)) + 0.1
    pred = ref + 0.02
    bad = pred.copy()
    bad[1, 4, 7] = np.nan
    m = compute_metrics(bad, ref)
    assert m["valid_pixels"] == 399 and m["bands"] == 3
    assert m["mpsnr"] == pytest.approx(20 * np.log10(1 / 0.02))
    assert m["rmse"] == pytest.approx(0.02) and np.isfinite(m["mssim"])
    assert all(np.isfinite(v) for v in m["per_band"]["ssim"])
    # SSIM with a mask is computed away from the invalid pixels
    valid = np.ones((20, 20), bool)
    valid[:, :3] = False
    pred2 = pred.copy()
    pred2[:, :, :3] = 5.0
    assert mssim(pred2, ref, valid=valid) == pytest.approx(mssim(pred, ref), abs=0.02)
    assert np.isnan(mrae(np.zeros((1, 2, 2)), np.zeros((1, 2, 2))))


def test_mrae_cutoff_follows_the_data_range():
    """MRAE leaves out references below 1e-3 x data range: the same cube in 12-bit counts
    (data range 4095) gives the same MRAE as in [0, 1]."""
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (3, 8, 8))
    ref[0, :2] = 5e-4  # below the cutoff on both scales
    pred = ref * 1.1 + 0.01
    a = compute_metrics(pred, ref)["mrae"]
    b = compute_metrics(pred * 4095, ref * 4095, data_range=4095)["mrae"]
    assert a == pytest.approx(b, rel=1e-9)
    assert a == pytest.approx(mrae(pred, ref))
