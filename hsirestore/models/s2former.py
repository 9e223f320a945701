"""S2-Transformer: parallel spatial/spectral attention with mask-aware learning for CASSI.

Input convention (the authors' test code): ``x = shift_back(y * 2 / bands) * mask``, a
(N, bands, H, W) cube, plus the physical mask (N, 1, H, W). Output: the reconstructed cube
(N, bands, H, W) and one intermediate prediction per residual group (the "pins").

Module and parameter names follow the official ``SpaSpe_Attn_Net`` so that the authors'
``model_epoch_255.pth`` loads strictly after :func:`official_key_map`.

References: J. Wang, K. Li, Y. Zhang, X. Yuan, Z. Tao, "S^2-Transformer for Mask-Aware
Hyperspectral Image Reconstruction", IEEE TPAMI 2025 (arXiv:2209.12075).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _to_windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _from_windows(win: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, ws*ws, C) -> (B, H, W, C)."""
    c = win.shape[-1]
    b = win.shape[0] // ((h // ws) * (w // ws))
    x = win.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def _relative_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into a ((2ws-1)^2, heads) relative position bias table."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (ws - 1)  # (2, N, N), >= 0
    return rel[0] * (2 * ws - 1) + rel[1]


def _shift_attention_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, N, N) additive mask (0 / -100) that stops shifted windows mixing far regions."""
    region = torch.zeros(1, h, w, 1)
    label = 0
    for rs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for cs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            region[:, rs, cs, :] = label
            label += 1
    win = _to_windows(region, ws).squeeze(-1)  # (nW, N)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class MaskedWindowAttention(nn.Module):
    """Window MSA with relative position bias; Q and K are multiplied by mask features.

    forward(x (B*nW, N, C), mask_feat (B*nW, N, C), attn_mask (nW, N, N) | None) -> (B*nW, N, C)
    """

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask_feat, attn_mask=None):
        bw, n, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        m = mask_feat.view(bw, n, heads, c // heads).transpose(1, 2)
        q = q * self.scale * m
        k = k * m
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)
        if attn_mask is not None:
            nw = attn_mask.shape[0]
            attn = attn.view(bw // nw, nw, heads, n, n) + attn_mask[None, :, None]
            attn = attn.view(bw, heads, n, n)
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class ShiftedWindowBranch(nn.Module):
    """Partition (optionally cyclically shifted) windows, attend, merge back.

    forward(x (B, H*W, C), size (H, W), mask_windows (B*nW, N, C)) -> (B, H*W, C)
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, shift: int):
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.attn = MaskedWindowAttention(dim, window_size, num_heads)
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def _attn_mask(self, h, w, device):
        if self.shift == 0:
            return None
        key = (h, w, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = _shift_attention_mask(h, w, self.window_size, self.shift).to(device)
        return self._mask_cache[key]

    def forward(self, x, size, mask_windows):
        h, w = size
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), dims=(1, 2))
        out = self.attn(_to_windows(x, self.window_size), mask_windows, self._attn_mask(h, w, x.device))
        out = _from_windows(out, self.window_size, h, w)
        if self.shift:
            out = torch.roll(out, (self.shift, self.shift), dims=(1, 2))
        return out.reshape(b, h * w, c)


class SpectralAttention(nn.Module):
    """Spectral-wise MSA over the whole image (channels as tokens) plus a depth-wise
    positional branch on V.  forward(x (B, H*W, C), size (H, W)) -> (B, H*W, C)
    """

    def __init__(self, dim: int, dim_head: int):
        super().__init__()
        self.heads = dim // dim_head
        self.dim_head = dim_head
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.rescale = nn.Parameter(torch.ones(self.heads, 1, 1))
        self.proj = nn.Linear(dim, dim)
        self.pos_emb = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim),
        )

    def forward(self, x, size):
        h, w = size
        b, n, c = x.shape
        v_in = self.to_v(x)

        def split(t):  # (B, N, C) -> (B, heads, d, N)
            return t.view(b, n, self.heads, self.dim_head).permute(0, 2, 3, 1)

        q = F.normalize(split(self.to_q(x)), dim=-1)
        k = F.normalize(split(self.to_k(x)), dim=-1)
        attn = (k @ q.transpose(-2, -1)) * self.rescale  # (B, heads, d, d)
        out = attn.softmax(-1) @ split(v_in)  # (B, heads, d, N)
        out = self.proj(out.permute(0, 3, 1, 2).reshape(b, n, c))
        pos = self.pos_emb(v_in.view(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return out + pos.reshape(b, n, c)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class ParallelSSBlock(nn.Module):
    """One S2 block: spatial window MSA || spectral MSA, concatenated (2C) and reduced to C
    by a bias-free linear, plus a feed-forward; the mask modulates spatial Q and K.

    forward(x (B, H*W, C), size (H, W), mask (B, 1, H, W)) -> (B, H*W, C)
    """

    def __init__(self, dim, num_heads, window_size, shift, mlp_ratio, spe_dim_head,
                 mask_norm: str = "width"):
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.mask_norm = mask_norm
        self.ms_conv1 = nn.Conv2d(1, dim, 1)
        self.ms_conv2 = nn.Conv2d(dim, dim, 3, padding=1)
        # ms_conv3/4 feed the spectral branch's mask path in the official code; with the
        # published setting (spectral mask effect "omit") they have no effect, but they are
        # part of the checkpoint, so they are kept.
        self.ms_conv3 = nn.Conv2d(1, dim, 1)
        self.ms_conv4 = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.win_wrap_spatial = ShiftedWindowBranch(dim, window_size, num_heads, shift)
        self.chl_msa = SpectralAttention(dim, spe_dim_head)
        self.chl_reduce = nn.Linear(2 * dim, dim, bias=False)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def mask_features(self, mask):
        """(B, 1, H, W) -> (B, H, W, C) modulation for Q and K."""
        f = self.ms_conv2(self.ms_conv1(mask))
        if self.mask_norm == "width":  # official: softmax along image columns
            f = f.softmax(-1)
        elif self.mask_norm == "sigmoid":  # bounded gate in (0, 2), 1 at initialisation
            f = 2 * torch.sigmoid(f)
        else:  # "channel": per-pixel softmax over channels, rescaled to mean 1
            f = f.softmax(1) * f.shape[1]
        return f.permute(0, 2, 3, 1)

    def forward(self, x, size, mask):
        m = self.mask_features(mask)
        if self.shift:
            m = torch.roll(m, (-self.shift, -self.shift), dims=(1, 2))
        m = _to_windows(m, self.window_size)
        spatial = self.win_wrap_spatial(self.norm1(x), size, m)
        spectral = self.chl_msa(self.norm2(x), size)
        x = x + self.chl_reduce(torch.cat([spatial, spectral], dim=-1))
        return x + self.mlp(self.norm3(x))


class ResidualGroup(nn.Module):
    """Blocks (shift every other one) + 3x3 conv + residual.  (B, H*W, C) -> (B, H*W, C)"""

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio, spe_dim_head, mask_norm):
        super().__init__()
        self.residual_group = nn.Module()
        self.residual_group.blocks = nn.ModuleList([
            ParallelSSBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                            mlp_ratio, spe_dim_head, mask_norm)
            for i in range(depth)
        ])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x, size, mask):
        h, w = size
        b, n, c = x.shape
        y = x
        for blk in self.residual_group.blocks:
            y = blk(y, size, mask)
        y = self.conv(y.transpose(1, 2).reshape(b, c, h, w))
        return y.flatten(2).transpose(1, 2) + x


class S2Transformer(nn.Module):
    """S2-Transformer (``SpaSpe_Attn_Net`` with the parallel-concatenated attention type).

    forward(x (N, bands, H, W), mask (N, 1, H, W)) -> (cube (N, bands, H, W), [pins])
    H and W must be multiples of ``window_size`` (predictors pad).

    With ``aux_head=True`` a small auxiliary head predicts the coded signal mask * x for
    mask-aware learning (:meth:`predict_coded`); it is not part of official checkpoints.
    """

    def __init__(self, in_chans: int = 28, embed_dim: int = 60, depths=(6, 6, 6, 6),
                 num_heads=(6, 6, 6, 6), window_size: int = 8, mlp_ratio: float = 4.0,
                 spe_dim_head: int = 10, mask_norm: str = "width", aux_head: bool = False):
        super().__init__()
        if embed_dim % spe_dim_head:
            raise ValueError("embed_dim must be a multiple of spe_dim_head")
        self.window_size = window_size
        self.size_multiple = window_size
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = nn.Module()
        self.patch_embed.norm = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList([
            ResidualGroup(embed_dim, d, h, window_size, mlp_ratio, spe_dim_head, mask_norm)
            for d, h in zip(depths, num_heads)
        ])
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
        self.RSTB_pin = nn.Conv2d(embed_dim, in_chans, 1, bias=False)
        self.apply(self._init)
        # Start as the identity on the (already informative) input: zero the output conv.
        nn.init.zeros_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)
        self.aux = None
        if aux_head:
            self.aux = nn.Sequential(
                nn.Conv2d(in_chans + 1, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, in_chans, 3, 1, 1))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        n, c, h, w = x.shape
        if h % self.window_size or w % self.window_size:
            raise ValueError(f"H, W ({h}, {w}) must be multiples of {self.window_size}")
        first = self.conv_first(x)
        tokens = self.patch_embed.norm(first.flatten(2).transpose(1, 2))
        pins = []
        for layer in self.layers:
            tokens = layer(tokens, (h, w), mask)
            pins.append(self.RSTB_pin(tokens.transpose(1, 2).reshape(n, -1, h, w)))
        feat = self.norm(tokens).transpose(1, 2).reshape(n, -1, h, w)
        out = x + self.conv_last(self.conv_after_body(feat) + first)
        return out, pins

    def predict_coded(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Auxiliary head: estimate of the coded signal mask * cube, (N, bands, H, W)."""
        if self.aux is None:
            raise RuntimeError("model built without aux_head")
        return self.aux(torch.cat([x, mask], dim=1))


def build_s2former(**config) -> S2Transformer:
    return S2Transformer(**config)


#: Parameters present in the authors' checkpoint that the parallel-concatenated attention
#: type never uses (second spatial/spectral branches), and buffers we recompute.
_UNUSED_OFFICIAL = (".win_wrap_spatial2.", ".chl_msa2.")
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def official_key_map(state_dict: dict) -> dict:
    """Map the authors' checkpoint to :class:`S2Transformer` keys.

    Accepts either the whole ``model_epoch_255.pth`` dict (with ``model_weights``) or the
    state dict itself. Strips the DataParallel ``module.`` prefix, drops the second spatial /
    spectral branches that the ``Parall_CatSS_Attn`` type never calls, and drops derived
    buffers (relative position index, shifted-window attention masks) that this module
    recomputes for any input size. Everything else maps one to one, so loading is strict.
    """
    if "model_weights" in state_dict and isinstance(state_dict["model_weights"], dict):
        state_dict = state_dict["model_weights"]
    out = {}
    for key, value in state_dict.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if any(u in "." + k for u in _UNUSED_OFFICIAL):
            continue
        if k.rsplit(".", 1)[-1] in _DERIVED_BUFFERS:
            continue
        out[k] = value
    return out


def is_official_checkpoint(state_dict: dict) -> bool:
    keys = state_dict.get("model_weights", state_dict).keys()
    return any(k.startswith("module.") for k in keys) or "model_weights" in state_dict


def _shift_stack(x: torch.Tensor, step: int) -> torch.Tensor:
    """sum_k shift(x_k, step*k): (N, B, H, W) -> (N, H, W + step*(B-1))."""
    n, b, h, w = x.shape
    y = x.new_zeros(n, h, w + step * (b - 1))
    for k in range(b):
        y[:, :, step * k : step * k + w] += x[:, k]
    return y


def _unshift(y: torch.Tensor, bands: int, step: int) -> torch.Tensor:
    """(N, H, W') -> (N, B, H, W) with band k = y[..., step*k : step*k + W]."""
    w = y.shape[-1] - step * (bands - 1)
    return torch.stack([y[:, :, step * k : step * k + w] for k in range(bands)], dim=1)


class UnfoldedS2Transformer(nn.Module):
    """S2-Transformer stages unrolled inside generalized alternating projection (GAP).

    x_0 = A^T(y / Phi); for each stage k: x <- x + A^T((y - A x) / Phi) (projection onto
    the measurement, skipped for k = 0), then x <- S2_k(x, mask), a compact S2-Transformer
    (parallel spatial/spectral attention, mask-modulated Q/K) used as the stage's prior.
    Phi = diag(A A^T). The physics carries the spectral unmixing, so the learned stages only
    have to remove aliasing artefacts: this trains far faster than the single-pass model.

    With ``init="gap-tv"`` the first estimate is the GAP-TV reconstruction instead of
    A^T(y / Phi) (``gaptv_iters`` iterations, TV weight ``gaptv_weight``), so the stages
    refine the classical decoder's result; training passes precomputed estimates as
    ``init_est`` (GAP-TV is too slow to run in every step).

    forward(x (N, B, H, W), mask (N, 1, H, W), meas (N, H, W + step*(B-1)),
    init_est (N, B, H, W) or None) -> (cube (N, B, H, W), [stage outputs before the last]).
    ``x`` (the single-pass model's input) is not used (it keeps the two models' signatures
    alike); ``meas`` is the measurement on the cube's scale. ``project_output=True`` ends
    with one more projection onto the measurement, so the returned cube reproduces ``meas``
    exactly where the mask is open.
    """

    def __init__(self, in_chans: int = 28, stages: int = 3, embed_dim: int = 32, depth: int = 2,
                 num_heads: int = 4, window_size: int = 8, mlp_ratio: float = 2.0,
                 spe_dim_head: int = 8, step: int = 2, mask_norm: str = "channel",
                 init: str = "adjoint", gaptv_iters: int = 120, gaptv_weight: float = 4.0,
                 project_output: bool = False, aux_head: bool = False):
        super().__init__()
        if init not in ("adjoint", "gap-tv"):
            raise ValueError(f"init must be 'adjoint' or 'gap-tv'; got {init!r}")
        self.bands = in_chans
        self.step = step
        self.init = init
        self.gaptv_iters, self.gaptv_weight = gaptv_iters, gaptv_weight
        self.project_output = project_output
        self.window_size = window_size
        self.size_multiple = window_size
        self.stages = nn.ModuleList([
            S2Transformer(in_chans, embed_dim, (depth,), (num_heads,), window_size, mlp_ratio,
                          spe_dim_head, mask_norm)
            for _ in range(stages)
        ])
        self.aux = None
        if aux_head:
            self.aux = nn.Sequential(
                nn.Conv2d(in_chans + 1, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, in_chans, 3, 1, 1))

    def initial_estimate(self, mask: torch.Tensor, meas: torch.Tensor) -> torch.Tensor:
        """GAP-TV estimate of every measurement: (N, 1, H, W), (N, H, W') -> (N, B, H, W)."""
        from hsirestore.physics.gaptv import gap_tv

        return gap_tv(meas, mask[:, 0], self.bands, self.step, self.gaptv_iters,
                      self.gaptv_weight).to(meas.dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, meas: torch.Tensor | None = None,
                init_est: torch.Tensor | None = None):
        if meas is None:
            raise ValueError("UnfoldedS2Transformer needs the measurement (meas=...)")
        b = self.bands
        m2 = (mask * mask).expand(-1, b, -1, -1)
        phi = _shift_stack(m2, self.step).clamp_min(1e-6)
        if self.init == "gap-tv":
            est = init_est if init_est is not None else self.initial_estimate(mask, meas)
        else:
            est = _unshift(meas / phi, b, self.step) * mask
        outs = []
        for k, stage in enumerate(self.stages):
            if k > 0:
                est = self._project(est, mask, meas, phi)
            est, _ = stage(est, mask)
            outs.append(est)
        if self.project_output:
            est = self._project(est, mask, meas, phi)
        return est, outs[:-1]

    def _project(self, est, mask, meas, phi):
        """GAP step est + A^T((y - A est) / Phi): the nearest cube that fits ``meas``."""
        resid = meas - _shift_stack(est * mask, self.step)
        return est + _unshift(resid / phi, self.bands, self.step) * mask

    def predict_coded(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.aux is None:
            raise RuntimeError("model built without aux_head")
        return self.aux(torch.cat([x, mask], dim=1))


def build_unfolded_s2former(**config) -> UnfoldedS2Transformer:
    return UnfoldedS2Transformer(**config)
