"""GAP-TV: generalized alternating projection with total-variation denoising for CASSI.

The classical decoder (no training, no weights) and the peer the learned model is measured
against. Works on torch tensors on the CPU or a GPU.

References: X. Yuan, "Generalized alternating projection based total variation minimization
for compressive sensing", ICIP 2016. TV step: A. Chambolle, "An algorithm for total
variation minimization and applications", JMIV 2004.
"""
from __future__ import annotations

import torch

from hsirestore.physics.cassi import cassi_adjoint, cassi_forward, mask_phi_sum


def _grad(u: torch.Tensor) -> torch.Tensor:
    """Forward differences (zero at the last row/column): (..., H, W) -> (2, ..., H, W)."""
    gy = torch.zeros_like(u)
    gx = torch.zeros_like(u)
    gy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
    gx[..., :, :-1] = u[..., :, 1:] - u[..., :, :-1]
    return torch.stack([gy, gx])


def _div(p: torch.Tensor) -> torch.Tensor:
    """Divergence, the negative adjoint of :func:`_grad`: (2, ..., H, W) -> (..., H, W)."""
    py, px = p[0], p[1]
    dy = torch.zeros_like(py)
    dx = torch.zeros_like(px)
    dy[..., 0, :] = py[..., 0, :]
    dy[..., 1:-1, :] = py[..., 1:-1, :] - py[..., :-2, :]
    dy[..., -1, :] = -py[..., -2, :]
    dx[..., :, 0] = px[..., :, 0]
    dx[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    dx[..., :, -1] = -px[..., :, -2]
    return dy + dx


def tv_denoise(f: torch.Tensor, weight: float, iterations: int = 5, tau: float = 0.125) -> torch.Tensor:
    """Isotropic TV denoising of each band (Chambolle's projection), (..., H, W) -> same.

    Minimises 0.5 * ||u - f||^2 + weight * TV(u).
    """
    if weight <= 0:
        return f
    p = torch.zeros((2, *f.shape), dtype=f.dtype, device=f.device)
    for _ in range(iterations):
        g = _grad(_div(p) - f / weight)
        norm = torch.sqrt(g[0] ** 2 + g[1] ** 2)
        p = (p + tau * g) / (1 + tau * norm)
    return f - weight * _div(p)


@torch.no_grad()
def gap_tv(y: torch.Tensor, mask: torch.Tensor, bands: int, step: int = 2, iterations: int = 120,
           tv_weight: float = 4.0, tv_iterations: int = 5, accelerate: bool = True,
           callback=None) -> torch.Tensor:
    """Decode a CASSI measurement y (H, W') with mask (H, W) into a cube (bands, H, W).

    ``tv_weight`` is relative to the cube's scale: it is multiplied by the estimated mean
    intensity of the scene, so the result is homogeneous of degree 1 in y.
    """
    y = y.to(torch.float64) if y.dtype == torch.float64 else y.float()
    mask = mask.to(y.dtype)
    phi = mask_phi_sum(mask, bands, step)
    phi = torch.where(phi > 0, phi, torch.ones_like(phi))
    scale = float(y.sum()) / (bands * float(mask.sum()) + 1e-12)
    weight = tv_weight * max(scale, 1e-12)
    x = cassi_adjoint(y / phi, mask, bands, step)
    y1 = y.clone()
    for it in range(iterations):
        yb = cassi_forward(x, mask, step)
        if accelerate:
            y1 = y1 + (y - yb)
            x = x + cassi_adjoint((y1 - yb) / phi, mask, bands, step)
        else:
            x = x + cassi_adjoint((y - yb) / phi, mask, bands, step)
        x = tv_denoise(x, weight, tv_iterations)
        if callback is not None:
            callback(it, x)
    return x.float()
