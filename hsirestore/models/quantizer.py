"""Multi-scale residual vector quantizer (VAR-style next-scale residual quantization).

A continuous latent ``f`` (N, C, h, w) is encoded as K token maps r_1..r_K of growing
spatial size (h_k, w_k); for k = 1..K:

    z_k   = Downsample(f_res, (h_k, w_k))          (area interpolation)
    r_k   = argmin_j ||z_k - e_j||^2                (one shared codebook e, V entries)
    u_k   = Phi_k(Upsample(e[r_k], (h, w)))         (bicubic, then a small refining conv)
    f_hat = f_hat + u_k ;  f_res = f_res - u_k

``scales`` are token-map sides at a reference latent side ``ref = scales[-1]``; for another
latent size (h, w) the k-th map is ``max(1, round(scales[k] * h / ref))`` x (same for w), and
the last map always has the latent's own size. Any tile size therefore works.

The per-scale operations are public so that next-scale prediction (training with teacher
forcing, autoregressive inference) can rebuild the same f_hat step by step:
:meth:`sizes`, :meth:`lookup`, :meth:`add_scale`, :meth:`next_input`,
:meth:`teacher_inputs`, :meth:`indices_to_features`.

References: Tian et al., Visual Autoregressive Modeling (VAR), NeurIPS 2024 (arXiv:2404.02905);
Wang et al., HSI-VAR, arXiv:2602.00749.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MultiScaleResidualQuantizer", "scale_sizes"]


def scale_sizes(scales: tuple[int, ...], h: int, w: int) -> list[tuple[int, int]]:
    """Token-map sizes [(h_k, w_k)] for a latent of size (h, w); the last is (h, w)."""
    ref = scales[-1]
    out = [(max(1, min(h, round(s * h / ref))), max(1, min(w, round(s * w / ref))))
           for s in scales[:-1]]
    return out + [(h, w)]


class _Phi(nn.Module):
    """Refining conv after upsampling: (1 - r) * x + r * conv3x3(x) (VAR's Phi)."""

    def __init__(self, dim: int, ratio: float = 0.5):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 - self.ratio) + self.conv(x) * self.ratio


class MultiScaleResidualQuantizer(nn.Module):
    """Next-scale residual VQ with one shared codebook and one Phi conv per scale.

    Args:
        dim: latent channels C.
        codebook_size: entries V of the shared codebook.
        scales: token-map sides at the reference latent side ``scales[-1]`` (increasing).
        beta: commitment weight of the VQ loss.
        phi_ratio: residual ratio of the refining convs (0 disables them).
    """

    def __init__(self, dim: int, codebook_size: int, scales: tuple[int, ...], beta: float = 0.25,
                 phi_ratio: float = 0.5):
        super().__init__()
        scales = tuple(int(s) for s in scales)
        if not scales or any(b <= a for a, b in zip(scales, scales[1:])) or scales[0] < 1:
            raise ValueError(f"scales must be increasing positive ints; got {scales}")
        self.dim, self.codebook_size, self.scales, self.beta = dim, codebook_size, scales, beta
        self.codebook = nn.Embedding(codebook_size, dim)
        self.codebook.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.phis = nn.ModuleList(_Phi(dim, phi_ratio) for _ in scales)
        # code usage since the last reset (not saved): for dead-code restarts in training
        self.register_buffer("usage", torch.zeros(codebook_size), persistent=False)

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    def sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        return scale_sizes(self.scales, h, w)

    # ---------------------------------------------------------------- per-scale ops
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest codebook indices: z (N, C, h, w) -> (N, h, w) int64."""
        n, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c).float()
        e = self.codebook.weight.float()
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
        idx = d.argmin(1)
        if self.training:
            self.usage.index_add_(0, idx, torch.ones_like(idx, dtype=self.usage.dtype))
        return idx.view(n, h, w)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices (N, h_k, w_k) -> code vectors (N, C, h_k, w_k)."""
        return self.codebook(idx).permute(0, 3, 1, 2)

    def upsample(self, q: torch.Tensor, k: int, hw: tuple[int, int]) -> torch.Tensor:
        """Code map of scale k (N, C, h_k, w_k) -> refined contribution u_k (N, C, h, w)."""
        if tuple(q.shape[-2:]) != tuple(hw):
            q = F.interpolate(q, size=hw, mode="bicubic", align_corners=False)
        return self.phis[k](q)

    def add_scale(self, f_hat: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
        """f_hat (N, C, h, w) + u_k from the indices of scale k (N, h_k, w_k)."""
        return f_hat + self.upsample(self.lookup(idx), k, tuple(f_hat.shape[-2:]))

    def next_input(self, f_hat: torch.Tensor, k: int) -> torch.Tensor:
        """Accumulated f_hat (N, C, h, w) seen at the size of scale k: (N, C, h_k, w_k)."""
        hk, wk = self.sizes(*f_hat.shape[-2:])[k]
        if (hk, wk) == tuple(f_hat.shape[-2:]):
            return f_hat
        return F.interpolate(f_hat, size=(hk, wk), mode="area")

    # ---------------------------------------------------------------- whole pyramid
    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """f (N, C, h, w) -> (f_hat straight-through (N, C, h, w), VQ loss (), [idx_k (N, h_k, w_k)])."""
        n, c, h, w = f.shape
        f_det = f.detach()
        f_res = f_det.clone()
        f_hat = torch.zeros_like(f_det)
        indices = []
        for k, (hk, wk) in enumerate(self.sizes(h, w)):
            z = f_res if (hk, wk) == (h, w) else F.interpolate(f_res, size=(hk, wk), mode="area")
            idx = self.quantize(z)
            indices.append(idx)
            u = self.upsample(self.lookup(idx), k, (h, w))
            f_hat = f_hat + u
            f_res = f_res - u.detach()
        loss = F.mse_loss(f_hat, f_det) + self.beta * F.mse_loss(f, f_hat.detach())
        f_st = f + (f_hat - f).detach()
        return f_st, loss, indices

    @torch.no_grad()
    def features_to_indices(self, f: torch.Tensor) -> list[torch.Tensor]:
        """f (N, C, h, w) -> [idx_k (N, h_k, w_k)] (same as forward, without gradients)."""
        return self.forward(f)[2]

    def indices_to_features(self, indices: list[torch.Tensor], hw: tuple[int, int] | None = None
                            ) -> torch.Tensor:
        """[idx_k] (a prefix of the K scales is allowed) -> f_hat (N, C, h, w)."""
        hw = tuple(hw or indices[-1].shape[-2:])
        n = indices[0].shape[0]
        f_hat = self.codebook.weight.new_zeros(n, self.dim, *hw)
        for k, idx in enumerate(indices):
            f_hat = self.add_scale(f_hat, idx, k)
        return f_hat

    def teacher_inputs(self, indices: list[torch.Tensor], hw: tuple[int, int]) -> list[torch.Tensor]:
        """Inputs for predicting scales 2..K with teacher forcing: for k = 1..K-1 the
        accumulated f_hat of scales < k+1, resized to scale k+1: [(N, C, h_{k+1}, w_{k+1})]."""
        n = indices[0].shape[0]
        f_hat = self.codebook.weight.new_zeros(n, self.dim, *hw)
        out = []
        for k, idx in enumerate(indices[:-1]):
            f_hat = self.add_scale(f_hat, idx, k)
            out.append(self.next_input(f_hat, k + 1))
        return out

    @torch.no_grad()
    def restart_dead_codes(self, f: torch.Tensor, min_usage: float = 0.0) -> int:
        """Replace codes used <= ``min_usage`` times since the last call by random latent
        vectors of ``f`` (N, C, h, w) (training aid); returns how many were replaced."""
        dead = (self.usage <= min_usage).nonzero().flatten()
        self.usage.zero_()
        if dead.numel() == 0:
            return 0
        pool = f.detach().permute(0, 2, 3, 1).reshape(-1, self.dim)
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
        self.codebook.weight.data[dead] = pool[pick].to(self.codebook.weight.dtype)
        return int(dead.numel())
