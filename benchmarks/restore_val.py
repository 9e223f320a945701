"""Restoration on the CAVE validation scenes: shipped HSI-VAR vs BM4D, side by side.

Scenes: the 3 CAVE val scenes (jelly_beans, oil_painting, paints), 256x256 centre crops,
31 bands in [0, 1]. Each degradation is simulated with hsirestore.physics.degradations and
a fixed seed per scene (the scene's index 0, 1, 2; the same seed for every task):

==============  ==========================================================================
task            spec (parameters as in the issue; stripes use the simulator's defaults)
==============  ==========================================================================
noise           ``noise:sigma=30`` (i.i.d. Gaussian, sigma 30/255)
blur+noise      ``blur:sigma=1.6+noise:sigma=15`` (Gaussian blur 1.6 px, then sigma 15/255)
stripes         ``stripes:min=0.05,max=0.15,strength=0.25`` (5-15 % of the columns of each
                band get a constant offset uniform in [-0.25, 0.25])
band-missing    ``band-missing:ratio=0.3`` (round(0.3 * 31) = 9 whole bands set to 0)
inpaint         ``inpaint:ratio=0.7`` (70 % of the pixels, all bands, set to 0)
==============  ==========================================================================

Methods:

* ``input``: the degraded cube itself (reference row).
* ``hsivar``: the restoration model (``--model``, default the shipped ``hsivar-compact``
  weights; ``--weights FILE`` for another checkpoint, e.g. a training export), run through
  ``hsirestore.inference.restore.Restorer`` with the task's spec as its degradation (the
  model is guided by the degradation types only), scaling "none" (the data are already in
  the model's [0, 1] range), deterministic decoding, ``keep_observed="auto"``: for the two
  completion tasks the Restorer returns the non-zero input entries unchanged and fills the
  zeros (it finds the mask from the data itself; it is not given the simulator's mask). When
  the preset's shipped weights file is missing (and no ``--weights`` is given) it is skipped
  with a one-line message and the rest still runs; any other problem with the model options
  (unknown ``--model``, a bad ``--weights`` file, ``--tile`` below 8, ``--device cuda``
  without a GPU) is an error: one line on stderr, exit status 2.
* ``bm4d``: the ``bm4d`` package (pip install -e '.[bench]'), default profile, on the cube
  laid out (rows, cols, bands). It is a Gaussian denoiser, so each task gives it:

  - noise: the true sigma 30/255;
  - blur+noise: the true noise sigma 15/255; BM4D only denoises, it does not deblur;
  - stripes: a nominal white-noise sigma equal to the RMS of the simulated stripe error,
    sqrt(mean fraction of striped columns * strength^2 / 3) = sqrt(0.1 * 0.25^2 / 3) =
    11.6/255 (the package's correlated-noise PSD input fails with numpy >= 2.0, and the
    blind estimate of the noise level below is about 0.5/255 here, which leaves the
    stripes untouched);
  - band-missing: the missing bands (known to it from the simulator's mask) are first
    filled by linear interpolation along the spectrum from the nearest observed bands
    (copy of the nearest one at the ends), then BM4D at the estimated sigma;
  - inpaint: the missing pixels (mask known) are first filled by piecewise-linear
    interpolation over a Delaunay triangulation of the observed pixels (all bands at once;
    nearest observed pixel outside their convex hull), then BM4D at the estimated sigma.

  "Estimated sigma" is the median over bands of hsirestore.inference.restore.estimate_noise
  (1.4826 * MAD of the diagonal Haar detail) of the filled cube, at least 1/255. For the
  two completion tasks the observed values are put back after BM4D (data consistency,
  possible because the mask is known); the model gets no mask (see keep_observed above).

Metrics (hsirestore.metrics.compute_metrics, data range 1, float): every output, and the
input row, is clipped to [0, 1] first. MPSNR is the mean over bands of the per-band PSNR,
each capped at 100 dB (a band with zero error, e.g. an observed band of band-missing, would
otherwise count as infinite). MSSIM: per-band SSIM, averaged. SAM (degrees) leaves out
pixels whose reference spectrum is all zero and counts an all-zero prediction as 90 degrees,
so the input row of inpaint is about 0.7 x 90. band-missing gets a second row with the
figures over the missing bands only. Seconds per cube: wall time of the method on one cube (the model's
includes normalisation and tiling, BM4D's includes the filling), with ``--threads`` CPU
threads for torch (BM4D's library is single-threaded). Printed means are over the scenes.

    python benchmarks/restore_val.py [--tasks noise,inpaint] [--scenes 3] [--crop 256]
        [--methods hsivar,bm4d] [--model hsivar-compact] [--weights FILE]
        [--device cpu] [--threads 1] [--tile N] [--split val|train] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsirestore.metrics.core import PSNR_CAP_DB  # noqa: E402
from hsirestore.physics.degradations import PARAMS, jsonable_info, parse_degradation  # noqa: E402
from hsirestore.training.cave import cave_files, centre_crop, load_cave_scene, shared_data_dir  # noqa: E402

#: task name -> degradation spec (values of issue 4)
TASKS = {
    "noise": "noise:sigma=30",
    "blur+noise": "blur:sigma=1.6+noise:sigma=15",
    "stripes": "stripes:min=0.05,max=0.15,strength=0.25",
    "band-missing": "band-missing:ratio=0.3",
    "inpaint": "inpaint:ratio=0.7",
}
METHODS = ("hsivar", "bm4d")
PSNR_CAP = PSNR_CAP_DB  # 100 dB, as in compute_metrics (kept here even when every band is exact)
SIGMA_FLOOR = 1.0 / 255.0
KEYS = ("mpsnr", "mssim", "sam_deg")


# ------------------------------------------------------------------ filling (BM4D pre-step)
def fill_bands(y: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """y (B, H, W), missing (B,) bool -> y with the missing bands linearly interpolated along
    the band index from the nearest observed bands (nearest band copied beyond the ends)."""
    keep = np.flatnonzero(~missing)
    if keep.size == 0:
        return y.copy()
    out = y.copy()
    for k in np.flatnonzero(missing):
        j = int(np.searchsorted(keep, k))
        if j == 0:
            out[k] = y[keep[0]]
        elif j == keep.size:
            out[k] = y[keep[-1]]
        else:
            a, b = keep[j - 1], keep[j]
            t = (k - a) / (b - a)
            out[k] = (1 - t) * y[a] + t * y[b]
    return out


def fill_pixels(y: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """y (B, H, W), missing (H, W) bool -> y with the missing pixels filled by linear
    interpolation over a Delaunay triangulation of the observed ones (all bands at once),
    nearest observed pixel outside their convex hull."""
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    if not missing.any() or missing.all():
        return y.copy()
    pts = np.argwhere(~missing).astype(np.float64)
    vals = y[:, ~missing].T.astype(np.float64)  # (n, B)
    q = np.argwhere(missing).astype(np.float64)
    if len(pts) >= 3:
        try:
            f = LinearNDInterpolator(pts, vals)(q)
        except Exception:  # degenerate (collinear) point sets: Qhull refuses them
            f = np.full((len(q), y.shape[0]), np.nan)
    else:
        f = np.full((len(q), y.shape[0]), np.nan)
    bad = ~np.isfinite(f).all(1)
    if bad.any():
        f[bad] = NearestNDInterpolator(pts, vals)(q[bad])
    out = y.copy()
    out[:, missing] = f.T.astype(y.dtype)
    return out


def estimated_sigma(x: np.ndarray) -> float:
    """Median over bands of the package's Haar-MAD noise estimate, at least 1/255."""
    from hsirestore.inference.restore import estimate_noise

    return max(float(np.median(estimate_noise(x))), SIGMA_FLOOR)


def stripes_sigma(spec: str) -> float:
    """RMS of the stripe error of a stripes spec: sqrt(mean fraction * strength^2 / 3)."""
    step = next(s for s in parse_degradation(spec).steps if s.name == "stripes")
    p = {**PARAMS["stripes"], **step.params}
    return math.sqrt(0.5 * (p["min"] + p["max"]) * p["strength"] ** 2 / 3.0)


def bm4d_peer(task: str, y: np.ndarray, info: dict, bm4d_fn) -> tuple[np.ndarray, dict]:
    """The BM4D pipeline of one task: y (B, H, W) degraded -> (estimate (B, H, W), notes)."""
    spec = TASKS[task]
    steps = {s["name"]: s for s in info["steps"]}
    keep_mask = None
    if task in ("noise", "blur+noise"):
        sigma, how = steps["noise"]["sigma"] / 255.0, "true noise sigma"
        z = y
    elif task == "stripes":
        sigma, how = stripes_sigma(spec), "nominal stripe RMS"
        z = y
    elif task == "band-missing":
        mb = info["masks"]["band-missing"]
        z = fill_bands(y, mb)
        sigma, how = estimated_sigma(z), "estimated after spectral interpolation"
        keep_mask = ~mb[:, None, None]
    elif task == "inpaint":
        mp = info["masks"]["inpaint"]
        z = fill_pixels(y, mp)
        sigma, how = estimated_sigma(z), "estimated after Delaunay linear interpolation"
        keep_mask = ~mp[None]
    else:
        raise ValueError(task)
    out = bm4d_fn(np.ascontiguousarray(z.transpose(1, 2, 0), np.float64), sigma)
    out = np.asarray(out, np.float32).transpose(2, 0, 1)
    if keep_mask is not None:
        out = np.where(keep_mask, y, out).astype(np.float32)
    return out, {"bm4d_sigma_255": round(sigma * 255.0, 4), "bm4d_sigma_rule": how}


# ------------------------------------------------------------------ metrics
def metrics(pred: np.ndarray, ref: np.ndarray) -> dict:
    """MPSNR (per-band PSNR capped at PSNR_CAP), MSSIM, SAM of clip(pred, 0, 1)."""
    from hsirestore.metrics import compute_metrics

    m = compute_metrics(np.clip(np.nan_to_num(pred), 0.0, 1.0).astype(np.float32), ref, data_range=1.0)
    pb = np.minimum(np.asarray(m["per_band"]["psnr"], np.float64), PSNR_CAP)
    return {"mpsnr": float(pb.mean()), "mssim": m["mssim"], "sam_deg": m["sam_deg"],
            "psnr_per_band": [round(float(v), 4) for v in pb]}


def _finite(obj):
    """Non-finite floats -> None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def missing_shipped_weights(model_name: str) -> str | None:
    """Why the shipped weights of ``model_name`` cannot be used because the file is absent
    (not in the weights folder or not listed in its manifest), else None. An unknown model
    raises ModelError; a model without shipped weights, or a file whose checksum does not
    match, is left to the Restorer (an error, not a skip)."""
    from hsirestore.registry import get_spec
    from hsirestore.weights import read_manifest, weights_dir

    spec = get_spec(model_name)
    if spec.weights is None:
        return None
    folder = weights_dir()
    if (folder / spec.weights).is_file() and spec.weights in read_manifest(folder).get("files", {}):
        return None
    return f"no shipped weights {spec.weights!r} in {folder} (train them, or pass --weights FILE)"


def _error(msg: str) -> int:
    print(f"restore_val: error: {msg}", file=sys.stderr)
    return 2


def _fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "-"


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of: " + ", ".join(TASKS))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: hsivar, bm4d")
    ap.add_argument("--scenes", type=int, default=3, help="first N scenes of the split")
    ap.add_argument("--split", default="val", choices=("val", "train"),
                    help="CAVE split (train: for development choices; report on val)")
    ap.add_argument("--tile", type=int, default=None,
                    help="model tile side in pixels (default: the Restorer's; 0: whole crop)")
    ap.add_argument("--crop", type=int, default=256, help="centre crop side (pixels)")
    ap.add_argument("--ensemble", action="store_true", help="HSI-VAR with the 4-flip self-ensemble")
    ap.add_argument("--model", default="hsivar-compact", help="registered restoration preset")
    ap.add_argument("--weights", default=None, help="checkpoint (default: the preset's shipped file)")
    ap.add_argument("--device", default="cpu", help="device of the model: cpu, cuda, auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--json", default=None, help="save all per-scene figures here")
    args = ap.parse_args(argv)

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [t for t in tasks if t not in TASKS] + [m for m in methods if m not in METHODS]
    if bad or not tasks:
        return _error(f"unknown task/method {', '.join(bad) or '(no task given)'}; tasks: "
                      f"{', '.join(TASKS)}; methods: {', '.join(METHODS)}")
    if args.crop < 16 or args.scenes < 1 or args.threads < 1:
        return _error(f"--crop must be >= 16, --scenes and --threads >= 1; got --crop {args.crop}, "
                      f"--scenes {args.scenes}, --threads {args.threads}")
    if args.tile is not None and args.tile != 0 and args.tile < 8:
        return _error(f"--tile must be 0 (whole crop) or at least 8; got {args.tile}")

    import torch

    torch.set_num_threads(args.threads)
    from hsirestore.errors import HsiRestoreError
    from hsirestore.inference.restore import Restorer

    runners: dict = {}
    if "hsivar" in methods:
        try:
            # only a missing shipped weights file is a skip; every other problem is an error
            from hsirestore.inference.device import resolve_device

            resolve_device(args.device)
            missing = None if args.weights is not None else missing_shipped_weights(args.model)
            if missing:
                print(f"HSI-VAR skipped: {missing}")
            else:
                kw = {} if args.tile is None else {"tile": args.tile or None,
                                                   "overlap": min(16, args.tile // 4)}
                restorer = Restorer(args.model, weights=args.weights, device=args.device,
                                    scaling="none", temperature=0.0, seed=0,
                                    ensemble=args.ensemble, **kw)
                runners["hsivar"] = restorer
                print(f"model: {restorer.describe()} on {restorer.device}")
        except HsiRestoreError as e:
            return _error(str(e))
    if "bm4d" in methods:
        try:
            import bm4d as _bm4d

            runners["bm4d"] = _bm4d.bm4d
        except ImportError:
            print("BM4D skipped: the bm4d package is not installed (pip install -e '.[bench]')")

    paths = cave_files(args.split)[: args.scenes]
    if not paths:
        print(f"restore_val: CAVE {args.split} scenes not found under {shared_data_dir()}; nothing to do")
        return 0

    rows: list[dict] = []

    def record(scene, task, method, pred, ref, sec, extra=None, missing_bands=None):
        m = metrics(pred, ref)
        row = {"scene": scene, "task": task, "method": method, **m, "seconds": sec, **(extra or {})}
        if missing_bands is not None and missing_bands.any():
            row["missing_bands_only"] = {k: v for k, v in metrics(pred[missing_bands], ref[missing_bands]).items()
                                         if k in KEYS}
        rows.append(row)
        print(f"{scene:14s} {task:13s} {method:7s} PSNR {m['mpsnr']:6.2f}  SSIM {m['mssim']:.4f}  "
              f"SAM {_fmt(m['sam_deg'], '5.2f'):>5s}  {_fmt(sec, '7.2f'):>7s} s", flush=True)

    degradation_info: dict = {}
    for seed, path in enumerate(paths):
        name = path.stem
        cube, _ = load_cave_scene(path)
        if min(cube.shape[1:]) < args.crop:
            return _error(f"--crop {args.crop} is larger than {name} {cube.shape[1:]}")
        x = np.ascontiguousarray(centre_crop(cube, args.crop), np.float32)
        for task in tasks:
            y, info = parse_degradation(TASKS[task]).apply(x, seed=seed)
            degradation_info.setdefault(task, {})[name] = jsonable_info(info)
            mb = info["masks"].get("band-missing")
            record(name, task, "input", y, x, None, missing_bands=mb)
            if "hsivar" in runners:
                t0 = time.perf_counter()
                out = runners["hsivar"].restore(y, degradation=TASKS[task]).data
                record(name, task, "hsivar", out, x, time.perf_counter() - t0, missing_bands=mb)
            if "bm4d" in runners:
                t0 = time.perf_counter()
                out, notes = bm4d_peer(task, y, info, runners["bm4d"])
                record(name, task, "bm4d", out, x, time.perf_counter() - t0, notes, missing_bands=mb)

    summary: dict = {}
    for task in tasks:
        for method in ["input", *runners]:
            r = [row for row in rows if row["task"] == task and row["method"] == method]
            if not r:
                continue
            s = {k: float(np.mean([row[k] for row in r])) for k in KEYS}
            s["seconds"] = float(np.mean([row["seconds"] for row in r])) if method != "input" else None
            if all("missing_bands_only" in row for row in r):
                s["missing_bands_only"] = {k: float(np.mean([row["missing_bands_only"][k] for row in r]))
                                           for k in KEYS}
            summary.setdefault(task, {})[method] = s

    print(f"\nmean over {len(paths)} scene(s), {args.crop}x{args.crop} crops, 31 bands")
    print(f"{'task':28s} {'method':7s} {'MPSNR':>7s} {'MSSIM':>7s} {'SAM':>6s} {'s/cube':>8s}")
    for task, per in summary.items():
        for label, key in ((task, None), (f"{task} (missing bands)", "missing_bands_only")):
            for method, s in per.items():
                v = s if key is None else s.get(key)
                if v is None:
                    continue
                sec = _fmt(s["seconds"], "8.2f") if key is None else "-"
                print(f"{label:28s} {method:7s} {v['mpsnr']:7.2f} {v['mssim']:7.4f} "
                      f"{_fmt(v['sam_deg'], '6.2f'):>6s} {sec:>8s}")

    if args.json:
        out = {
            "split": args.split, "scenes": [p.stem for p in paths], "seeds": list(range(len(paths))), "crop": args.crop,
            "bands": 31, "tasks": {t: TASKS[t] for t in tasks},
            "methods": {"hsivar": runners["hsivar"].describe() if "hsivar" in runners else None,
                        "bm4d": "bm4d " + _version("bm4d") if "bm4d" in runners else None},
            "device": str(runners["hsivar"].device) if "hsivar" in runners else "cpu",
            "cpu_threads": args.threads,
            "metric_convention": "outputs clipped to [0, 1]; per-band PSNR (peak 1, capped at "
                                 f"{PSNR_CAP:g} dB) averaged; per-band SSIM averaged; SAM degrees "
                                 "(pixels whose reference spectrum is all zero left out; an all-zero "
                                 "prediction counts as 90 degrees)",
            "degradations": degradation_info, "rows": rows, "mean": summary,
        }
        Path(args.json).write_text(json.dumps(_finite(out), indent=2, allow_nan=False))
        print(f"saved {args.json}")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
