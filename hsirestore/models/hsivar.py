"""HSI-VAR: all-in-one hyperspectral restoration by next-scale visual autoregression.

Implemented from the paper's description (no public code). Tensors in, tensors out.

Parts (shapes for a cube of B bands, P x P pixels, latent side p = P / down):

* ``encoder`` E: conv encoder with residual blocks (no normalisation layers), (N, B, P, P) -> latent (N, D, p, p),
  ``down = 2 ** (len(mults) - 1)``; it also returns its per-level features (skips).
* ``quantizer``: :class:`~hsirestore.models.quantizer.MultiScaleResidualQuantizer`, latent ->
  K token maps r_1..r_K (VAR next-scale residual quantization, one shared codebook).
* ``decoder``: latent -> (N, B, P, P); every level has a residual block and an SSA block
  f_s = f + SpaA(f) + alpha_s * SpeA(f) (SpaA: conv-gated spatial attention with a 7x7
  depthwise gate; SpeA: spectral/channel ("transposed") attention over the C x C channel
  affinity; alpha_s learnable per level). Optionally it adds skip features of the condition
  encoder through zero-initialised 1x1 convs (``skips``; see "fidelity" below).
* ``cond_encoder`` E_cond: same architecture as E; :meth:`HSIVAR.init_condition_encoder`
  copies E into it before stage 2 (latent-condition alignment L_align = ||E_cond(LQ) - E(HQ)||^2).
* ``dag`` degradation-aware guidance: d = d_base + lambda * sum_t m_t d_t over the present
  degradation types (m (N, T) 0/1 mask, learnable lambda); all-zero m gives the generic d_base
  (used for unknown degradations). d is concatenated with the condition features at every
  token (one pass per scale, no classifier-free guidance).
* ``transformer``: block-causal transformer over the concatenated scales; the tokens of
  scale k are built from the accumulated f_hat of scales < k (resized to scale k), the
  condition latent (resized to scale k) concatenated with d, a scale embedding and a 2-D
  sin-cos position code of relative coordinates (so any tile size works). It predicts the
  codebook logits of scale k. Training uses teacher forcing in one pass; inference runs one
  pass per scale with a KV cache; argmax by default, temperature / top-k sampling optional.

Fidelity choice (documented): a pure VQ bottleneck loses pixel detail that restoration must
keep, so (as VARSR/RestoreVAR-style restorers do) the decoder may take multi-level skip
features of E_cond(LQ) in stage 2. Stage 1 trains E, quantizer and decoder on clean cubes
without skips (the skip convs are zero and unused); stage 2 freezes E and the quantizer and
trains E_cond, DAG, transformer and the decoder (SSA + skip convs). With ``residual=True``
(a model override; no preset uses it) the stage-2 output is LQ + decoder(...), i.e. the decoder predicts the
correction of the degraded cube (global residual learning as in DnCNN/Restormer); stage 1
never uses it (its input is the clean cube).

References: Wang et al., HSI-VAR: Rethinking Hyperspectral Restoration through
Spatial-Spectral Visual Autoregression, arXiv:2602.00749 (2026); Tian et al., VAR,
arXiv:2404.02905; Rajagopalan et al., RestoreVAR, arXiv:2505.18047; Qu et al., VARSR,
arXiv:2501.18993.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hsirestore.models.quantizer import MultiScaleResidualQuantizer

__all__ = ["HSIVAR", "build_hsivar", "SSABlock", "count_parameters"]


class ResBlock(nn.Module):
    """x + conv3x3(SiLU(conv3x3(x))), no normalisation (keeps absolute radiometric levels),
    zero-initialised second conv: (N, C, h, w) -> (N, C', h, w)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.kaiming_normal_(self.c1.weight, nonlinearity="relu")
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.c2(F.silu(self.c1(x)))


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at every pixel: (N, C, h, w) -> (N, C, h, w)."""

    def __init__(self, c: int):
        super().__init__()
        self.ln = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SpatialAttention(nn.Module):
    """SpaA, conv-gated: proj(v(x) * sigmoid(dw7x7(g(x)))): (N, C, h, w) -> (N, C, h, w)."""

    def __init__(self, c: int):
        super().__init__()
        self.v = nn.Conv2d(c, c, 1)
        self.g = nn.Conv2d(c, c, 1)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.v(x) * torch.sigmoid(self.dw(self.g(x))))


class SpectralAttention(nn.Module):
    """SpeA, channel ("transposed") attention: per head a (C/h x C/h) softmax affinity of
    L2-normalised q, k over the pixels, learnable temperature: (N, C, h, w) -> (N, C, h, w)."""

    def __init__(self, c: int, heads: int = 1):
        super().__init__()
        self.heads = heads if c % heads == 0 else 1
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.dw = nn.Conv2d(3 * c, 3 * c, 3, padding=1, groups=3 * c)
        self.temperature = nn.Parameter(torch.ones(self.heads, 1, 1))
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.dw(self.qkv(x)).chunk(3, 1)
        q, k, v = (t.reshape(n, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)
        return self.proj((attn @ v).reshape(n, c, h, w))


class SSABlock(nn.Module):
    """Spatial-spectral adaptation: x + SpaA(n(x)) + alpha_s * SpeA(n(x)), alpha_s learnable."""

    def __init__(self, c: int, heads: int = 1, alpha: float = 1.0):
        super().__init__()
        self.norm = LayerNorm2d(c)
        self.spa = SpatialAttention(c)
        self.spe = SpectralAttention(c, heads)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        return x + self.spa(n) + self.alpha * self.spe(n)


class Encoder(nn.Module):
    """(N, B, P, P) -> (latent (N, D, P/down, P/down), skips [(N, width*mults[i], P/2^i, P/2^i)])."""

    def __init__(self, bands: int, width: int, mults: tuple[int, ...], blocks: int, latent_dim: int):
        super().__init__()
        chs = [width * m for m in mults]
        self.conv_in = nn.Conv2d(bands, chs[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, c in enumerate(chs):
            cin = chs[i - 1] if i else chs[0]
            self.levels.append(nn.Sequential(*[ResBlock(cin if j == 0 else c, c) for j in range(blocks)]))
            if i < len(chs) - 1:
                self.downs.append(nn.Conv2d(c, c, 4, stride=2, padding=1))
        self.conv_out = nn.Conv2d(chs[-1], latent_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.conv_in(x)
        skips = []
        for i, level in enumerate(self.levels):
            h = level(h)
            skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        return self.conv_out(h), skips


class Decoder(nn.Module):
    """(latent (N, D, p, p), optional skips like the encoder's) -> (N, B, p*down, p*down)."""

    def __init__(self, bands: int, width: int, mults: tuple[int, ...], blocks: int, latent_dim: int,
                 heads: int = 1):
        super().__init__()
        chs = [width * m for m in mults]
        self.conv_in = nn.Conv2d(latent_dim, chs[-1], 3, padding=1)
        self.levels = nn.ModuleList()
        self.ssa = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in reversed(range(len(chs))):
            c = chs[i]
            self.fuse.append(nn.Conv2d(c, c, 1))
            nn.init.zeros_(self.fuse[-1].weight)
            nn.init.zeros_(self.fuse[-1].bias)
            self.levels.append(nn.Sequential(*[ResBlock(c, c) for _ in range(blocks)]))
            self.ssa.append(SSABlock(c, heads))
            if i > 0:
                self.ups.append(nn.Conv2d(c, chs[i - 1], 3, padding=1))
        self.conv_out = nn.Conv2d(chs[0], bands, 3, padding=1)

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        h = self.conv_in(z)
        n = len(self.levels)
        for j in range(n):
            if skips is not None:
                h = h + self.fuse[j](skips[n - 1 - j])
            h = self.ssa[j](self.levels[j](h))
            if j < n - 1:
                h = self.ups[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(h)


class DegradationGuidance(nn.Module):
    """DAG: type mask m (N, T) -> d = d_base + lambda * m @ D_types, (N, dim)."""

    def __init__(self, num_types: int, dim: int):
        super().__init__()
        self.base = nn.Parameter(torch.randn(dim) * 0.02)
        self.types = nn.Parameter(torch.randn(num_types, dim) * 0.02)
        self.lam = nn.Parameter(torch.tensor(1.0))

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.base[None] + self.lam * (mask.to(self.types.dtype) @ self.types)


def _sincos_2d(h: int, w: int, dim: int, device, dtype) -> torch.Tensor:
    """2-D sin-cos code of relative pixel-centre coordinates in [0, 1): (h*w, dim)."""
    nf = max(1, dim // 4)
    om = (2.0 ** torch.linspace(0, 6, nf, device=device)) * math.pi
    y = (torch.arange(h, device=device) + 0.5) / h
    x = (torch.arange(w, device=device) + 0.5) / w
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    yy, xx = yy.reshape(-1, 1) * om, xx.reshape(-1, 1) * om
    pe = torch.cat([yy.sin(), yy.cos(), xx.sin(), xx.cos()], 1)
    if pe.shape[1] < dim:
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe.to(dtype)


class Attention(nn.Module):
    """Multi-head self-attention with an optional boolean mask and an optional KV cache."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: dict | None = None) -> torch.Tensor:
        n, L, c = x.shape
        q, k, v = self.qkv(x).view(n, L, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], 2)
                v = torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(n, L, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(approximate="tanh"), nn.Linear(hid, dim))

    def forward(self, x, mask=None, cache=None):
        x = x + self.attn(self.n1(x), mask, cache)
        return x + self.mlp(self.n2(x))


class NextScaleTransformer(nn.Module):
    """Predicts codebook logits of each scale from the accumulated previous scales and the
    condition. Token input per scale k: (N, D, h_k, w_k) features + (N, D, h_k, w_k) condition
    + d (N, deg_dim) -> (N, h_k*w_k, width)."""

    def __init__(self, latent_dim: int, codebook_size: int, num_scales: int, width: int, depth: int,
                 heads: int, mlp_ratio: float, deg_dim: int):
        super().__init__()
        self.width = width
        self.word = nn.Linear(latent_dim, width)
        self.cond = nn.Linear(latent_dim + deg_dim, width)
        self.level = nn.Embedding(num_scales, width)
        nn.init.normal_(self.level.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)

    def embed(self, feats: torch.Tensor, cond: torch.Tensor, d: torch.Tensor, k: int) -> torch.Tensor:
        n, _, h, w = feats.shape
        f = feats.flatten(2).transpose(1, 2)
        c = torch.cat([cond.flatten(2).transpose(1, 2), d[:, None].expand(n, h * w, d.shape[1])], 2)
        pos = _sincos_2d(h, w, self.width, feats.device, f.dtype)
        return self.word(f) + self.cond(c) + self.level.weight[k][None, None] + pos[None]

    def run(self, tokens: torch.Tensor, mask=None, caches=None) -> torch.Tensor:
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens, mask, None if caches is None else caches[i])
        return self.head(self.norm(tokens))


class HSIVAR(nn.Module):
    """The full model (see the module docstring). ``forward(lq, types)`` restores:
    lq (N, B, P, P) with P a multiple of ``size_multiple`` (= ``down``, the encoder's total
    downsampling), types (N, T) 0/1 -> (N, B, P, P)."""

    def __init__(self, bands: int = 31, width: int = 32, mults: tuple[int, ...] = (1, 2, 2),
                 blocks: int = 1, latent_dim: int = 16, codebook_size: int = 512,
                 scales: tuple[int, ...] = (1, 2, 4, 8, 16), beta: float = 0.25,
                 dec_heads: int = 2, tf_width: int = 128, tf_depth: int = 4, tf_heads: int = 4,
                 mlp_ratio: float = 4.0, deg_dim: int = 32, num_types: int = 12,
                 residual: bool = False):
        super().__init__()
        mults = tuple(mults)
        self.residual = bool(residual)
        self.bands, self.down, self.num_types = bands, 2 ** (len(mults) - 1), num_types
        self.size_multiple = self.down  # spatial sizes the model takes (predictors pad to it)
        self.encoder = Encoder(bands, width, mults, blocks, latent_dim)
        self.quantizer = MultiScaleResidualQuantizer(latent_dim, codebook_size, tuple(scales), beta)
        self.decoder = Decoder(bands, width, mults, blocks, latent_dim, dec_heads)
        self.cond_encoder = Encoder(bands, width, mults, blocks, latent_dim)
        self.dag = DegradationGuidance(num_types, deg_dim)
        self.transformer = NextScaleTransformer(latent_dim, codebook_size, len(scales), tf_width,
                                                tf_depth, tf_heads, mlp_ratio, deg_dim)

    # -------------------------------------------------------------- stage 1 (VQ-VAE)
    def autoencode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Clean x (N, B, P, P) -> (reconstruction (N, B, P, P), VQ loss, token maps)."""
        f, _ = self.encoder(x)
        f_hat, vq_loss, idx = self.quantizer(f)
        return self.decoder(f_hat), vq_loss, idx

    def init_condition_encoder(self) -> None:
        """E_cond <- copy of E (start of stage 2)."""
        self.cond_encoder.load_state_dict(copy.deepcopy(self.encoder.state_dict()))

    # -------------------------------------------------------------- stage 2 (restoration)
    def _first_input(self, f_cond: torch.Tensor) -> torch.Tensor:
        hk, wk = self.quantizer.sizes(*f_cond.shape[-2:])[0]
        return f_cond.new_zeros(f_cond.shape[0], f_cond.shape[1], hk, wk)

    def _cond_at(self, f_cond: torch.Tensor, k: int) -> torch.Tensor:
        return self.quantizer.next_input(f_cond, k)

    def teacher_logits(self, indices: list[torch.Tensor], f_cond: torch.Tensor, d: torch.Tensor
                       ) -> list[torch.Tensor]:
        """Teacher forcing in one block-causal pass: clean token maps [(N, h_k, w_k)],
        condition latent (N, D, p, p), d (N, deg_dim) -> [logits (N, h_k*w_k, V)]."""
        hw = tuple(f_cond.shape[-2:])
        with torch.no_grad():
            feats = [self._first_input(f_cond)] + self.quantizer.teacher_inputs(indices, hw)
        tokens = [self.transformer.embed(x, self._cond_at(f_cond, k), d, k) for k, x in enumerate(feats)]
        lens = [t.shape[1] for t in tokens]
        level = torch.repeat_interleave(torch.arange(len(lens), device=f_cond.device),
                                        torch.tensor(lens, device=f_cond.device))
        mask = level[:, None] >= level[None, :]  # block-causal: attend to scales <= own
        logits = self.transformer.run(torch.cat(tokens, 1), mask)
        return list(logits.split(lens, 1))

    @torch.no_grad()
    def generate(self, f_cond: torch.Tensor, d: torch.Tensor, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None
                 ) -> list[torch.Tensor]:
        """Next-scale generation with a KV cache: condition (N, D, p, p), d -> [idx_k (N, h_k, w_k)]."""
        n = f_cond.shape[0]
        sizes = self.quantizer.sizes(*f_cond.shape[-2:])
        caches = [dict() for _ in self.transformer.blocks]
        f_hat = torch.zeros_like(f_cond)
        out = []
        for k, (hk, wk) in enumerate(sizes):
            x = self._first_input(f_cond) if k == 0 else self.quantizer.next_input(f_hat, k)
            tok = self.transformer.embed(x, self._cond_at(f_cond, k), d, k)
            logits = self.transformer.run(tok, None, caches).float()
            idx = sample_tokens(logits, temperature, top_k, generator).view(n, hk, wk)
            out.append(idx)
            f_hat = self.quantizer.add_scale(f_hat, idx, k)
        return out

    def condition(self, lq: torch.Tensor, types: torch.Tensor
                  ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """lq (N, B, P, P), types (N, T) -> (f_cond (N, D, p, p), skips, d (N, deg_dim))."""
        f_cond, skips = self.cond_encoder(lq)
        return f_cond, skips, self.dag(types)

    def reconstruct(self, f_hat: torch.Tensor, skips: list[torch.Tensor] | None,
                    lq: torch.Tensor | None = None) -> torch.Tensor:
        """Quantized features (N, D, p, p) (+ condition skips, + the degraded cube (N, B, P, P)
        when the model is residual) -> restored (N, B, P, P)."""
        out = self.decoder(f_hat, skips)
        if self.residual and lq is not None:
            out = out + lq
        return out

    def decode_tokens(self, indices: list[torch.Tensor], skips: list[torch.Tensor] | None,
                      lq: torch.Tensor | None = None) -> torch.Tensor:
        """Token maps (+ condition skips, + LQ for a residual model) -> image (N, B, P, P)."""
        return self.reconstruct(self.quantizer.indices_to_features(indices), skips, lq)

    def restore(self, lq: torch.Tensor, types: torch.Tensor, temperature: float = 0.0,
                top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """lq (N, B, P, P) in [0, 1], types (N, T) 0/1 -> restored (N, B, P, P)."""
        f_cond, skips, d = self.condition(lq, types)
        idx = self.generate(f_cond, d, temperature, top_k, generator)
        return self.decode_tokens(idx, skips, lq)

    def forward(self, lq: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return self.restore(lq, types)


def sample_tokens(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (N, L, V) -> indices (N, L): argmax when temperature <= 0, else sampling from
    softmax(logits / T) restricted to the top-k entries."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).view(logits.shape[:-1])


def build_hsivar(**cfg) -> HSIVAR:
    return HSIVAR(**cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
