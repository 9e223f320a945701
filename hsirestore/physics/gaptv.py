"""GAP-TV: generalized alternating projection with total-variation denoising for CASSI.

The classical decoder (no training, no weights) and the peer the learned model is measured
against. Works on torch tensors on the CPU or a GPU.

References: X. Yuan, "Generalized alternating projection based total variation minimization
for compressive sensing", ICIP 2016. TV step: A. Chambolle, "An algorithm for total
variation minimization and applications", JMIV 2004.
"""
from __future__ import annotations

import torch

from hsirestore.physics.cassi import cassi_adjoint, cassi_forward, mask_phi_sum, mean_intensities


def _grad(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences (zero at the last row/column): (..., H, W) -> (gy, gx)."""
    gy = torch.zeros_like(u)
    gx = torch.zeros_like(u)
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=gy[..., :-1, :])
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=gx[..., :, :-1])
    return gy, gx


def _div(py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Divergence, the negative adjoint of :func:`_grad`, of a field whose last row (py) and
    last column (px) are zero, as every field made of :func:`_grad` outputs is."""
    d = py.clone()
    d[..., 1:, :] -= py[..., :-1, :]
    d += px
    d[..., :, 1:] -= px[..., :, :-1]
    return d


def tv_denoise(f: torch.Tensor, weight: float | torch.Tensor, iterations: int = 5,
               tau: float = 0.125) -> torch.Tensor:
    """Isotropic TV denoising of each band (Chambolle's projection), (..., H, W) -> same.

    Minimises 0.5 * ||u - f||^2 + weight * TV(u); ``weight`` is a number or a positive
    tensor that broadcasts against f (one weight per cube of a batch, say).
    """
    if not torch.is_tensor(weight) and weight <= 0:
        return f
    py = torch.zeros_like(f)
    px = torch.zeros_like(f)
    fw = f / weight
    for _ in range(iterations):
        gy, gx = _grad(_div(py, px) - fw)
        denom = torch.sqrt(gy * gy + gx * gx).mul_(tau).add_(1)
        py = gy.mul_(tau).add_(py).div_(denom)
        px = gx.mul_(tau).add_(px).div_(denom)
    return f - weight * _div(py, px)


@torch.no_grad()
def gap_tv(y: torch.Tensor, mask: torch.Tensor, bands: int, step: int = 2, iterations: int = 120,
           tv_weight: float = 4.0, tv_iterations: int = 5, accelerate: bool = True,
           callback=None) -> torch.Tensor:
    """Decode a CASSI measurement y (H, W') with mask (H, W) into a cube (bands, H, W).

    Leading dimensions are a batch decoded independently: y (N, H, W') with masks (N, H, W)
    or one mask (H, W) gives (N, bands, H, W) -- on a GPU a batch costs little more than one.
    ``tv_weight`` is relative to each cube's scale: it is multiplied by the estimated mean
    intensity of the scene, so the result is homogeneous of degree 1 in y.
    """
    y = y.to(torch.float64) if y.dtype == torch.float64 else y.float()
    mask = mask.to(y.dtype)
    phi = mask_phi_sum(mask, bands, step)
    phi = torch.where(phi > 0, phi, torch.ones_like(phi))
    weight = tv_weight * mean_intensities(y, mask, bands).clamp_min(1e-12)
    weight = weight.expand(y.shape[:-2])[..., None, None, None]  # (..., 1, 1, 1)
    m = mask.unsqueeze(-3)  # (..., 1, H, W): broadcasts over bands
    x = cassi_adjoint(y / phi, m, bands, step)
    y1 = y.clone()
    for it in range(iterations):
        yb = cassi_forward(x, m, step)
        if accelerate:
            y1 = y1 + (y - yb)
            x = x + cassi_adjoint((y1 - yb) / phi, m, bands, step)
        else:
            x = x + cassi_adjoint((y - yb) / phi, m, bands, step)
        x = tv_denoise(x, weight, tv_iterations)
        if callback is not None:
            callback(it, x)
    return x.float()
