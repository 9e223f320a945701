"""Tiled, blended, memory-bounded inference for any per-pixel-aligned model.

``TiledPredictor(fn)`` runs ``fn``: float32 tensor (N, C, h, w) on the device ->
(N, C_out, h, w) over overlapping tiles (see :mod:`hsirestore.inference.tiling`), blends
them with raised-cosine weights and returns/writes the result.

Streaming (``predict_stream``): tiles are read window by window from a CubeSource in raster
order, run in batches, and each tile's finished region (the part no later tile touches) is
written to the CubeSink at once. The state kept between tiles is a carry of the overlap rows
below the current tile row (C_out x overlap x cols, float64) and of the overlap columns
right of the current tile (C_out x tile x overlap); memory is therefore bounded by one band of
tiles, not by the cube: about batch_size x C x tile^2 x 4 bytes (the tile batch and the model
output) + C_out x tile^2 x 12 (one float64 tile being blended) + C_out x overlap x cols x 8 (the
carry). Accumulating in float64 makes an identity model reproduce its input bit for bit.

Invalid pixels (non-finite in any band, every band equal to the source's nodata value, or
False in an explicit ``valid`` mask) are filled before the model sees them with the per-band
mean of the valid pixels (estimated on a strided subsample, in model units), and are set to
NaN in the output when ``mark_invalid`` is true (writers turn NaN into the file's nodata).
Single values equal to nodata in otherwise valid pixels (a dead band, say) are interpolated
from the pixel's neighbouring bands before the model, and come out restored.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from hsirestore.errors import OptionError, ShapeError
from hsirestore.inference.device import autocast_context, resolve_device, amp_dtype
from hsirestore.inference.normalize import (Scaling, band_means, fill_missing_entries,
                                            invalid_mask, missing_entries)
from hsirestore.inference.tiling import (
    _pair, axis_profiles, pad_to_multiple, reflect_pad,
)
from hsirestore.io.cube import Cube, CubeSink, CubeSource

__all__ = ["TiledPredictor"]

TensorFn = Callable[[torch.Tensor], torch.Tensor]


class _ArrayWindowSource:
    def __init__(self, data: np.ndarray, valid: np.ndarray | None):
        self.data = data
        self.valid = valid
        self.shape = tuple(int(s) for s in data.shape)

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.data[:, r0:r1, c0:c1]

    def close(self) -> None:
        pass


class TiledPredictor:
    """Run ``fn`` over a cube in overlapping tiles.

    Args:
        fn: tensor (N, C, h, w) float32 on ``device`` -> tensor (N, C_out, h, w).
        tile: tile size (int or (h, w)); tiles are clipped to the image; None runs the
            whole image as one tile.
        overlap: overlap between neighbouring tiles (int or (h, w)), < tile.
        multiple: tiles are reflect-padded at the bottom/right to a multiple of this
            (int or (h, w)) before ``fn`` and cropped back afterwards.
        batch_size: tiles per call of ``fn``.
        device: "auto" | "cpu" | "cuda" | "cuda:N".
        amp: "none" | "bf16" | "fp16" | "auto" (CUDA only; no-op on the CPU).
        out_channels: expected C_out (checked), or None to take it from the model.
        progress: show a rich progress bar over the tiles.
        channels_last: hand ``fn`` channels-last tensors.
        mark_invalid: write NaN where the input pixel was invalid.
        enable_grad: run ``fn`` with autograd enabled (e.g. per-tile test-time adaptation);
            by default it runs under ``torch.inference_mode()``.
    """

    def __init__(self, fn: TensorFn, *, tile: int | tuple[int, int] | None = 256,
                 overlap: int | tuple[int, int] = 32, multiple: int | tuple[int, int] = 1,
                 batch_size: int = 4, device: str | torch.device = "auto", amp: str = "auto",
                 out_channels: int | None = None, progress: bool = False,
                 channels_last: bool = False, mark_invalid: bool = True,
                 enable_grad: bool = False):
        self.fn = fn
        self.tile = _pair(1 << 30 if tile is None else tile, "tile")
        self.overlap = (0, 0) if tile is None else _pair(overlap, "overlap")
        self.multiple = _pair(multiple, "multiple")
        for t, o in zip(self.tile, self.overlap):
            if t < 1:
                raise OptionError(f"tile size must be at least 1; got {tile!r}")
            if not 0 <= o < t:
                raise OptionError(f"tile overlap must be >= 0 and < the tile size; got overlap "
                                  f"{overlap!r} for tile {tile!r}")
        if min(self.multiple) < 1:
            raise OptionError(f"size multiple must be >= 1; got {multiple!r}")
        if int(batch_size) < 1:
            raise OptionError(f"batch size must be at least 1; got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        amp_dtype(self.device, amp)  # validates the setting
        self.amp = amp
        self.out_channels = out_channels
        self.progress = progress
        self.channels_last = channels_last
        self.mark_invalid = mark_invalid
        self.enable_grad = enable_grad

    # ------------------------------------------------------------------ public API
    def predict_array(self, x: np.ndarray | Cube, *, normalizer: Scaling | None = None,
                      valid: np.ndarray | None = None) -> np.ndarray:
        """(C, H, W) array (or Cube, whose ``valid`` mask and ``nodata`` are used) -> float32
        (C_out, H, W)."""
        nodata = None
        if isinstance(x, Cube):
            valid = x.valid if valid is None else valid
            nodata = x.nodata
            x = x.data
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise ShapeError(f"expected a (bands, rows, cols) array; got shape {x.shape}")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if valid is not None:
            valid = np.asarray(valid, bool)
            if valid.shape != x.shape[1:]:
                raise ShapeError(f"valid mask shape {valid.shape} != image shape {x.shape[1:]}")
        src = _ArrayWindowSource(x, valid)
        sink = _LazyArraySink(x.shape[1:])
        self._run(src, sink, normalizer, valid, nodata=nodata)
        return sink.data

    def predict_stream(self, source: CubeSource, sink: CubeSink, *,
                       normalizer: Scaling | None = None,
                       valid: np.ndarray | None = None) -> None:
        """Read ``source`` tile by tile, write the blended result into ``sink``.

        ``sink.shape`` must be (C_out, rows, cols). Invalid input pixels: non-finite values,
        ``source.meta.nodata``, and False in ``valid`` (bool (rows, cols), default
        ``source.meta.valid`` when that has the full image shape). The caller commits or
        aborts the sink.
        """
        meta = getattr(source, "meta", None)
        nodata = getattr(meta, "nodata", None)
        rows, cols = (int(s) for s in source.shape[1:])
        if valid is None:
            mv = getattr(meta, "valid", None)
            valid = mv if mv is not None and tuple(np.shape(mv)) == (rows, cols) else None
        if valid is not None:
            valid = np.asarray(valid, bool)
            if valid.shape != (rows, cols):
                raise ShapeError(f"valid mask shape {valid.shape} != image shape {(rows, cols)}")
        self._run(source, sink, normalizer, valid, nodata=nodata)

    # ------------------------------------------------------------------ internals
    def _run(self, source: Any, sink: Any, normalizer: Scaling | None,
             valid: np.ndarray | None, nodata: float | None) -> None:
        bands, rows, cols = (int(s) for s in source.shape)
        scaling = normalizer or Scaling()
        rprof = axis_profiles(rows, self.tile[0], self.overlap[0])
        cprof = axis_profiles(cols, self.tile[1], self.overlap[1])
        acc = _Accumulator(rprof, cprof, rows, cols)
        th, tw = rprof[0][1] - rprof[0][0], cprof[0][1] - cprof[0][0]
        pads = pad_to_multiple((th, tw), self.multiple)

        if isinstance(source, _ArrayWindowSource):
            fill_src: Any = Cube(source.data, valid=valid, nodata=nodata)
        elif valid is not None:
            fill_src = _MaskedSource(source, valid)
        else:
            fill_src = source
        fill = scaling.to_model(band_means(fill_src)).astype(np.float32)

        jobs = [(i, j) for i in range(len(rprof)) for j in range(len(cprof))]
        bar = _progress(self.progress, len(jobs))
        try:
            for start in range(0, len(jobs), self.batch_size):
                batch = jobs[start:start + self.batch_size]
                tiles = np.empty((len(batch), bands, th, tw), np.float32)
                masks = []
                for k, (i, j) in enumerate(batch):
                    r0, r1 = rprof[i][:2]
                    c0, c1 = cprof[j][:2]
                    block = np.asarray(source.read_window(r0, r1, c0, c1))
                    if block.shape != (bands, r1 - r0, c1 - c0):
                        raise ShapeError(f"source returned a block of shape {block.shape} for "
                                         f"window rows {r0}:{r1}, cols {c0}:{c1}")
                    tiles[k] = block
                    del block
                    bad = invalid_mask(tiles[k], nodata)
                    if valid is not None:
                        bad |= ~valid[r0:r1, c0:c1]
                    holes = missing_entries(tiles[k], nodata)
                    if holes is not None:  # single nodata values: from the pixel's other bands
                        fill_missing_entries(tiles[k], holes & ~bad[None])
                    if not scaling.is_identity:
                        tiles[k] = scaling.to_model(tiles[k])
                    if bad.any():
                        tiles[k][:, bad] = fill[:, None]
                    masks.append(bad if bad.any() else None)
                out = self._forward(tiles, (th, tw), pads)
                del tiles
                for k, (i, j) in enumerate(batch):
                    y = scaling.from_model(out[k])
                    acc.add(i, j, y, masks[k] if self.mark_invalid else None, sink)
                    bar.advance()
                del out
        finally:
            bar.close()

    def _forward(self, batch: np.ndarray, hw: tuple[int, int], pads) -> np.ndarray:
        n, _, h, w = batch.shape
        batch = reflect_pad(batch, pads)
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        grad_ctx = torch.enable_grad() if self.enable_grad else torch.inference_mode()
        with grad_ctx, autocast_context(self.device, self.amp):
            y = self.fn(x)
        if not isinstance(y, torch.Tensor):
            raise ShapeError(f"the model returned {type(y).__name__}, expected a tensor")
        if y.ndim != 4 or y.shape[0] != n or tuple(y.shape[2:]) != tuple(x.shape[2:]):
            raise ShapeError(f"the model mapped a {tuple(x.shape)} tile batch to {tuple(y.shape)}; "
                             f"expected ({n}, C_out, {x.shape[2]}, {x.shape[3]})")
        if self.out_channels is not None and y.shape[1] != self.out_channels:
            raise ShapeError(f"the model returned {y.shape[1]} channels, expected {self.out_channels}")
        y = y.detach()[:, :, :h, :w].float().cpu().contiguous()
        return y.numpy()


class _MaskedSource:
    """A source whose pixels outside ``valid`` read as NaN (for the fill-value sample)."""

    def __init__(self, source: Any, valid: np.ndarray):
        self.source, self.valid, self.shape = source, valid, source.shape
        self.meta = getattr(source, "meta", None)

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        block = np.array(self.source.read_window(r0, r1, c0, c1), dtype=np.float32)
        block[:, ~self.valid[r0:r1, c0:c1]] = np.nan
        return block


class _LazyArraySink:
    """In-memory sink whose channel count is fixed by the first block written."""

    def __init__(self, hw: tuple[int, int]):
        self.hw = tuple(int(s) for s in hw)
        self.data: np.ndarray | None = None
        self.shape: tuple[int, ...] | None = None

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        if self.data is None:
            self.shape = (block.shape[0], *self.hw)
            self.data = np.empty(self.shape, np.float32)
        b, h, w = block.shape
        self.data[:, r0:r0 + h, c0:c0 + w] = block


class _Accumulator:
    """Blends tiles arriving in raster order; writes each tile's finished region at once."""

    CHUNK = 16  # channels blended at a time

    def __init__(self, rprof, cprof, rows: int, cols: int):
        self.rprof, self.cprof = rprof, cprof
        self.rows, self.cols = rows, cols
        wr = np.zeros(rows)
        for s, e, p in rprof:
            wr[s:e] += p
        wc = np.zeros(cols)
        for s, e, p in cprof:
            wc[s:e] += p
        self.wr, self.wc = wr, wc
        self.carry_h = max([rprof[i][1] - rprof[i + 1][0] for i in range(len(rprof) - 1)] or [0])
        self.carry: np.ndarray | None = None  # (C, carry_h, cols) float64, rows below a tile row
        self.left: np.ndarray | None = None   # (C, th, w) float64, cols right of the last tile
        self.channels: int | None = None

    def add(self, i: int, j: int, y: np.ndarray, bad: np.ndarray | None, sink: Any) -> None:
        rprof, cprof = self.rprof, self.cprof
        a, b, pr = rprof[i]
        c, d, pc = cprof[j]
        fr = rprof[i + 1][0] if i + 1 < len(rprof) else self.rows
        fc = cprof[j + 1][0] if j + 1 < len(cprof) else self.cols
        pe_r = rprof[i - 1][1] if i > 0 else a
        pe_c = cprof[j - 1][1] if j > 0 else c
        if self.channels is None:
            self.channels = int(y.shape[0])
            shape = getattr(sink, "shape", None)
            if shape is not None and tuple(shape) != (self.channels, self.rows, self.cols):
                raise ShapeError(f"output has shape {tuple(shape)} but the model produces "
                                 f"{(self.channels, self.rows, self.cols)}")
            if self.carry_h:
                self.carry = np.zeros((self.channels, self.carry_h, self.cols), np.float64)
        chans = int(y.shape[0])
        w2d = np.outer(pr, pc)
        wsum = np.outer(self.wr[a:fr], self.wc[c:fc])
        out = np.empty((chans, fr - a, fc - c), np.float32)
        new_left = np.empty((chans, b - a, d - fc), np.float64) if fc < d else None
        # float64 blending a few channels at a time keeps the transient memory small
        for b0 in range(0, chans, self.CHUNK):
            b1 = min(chans, b0 + self.CHUNK)
            acc = y[b0:b1].astype(np.float64)
            acc *= w2d
            if j > 0 and pe_c > c:
                acc[:, :, :pe_c - c] += self.left[b0:b1]
            if i > 0 and pe_r > a:
                acc[:, :pe_r - a, pe_c - c:] += self.carry[b0:b1, :pe_r - a, pe_c:d]
            out[b0:b1] = acc[:, :fr - a, :fc - c] / wsum
            if new_left is not None:
                new_left[b0:b1] = acc[:, :, fc - c:]
            if fr < b:
                self.carry[b0:b1, :b - fr, c:fc] = acc[:, fr - a:, :fc - c]
        if bad is not None:
            out[:, bad[:fr - a, :fc - c]] = np.nan
        sink.write_window(a, c, out)
        self.left = new_left


class _NoBar:
    def advance(self) -> None:
        pass

    def close(self) -> None:
        pass


class _RichBar:
    def __init__(self, total: int):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)
        from rich.console import Console

        self.p = Progress(TextColumn("tiles"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=True, console=Console(stderr=True))
        self.task = self.p.add_task("tiles", total=total)
        self.p.start()

    def advance(self) -> None:
        self.p.advance(self.task)

    def close(self) -> None:
        self.p.stop()


def _progress(enabled: bool, total: int):
    return _RichBar(total) if enabled else _NoBar()
