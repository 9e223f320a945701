"""Geometric self-ensemble: average a model over flipped copies of its input.

Only the flips that keep the row and column axes are used (identity, left-right, up-down,
both = 180-degree rotation): column-wise degradations (stripes, dead lines) stay column-wise,
as the models saw them in training, which 90-degree rotations would break. Each copy is
restored and flipped back, and the outputs are averaged: 4 model runs per tile.

References: Lim et al., Enhanced Deep Residual Networks for Single Image Super-Resolution
(EDSR), CVPRW 2017 (geometric self-ensemble); Timofte et al., Seven ways to improve
example-based single image super resolution, CVPR 2016.
"""
from __future__ import annotations

from typing import Callable

import torch

#: flip dims of each copy ((): the input itself) for (N, C, h, w) tensors
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def flip_ensemble(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """fn: (N, C, h, w) -> (N, C', h, w); returns the same mapping averaged over :data:`FLIPS`
    (accumulated in float32, returned in the output's dtype)."""

    def averaged(x: torch.Tensor) -> torch.Tensor:
        acc = None
        for dims in FLIPS:
            y = fn(torch.flip(x, dims) if dims else x)
            y = torch.flip(y, dims) if dims else y
            acc = y.float() if acc is None else acc + y.float()
        return (acc / len(FLIPS)).to(y.dtype)

    return averaged
