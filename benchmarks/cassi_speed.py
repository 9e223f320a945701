"""CASSI decoding speed: seconds per measurement for each method, side by side in one run.

Needs no data by default: each mask is uniform random in [0, 1) at each ``--sizes`` side.
``--mask FILE[,FILE...]`` times with the given mask files instead (any format
``hsirestore.io.read_cube`` reads, one 2-D mask each; one row per mask, at its own size), and
``--mask tsa`` with the TSA-Net masks of the data folder (``cassi/mask_256.mat`` and
``cassi/mask_real_660.mat`` under ``$HSIRESTORE_DATA`` or ../shared/data: the simulation and
the real-system geometry). The scene is random (28 bands, values in [0, 0.3)), which does not
change the work done; the measurement is simulated from it with the mask (step 2). Each
method decodes once to warm up, then ``--repeat`` times; the best time is printed, with peak
GPU memory on CUDA.

    python benchmarks/cassi_speed.py [--device cuda] [--sizes 256,660 | --mask tsa]
        [--methods s2former-gaptv,s2former-unfolded,gap-tv] [--repeat 3] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

TSA_MASKS = ("mask_256.mat", "mask_real_660.mat")


def _error(msg: str) -> int:
    print(f"cassi_speed: {msg}", file=sys.stderr)
    return 2


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def load_masks(spec: str) -> list[tuple[str, np.ndarray]]:
    """``--mask`` value -> [(label, mask (H, W) float32)]; raises HsiRestoreError/ValueError."""
    from hsirestore.errors import FormatError, InvalidValueError, ShapeError
    from hsirestore.io import read_cube

    if spec.strip().lower() == "tsa":
        from hsirestore.training.cave import shared_data_dir

        folder = shared_data_dir() / "cassi"
        paths = [folder / n for n in TSA_MASKS]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FormatError(f"--mask tsa: {', '.join(missing)} not found "
                              "(set HSIRESTORE_DATA to the data folder)")
    else:
        paths = [Path(p) for p in _csv(spec)]
        if not paths:
            raise ValueError("--mask needs at least one file")
    out = []
    for p in paths:
        if not p.is_file():
            raise FormatError(f"--mask {p}: file not found")
        cube = read_cube(p)
        if cube.shape[0] != 1:
            raise ShapeError(f"--mask {p}: expected one 2-D mask, got {cube.shape[0]} bands")
        m = np.asarray(cube.data[0], np.float32)
        if not np.isfinite(m).all() or (cube.valid is not None and not cube.valid.all()):
            raise InvalidValueError(f"--mask {p}: the mask has NaN/Inf/nodata pixels")
        if m.size == 0 or m.min() < 0 or m.max() > 1:
            raise InvalidValueError(f"--mask {p}: a coded-aperture mask holds transmissions in [0, 1]"
                                    + (f"; got {m.min():g}..{m.max():g}" if m.size else "; it is empty"))
        out.append((p.name, m))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--sizes", default=None,
                    help="square random-mask sizes in pixels (default 256,660; not with --mask)")
    ap.add_argument("--mask", default=None,
                    help="time with these mask files (comma-separated), or 'tsa' for the TSA-Net "
                         "masks in the data folder (cassi/mask_256.mat, cassi/mask_real_660.mat)")
    ap.add_argument("--methods", default="s2former-gaptv,s2former-unfolded,gap-tv",
                    help="registered CASSI models (shipped weights) or gap-tv")
    ap.add_argument("--repeat", type=int, default=3, help="timed decodes after the warm-up (>= 1)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = ap.parse_args(argv)

    if args.repeat < 1 or args.threads < 0:
        return _error(f"--repeat must be >= 1 and --threads >= 0; got {args.repeat}, {args.threads}")
    methods = _csv(args.methods)
    if not methods:
        return _error(f"--methods {args.methods!r} names no method; use registered CASSI models "
                      "(e.g. s2former-gaptv, s2former-unfolded) or gap-tv")
    if args.mask is not None and args.sizes is not None:
        return _error("give --sizes (random masks) or --mask (mask files), not both")

    import torch

    from hsirestore.errors import HsiRestoreError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.physics.cassi import cassi_forward

    rng = np.random.default_rng(0)
    try:
        if args.mask is not None:
            masks = load_masks(args.mask)
            mask_note = "masks: " + ", ".join(f"{n} ({m.shape[0]}x{m.shape[1]})" for n, m in masks)
        else:
            sizes = [int(s) for s in _csv(args.sizes or "256,660")]
            if not sizes or min(sizes) < 1:
                raise ValueError(f"--sizes must be positive integers; got {args.sizes!r}")
            masks = [(f"{n}", None) for n in sizes]
            mask_note = "masks: uniform random"
        if args.threads:
            torch.set_num_threads(args.threads)
        decoders = {m: (CassiDecoder("gap-tv", device=args.device) if m == "gap-tv"
                        else CassiDecoder("s2former", model_name=m, device=args.device))
                    for m in dict.fromkeys(methods)}
    except (ValueError, HsiRestoreError) as e:
        return _error(str(e))
    dev = next(iter(decoders.values())).device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {mask_note}")
    print(f"{'size':>9}  {'method':<18} {'s/meas':>8}  {'peak GPU GiB':>12}"
          + ("  mask" if args.mask is not None else ""))
    for label, mask in masks:
        if mask is None:
            n = int(label)
            mask = rng.random((n, n), dtype=np.float32)
        rows, cols = mask.shape
        meas = cassi_forward((rng.random((28, rows, cols), dtype=np.float32) * 0.3), mask, 2)
        for method, dec in decoders.items():
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            try:
                dec.decode(meas, mask)  # warm-up
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    out = dec.decode(meas, mask)
                    best = min(best, time.perf_counter() - t0)
            except HsiRestoreError as e:
                return _error(f"{method} on {label}: {e}")
            assert out.shape == (28, rows, cols)
            peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:12.2f}" if dev.type == "cuda" else f"{'-':>12}"
            where = f"  {label}" if args.mask is not None else ""
            print(f"{rows:>4}x{cols + 54:<4}  {method:<18} {best:8.3f}  {peak}{where}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
