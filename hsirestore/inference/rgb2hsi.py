"""RGB -> 31-band HSI predictor (MCGA or the root-polynomial baseline), with optional TTA.

What to feed: **linear** camera RGB in [0, 1] (8-bit files are divided by 255, 16-bit by
65535; floats are taken as they are). The models are trained on RGB rendered from
reflectance cubes through the NTIRE 2022 camera response (linear, no gamma, no white
balance), so the output is reflectance-like on the scale of the input: a white object that
gives G = 1 comes out near 1 in every band. Gamma-encoded photos (ordinary JPEG/PNG from a
phone) should be linearised first: ``srgb=True`` (``--srgb``) applies the inverse sRGB
transfer curve.

``camera``: the camera that took the photo: a response CSV (see
:func:`hsirestore.physics.rgb.load_camera_response`), ``"cie"`` (the built-in CIE 1931 ->
linear sRGB response, what ``render-rgb`` renders with by default) or ``"ntire"`` (the
training camera). The input is mapped into the training camera's RGB space by a 3x3 matrix
fitted on a spectral library without the NTIRE response (:mod:`hsirestore.inference.camera`);
the model itself is unchanged. This applies to MCGA and to the baseline alike; with training
cubes at hand the baseline can instead be refit for that camera
(:func:`hsirestore.baselines.fit_root_poly`).

``consistency`` (``--consistency``, off by default): physically plausible spectra (Lin and
Finlayson, "Physically plausible spectral reconstruction", Sensors 2020): every output
spectrum s is replaced by s + R^T (R R^T)^-1 (rgb - R s), the nearest spectrum (least
squares) that renders exactly to the input RGB through the camera response R (3 x 31,
:func:`hsirestore.physics.rgb.sample_response`; the ``camera`` CSV and the original RGB when
given (a CSV or the built-in ``cie``), else the NTIRE 2022 response, which is not shipped
(GPL-3.0 data): it is looked up in
$HSIRESTORE_DATA or ../shared/data and a clear error says so when it is missing). Negative
values are clipped to 0; pixels with a saturated channel (>= 0.999) are left as predicted.
It restores the full-resolution RGB detail that MCGA's half-resolution latents lose.

Output: Cube (31, H, W), wavelengths 400..700 nm step 10: the registered model's
wavelengths (``ModelSpec.wavelengths``), or those stored with the baseline.
"""
from __future__ import annotations

import copy

import numpy as np

from hsirestore.errors import FormatError, InvalidValueError, ModelError, OptionError, ShapeError
from hsirestore.io.cube import Cube

from hsirestore.inference.camera import WAVELENGTHS, camera_matrix, camera_response, convert_camera
from hsirestore.registry import output_wavelengths

METHODS = ("mcga", "poly")
DEFAULT_MODEL = "mcga-compact"


# ---------------------------------------------------------------------- numpy helpers
def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer curve (IEC 61966-2-1) on values in [0, 1]."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def consistency_projector(response: np.ndarray) -> np.ndarray:
    """R (3, 31) -> P = R^T (R R^T)^-1 (31, 3), float64."""
    r = np.asarray(response, np.float64)
    gram = r @ r.T
    if np.linalg.cond(gram) > 1e10:
        raise ModelError("the camera response is degenerate (its channels are not independent)")
    return r.T @ np.linalg.inv(gram)


def project_to_rgb(cube: np.ndarray, rgb: np.ndarray, response: np.ndarray,
                   saturated: float = 0.999) -> np.ndarray:
    """cube (31, H, W), rgb (3, H, W), R (3, 31) -> spectra rendering exactly to rgb (>= 0).

    Pixels with a saturated RGB channel and non-finite spectra are returned unchanged."""
    b, h, w = cube.shape
    x = cube.reshape(b, -1).astype(np.float64)
    y = rgb.reshape(3, -1).astype(np.float64)
    r = np.asarray(response, np.float64)
    fixed = x + consistency_projector(r) @ (y - r @ x)
    keep = (y >= saturated).any(0) | ~np.isfinite(x).all(0)
    fixed[:, keep] = x[:, keep]
    return np.where(np.isfinite(fixed), np.clip(fixed, 0.0, None), fixed).reshape(b, h, w).astype(np.float32)


def check_rgb(rgb) -> tuple[np.ndarray, np.ndarray | None]:
    """Cube or array -> ((3, H, W) float32, valid mask or None); typed errors on bad input."""
    valid = None
    if isinstance(rgb, Cube):
        valid = rgb.valid
        rgb = rgb.data
    x = np.asarray(rgb)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ShapeError(f"expected an RGB image with 3 bands (3, H, W); got shape {x.shape}")
    if min(x.shape[1:]) < 1:
        raise ShapeError(f"empty image {x.shape}")
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x).all(0)
    if not finite.all():
        valid = finite if valid is None else (valid & finite)
        if not valid.any():
            raise InvalidValueError("the RGB image has no finite pixel")
        x = np.where(finite[None], x, 0.0).astype(np.float32)
    if float(x.min()) < -1e-3 or float(x.max()) > 4.0:
        raise InvalidValueError(
            f"RGB values must be normalised to [0, 1] (got {float(x.min()):.3g}..{float(x.max()):.3g}); "
            "8-bit images are divided by 255 and 16-bit by 65535 when read from a file")
    return np.clip(x, 0.0, None), valid


# ---------------------------------------------------------------------- predictor
class RgbToHsi:
    """Reconstruct 31-band spectra (400-700 nm) from RGB.

    Args:
        method: "mcga" (learned) or "poly" (root-polynomial baseline, numpy only).
        model_name: registered MCGA variant (default "mcga-compact"); a --weights file that
            records its preset (and configuration) is built as that preset.
        weights: checkpoint (safetensors/torch) for MCGA or an .npz for the baseline;
            None: the shipped file (a ModelError names it when it is missing).
        device: auto | cpu | cuda | cuda:N.
        tta: test-time adaptation (MCGA only): per image (per batch of tiles; per tile with
            the default batch_size 1), ``tta_steps`` Adam steps at ``tta_lr`` minimising the
            entropy of the codebook-query probabilities,
            updating only the grayscale-aware (GA) parameters; the original weights are
            restored afterwards, so an image's result never depends on earlier images.
        srgb: linearise gamma-encoded (sRGB) input first.
        camera: the input's camera: a response CSV, "cie" or "ntire" (mapped into the training
            camera by a 3x3 matrix; see :mod:`hsirestore.inference.camera`).
        consistency: project the output onto spectra that render exactly to the input RGB
            (see the module docstring; needs the camera's response).
        tile, overlap: tiling for large photos (tile=None: whole image); the overlap is
            clamped to tile // 4 (tiles advance by at least 3/4 of a tile).

    Attributes: ``model_name``, ``wavelengths`` (output band centres in nm, or None).
    """

    def __init__(self, model_name: str | None = None, weights=None, device: str = "auto",
                 tta: bool = False, tta_steps: int = 5, tta_lr: float = 1e-4,
                 method: str = "mcga", srgb: bool = False, camera=None,
                 tile: int | None = 256, overlap: int = 32, batch_size: int = 1,
                 progress: bool = False, consistency: bool = False):
        if method not in METHODS:
            raise OptionError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        if tta_steps < 0:
            raise OptionError(f"--tta-steps must be >= 0; got {tta_steps}")
        if not tta_lr > 0:
            raise OptionError(f"--tta-lr must be > 0; got {tta_lr}")
        if tta and method != "mcga":
            raise OptionError("--tta needs --method mcga (the baseline has no codebook)")
        self.method = method
        self.model_name = model_name or DEFAULT_MODEL
        self._model_asked = model_name
        self.notes: list[str] = []  # warnings about the weights (e.g. --model not used)
        self.tta, self.tta_steps, self.tta_lr = bool(tta), int(tta_steps), float(tta_lr)
        self.srgb = srgb
        self.camera = None if camera is None else str(camera)
        if self.camera is not None:
            camera_matrix(self.camera)  # read and fitted once, here: a bad file fails up front
        self.consistency = bool(consistency)
        self._responses: dict = {}  # camera (None: NTIRE) -> (wl, response (3, n))
        if self.consistency:
            self._camera_response()  # fail early when the response is missing
        if tile is not None and tile < 16:
            raise OptionError(f"--tile must be 0 (whole image) or at least 16; got {tile}")
        if overlap < 0:
            raise OptionError(f"tile overlap must be >= 0; got {overlap}")
        overlap = min(overlap, tile // 4) if tile is not None else overlap
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        self.progress = progress
        self.device_spec = device
        if (device or "auto").strip().lower() not in ("auto", "cpu"):  # checked for poly too
            from hsirestore.inference.device import resolve_device

            resolve_device(device)
        self.poly = None
        self.model = None
        if method == "poly":
            from hsirestore.baselines import RootPolyModel, load_shipped_poly

            self.poly = RootPolyModel.load(weights) if weights is not None else load_shipped_poly()
            self.wavelengths = output_wavelengths(self.poly.wavelengths, self.poly.coef.shape[1], WAVELENGTHS)
        else:
            self._load_mcga(weights)
        if self.consistency and self.wavelengths is None:
            raise ModelError("--consistency needs the wavelengths of the model's bands; this "
                             "model does not record them")

    def _load_mcga(self, weights) -> None:
        """The MCGA model on the device via :func:`hsirestore.weights.load_checkpoint` (a file
        that records its preset and configuration is built as that preset with it)."""
        from hsirestore.inference.device import resolve_device
        from hsirestore.registry import get_spec
        from hsirestore.weights import load_model

        model, ck = load_model(weights, "rgb2hsi", self._model_asked, DEFAULT_MODEL)
        self.notes += [ck.note] if ck.note else []
        self.model_name, self.spec = ck.name, get_spec(ck.name)
        self.device = resolve_device(self.device_spec)
        self.model = model.to(self.device)
        self.wavelengths = output_wavelengths(self.spec.wavelengths, model.bands, WAVELENGTHS)

    def _camera_response(self) -> tuple[np.ndarray, np.ndarray]:
        """(wl, response (3, n)) of the input's camera: --camera (a CSV; (None, None) for the
        built-in ``cie``), else the NTIRE 2022 response (read once per camera)."""
        cache = self._responses
        if self.camera in cache:
            return cache[self.camera]
        try:
            wl, resp = camera_response(self.camera if self.camera is not None else "ntire")
        except FormatError:
            raise FormatError("--consistency needs the camera response: pass --camera FILE.csv "
                              "(or cie), or set HSIRESTORE_DATA to the folder holding "
                              "camera/ntire2022_rgb_qe.csv") from None
        cache[self.camera] = wl, resp
        return cache[self.camera]

    def describe(self) -> str:
        if self.method == "poly":
            name = f"root-polynomial (degree {self.poly.degree})"
        else:
            name = self.model_name + (f" + TTA ({self.tta_steps} steps, lr {self.tta_lr:g})"
                                      if self.tta else "")
        return name + (" + RGB consistency" if self.consistency else "")

    def _linear(self, rgb) -> tuple[np.ndarray, np.ndarray | None]:
        """Checked, linearised (3, H, W) float32 as the camera saw it, and the valid mask."""
        x, valid = check_rgb(rgb)
        return (srgb_to_linear(x) if self.srgb else x), valid

    def predict(self, rgb) -> Cube:
        """rgb: Cube or array (3, H, W) in [0, 1] -> Cube (bands, H, W) at ``wavelengths``
        (31 bands, 400..700 nm, for every model shipped or registered here)."""
        seen, valid = self._linear(rgb)  # the RGB the camera saw (before any conversion)
        x = convert_camera(seen, self.camera) if self.camera is not None else seen
        if self.method == "poly":
            out = self.poly.predict(x)
            if valid is not None:
                out[:, ~valid] = np.nan
        else:
            out = self._predict_mcga(x, valid)
        if self.consistency:
            from hsirestore.physics.rgb import sample_response

            response = sample_response(self.wavelengths, *self._camera_response())  # R (3, bands)
            out = project_to_rgb(out, seen, response)
        attrs = {"method": self.describe(), "input_space": "sRGB-linearised" if self.srgb else "linear"}
        if self.camera is not None:
            attrs["camera"] = self.camera
        wl = self.wavelengths
        return Cube(out.astype(np.float32), wavelengths=None if wl is None else wl.copy(),
                    wavelength_units=None if wl is None else "nm",
                    valid=None if valid is None else valid, attrs=attrs)

    def _predict_mcga(self, x: np.ndarray, valid) -> np.ndarray:
        import torch

        from hsirestore.inference.engine import TiledPredictor

        model = self.model

        def fn(t: torch.Tensor) -> torch.Tensor:
            if self.tta and self.tta_steps > 0:
                return tta_predict(model, t, self.tta_steps, self.tta_lr)
            return model(t)

        runner = TiledPredictor(fn, tile=self.tile, overlap=self.overlap,
                                multiple=model.size_multiple, batch_size=self.batch_size,
                                device=self.device, amp="none" if self.tta else "auto",
                                out_channels=model.bands, progress=self.progress,
                                enable_grad=self.tta)
        return runner.predict_array(x, valid=valid)


def tta_predict(model, x, steps: int, lr: float):
    """Entropy-minimising test-time adaptation of the GA parameters, then restore.

    x: (N, 3, h, w) tensor on the model's device -> (N, 31, h, w) (detached). Only the
    parameters ``model.ga_parameters()`` receive updates (Adam, ``steps`` steps, ``lr``);
    every parameter and buffer is restored before returning, and the adaptation starts
    from the same weights for every call, so results are reproducible per image.
    """
    import torch

    params = list(model.ga_parameters())
    saved = copy.deepcopy(model.state_dict())
    flags = {id(p): p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = model.query_entropy(x)
                loss.backward()
                opt.step()
        with torch.no_grad():
            return model(x).detach()
    finally:
        model.load_state_dict(saved)
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])
        model.train(was_training)


