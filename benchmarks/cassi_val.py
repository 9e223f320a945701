"""CASSI decoding on the 3 CAVE validation scenes: shipped S2-Transformer vs GAP-TV.

Each scene: 256x256 centre crop, CAVE's 31 bands interpolated onto the 28 TSA-Net bands,
measurement simulated with ../shared/data/cassi/mask_256.mat (step 2, noiseless). Metrics:
MPSNR / MSSIM per band with data range 1 (float, no uint8 quantisation), SAM in degrees.

    python benchmarks/cassi_val.py [--methods s2former-unfolded,s2former-gaptv,gap-tv]
        [--iters 120] [--flip-ensemble] [--threads 2] [--limit N] [--json out.json]

``s2former`` (or ``model``) is the decoder's default model, ``s2former-gaptv`` (or
--model/--weights); other method names are registered CASSI models run with their shipped
weights. Rows are labelled with the model actually decoded (``s2former`` prints as
``s2former-gaptv``), and a method that names a model already in the list is decoded once.
A learned model whose shipped weights file is missing is skipped with a message; any other
option mistake (unknown model, bad --weights, --iters < 1, ...) is an error (exit status 2).

Seconds per measurement are wall time with ``--threads`` torch CPU threads; the default, 2,
is what the README's figures were measured with (2 CPU cores, nothing else running).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def missing_shipped_weights(model_name: str | None) -> str | None:
    """Why the shipped weights of ``model_name`` (None: the decoder's default) cannot be used
    because the file is absent (not in the weights folder or not in its manifest), else None.
    An unknown model raises ModelError; everything else is left to the decoder."""
    from hsirestore.inference.cassi import DEFAULT_MODEL
    from hsirestore.registry import get_spec
    from hsirestore.weights import read_manifest, weights_dir

    spec = get_spec(model_name or DEFAULT_MODEL)
    if spec.weights is None:
        return None
    folder = weights_dir()
    if (folder / spec.weights).is_file() and spec.weights in read_manifest(folder).get("files", {}):
        return None
    return f"no shipped weights {spec.weights!r} in {folder}"


def _error(msg: str) -> int:
    print(f"cassi_val: error: {msg}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="s2former,gap-tv",
                    help="comma-separated: s2former (the default model or --model/--weights), "
                         "registered CASSI models (shipped weights), gap-tv")
    ap.add_argument("--model", default=None, help="registered model (default: the decoder's)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--iters", type=int, default=120, help="GAP-TV iterations")
    ap.add_argument("--tv-weight", type=float, default=4.0)
    ap.add_argument("--flip-ensemble", action="store_true",
                    help="learned methods: average with the decode of the up-down flipped system")
    ap.add_argument("--split", default="val", choices=("val", "train"),
                    help="val (report) or train (tuning only)")
    ap.add_argument("--limit", type=int, default=0, help="first N scenes only (0: all)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch CPU threads (default 2, as for the README's figures)")
    ap.add_argument("--json", default=None, help="save the results here")
    args = ap.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        return _error(f"--methods {args.methods!r} names no method")
    if args.limit < 0 or args.threads < 1:
        return _error(f"--limit must be >= 0 (0: all scenes) and --threads >= 1; "
                      f"got --limit {args.limit}, --threads {args.threads}")

    import torch

    from hsirestore.errors import HsiRestoreError
    from hsirestore.inference.cassi import CassiDecoder

    torch.set_num_threads(args.threads)
    decoders: dict = {}  # label (the model actually decoded) -> decoder
    for m in methods:
        try:
            if m == "gap-tv":
                dec = CassiDecoder(method="gap-tv", device="cpu", gaptv_iters=args.iters,
                                   gaptv_weight=args.tv_weight)
            else:
                default = m in ("s2former", "model")
                name = args.model if default else m
                weights = args.weights if default else None
                missing = missing_shipped_weights(name) if weights is None else None
                if missing:
                    print(f"cassi_val: skipping {m}: {missing}")
                    continue
                dec = CassiDecoder(method="s2former", model_name=name, weights=weights,
                                   device="cpu", flip_ensemble=args.flip_ensemble)
        except HsiRestoreError as e:
            return _error(f"{m}: {e}")
        label = "gap-tv" if dec.method == "gap-tv" else dec.model_name
        if dec.method != "gap-tv" and m in ("s2former", "model") and args.weights is not None:
            label += f" ({Path(args.weights).name})"
        if dec.flip_ensemble:
            label += " +flip"
        if label in decoders:
            print(f"cassi_val: {m} is {label} again; decoded once")
            continue
        decoders[label] = dec

    from hsirestore.training.cave import cave_files, centre_crop, load_cave_scene, shared_data_dir

    data = shared_data_dir()
    if not (data / "cave" / args.split).is_dir() or not (data / "cassi" / "mask_256.mat").exists():
        print(f"cassi_val: data not found under {data}; nothing to do")
        return 0
    from hsirestore.io import read_cube
    from hsirestore.metrics import compute_metrics
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, cassi_forward, interpolate_bands

    mask = read_cube(data / "cassi" / "mask_256.mat", var="mask").data[0]
    paths = cave_files(args.split)
    if args.limit:
        paths = paths[: args.limit]
    w = max([9, *map(len, decoders)])
    print(f"cassi_val: {len(paths)} CAVE {args.split} scene(s), mask_256.mat, "
          f"{torch.get_num_threads()} CPU thread(s)")
    rows = []
    for path in paths:
        name = path.stem
        cube, wl = load_cave_scene(path)
        x = interpolate_bands(centre_crop(cube, 256), wl, CASSI_WAVELENGTHS_28).astype(np.float32)
        y = cassi_forward(x, mask, 2)
        for m, dec in decoders.items():
            t0 = time.perf_counter()
            out = dec.decode(y, mask)
            sec = time.perf_counter() - t0
            met = compute_metrics(out, x, data_range=1.0)
            rows.append({"scene": name, "method": m, "decoder": dec.describe(), "mpsnr": met["mpsnr"],
                         "mssim": met["mssim"], "sam_deg": met["sam_deg"], "seconds": sec})
            print(f"{name:14s} {m:{w}s} PSNR {met['mpsnr']:6.2f}  SSIM {met['mssim']:.4f}  "
                  f"SAM {met['sam_deg']:5.2f}  {sec:6.1f} s", flush=True)
    summary = {}
    print(f"\n{'method':{w}s} {'MPSNR':>7s} {'MSSIM':>7s} {'SAM':>6s} {'s/meas':>7s}")
    for m in decoders:
        r = [row for row in rows if row["method"] == m]
        if not r:
            continue
        summary[m] = {k: float(np.mean([row[k] for row in r])) for k in ("mpsnr", "mssim", "sam_deg", "seconds")}
        s = summary[m]
        print(f"{m:{w}s} {s['mpsnr']:7.2f} {s['mssim']:7.4f} {s['sam_deg']:6.2f} {s['seconds']:7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "crop": 256, "bands": 28, "mask": "mask_256.mat",
                       "metric_convention": "per-band PSNR/SSIM, data range 1, float; SAM degrees",
                       "cpu_threads": torch.get_num_threads(), "rows": rows, "mean": summary},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
