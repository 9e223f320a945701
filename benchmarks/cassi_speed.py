"""CASSI decoding speed: seconds per measurement for each method, side by side in one run.

Needs no data: the masks are random (or --mask FILE.mat) and the scene random, which does
not change the work done. Each method decodes once to warm up, then ``--repeat`` times; the
best time is printed, with peak GPU memory on CUDA.

    python benchmarks/cassi_speed.py [--device cuda] [--sizes 256,660]
        [--methods s2former-gaptv,s2former-unfolded,gap-tv] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--sizes", default="256,660", help="square mask sizes (pixels)")
    ap.add_argument("--methods", default="s2former-gaptv,s2former-unfolded,gap-tv",
                    help="registered CASSI models (shipped weights) or gap-tv")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = ap.parse_args(argv)

    import torch

    from hsirestore.errors import HsiRestoreError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.physics.cassi import cassi_forward

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        decoders = {m: (CassiDecoder("gap-tv", device=args.device) if m == "gap-tv"
                        else CassiDecoder("s2former", model_name=m, device=args.device))
                    for m in args.methods.split(",") if m}
    except (ValueError, HsiRestoreError) as e:
        print(f"cassi_speed: {e}", file=sys.stderr)
        return 2
    dev = next(iter(decoders.values())).device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    rng = np.random.default_rng(0)
    print(f"{'size':>9}  {'method':<18} {'s/meas':>8}  {'peak GPU GiB':>12}")
    for n in sizes:
        mask = rng.random((n, n), dtype=np.float32)
        meas = cassi_forward((rng.random((28, n, n), dtype=np.float32) * 0.3), mask, 2)
        for method, dec in decoders.items():
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            dec.decode(meas, mask)  # warm-up
            best = float("inf")
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                out = dec.decode(meas, mask)
                best = min(best, time.perf_counter() - t0)
            assert out.shape == (28, n, n)
            peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:12.2f}" if dev.type == "cuda" else f"{'-':>12}"
            print(f"{n:>4}x{n + 54:<4}  {method:<18} {best:8.3f}  {peak}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
