"""Registered model variants (spec only: importing this does not import torch).

Each family appends its variants here with ``register_model(ModelSpec(...))``.
"""
from hsirestore.registry import ModelSpec, register_model  # noqa: F401

# --- S2-Transformer (CASSI) ------------------------------------------------------------
# (filled by the CASSI work)

# --- HSI-VAR (restoration) -------------------------------------------------------------
# (filled by the HSI-VAR work)

# --- MCGA (RGB -> HSI) -----------------------------------------------------------------
# (filled by the MCGA work)
