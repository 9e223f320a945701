"""Registered MCGA variants (spec only: no torch import here).

All take linear RGB (3, H, W) in [0, 1] and give 31 bands at 400..700 nm (step 10).
``sources`` is the number of codebook sets in the Mixture of Codebooks (here: CAVE and a
synthetic colour-science reflectance source; see hsirestore.training.mcga).
"""
from hsirestore.registry import ModelSpec, register_model

_REF = ("Yang, Sun, Dong, An, Liu, Li, MCGA: Mixture of Codebooks Hyperspectral Reconstruction "
        "via Grayscale-Aware Attention, arXiv 2025 (implemented from the paper)")
_WL = tuple(float(w) for w in range(400, 701, 10))

register_model(ModelSpec(
    name="mcga",
    task="rgb2hsi",
    builder="hsirestore.models.mcga:build_mcga",
    config=dict(bands=31, dim=128, scales=2, codebook_size=512, sources=2, beta=0.25,
                dec_hidden=56, base=16, blocks=2, top_k=256),
    bands=31, wavelengths=_WL, size_multiple=8, weights=None,
    description="published size (S=2, codebooks 512x64 and 512x32 per source, about 0.79 M "
                "parameters); no shipped weights",
    reference=_REF,
))

register_model(ModelSpec(
    name="mcga-compact",
    task="rgb2hsi",
    builder="hsirestore.models.mcga:build_mcga",
    config=dict(bands=31, dim=64, scales=2, codebook_size=512, sources=2, beta=0.25,
                dec_hidden=48, base=16, blocks=1, top_k=256),
    bands=31, wavelengths=_WL, size_multiple=8, weights="mcga-compact.safetensors",
    description="compact preset trained on CAVE and colour-science spectra on 2 CPU cores "
                "(0.29 M parameters; shipped weights)",
    reference=_REF,
))

register_model(ModelSpec(
    name="mcga-tiny",
    task="rgb2hsi",
    builder="hsirestore.models.mcga:build_mcga",
    config=dict(bands=31, dim=16, scales=2, codebook_size=32, sources=2, beta=0.25,
                dec_hidden=16, base=8, blocks=1, top_k=16),
    bands=31, wavelengths=_WL, size_multiple=8, weights=None,
    description="test configuration (untrained)",
    reference=_REF,
))
