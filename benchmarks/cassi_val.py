"""CASSI decoding on the 3 CAVE validation scenes: shipped S2-Transformer vs GAP-TV.

Each scene: 256x256 centre crop, CAVE's 31 bands interpolated onto the 28 TSA-Net bands,
measurement simulated with ../shared/data/cassi/mask_256.mat (step 2, noiseless). Metrics:
MPSNR / MSSIM per band with data range 1 (float, no uint8 quantisation), SAM in degrees.

    python benchmarks/cassi_val.py [--methods s2former,s2former-gaptv,gap-tv] [--iters 120]
        [--flip-ensemble] [--json out.json]

``s2former`` is the decoder's default model (or --model/--weights); other method names are
registered CASSI models run with their shipped weights.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="s2former,gap-tv")
    ap.add_argument("--model", default=None, help="registered model (default: the decoder's)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--iters", type=int, default=120, help="GAP-TV iterations")
    ap.add_argument("--tv-weight", type=float, default=4.0)
    ap.add_argument("--flip-ensemble", action="store_true",
                    help="learned methods: average with the decode of the up-down flipped system")
    ap.add_argument("--split", default="val", help="val (report) or train (tuning only)")
    ap.add_argument("--limit", type=int, default=0, help="first N scenes only")
    ap.add_argument("--json", default=None, help="save the results here")
    args = ap.parse_args(argv)

    from hsirestore.training.cave import cave_files, centre_crop, load_cave_scene, shared_data_dir

    data = shared_data_dir()
    if not (data / "cave" / args.split).is_dir() or not (data / "cassi" / "mask_256.mat").exists():
        print(f"cassi_val: data not found under {data}; nothing to do")
        return 0
    import torch

    from hsirestore.errors import HsiRestoreError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.io import read_cube
    from hsirestore.metrics import compute_metrics
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, cassi_forward, interpolate_bands

    torch.set_num_threads(2)
    mask = read_cube(data / "cassi" / "mask_256.mat", var="mask").data[0]
    paths = cave_files(args.split)
    if args.limit:
        paths = paths[: args.limit]
    decoders = {}
    for m in args.methods.split(","):
        try:
            if m == "gap-tv":
                decoders[m] = CassiDecoder(method="gap-tv", device="cpu", gaptv_iters=args.iters,
                                           gaptv_weight=args.tv_weight)
            elif m in ("s2former", "model"):
                decoders[m] = CassiDecoder(method="s2former", model_name=args.model,
                                           weights=args.weights, device="cpu",
                                           flip_ensemble=args.flip_ensemble)
            else:  # a registered CASSI model with shipped weights, e.g. s2former-gaptv
                decoders[m] = CassiDecoder(method="s2former", model_name=m, device="cpu",
                                           flip_ensemble=args.flip_ensemble)
        except HsiRestoreError as e:
            print(f"cassi_val: skipping {m}: {e}")
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
            print(f"{name:14s} {m:9s} PSNR {met['mpsnr']:6.2f}  SSIM {met['mssim']:.4f}  "
                  f"SAM {met['sam_deg']:5.2f}  {sec:6.1f} s", flush=True)
    summary = {}
    print(f"\n{'method':10s} {'MPSNR':>7s} {'MSSIM':>7s} {'SAM':>6s} {'s/meas':>7s}")
    for m in decoders:
        r = [row for row in rows if row["method"] == m]
        if not r:
            continue
        summary[m] = {k: float(np.mean([row[k] for row in r])) for k in ("mpsnr", "mssim", "sam_deg", "seconds")}
        s = summary[m]
        print(f"{m:10s} {s['mpsnr']:7.2f} {s['mssim']:7.4f} {s['sam_deg']:6.2f} {s['seconds']:7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "crop": 256, "bands": 28, "mask": "mask_256.mat",
                       "metric_convention": "per-band PSNR/SSIM, data range 1, float; SAM degrees",
                       "cpu_threads": 2, "rows": rows, "mean": summary}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
