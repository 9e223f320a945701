"""Device and mixed-precision policy.

``resolve_device("auto")`` picks the first CUDA GPU when one is usable, else the CPU.
Mixed precision (AMP) is used only on CUDA: ``amp="auto"`` means bfloat16 where the GPU
supports it, else float16; on the CPU every AMP setting is a no-op (float32).
"""
from __future__ import annotations

import contextlib
import re
from typing import ContextManager

import torch

from hsirestore.errors import OptionError

__all__ = ["resolve_device", "autocast_context", "amp_dtype", "AMP_CHOICES"]

AMP_CHOICES = ("none", "bf16", "fp16", "auto")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """"auto" | "cpu" | "cuda" | "cuda:N" (or a torch.device) -> torch.device.

    Raises OptionError for an unknown spec, or when CUDA is asked for but not usable.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = (spec or "auto").strip().lower()
    if s == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?", s)
    if not m:
        raise OptionError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise OptionError(f"device {spec!r} requested but CUDA is not available here; use --device cpu")
    index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise OptionError(f"device {spec!r} requested but only {count} CUDA device(s) exist")
    return torch.device("cuda", index)


def amp_dtype(device: torch.device | str, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for this device and setting, or None for full float32."""
    a = (amp or "none").strip().lower()
    if a not in AMP_CHOICES:
        raise OptionError(f"unknown AMP setting {amp!r}; use one of {', '.join(AMP_CHOICES)}")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type != "cuda" or a == "none":
        return None
    if a == "bf16":
        return torch.bfloat16
    if a == "fp16":
        return torch.float16
    with torch.cuda.device(dev):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_context(device: torch.device | str, amp: str = "auto") -> ContextManager:
    """torch.autocast on CUDA with the chosen dtype; a null context on the CPU or amp="none"."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)
