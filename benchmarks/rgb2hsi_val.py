"""RGB -> HSI validation on the 3 CAVE val scenes (jelly_beans, oil_painting, paints).

RGB is rendered from each val cube through the NTIRE 2022 camera response
(hsirestore.physics.rgb.render_rgb: linear, normalised so white gives G = 1, clipped to
[0, 1]). Methods: the shipped MCGA model (skipped with a message when its weights are absent)
and the shipped root-polynomial baseline. Conditions:

- ``ntire``: the NTIRE camera (the training camera);
- ``dark``: RGB ** (1 / 0.9) (the paper's -10% brightness test), MCGA with and without TTA;
- ``heldout-<cam>``: a camspec camera never used in training (Nokia_N900), fed as is and
  with the 3x3 ``--camera`` conversion into the NTIRE camera space.

Each method also runs with ``consistency=True`` (``+cons``: every output spectrum projected
onto those that render exactly to the input RGB through the camera response; the NTIRE
response, or the held-out camera's own with ``--camera``).

Metrics (hsirestore.metrics.compute_metrics, over the whole 512x512 cube, data range 1):
MRAE (NTIRE: mean |p - r| / r over reference values > 1e-3), RMSE, PSNR global (NTIRE
convention: one MSE over the whole cube), SAM (degrees), plus seconds per megapixel.

The held-out camera's rows need ``camera/camspec/Nokia_N900.csv`` in the data folder; when
it is missing they are left out with one message. The one-off fit of the ``--camera`` 3x3
conversion (and the imports it needs) is done before any timing and printed on its own line,
so that it is not charged to the first method's ``+camera`` row.

Methods: ``poly`` runs when the shipped baseline file is present and MCGA when its shipped
weights are; a missing shipped file is skipped with a message, other option mistakes
(unknown --model, a bad --weights file, --device cuda without a GPU) are errors (exit 2).

    python benchmarks/rgb2hsi_val.py [--fit-poly] [--model mcga-compact] [--json out.json]
        [--no-tta] [--split val|train] [--scenes N] [--threads N]

``--fit-poly`` refits the shipped baseline (weights/rgb2hsi-poly.npz) on the 20 CAVE train
scenes and updates its manifest entry (other entries are kept).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsirestore.baselines import POLY_FILE, RootPolyModel  # noqa: E402
from hsirestore.inference.rgb2hsi import WAVELENGTHS, RgbToHsi  # noqa: E402
from hsirestore.metrics import compute_metrics  # noqa: E402
from hsirestore.physics.rgb import default_camera_path, load_camera_response, render_rgb  # noqa: E402
from hsirestore.training.cave import cave_files, load_cave_scene, shared_data_dir  # noqa: E402

HELDOUT_CAMERA = "Nokia_N900"
KEYS = ("mrae", "rmse", "psnr_global", "sam_deg")


def missing_shipped_file(file_name: str | None) -> str | None:
    """Why the shipped file ``file_name`` cannot be used because it is absent (not in the
    weights folder or not listed in its manifest), else None."""
    from hsirestore.weights import read_manifest, weights_dir

    if file_name is None:
        return None
    folder = weights_dir()
    if (folder / file_name).is_file() and file_name in read_manifest(folder).get("files", {}):
        return None
    return f"no shipped weights {file_name!r} in {folder}"


def _error(msg: str) -> int:
    print(f"rgb2hsi_val: error: {msg}", file=sys.stderr)
    return 2


def _finite(obj):
    """Non-finite floats -> None (strict JSON)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def fit_poly(degree: int = 3, ridge: float = 1e-4, per_scene: int = 40000, seed: int = 0):
    wl_r, resp = load_camera_response(default_camera_path())
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    files = cave_files("train")
    for p in files:
        cube, wl = load_cave_scene(p)
        rgb = render_rgb(cube, wl, wl_r, resp)
        idx = rng.choice(cube.shape[1] * cube.shape[2], per_scene, replace=False)
        xs.append(rgb.reshape(3, -1)[:, idx])
        ys.append(cube.reshape(cube.shape[0], -1)[:, idx])
    x, y = np.concatenate(xs, 1), np.concatenate(ys, 1)
    model = RootPolyModel.fit(x, y, degree=degree, ridge=ridge, wavelengths=WAVELENGTHS)
    return model, len(files), x.shape[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit-poly", action="store_true")
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument("--ridge", type=float, default=1e-4)
    ap.add_argument("--model", default="mcga-compact")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--tta-steps", type=int, default=5)
    ap.add_argument("--tta-lr", type=float, default=1e-4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-tta", action="store_true", help="skip the (slow) TTA rows")
    ap.add_argument("--split", default="val", choices=("val", "train"),
                    help="CAVE split (train: for development choices; report on val)")
    ap.add_argument("--scenes", type=int, default=0, help="first N scenes of the split (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.scenes < 0 or args.threads < 0:
        return _error(f"--scenes and --threads must be >= 0 (0: all scenes / torch's default); "
                      f"got --scenes {args.scenes}, --threads {args.threads}")

    # model options first: a mistake there is an error even where the data are missing
    from hsirestore.errors import HsiRestoreError
    from hsirestore.registry import get_spec

    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        from hsirestore.inference.device import resolve_device

        resolve_device(args.device)
        mcga_missing = None
        if args.weights is None:
            spec = get_spec(args.model)
            if spec.task == "rgb2hsi":
                mcga_missing = missing_shipped_file(spec.weights)
    except HsiRestoreError as e:
        return _error(str(e))

    val = cave_files(args.split)
    if args.scenes:
        val = val[: args.scenes]
    cam = default_camera_path()
    if not val or cam is None:
        print(f"skipped: CAVE val scenes / NTIRE response not found under {shared_data_dir()}")
        return 0
    wl_r, resp = load_camera_response(cam)
    held_csv = shared_data_dir() / "camera" / "camspec" / f"{HELDOUT_CAMERA}.csv"
    held = f"heldout-{HELDOUT_CAMERA}"
    if held_csv.is_file():
        wl_h, resp_h = load_camera_response(held_csv)
    else:
        print(f"{held} rows skipped: {held_csv} not found")
        held_csv = None

    from hsirestore.weights import read_manifest, sha256_file, weights_dir, write_manifest

    if args.fit_poly:
        t0 = time.perf_counter()
        model, n_scenes, n_px = fit_poly(args.degree, args.ridge)
        out = weights_dir() / POLY_FILE
        model.save(out, training_data=f"CAVE train ({n_scenes} scenes), NTIRE 2022 response")
        print(f"fitted degree {args.degree} ridge {args.ridge:g} on {n_px} pixels in "
              f"{time.perf_counter() - t0:.1f} s -> {out}")

    scenes = []
    for p in val:
        cube, wl = load_cave_scene(p)
        rgb = render_rgb(cube, wl, wl_r, resp)
        rgb_h = render_rgb(cube, wl, wl_h, resp_h) if held_csv is not None else None
        scenes.append((p.stem, cube, rgb, rgb_h))

    methods: list[tuple[str, RgbToHsi]] = []
    poly_missing = None if args.fit_poly else missing_shipped_file(POLY_FILE)
    if poly_missing:
        print(f"poly skipped: {poly_missing}")
    elif not args.fit_poly or (weights_dir() / POLY_FILE).exists():
        try:
            for name in ("poly", "poly+cons"):
                methods.append((name, RgbToHsi(
                    method="poly", consistency=name.endswith("+cons"),
                    weights=(weights_dir() / POLY_FILE) if args.fit_poly else None)))
        except HsiRestoreError as e:
            return _error(f"poly: {e}")
    if mcga_missing:
        print(f"MCGA skipped: {mcga_missing}")
    else:
        try:
            kw = dict(model_name=args.model, weights=args.weights, device=args.device)
            methods.append(("mcga", RgbToHsi(method="mcga", **kw)))
            methods.append(("mcga+cons", RgbToHsi(method="mcga", consistency=True, **kw)))
            if not args.no_tta:
                methods.append(("mcga+tta", RgbToHsi(method="mcga", tta=True, tta_steps=args.tta_steps,
                                                     tta_lr=args.tta_lr, **kw)))
        except HsiRestoreError as e:
            return _error(f"MCGA: {e}")

    if held_csv is not None:
        # the one-off --camera 3x3 fit (cached per camera file), before any timing
        from hsirestore.inference.rgb2hsi import convert_camera

        t0 = time.perf_counter()
        convert_camera(np.zeros((3, 1, 1), np.float32), held_csv)
        print(f"one-off --camera conversion fit for {HELDOUT_CAMERA}: "
              f"{time.perf_counter() - t0:.2f} s (not included in s/MP)")

    results: dict = {}

    def run(name, pred: RgbToHsi, cond, rgb, ref, camera=None):
        if camera is not None:
            pred.camera = camera
        t0 = time.perf_counter()
        out = pred.predict(rgb).data
        spm = (time.perf_counter() - t0) / (rgb.shape[1] * rgb.shape[2] / 1e6)
        pred.camera = None
        m = compute_metrics(np.nan_to_num(out), ref)
        results.setdefault(name, {}).setdefault(cond, []).append(
            {k: m[k] for k in KEYS} | {"s_per_mpix": spm})

    for name, pred in methods:
        for scene, cube, rgb, rgb_h in scenes:
            dark = (rgb ** (1 / 0.9)).astype(np.float32)
            if name != "mcga+tta":
                run(name, pred, "ntire", rgb, cube)
                if rgb_h is not None:
                    run(name, pred, held, rgb_h, cube)
                    run(name, pred, f"{held}+camera", rgb_h, cube, camera=held_csv)
            run(name, pred, "dark", dark, cube)

    summary = {n: {c: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                   for c, rs in conds.items()} for n, conds in results.items()}
    print(f"{'method':10s} {'condition':28s} {'MRAE':>7s} {'RMSE':>7s} {'PSNRg':>7s} {'SAM':>6s} {'s/MP':>7s}")
    for n, conds in summary.items():
        for c, m in conds.items():
            print(f"{n:10s} {c:28s} {m['mrae']:7.4f} {m['rmse']:7.4f} {m['psnr_global']:7.2f} "
                  f"{m['sam_deg']:6.2f} {m['s_per_mpix']:7.3f}")

    if args.fit_poly and "poly" in summary:
        man = read_manifest()
        man.setdefault("files", {})[POLY_FILE] = {
            "model": "rgb2hsi-poly",
            "sha256": sha256_file(weights_dir() / POLY_FILE),
            "config": {"degree": args.degree, "ridge": args.ridge, "terms": "root-polynomial"},
            "training_data": "CAVE train (20 scenes, 40000 random pixels each) rendered through "
                             "the NTIRE 2022 RGB response (linear, white -> G = 1)",
            "val_metrics": {c: {k: round(v, 5) for k, v in m.items()} for c, m in summary["poly"].items()},
            "val_data": "CAVE val (jelly_beans, oil_painting, paints), benchmarks/rgb2hsi_val.py",
            "reference": "Finlayson, Mackiewicz, Hurlbert, Color correction using root-polynomial "
                         "regression, IEEE TIP 2015",
        }
        write_manifest(man)
        print("manifest entry updated")
    if args.json:
        Path(args.json).write_text(json.dumps(_finite(summary), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
