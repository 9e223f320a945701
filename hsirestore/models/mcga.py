"""MCGA: Mixture of Codebooks RGB -> HSI reconstruction with Grayscale-Aware attention.

Two parts in one module (:class:`MCGA`):

* ``vq`` (stage 1, :class:`MultiScaleVQ`): a multi-scale VQ-VAE on HSI (B bands).
  Encoder: 3x3 conv to ``dim`` channels (f); for scale i = 1..S, H_i^d = conv3x3(avgpool_{2^i}(f))
  with c_i = dim / 2^i channels at 1/2^i resolution, quantised against codebook B_i
  (``codebook_size`` x c_i), upsampled and refined (phi_i, 3x3 conv) into the next f
  (Algorithm 1). Decoder (Algorithm 2): for i = S..1, R_i = up(conv1x1([H_i, Q(H_i)])), all
  concatenated, then phi (conv-GELU-conv) -> B bands. One codebook set per training source;
  their concatenation along the entry axis is the Mixture of Codebooks (MoC).
* ``ganet`` (stage 2, :class:`GANet`): a U-Net on RGB producing, for each scale i, features
  of shape (c_i, H/2^i, W/2^i); each is replaced by its nearest MoC entry (straight-through),
  fused with the continuous feature by a 1x1 conv and refined by a GABlock (GA quantised
  self-attention over the top-K most used MoC entries + GA feed-forward). The stage-1
  decoder (frozen) turns them into the cube.

Grayscale-aware (GA) ops on inputs squashed to [0, 1] by a sigmoid (pointwise, so tiling does
not change results): a = softmax(W avgpool(X) + b) (C,), GA_gamma(X) = X^a,
GA_log(X) = (1 + 4a) log(1 + X).

Tensors: RGB (N, 3, H, W) linear in [0, 1] -> HSI (N, 31, H, W); H, W multiples of
``model.size_multiple`` (2^(S+1), 8 for S = 2; predictors pad).

References: Z. Yang, L. Sun, J. Dong, X. An, Y. Liu, M. Li, "MCGA: Mixture of Codebooks
Hyperspectral Reconstruction via Grayscale-Aware Attention", arXiv 2025
(github.com/Fibonaccirabbit/MCGA; no code released - implemented from the paper).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CHARBONNIER_EPS = 1e-6


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """mean sqrt((x - y)^2 + eps)."""
    return torch.sqrt((x - y) ** 2 + eps).mean()


def _pairwise_sqdist(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """z (N, C), codebook (M, C) -> squared distances (N, M)."""
    return (z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.t()
            + codebook.pow(2).sum(1)[None]).clamp_min(0)


def quantize(z: torch.Tensor, codebook: torch.Tensor):
    """Nearest-entry quantisation of a feature map.

    z (N, C, h, w), codebook (M, C) -> (q (N, C, h, w) straight-through, indices (N, h*w),
    distances (N, h*w, M)).
    """
    n, c, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, c)
    d = _pairwise_sqdist(flat, codebook)
    idx = d.argmin(1)
    q = codebook[idx].view(n, h, w, c).permute(0, 3, 1, 2)
    return q, idx.view(n, h * w), d.view(n, h * w, -1)


def vq_losses(z: torch.Tensor, q: torch.Tensor, beta: float) -> torch.Tensor:
    """embed + beta * commit as written in the paper (Eqs. 3-4):
    ||sg[q] - z||^2 + beta * ||q - sg[z]||^2."""
    return F.mse_loss(z, q.detach()) + beta * F.mse_loss(q, z.detach())


def straight_through(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return z + (q - z).detach()


def query_entropy(d: torch.Tensor) -> torch.Tensor:
    """Mean entropy of softmax(-d) over the entries (last axis); d: squared distances."""
    logp = F.log_softmax(-d, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


# ---------------------------------------------------------------------- stage 1
class MultiScaleVQ(nn.Module):
    """Multi-scale VQ-VAE on HSI with one codebook set per source (Mixture of Codebooks).

    forward(x (N, B, H, W), source int, mask_bands bool) -> (recon (N, B, H, W), vq_loss).
    """

    def __init__(self, bands: int = 31, dim: int = 128, scales: int = 2,
                 codebook_size: int = 512, sources: int = 2, beta: float = 0.25,
                 dec_hidden: int = 64):
        super().__init__()
        if dim % (2 ** scales):
            raise ValueError(f"dim {dim} must be divisible by 2^scales")
        self.bands, self.dim, self.scales, self.beta = bands, dim, scales, beta
        self.codebook_size, self.sources = codebook_size, sources
        self.dims = [dim // 2 ** i for i in range(1, scales + 1)]
        # about half the bands are masked: keep 2^floor(log2 B) (31 -> 16 kept, 15 masked)
        self.masked_bands = bands - 2 ** int(math.floor(math.log2(bands)))
        self.embed = nn.Conv2d(bands, dim, 3, padding=1)
        prev = [dim] + self.dims[:-1]
        self.down = nn.ModuleList(nn.Conv2d(p, c, 3, padding=1) for p, c in zip(prev, self.dims))
        self.phi = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in self.dims)
        # codebooks[s][i]: source s, scale i; N(0, I) initialisation as in the paper
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.randn(codebook_size, c)) for _ in range(sources) for c in self.dims)
        self.dec_proj = nn.ModuleList(nn.Conv2d(2 * c, c, 1) for c in self.dims)
        self.last_indices: dict = {}  # scale -> (N, h*w) entries used by the last encode()
        self.last_features: dict = {}  # scale -> last H_i^d (for dead-entry restarts)
        self.dec_phi = nn.Sequential(
            nn.Conv2d(sum(self.dims), dec_hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(dec_hidden, dec_hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(dec_hidden, bands, 3, padding=1))

    def codebook(self, source: int, scale: int) -> torch.Tensor:
        """Codebook of one source at scale index 0..S-1: (codebook_size, c_i)."""
        return self.codebooks[source * self.scales + scale]

    def moc(self, scale: int) -> torch.Tensor:
        """Mixture of Codebooks at a scale: (sources * codebook_size, c_i)."""
        return torch.cat([self.codebook(s, scale) for s in range(self.sources)])

    @torch.no_grad()
    def restart_entries(self, source: int, scale: int, dead: torch.Tensor) -> int:
        """Re-initialise the ``dead`` (bool (M,)) entries of one codebook with random
        features of the last encoded batch (plus small noise). Returns how many."""
        feats = self.last_features.get(scale)
        n = int(dead.sum())
        if feats is None or n == 0:
            return 0
        flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        pick = flat[torch.randint(0, flat.shape[0], (n,), device=flat.device)]
        cb = self.codebook(source, scale)
        dead = dead.to(cb.device)
        cb[dead] = pick + 0.01 * pick.std() * torch.randn_like(pick)
        return n

    def random_band_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Zero ``bands - 2^floor(log2(bands))`` random bands per sample (training)."""
        n, b = x.shape[:2]
        keep = torch.ones(n, b, device=x.device, dtype=x.dtype)
        order = torch.rand(n, b, device=x.device).argsort(1)[:, : self.masked_bands]
        keep.scatter_(1, order, 0.0)
        return x * keep[:, :, None, None]

    def encode(self, x: torch.Tensor, source: int, mask_bands: bool = False):
        """x -> (list of H_i^d, vq loss L1). H_i^d: (N, c_i, H/2^i, W/2^i)."""
        if mask_bands:
            x = self.random_band_mask(x)
        f = self.embed(x)
        feats, loss = [], x.new_zeros(())
        size = x.shape[-2:]
        for i in range(self.scales):
            hd = self.down[i](F.avg_pool2d(f, 2 ** (i + 1)))
            feats.append(hd)
            q, idx, _ = quantize(hd, self.codebook(source, i))
            self.last_indices[i] = idx.detach()
            self.last_features[i] = hd.detach()
            loss = loss + vq_losses(hd, q, self.beta)
            q = F.interpolate(straight_through(hd, q), size=size, mode="bilinear", align_corners=False)
            f = self.phi[i](q)
        return feats, loss

    def decode(self, feats, codebooks=None):
        """Algorithm 2. feats: list of (N, c_i, H/2^i, W/2^i); codebooks: one per scale
        (default the MoC). Returns (cube (N, B, H, W), vq loss L2, list of distances)."""
        size = (feats[0].shape[-2] * 2, feats[0].shape[-1] * 2)
        parts, loss, dists = [], feats[0].new_zeros(()), []
        for i in reversed(range(self.scales)):
            h = feats[i]
            cb = self.moc(i) if codebooks is None else codebooks[i]
            q, _, d = quantize(h, cb)
            dists.append(d)
            loss = loss + vq_losses(h, q, self.beta)
            r = self.dec_proj[i](torch.cat([h, straight_through(h, q)], 1))
            parts.append(F.interpolate(r, size=size, mode="bilinear", align_corners=False))
        return self.dec_phi(torch.cat(parts, 1)), loss, dists

    def forward(self, x: torch.Tensor, source: int = 0, mask_bands: bool = False):
        feats, l1 = self.encode(x, source, mask_bands)
        rec, l2, _ = self.decode(feats, [self.codebook(source, i) for i in range(self.scales)])
        return rec, l1 + l2


# ---------------------------------------------------------------------- stage 2
class GrayscaleAware(nn.Module):
    """a = softmax(W avgpool(X) + b); gamma(X) = X^a; log(X) = (1 + 4a) log(1 + X).

    X is squashed to [0, 1] by a sigmoid (clamped to [1e-4, 1] for X^a)."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(x.mean((-2, -1))), dim=-1)[:, :, None, None]

    def gamma(self, x: torch.Tensor) -> torch.Tensor:
        xs = torch.sigmoid(x).clamp(1e-4, 1.0)
        return xs ** self.weights(x)

    def log(self, x: torch.Tensor) -> torch.Tensor:
        return (1 + 4 * self.weights(x)) * torch.log1p(torch.sigmoid(x))


class LayerNorm2d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, c)

    def forward(self, x):
        return self.norm(x)


class GQA(nn.Module):
    """GA quantised self-attention (channel attention, O(C^2 K)).

    Q, K, V = 1x1 conv(X). Each pixel of Q (and K) is assigned to its nearest MoC entry; the
    K most used entries (per image) are kept and each is represented by the mean of the
    pixels assigned to it (Q_hat, K_hat: (C, K)); A = softmax(GA_log(Q_hat) K_hat^T / sqrt(C))
    (C x C); out = 1x1 conv(A V). The output conv is zero-initialised (identity block at init).
    """

    def __init__(self, c: int, top_k: int = 256):
        super().__init__()
        self.top_k = top_k
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.ga = GrayscaleAware(c)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def _topk_means(self, z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """z (N, C, h, w) -> (N, C, K') cluster means of the K' = min(K, M) most used entries."""
        n, c, h, w = z.shape
        with torch.no_grad():
            _, idx, _ = quantize(z.detach(), codebook)  # (N, hw)
        m = codebook.shape[0]
        flat = z.flatten(2).transpose(1, 2)  # (N, hw, C)
        counts = torch.zeros(n, m, device=z.device, dtype=z.dtype).scatter_add_(
            1, idx, torch.ones_like(idx, dtype=z.dtype))
        sums = torch.zeros(n, m, c, device=z.device, dtype=z.dtype).scatter_add(
            1, idx[:, :, None].expand(-1, -1, c), flat)
        k = min(self.top_k, m)
        top = counts.topk(k, dim=1).indices  # (N, K)
        sel_sum = sums.gather(1, top[:, :, None].expand(-1, -1, c))
        sel_cnt = counts.gather(1, top).clamp_min(1.0)
        return (sel_sum / sel_cnt[:, :, None]).transpose(1, 2)  # (N, C, K)

    def forward(self, x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).chunk(3, 1)
        qh = self._topk_means(q, codebook)  # (N, C, K)
        kh = self._topk_means(k, codebook)
        qt = self.ga.log(qh[..., None]).squeeze(-1)  # GA_log over the (C, K) entries
        attn = torch.softmax(qt @ kh.transpose(1, 2) / math.sqrt(c), dim=-1)  # (N, C, C)
        out = (attn @ v.flatten(2)).view(n, c, h, w)
        return self.proj(out)


class GAFFN(nn.Module):
    """GA feed-forward: s = GELU(conv3x3(conv1x1(X))) (2C); X1, X2 = split(s);
    out = GELU(conv1x1([GA_gamma(X1), GA_log(X2), s])) (C); last conv zero-initialised."""

    def __init__(self, c: int):
        super().__init__()
        self.pw = nn.Conv2d(c, c, 1)
        self.conv = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.ga_gamma = GrayscaleAware(c)
        self.ga_log = GrayscaleAware(c)
        self.out = nn.Conv2d(4 * c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        s = F.gelu(self.conv(self.pw(x)))
        x1, x2 = s.chunk(2, 1)
        return F.gelu(self.out(torch.cat([self.ga_gamma.gamma(x1), self.ga_log.log(x2), s], 1)))


class GABlock(nn.Module):
    def __init__(self, c: int, top_k: int = 256):
        super().__init__()
        self.n1, self.n2 = LayerNorm2d(c), LayerNorm2d(c)
        self.attn = GQA(c, top_k)
        self.ffn = GAFFN(c)

    def forward(self, x, codebook):
        x = x + self.attn(self.n1(x), codebook)
        return x + self.ffn(self.n2(x))


class GANet(nn.Module):
    """U-Net on RGB -> per-scale features matching the stage-1 latents.

    forward(rgb (N, 3, H, W), mocs [MoC_i]) -> (feats [(N, c_i, H/2^i, W/2^i)], distances).
    Encoder: conv3x3(3 -> base) + GABlocks at full resolution, then stride-2 convs doubling
    the channels down to 1/2^S. Decoder, coarse to fine: project to c_i, query MoC_i
    (nearest entry, straight-through), fuse [feature, entry] by a 1x1 conv, GABlocks, then
    upsample x2 (+ the encoder skip) for the next scale.
    """

    def __init__(self, dims: list[int], base: int = 16, blocks: int = 1, top_k: int = 256):
        super().__init__()
        self.scales = len(dims)
        self.dims = dims
        enc_ch = [base * 2 ** i for i in range(self.scales + 1)]  # full res, 1/2, ..., 1/2^S
        self.stem = nn.Conv2d(3, base, 3, padding=1)
        self.downs = nn.ModuleList(nn.Conv2d(enc_ch[i], enc_ch[i + 1], 4, stride=2, padding=1)
                                   for i in range(self.scales))
        self.enc_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU()) for c in enc_ch[1:])
        # decoder, index i = stage-1 scale (0: 1/2 ... S-1: 1/2^S)
        self.proj = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(self.scales):
            c = dims[i]
            in_c = enc_ch[i + 1] + (dims[i + 1] if i + 1 < self.scales else 0)
            self.proj.append(nn.Conv2d(in_c, c, 1))
            self.fuse.append(nn.Conv2d(2 * c, c, 1))
            self.blocks.append(nn.ModuleList(GABlock(c, top_k) for _ in range(blocks)))
            if i > 0:
                self.ups.append(nn.ConvTranspose2d(c, c, 2, stride=2))

    def forward(self, rgb: torch.Tensor, mocs):
        x = F.gelu(self.stem(rgb))
        skips = []
        for down, blk in zip(self.downs, self.enc_blocks):
            x = down(x)
            x = x + blk(x)
            skips.append(x)
        feats: list = [None] * self.scales
        dists = []
        prev = None
        for i in reversed(range(self.scales)):
            inp = skips[i] if prev is None else torch.cat([skips[i], self.ups[i](prev)], 1)
            z = self.proj[i](inp)
            q, _, d = quantize(z, mocs[i])
            dists.append(d)
            h = self.fuse[i](torch.cat([z, straight_through(z, q)], 1))
            for b in self.blocks[i]:
                h = b(h, mocs[i])
            feats[i] = h
            prev = h
        return feats, dists


class MCGA(nn.Module):
    """Stage 1 (``vq``) + stage 2 (``ganet``). ``forward(rgb (N,3,H,W)) -> (N, bands, H, W)``.

    Stage 1 trains ``vq`` alone (``vq(hsi, source, mask_bands)``); stage 2 freezes the MoC and
    the stage-1 decoder (``freeze_stage1``) and trains GANet with ``stage2_loss(rgb, hsi)``.
    """

    def __init__(self, bands: int = 31, dim: int = 128, scales: int = 2, codebook_size: int = 512,
                 sources: int = 2, beta: float = 0.25, dec_hidden: int = 64, base: int = 16,
                 blocks: int = 1, top_k: int = 256):
        super().__init__()
        self.bands, self.scales = bands, scales
        self.size_multiple = 2 ** (scales + 1)
        self.vq = MultiScaleVQ(bands, dim, scales, codebook_size, sources, beta, dec_hidden)
        self.ganet = GANet(self.vq.dims, base, blocks, top_k)

    def mocs(self):
        return [self.vq.moc(i) for i in range(self.scales)]

    def freeze_stage1(self) -> None:
        for p in self.vq.parameters():
            p.requires_grad_(False)

    def stage2_parameters(self):
        return self.ganet.parameters()

    def ga_parameters(self):
        """The grayscale-aware attention parameters (the only ones TTA updates)."""
        for m in self.ganet.modules():
            if isinstance(m, GrayscaleAware):
                yield from m.parameters()

    def _run(self, rgb):
        mocs = [m.detach() for m in self.mocs()]
        feats, dists = self.ganet(rgb, mocs)
        out, vq, ddec = self.vq.decode(feats, mocs)
        return out, dists + ddec, vq

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self._run(rgb)[0]

    def query_entropy(self, rgb: torch.Tensor) -> torch.Tensor:
        """TTA objective: mean entropy of the MoC query probabilities softmax(-distance)
        at every quantised location (GANet queries and the decoder's queries)."""
        _, dists, _ = self._run(rgb)
        return sum(query_entropy(d) for d in dists) / len(dists)

    def stage2_loss(self, rgb, hsi):
        """Charbonnier(out, hsi) + beta * L2 (Algorithm 2's embed/commit terms on the GANet
        features; with the MoC frozen they pull the features towards their entries, which
        keeps them in the range the frozen decoder was trained on)."""
        out, _, vq = self._run(rgb)
        return charbonnier(out, hsi) + self.vq.beta * vq


def build_mcga(**cfg) -> MCGA:
    return MCGA(**cfg)


def count_parameters(model: nn.Module, stage: int | None = None) -> int:
    """Parameters of the whole model, of stage 1 (vq) or of stage 2 (ganet)."""
    mod = model if stage is None else (model.vq if stage == 1 else model.ganet)
    return sum(p.numel() for p in mod.parameters())
