"""Cameras for RGB -> HSI: which response a photo came from, and mapping its RGB into the
camera the models were trained for.

The models (MCGA and the root-polynomial baseline) were trained on CAVE scenes rendered
through the NTIRE 2022 camera. A photo from another camera C is mapped by a 3x3 matrix M
before reconstruction. M is fitted without the NTIRE response (GPL-3.0 data that is not
shipped): over a library of reflectance spectra s (colour-science's ColorCheckers, ISO
17321-1 and PMC charts, bare and under six illuminants; :func:`spectral_library`), it
minimises the camera-C re-rendering error of the shipped root-polynomial reconstruction,

    sum_s || R_C poly(M R_C s) - R_C s ||^2,

i.e. the spectra reconstructed from the mapped RGB must look, through camera C, like the
photo did. On 6 CAVE *train* scenes and the 18 camspec cameras this gave a mean MRAE of
0.208 with the baseline, against 0.210 for a least-squares fit to NTIRE-camera RGB (which
needs the NTIRE file; Nokia_N900: 0.226 both, unmapped 0.823).

Camera names (:func:`resolve_camera`): ``ntire`` (the training camera: no mapping; its
response file is only needed for ``--consistency``), ``cie`` (the built-in CIE 1931 ->
linear sRGB response that ``render-rgb`` uses by default), or a CSV file of R, G, B columns.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError, ModelError

#: the band grid of the 31-band models, on which library spectra are sampled
WAVELENGTHS = np.arange(400.0, 701.0, 10.0)
LIBRARY_ILLUMINANTS = ("D65", "D50", "A", "FL2", "FL11", "E")
CAMERA_NAMES = ("ntire", "cie")


def spectral_library(wavelengths=WAVELENGTHS, illuminants=LIBRARY_ILLUMINANTS) -> np.ndarray:
    """Reflectances x illuminants from colour-science (BSD-3), sampled at ``wavelengths``.

    Returns (n_spectra, bands) float64: every ColorChecker (BabelColor average, N Ohta),
    ISO 17321-1 and PMC reflectance times every illuminant, each illuminant normalised to a
    maximum of 1 over the range; plus the bare reflectances.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour

    wl = np.asarray(wavelengths, np.float64)
    refl = []
    for name in ("BabelColor Average", "ColorChecker N Ohta", "ISO 17321-1", "PMC"):
        if name not in colour.SDS_COLOURCHECKERS:
            continue
        for sd in colour.SDS_COLOURCHECKERS[name].values():
            refl.append(np.interp(wl, np.asarray(sd.wavelengths), np.asarray(sd.values)))
    refl = np.clip(np.asarray(refl), 0.0, 1.0)
    out = [refl]
    for ill in illuminants:
        sd = colour.SDS_ILLUMINANTS.get(ill)
        if sd is None:
            continue
        e = np.interp(wl, np.asarray(sd.wavelengths), np.asarray(sd.values))
        out.append(refl * (e / e.max())[None])
    return np.concatenate(out)


def render_spectra(spectra: np.ndarray, wl: np.ndarray, resp_wl, resp) -> np.ndarray:
    """spectra (N, B) -> rgb (3, N) through a response (None: the built-in one), with
    render_rgb's normalisation."""
    from hsirestore.physics.rgb import render_rgb

    return render_rgb(np.asarray(spectra).T[:, :, None].astype(np.float32), wl, resp_wl, resp,
                      clip=False)[:, :, 0].astype(np.float64)


def ntire_response():
    """(wl, response (3, n)) of the NTIRE 2022 camera the models were trained for, from
    $HSIRESTORE_DATA or ../shared/data (not shipped: GPL-3.0 data); FormatError when absent."""
    from hsirestore.physics.rgb import default_camera_path, load_camera_response

    path = default_camera_path()
    if path is None:
        raise FormatError("the NTIRE 2022 camera response (camera/ntire2022_rgb_qe.csv) was not "
                          "found; set HSIRESTORE_DATA to the folder holding it")
    return load_camera_response(path)


def resolve_camera(camera) -> tuple[str, object]:
    """A camera name or CSV path -> (key, spec): ("ntire", None), ("cie", None) or
    ("file", Path). FormatError for a file that does not exist (exit 1, like any missing
    input file)."""
    name = str(camera).strip()
    if name.lower() in CAMERA_NAMES:
        return name.lower(), None
    path = Path(name)
    if not path.is_file():
        raise FormatError(f"--camera {name}: file not found (use a response CSV, "
                          f"{' or '.join(CAMERA_NAMES)})")
    return "file", path


def camera_response(camera) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(wl, response (3, n)) of a camera name or CSV; (None, None) is the built-in CIE
    response (as :func:`hsirestore.physics.rgb.render_rgb` takes it)."""
    from hsirestore.physics.rgb import load_camera_response

    kind, path = resolve_camera(camera)
    if kind == "ntire":
        return ntire_response()
    if kind == "cie":
        return None, None
    return load_camera_response(path)


def fit_camera_matrix(cam_wl, cam_resp, reconstruct=None) -> np.ndarray:
    """3x3 M (float64) mapping camera RGB (3, N) into the models' camera (``M @ rgb``).

    ``cam_wl`` (n,) nm and ``cam_resp`` (3, n): the camera's response (None, None: the
    built-in CIE response). ``reconstruct``: rgb (3, N) -> spectra (31, N) on the models'
    400-700 nm grid; default the shipped root-polynomial baseline. See the module docstring.
    """
    from scipy.optimize import least_squares

    if reconstruct is None:
        from hsirestore.baselines import load_shipped_poly

        poly = load_shipped_poly()

        def reconstruct(rgb):
            return poly.predict(rgb[:, :, None])[:, :, 0]

    spectra = spectral_library()                                      # (N, 31)
    src = render_spectra(spectra, WAVELENGTHS, cam_wl, cam_resp)      # (3, N) camera RGB
    render = render_spectra(np.eye(len(WAVELENGTHS)), WAVELENGTHS, cam_wl, cam_resp)  # (3, 31)
    if not (np.isfinite(src).all() and np.linalg.matrix_rank(render) == 3):
        raise ModelError("the camera response is degenerate (its channels are not independent)")

    def residual(p):
        rgb = np.clip(p.reshape(3, 3) @ src, 0.0, None)
        return (render @ reconstruct(rgb) - src).ravel()

    sol = least_squares(residual, np.eye(3).ravel())
    m = sol.x.reshape(3, 3)
    if not (sol.success and np.isfinite(m).all() and abs(np.linalg.det(m)) > 1e-8):
        raise ModelError("could not fit a colour mapping for this camera response")
    return m


_MATRICES: dict = {}


def camera_matrix(camera) -> np.ndarray | None:
    """The (cached) 3x3 float32 map of a camera name or CSV into the models' camera; None for
    ``ntire`` (no mapping)."""
    kind, path = resolve_camera(camera)
    if kind == "ntire":
        return None
    key = (kind, None) if path is None else (kind, str(path.resolve()), path.stat().st_mtime)
    if key not in _MATRICES:
        _MATRICES[key] = fit_camera_matrix(*camera_response(camera)).astype(np.float32)
    return _MATRICES[key]


def convert_camera(rgb: np.ndarray, camera) -> np.ndarray:
    """rgb (3, H, W) from ``camera`` (name or CSV) -> rgb (3, H, W) >= 0 in the models'
    camera (unchanged for ``ntire``)."""
    m = camera_matrix(camera)
    if m is None:
        return np.asarray(rgb, np.float32)
    return np.clip(np.tensordot(m, rgb, axes=(1, 0)), 0.0, None).astype(np.float32)
