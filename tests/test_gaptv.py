import torch

from hsirestore.inference.gaptv import _div, _grad, gap_tv, tv_denoise
from hsirestore.physics.cassi import cassi_adjoint, cassi_forward, mask_phi_sum


def _scene(bands=8, h=32, w=32):
    """Piecewise-constant scene: two rectangles with different smooth spectra."""
    x = torch.zeros(bands, h, w)
    k = torch.linspace(0, 1, bands)
    x[:, 4:20, 4:24] = (0.2 + 0.6 * k)[:, None, None]
    x[:, 16:30, 12:30] = (0.8 - 0.5 * k)[:, None, None]
    return x + 0.05


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def test_div_is_negative_adjoint_of_grad():
    torch.manual_seed(0)
    u = torch.rand(3, 7, 9, dtype=torch.float64)
    p = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    assert torch.isclose((_grad(u) * p).sum(), -(u * _div(p)).sum())


def test_tv_denoise_reduces_noise():
    torch.manual_seed(0)
    clean = _scene()
    noisy = clean + 0.1 * torch.randn_like(clean)
    assert _psnr(tv_denoise(noisy, 0.1, 30), clean) > _psnr(noisy, clean) + 3


def test_gap_tv_beats_adjoint_and_fits_measurement():
    torch.manual_seed(0)
    x = _scene()
    mask = (torch.rand(32, 32) > 0.5).float()
    y = cassi_forward(x, mask, 2)
    phi = mask_phi_sum(mask, 8, 2).clamp_min(1e-6)
    baseline = cassi_adjoint(y / phi, mask, 8, 2)
    residuals = []
    rec = gap_tv(y, mask, 8, 2, iterations=60, tv_weight=0.05,
                 callback=lambda it, z: residuals.append(float((cassi_forward(z, mask, 2) - y).norm())))
    assert _psnr(rec, x) > _psnr(baseline, x) + 5
    assert residuals[-1] < residuals[0]


def test_gap_tv_is_homogeneous():
    torch.manual_seed(0)
    x = _scene()
    mask = torch.rand(32, 32)
    y = cassi_forward(x, mask, 2)
    a = gap_tv(y, mask, 8, 2, iterations=10)
    b = gap_tv(7.0 * y, mask, 8, 2, iterations=10)
    torch.testing.assert_close(b, 7.0 * a, rtol=1e-3, atol=1e-4)
