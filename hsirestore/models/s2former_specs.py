"""Registered s2former variants (spec only: no torch import here)."""
from hsirestore.registry import ModelSpec, register_model  # noqa: F401
