"""CASSI decoding predictor: S2-Transformer models or GAP-TV, any size, linear in scale.

``CassiDecoder(...).decode(meas (H, W + step*(B-1)), mask (H, W)) -> cube (B, H, W)``;
``decode_cube`` takes the measurement and mask as read (Cubes or arrays) and returns a Cube
with the decoder's band centres.

Normalisation: the measurement is divided by s = m / 0.15, where
m = sum(y) / (bands * sum(mask)) estimates the scene's mean intensity, the model decodes,
and the result is multiplied by s. The decoder is therefore homogeneous of degree 1: raw
counts, [0, 1]-normalised data and the 2/28-scaled convention decode to the same cube up to
that scale.

Large inputs are decoded in overlapping tiles of the cube grid (default 256 px, 64 px
overlap, raised-cosine blending). The measurement columns of a tile also hold light
dispersed from up to step*(B-1) scene columns on either side, so tile (r0:r1, c0:c1) is
decoded with that much context: mask window (r0:r1, a:b) with a = c0 - step*(B-1),
b = c1 + step*(B-1) (clipped to the image) and measurement window (r0:r1, a : b +
step*(B-1)), mask and measurement aligned; only its core c0:c1 is kept and blended. Models that refine a GAP-TV
estimate (``s2former-gaptv``) get one GAP-TV pass over the whole measurement first, and
each tile refines its window of it.
"""
from __future__ import annotations

import numpy as np

from hsirestore.errors import InvalidValueError, OptionError, ShapeError
from hsirestore.io.cube import Cube
from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, check_geometry, mean_intensity
from hsirestore.registry import get_spec, output_wavelengths

TRAIN_MEAN = 0.15
#: smallest tile: two of the S2-Transformer's 8 px attention windows per side, so that its
#: shifted windows still mix neighbouring windows
MIN_TILE = 16
METHODS = ("s2former", "gap-tv")
#: the shipped decoder used when no model is named (chosen on CAVE train scenes)
DEFAULT_MODEL = "s2former-gaptv"
#: the preset a --weights file that names none is built as
FILE_DEFAULT_MODEL = "s2former-unfolded"




def as_plane(data: Cube | np.ndarray, what: str = "measurement",
             name: str | None = None) -> np.ndarray:
    """A measurement or mask as read -> what :meth:`CassiDecoder.decode` takes: a Cube's
    data (checked: every pixel valid, InvalidValueError; a measurement has one band,
    ShapeError), or an array as it is. ``what``: "measurement" or "mask"; ``name`` labels
    the messages (e.g. the file)."""
    if not isinstance(data, Cube):
        return data
    label = f"{name}: " if name else ""
    if data.valid is not None and not data.valid.all():
        raise InvalidValueError(f"{label}the {what} has {int((~data.valid).sum())} NaN/Inf/nodata "
                                "pixels; CASSI decoding needs every pixel")
    if what == "measurement" and data.bands != 1:
        raise ShapeError(f"{label}the measurement must be a single 2-D image; got {data.bands} "
                         "bands")
    return data.data[0] if data.bands == 1 else data.data


def _as_2d(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        raise ShapeError(f"the {what} must be 2-D; got shape {a.shape} "
                         "(3-D per-band shifted masks are not supported: pass the 2-D coded aperture)")
    if a.ndim != 2:
        raise ShapeError(f"the {what} must be 2-D; got shape {a.shape}")
    return a.astype(np.float32)


class CassiDecoder:
    """Decode CASSI snapshots.

    Args:
        method: "s2former" (a learned model) or "gap-tv" (classical, no weights).
        model_name: registry name; default :data:`DEFAULT_MODEL` ("s2former-gaptv", the
            most accurate shipped decoder; "s2former-unfolded" is several times faster on a CPU).
        weights: a checkpoint file (safetensors or torch; the authors' ``model_epoch_255.pth``
            is recognised and loaded into the published "s2former" preset), or None for
            the shipped weights. A file that records its preset is built as that preset;
            one that records none as ``model_name`` (default :data:`FILE_DEFAULT_MODEL`).
        device: auto | cpu | cuda | cuda:N.
        tile, overlap: tiling of the cube grid for large inputs (tile=None: whole image;
            else at least :data:`MIN_TILE` px).
        bands, step: band count and dispersion step (pixels per band).
        gaptv_iters, gaptv_weight: GAP-TV settings (tuned on CAVE train scenes).
        flip_ensemble: learned models only: also decode the up-down flipped system (flipping
            the rows of measurement and mask gives another valid CASSI system, since the
            dispersion runs along the rows) and average the two cubes; twice the model time.

    Attributes: ``model_name`` (None for GAP-TV), ``wavelengths`` (float64 (bands,) band
    centres in nm of the decoded cube: the model's registered ones, or the TSA-Net system's
    for 28-band GAP-TV; None when they are unknown for this band count).
    """

    def __init__(self, method: str = "s2former", model_name: str | None = None,
                 weights=None, device: str = "auto", tile: int | None = 256, overlap: int = 64,
                 bands: int = 28, step: int = 2, gaptv_iters: int = 120,
                 gaptv_weight: float = 4.0, flip_ensemble: bool = False):
        if method not in METHODS:
            raise OptionError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        if bands < 2 or step < 1:
            raise OptionError("need at least 2 bands and a dispersion step >= 1")
        if tile is not None and tile < MIN_TILE:
            raise OptionError(f"--tile must be 0 (whole image) or at least {MIN_TILE} (two of the "
                              f"S2-Transformer's 8 px attention windows per side); got {tile}")
        if overlap < 0:
            raise OptionError(f"--overlap must be >= 0; got {overlap}")
        if gaptv_iters < 1:
            raise OptionError(f"GAP-TV iterations must be >= 1; got {gaptv_iters}")
        if not (np.isfinite(gaptv_weight) and gaptv_weight >= 0):
            raise OptionError(f"the GAP-TV weight must be a number >= 0; got {gaptv_weight}")
        self.method = method
        self.bands, self.step = bands, step
        self.tile, self.overlap = tile, overlap
        self.gaptv_iters, self.gaptv_weight = gaptv_iters, gaptv_weight
        if flip_ensemble and method != "s2former":
            raise OptionError("--ensemble (--flip-ensemble) applies to the learned decoders, "
                              "not GAP-TV")
        self.flip_ensemble = bool(flip_ensemble)
        from hsirestore.inference.device import resolve_device

        self.device = resolve_device(device)
        self.model = None
        self.model_name = None
        self.notes: list[str] = []  # warnings about the weights (e.g. --model not used)
        self.wavelengths = output_wavelengths(CASSI_WAVELENGTHS_28, bands)
        self._unfolded = False  # the model takes the measurement (UnfoldedS2Transformer)
        if method == "s2former":
            self.model, self.model_name = self._load(model_name, weights)

    def describe(self) -> str:
        if self.method == "gap-tv":
            return f"GAP-TV ({self.gaptv_iters} iterations, TV weight {self.gaptv_weight})"
        return f"{self.model_name}" + (" + up-down flip ensemble" if self.flip_ensemble else "")

    def _load(self, model_name, weights):
        """(model on the device, its registry name) via :func:`hsirestore.weights.load_checkpoint`;
        weights that name no preset are taken for :data:`FILE_DEFAULT_MODEL`."""
        from hsirestore.models.s2former import UnfoldedS2Transformer
        from hsirestore.weights import load_checkpoint

        ck = load_checkpoint(weights, "cassi", model_name,
                             DEFAULT_MODEL if weights is None else FILE_DEFAULT_MODEL)
        self.notes += [ck.note] if ck.note else []
        model_bands = ck.config.get("in_chans")
        if model_bands is not None and model_bands != self.bands:
            raise ShapeError(f"model {ck.name!r} decodes {model_bands} bands; --bands is {self.bands}")
        model = ck.build().to(self.device)
        self._unfolded = isinstance(model, UnfoldedS2Transformer)
        self.wavelengths = output_wavelengths(get_spec(ck.name).wavelengths, self.bands)
        return model, ck.name

    # -------------------------------------------------------------------------------------
    def check(self, meas: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        meas = _as_2d(meas, "measurement")
        mask = _as_2d(mask, "mask")
        if meas.size == 0 or mask.size == 0:
            raise ShapeError(f"empty measurement {meas.shape} or mask {mask.shape}")
        check_geometry(meas.shape, mask.shape, self.bands, self.step)
        if not np.isfinite(meas).all():
            raise InvalidValueError("the measurement contains NaN or Inf values")
        if not np.isfinite(mask).all():
            raise InvalidValueError("the mask contains NaN or Inf values")
        if mask.min() < 0:
            raise InvalidValueError("the mask has negative values; a coded aperture transmits 0..1")
        if mask.max() <= 0:
            raise InvalidValueError("the mask is all zero: nothing reaches the detector")
        if mask.max() > 1:
            mask = mask / mask.max()  # e.g. 0/255 masks: transmission relative to the maximum
        return meas, mask

    def decode(self, meas: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """float32 cube (bands, H, W) on the measurement's scale."""
        import torch

        meas, mask = self.check(meas, mask)
        m = mean_intensity(meas, mask, self.bands)
        if m <= 0:
            return np.zeros((self.bands, *mask.shape), np.float32)
        s = m / TRAIN_MEAN
        yn = torch.from_numpy(meas / np.float32(s))
        mk = torch.from_numpy(mask)
        if self.method == "gap-tv":
            from hsirestore.physics.gaptv import gap_tv

            out = gap_tv(yn.to(self.device), mk.to(self.device), self.bands, self.step,
                         iterations=self.gaptv_iters, tv_weight=self.gaptv_weight)
            return (out.cpu().numpy() * np.float32(s)).astype(np.float32)
        est = None
        if self._unfolded and self.model.init == "gap-tv":
            # one GAP-TV pass over the whole measurement (no tile seams), refined tile by tile
            est = self.model.initial_estimate(mk[None, None].to(self.device),
                                              yn[None].to(self.device))[0].float().cpu()
        return (self._decode_tiled(yn, mk, est) * np.float32(s)).astype(np.float32)

    def decode_cube(self, meas: Cube | np.ndarray, mask: Cube | np.ndarray, *,
                    name: str | None = None, mask_name: str | None = None) -> Cube:
        """Measurement and mask as read (Cubes or arrays; see :func:`as_plane`) -> Cube
        (bands, H, W) on the measurement's scale, with :attr:`wavelengths` (nm) and
        ``attrs["method"]``. ``name``/``mask_name`` label error messages."""
        meas = as_plane(meas, "measurement", name)
        mask = as_plane(mask, "mask", mask_name)
        wl = None if self.wavelengths is None else self.wavelengths.copy()
        return Cube(self.decode(meas, mask), wavelengths=wl,
                    wavelength_units="nm" if wl is not None else None,
                    attrs={"method": self.describe()})

    def _run_tile(self, y, mask, est=None):
        """y (H, W + step*(B-1)), mask (H, W)[, initial estimate (B, H, W)] -> (B, H, W)
        (padded to the window size)."""
        import torch.nn.functional as F

        mult = self.model.size_multiple
        h, w = mask.shape
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            # pad the scene grid: zero light outside the image (mask 0 there)
            mask = F.pad(mask, (0, pw, 0, ph))
            y = F.pad(y, (0, pw, 0, ph))
            est = F.pad(est, (0, pw, 0, ph)) if est is not None else None
        out = self._run_model(y, mask, est)
        if self.flip_ensemble:  # rows flipped: another valid system (dispersion is along rows)
            flipped = self._run_model(y.flip(-2), mask.flip(-2),
                                      est.flip(-2) if est is not None else None)
            out = 0.5 * (out + flipped.flip(-2))
        return out[0, :, :h, :w].float().cpu()

    def _run_model(self, y, mask, est=None):
        """One model pass: y (H, W'), mask (H, W)[, est (B, H, W)] -> (1, B, H, W)."""
        import torch

        from hsirestore.physics.cassi import model_input

        m = mask[None, None].to(self.device)
        with torch.inference_mode():
            if self._unfolded:  # works from the measurement; its cube argument is unused
                init = est[None].to(self.device) if est is not None else None
                out, _ = self.model(None, m, y[None].to(self.device), init_est=init)
            else:  # the single-pass model: the shifted-back, mask-weighted measurement
                x = model_input(y, mask, self.bands, self.step)
                out, _ = self.model(x[None].to(self.device), m)
        return out

    def _decode_tiled(self, yn, mk, est=None) -> np.ndarray:
        import torch

        from hsirestore.inference.tiling import axis_profiles, axis_weight_sum

        h, w = mk.shape
        tile, ov = self.tile, self.overlap
        if tile is None or (h <= tile and w <= tile):
            return self._run_tile(yn, mk, est).numpy()
        ext = self.step * (self.bands - 1)
        acc = torch.zeros(self.bands, h, w, dtype=torch.float64)
        th, tw = min(tile, h), min(tile, w)
        oh, ow = min(ov, th // 4), min(ov, tw // 4)  # tiles advance by >= 3/4 of a tile
        rows, cols = axis_profiles(h, th, oh), axis_profiles(w, tw, ow)
        for r0, r1, wr in rows:
            for c0, c1, wc in cols:
                # the measurement columns of scene columns c0:c1 also hold light dispersed from
                # up to `ext` scene columns on either side: decode the tile with that much
                # context on both sides and keep its core (blending cannot hide the spill)
                a, b = max(0, c0 - ext), min(w, c1 + ext)
                out = self._run_tile(yn[r0:r1, a : b + ext], mk[r0:r1, a:b],
                                     est[:, r0:r1, a:b] if est is not None else None)
                weight = torch.from_numpy(np.outer(wr, wc))
                acc[:, r0:r1, c0:c1] += out[:, :, c0 - a : c1 - a].double() * weight
        total = np.outer(axis_weight_sum(h, th, oh), axis_weight_sum(w, tw, ow))
        return (acc.numpy() / total).astype(np.float32)
