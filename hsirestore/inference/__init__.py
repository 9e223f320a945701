"""Inference: the predictors, and the device policy, value scaling and tiling they share.

Predictors: :class:`~hsirestore.inference.restore.Restorer` (HSI-VAR restoration),
:class:`~hsirestore.inference.rgb2hsi.RgbToHsi` (MCGA or the baseline, RGB -> 31 bands),
:class:`~hsirestore.inference.cassi.CassiDecoder` (S2-Transformer or GAP-TV CASSI decoding).

Importing this package does not import torch: everything but ``Scaling`` and
``fit_scaling`` is loaded on first use.
"""
from __future__ import annotations

from typing import Any

from hsirestore.inference.normalize import Scaling, fit_scaling

__all__ = [
    "Restorer", "RgbToHsi", "CassiDecoder",
    "Scaling", "fit_scaling", "TiledPredictor", "resolve_device", "autocast_context",
]

_LAZY = {
    "Restorer": "hsirestore.inference.restore",
    "RgbToHsi": "hsirestore.inference.rgb2hsi",
    "CassiDecoder": "hsirestore.inference.cassi",
    "TiledPredictor": "hsirestore.inference.engine",
    "resolve_device": "hsirestore.inference.device",
    "autocast_context": "hsirestore.inference.device",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hsirestore.inference' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
