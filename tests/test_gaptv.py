import torch

from hsirestore.physics.gaptv import _div, _grad, gap_tv, tv_denoise
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
    py, px = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    py[..., -1, :] = 0  # the fields TV works with (made of _grad outputs)
    px[..., :, -1] = 0
    gy, gx = _grad(u)
    assert torch.isclose((gy * py).sum() + (gx * px).sum(), -(u * _div(py, px)).sum())


def test_tv_denoise_matches_textbook_chambolle():
    """The in-place implementation gives the textbook iteration's result."""
    def reference(f, weight, iterations, tau=0.125):
        def grad(u):
            gy, gx = torch.zeros_like(u), torch.zeros_like(u)
            gy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
            gx[..., :, :-1] = u[..., :, 1:] - u[..., :, :-1]
            return torch.stack([gy, gx])

        def div(p):
            py, px = p
            dy, dx = torch.zeros_like(py), torch.zeros_like(px)
            dy[..., 0, :], dy[..., 1:-1, :], dy[..., -1, :] = py[..., 0, :], py[..., 1:-1, :] - py[..., :-2, :], -py[..., -2, :]
            dx[..., :, 0], dx[..., :, 1:-1], dx[..., :, -1] = px[..., :, 0], px[..., :, 1:-1] - px[..., :, :-2], -px[..., :, -2]
            return dy + dx

        p = torch.zeros((2, *f.shape), dtype=f.dtype)
        for _ in range(iterations):
            g = grad(div(p) - f / weight)
            p = (p + tau * g) / (1 + tau * torch.sqrt(g[0] ** 2 + g[1] ** 2))
        return f - weight * div(p)

    torch.manual_seed(1)
    f = torch.rand(4, 20, 23, dtype=torch.float64)
    torch.testing.assert_close(tv_denoise(f, 0.2, 7), reference(f, 0.2, 7))


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


def test_gap_tv_batch_matches_one_at_a_time():
    """A batch (N, H, W') with its own masks decodes as N separate calls (own TV weights)."""
    torch.manual_seed(0)
    xs = torch.stack([_scene(), 3.0 * _scene().flip(-1)])
    masks = torch.rand(2, 32, 32)
    ys = torch.stack([cassi_forward(xs[i], masks[i], 2) for i in range(2)])
    batch = gap_tv(ys, masks, 8, 2, iterations=8)
    assert batch.shape == (2, 8, 32, 32)
    for i in range(2):
        torch.testing.assert_close(batch[i], gap_tv(ys[i], masks[i], 8, 2, iterations=8),
                                   rtol=1e-4, atol=1e-5)
    # one mask shared by the batch
    shared = gap_tv(ys, masks[0], 8, 2, iterations=3)
    torch.testing.assert_close(shared[1], gap_tv(ys[1], masks[0], 8, 2, iterations=3),
                               rtol=1e-4, atol=1e-5)
