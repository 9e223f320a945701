"""Model registry: name -> builder + spec (bands, wavelengths, value range, size multiple).

Builders are referenced as "module:function" strings so that importing the registry does
not import torch or any model code. Builders never touch devices or paths.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from hsirestore.errors import ModelError, UnknownModelError, first_line


@dataclass(frozen=True)
class ModelSpec:
    """What a predictor needs to know about a registered model variant.

    Attributes:
        name: registry name, e.g. "s2former-compact".
        task: "restore", "rgb2hsi" or "cassi".
        builder: "module:function" returning an ``nn.Module`` given ``**config``.
        config: keyword arguments for the builder.
        bands: output band count (None: any).
        wavelengths: output band centres in nm, which the predictors give their outputs
            (None: those of the input).
        size_multiple: spatial sizes the preset's model needs, for checks made before a
            model is built; predictors pad to the built model's ``size_multiple`` (which
            follows the configuration the weights record).
        weights: file name in ``weights/`` of the shipped checkpoint, or None.
        description: one line for ``hsirestore models``.
        reference: the paper(s), shown by ``hsirestore models``.
    """

    name: str
    task: str
    builder: str
    config: dict[str, Any] = field(default_factory=dict)
    bands: int | None = None
    wavelengths: tuple[float, ...] | None = None
    size_multiple: int = 1
    weights: str | None = None
    description: str = ""
    reference: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    # Model families register their variants on import; the import is cheap (no torch at
    # module level in the spec modules).
    for mod in ("hsirestore.models.s2former_specs", "hsirestore.models.hsivar_specs",
                "hsirestore.models.mcga_specs"):
        importlib.import_module(mod)


def list_models(task: str | None = None) -> list[ModelSpec]:
    _load_all()
    return [s for s in _REGISTRY.values() if task is None or s.task == task]


def get_spec(name: str) -> ModelSpec:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownModelError(f"unknown model {name!r}; valid models: {valid}") from None


def build_model(name: str, **overrides: Any):
    """Build an untrained ``nn.Module`` for a registered variant (on the CPU, float32).
    A configuration the model cannot take (an unknown key, inconsistent sizes: e.g. from a
    checkpoint's metadata) is a ModelError naming the variant."""
    spec = get_spec(name)
    module_name, func_name = spec.builder.split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    cfg = dict(spec.config)
    cfg.update(overrides)
    try:
        return builder(**cfg)
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot build {name} with this configuration: {first_line(e)}") from e


def output_wavelengths(recorded, bands: int, fallback=None):
    """Band centres (nm, float64 (bands,)) of a model's ``bands`` outputs: the ``recorded``
    ones (a spec's ``wavelengths``, a baseline file's) when they fit, else ``fallback`` when
    it fits, else None (unknown)."""
    import numpy as np

    for w in (recorded, fallback):
        if w is not None and len(w) == bands:
            return np.array(w, np.float64)
    return None
