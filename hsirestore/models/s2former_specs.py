"""Registered S2-Transformer variants (spec only: no torch import here)."""
from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28
from hsirestore.registry import ModelSpec, register_model

_REF = "Wang et al., S2-Transformer for Mask-Aware HSI Reconstruction, TPAMI 2025 (arXiv:2209.12075)"

register_model(ModelSpec(
    name="s2former",
    task="cassi",
    builder="hsirestore.models.s2former:build_s2former",
    config=dict(in_chans=28, embed_dim=60, depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6),
                window_size=8, mlp_ratio=4.0, spe_dim_head=10, mask_norm="width"),
    bands=28, wavelengths=CASSI_WAVELENGTHS_28, size_multiple=8, weights=None,
    description="published configuration (3.4 M parameters in use); use --weights with the "
                "authors' model_epoch_255.pth",
    reference=_REF,
))

register_model(ModelSpec(
    name="s2former-compact",
    task="cassi",
    builder="hsirestore.models.s2former:build_s2former",
    config=dict(in_chans=28, embed_dim=40, depths=(2, 2), num_heads=(4, 4), window_size=8,
                mlp_ratio=2.0, spe_dim_head=10, mask_norm="channel"),
    bands=28, wavelengths=CASSI_WAVELENGTHS_28, size_multiple=8,
    weights="s2former-compact.safetensors",
    description="compact preset trained on CAVE (shipped weights)",
    reference=_REF,
))

register_model(ModelSpec(
    name="s2former-tiny",
    task="cassi",
    builder="hsirestore.models.s2former:build_s2former",
    config=dict(in_chans=28, embed_dim=20, depths=(1,), num_heads=(2,), window_size=8,
                mlp_ratio=1.0, spe_dim_head=10, mask_norm="channel"),
    bands=28, wavelengths=CASSI_WAVELENGTHS_28, size_multiple=8, weights=None,
    description="test configuration (untrained)",
    reference=_REF,
))

register_model(ModelSpec(
    name="s2former-unfolded",
    task="cassi",
    builder="hsirestore.models.s2former:build_unfolded_s2former",
    config=dict(in_chans=28, stages=3, embed_dim=32, depth=2, num_heads=4, window_size=8,
                mlp_ratio=2.0, spe_dim_head=8, step=2, mask_norm="channel"),
    bands=28, wavelengths=CASSI_WAVELENGTHS_28, size_multiple=8,
    weights="s2former-unfolded.safetensors",
    description="compact S2-Transformer stages unrolled in GAP (shipped weights)",
    reference=_REF,
))

register_model(ModelSpec(
    name="s2former-gaptv",
    task="cassi",
    builder="hsirestore.models.s2former:build_unfolded_s2former",
    config=dict(in_chans=28, stages=3, embed_dim=32, depth=2, num_heads=4, window_size=8,
                mlp_ratio=2.0, spe_dim_head=8, step=2, mask_norm="channel", init="gap-tv",
                gaptv_iters=120, gaptv_weight=4.0, project_output=True),
    bands=28, wavelengths=CASSI_WAVELENGTHS_28, size_multiple=8,
    weights="s2former-gaptv.safetensors",
    description="the unfolded stages refining a GAP-TV estimate, ending with a projection onto "
                "the measurement (slower: GAP-TV runs first)",
    reference=_REF + "; X. Yuan, GAP-TV, ICIP 2016",
))
