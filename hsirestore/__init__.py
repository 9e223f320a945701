"""hsirestore: restore hyperspectral images with learned models.

The public API, importable from here (loaded on first use: ``import hsirestore`` does not
import torch):

* predictors: :class:`Restorer` (HSI-VAR restoration), :class:`RgbToHsi` (RGB -> 31 bands),
  :class:`CassiDecoder` (CASSI snapshots -> cube), from :mod:`hsirestore.inference`;
* cube I/O: :class:`Cube`, :func:`read_cube`, :func:`write_cube`, :func:`open_cube`,
  :func:`create_cube`, from :mod:`hsirestore.io`;
* :func:`compute_metrics` (:mod:`hsirestore.metrics`), :func:`parse_degradation`
  (:mod:`hsirestore.physics.degradations`);
* the model registry: :func:`list_models`, :func:`get_spec`, :func:`build_model`
  (:mod:`hsirestore.registry`).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Restorer": "hsirestore.inference.restore",
    "RgbToHsi": "hsirestore.inference.rgb2hsi",
    "CassiDecoder": "hsirestore.inference.cassi",
    "Cube": "hsirestore.io",
    "read_cube": "hsirestore.io",
    "write_cube": "hsirestore.io",
    "open_cube": "hsirestore.io",
    "create_cube": "hsirestore.io",
    "compute_metrics": "hsirestore.metrics",
    "parse_degradation": "hsirestore.physics.degradations",
    "list_models": "hsirestore.registry",
    "get_spec": "hsirestore.registry",
    "build_model": "hsirestore.registry",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hsirestore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
