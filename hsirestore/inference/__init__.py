"""Inference: device policy, tiling maths, value normalisation and the tiled predictor.

Importing this package does not import torch; ``TiledPredictor``, ``resolve_device`` and
``autocast_context`` are loaded on first use.
"""
from __future__ import annotations

from typing import Any

from hsirestore.inference.normalize import Scaling, cast_to_dtype, fit_scaling
from hsirestore.inference.tiling import blend_window, pad_to_multiple, tile_grid

__all__ = [
    "Scaling", "fit_scaling", "cast_to_dtype", "tile_grid", "blend_window", "pad_to_multiple",
    "TiledPredictor", "resolve_device", "autocast_context",
]

_LAZY = {
    "TiledPredictor": "hsirestore.inference.engine",
    "resolve_device": "hsirestore.inference.device",
    "autocast_context": "hsirestore.inference.device",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hsirestore.inference' has no attribute {name!r}")
