"""Registered HSI-VAR variants (spec only: no torch import here).

All take 31-band cubes normalised to about [0, 1] (other band counts are handled by the
predictor with overlapping 31-band groups, see hsirestore.inference.restore); the output
keeps the input's bands, so no spec sets ``wavelengths``.
``scales`` are token-map sides at the reference latent side ``scales[-1]`` (a training patch
of ``scales[-1] * down`` pixels); other tile sizes scale them proportionally.

* "hsivar": published-scale choice (the paper gives no sizes we could check): VAR-d16-like
  transformer (width 1024, depth 16, 16 heads), codebook 4096 x 32, the VAR 10-scale schedule,
  a 128-wide encoder/decoder with x8 downsampling. For GPUs; no shipped weights.
* "hsivar-compact": trains on 2 CPU cores in a few hours (64 px patches, x4 downsampling,
  codebook 512 x 16, 8 scales, transformer 4 x 128).
* "hsivar-tiny": test configuration.

``residual=True`` (output = degraded cube + decoder output, see HSIVAR) is available as a
model override; no preset uses it (warm-starting the shipped weights with it, the decoder's
output conv zeroed, had not started to denoise after 1000 CPU steps).
"""
from hsirestore.registry import ModelSpec, register_model

_REF = ("Wang, Sun, Liu, Zeng, Chen, Su, Liu, HSI-VAR: Rethinking Hyperspectral Restoration "
        "through Spatial-Spectral Visual Autoregression, arXiv:2602.00749 (implemented from the paper)")

register_model(ModelSpec(
    name="hsivar",
    task="restore",
    builder="hsirestore.models.hsivar:build_hsivar",
    config=dict(bands=31, width=128, mults=(1, 1, 2, 4), blocks=2, latent_dim=32,
                codebook_size=4096, scales=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), beta=0.25,
                dec_heads=8, tf_width=1024, tf_depth=16, tf_heads=16, mlp_ratio=4.0,
                deg_dim=64, num_types=12),
    bands=31, size_multiple=8, weights=None,
    description="published-scale configuration (GPU; about 0.25 G parameters); no shipped weights",
    reference=_REF,
))

register_model(ModelSpec(
    name="hsivar-compact",
    task="restore",
    builder="hsirestore.models.hsivar:build_hsivar",
    config=dict(bands=31, width=32, mults=(1, 2, 2), blocks=1, latent_dim=16,
                codebook_size=512, scales=(1, 2, 3, 4, 6, 8, 12, 16), beta=0.25,
                dec_heads=2, tf_width=128, tf_depth=4, tf_heads=4, mlp_ratio=4.0,
                deg_dim=32, num_types=12),
    bands=31, size_multiple=4, weights="hsivar-compact.safetensors",
    description="compact preset trained on CAVE on 2 CPU cores (1.7 M parameters; shipped weights)",
    reference=_REF,
))

register_model(ModelSpec(
    name="hsivar-tiny",
    task="restore",
    builder="hsirestore.models.hsivar:build_hsivar",
    config=dict(bands=31, width=8, mults=(1, 2, 2), blocks=1, latent_dim=8,
                codebook_size=32, scales=(1, 2, 4), beta=0.25, dec_heads=1, tf_width=32,
                tf_depth=1, tf_heads=2, mlp_ratio=2.0, deg_dim=8, num_types=12),
    bands=31, size_multiple=4, weights=None,
    description="test configuration (untrained)",
    reference=_REF,
))
