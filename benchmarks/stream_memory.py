"""Peak memory of streamed tiled inference on a large ENVI cube.

Creates (or reuses, with --path) a float32 BSQ ENVI cube, default 2048 x 2048 x 200 (3.36 GB),
pushes it through ``TiledPredictor.predict_stream`` with an identity model, checks the output
against the input on sampled windows (or everywhere with --verify-full) and prints peak RSS
(getrusage ru_maxrss and /proc/self/status VmHWM), seconds and MB/s. Target: peak RSS < 1.5 GB.
An existing ``--path`` file is taken as it is: its shape comes from its header
(``hsirestore.io.open_cube``; --rows/--cols/--bands are then ignored), and it may be any
format open_cube reads (``--local-io`` needs a float32 little-endian BSQ ENVI file without
header offset). The check compares windows read back through open_cube.

I/O goes through ``hsirestore.io.open_cube`` / ``hsirestore.io.create_cube``; ``--local-io``
uses the minimal ENVI reader/writer below instead (it maps 16 bands of the file at a time, only
for the duration of each window, so that mapped file pages do not accumulate in RSS).

Measured here (2 shared CPU cores, 2048 x 2048 x 200 float32, tile 256, overlap 32, batch 4,
hsirestore.io ENVI): peak RSS 857 MiB, 32.6 s, 103 MB/s, every pixel identical.

    python benchmarks/stream_memory.py --rows 512 --cols 512 --bands 50   # quick
    nice -n 10 python benchmarks/stream_memory.py                          # full size
"""
from __future__ import annotations

import argparse
import mmap
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


# ----------------------------------------------------------------------------- memory probes
def vm_status(key: str) -> int:
    """A /proc/self/status value in bytes (e.g. VmHWM, VmRSS); -1 when unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Samples VmRSS every ``dt`` seconds and keeps the maximum."""

    def __init__(self, dt: float = 0.05):
        super().__init__(daemon=True)
        self.dt, self.peak, self._stop_evt = dt, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.peak = max(self.peak, vm_status("VmRSS"))
            time.sleep(self.dt)

    def stop(self) -> int:
        self._stop_evt.set()
        self.join()
        return self.peak


# ----------------------------------------------------------------------------- minimal ENVI
def write_envi_header(path: Path, bands: int, rows: int, cols: int) -> None:
    path.with_suffix(".hdr").write_text(
        "ENVI\n"
        "description = {hsirestore stream_memory benchmark}\n"
        f"samples = {cols}\nlines = {rows}\nbands = {bands}\n"
        "header offset = 0\nfile type = ENVI Standard\ndata type = 4\n"
        "interleave = bsq\nbyte order = 0\n"
    )


def band_image(b: int, base: np.ndarray) -> np.ndarray:
    """Deterministic band b of the synthetic cube, float32 (rows, cols)."""
    return base * np.float32(1.0 + 0.001 * b) + np.float32(0.01 * b)


def create_input(path: Path, bands: int, rows: int, cols: int) -> None:
    """Write a BSQ float32 cube band by band (one band in memory at a time)."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    base = (np.sin(yy / 37.0) * np.cos(xx / 23.0) * 0.4 + 0.5).astype(np.float32)
    base += np.random.default_rng(0).normal(0, 0.02, base.shape).astype(np.float32)
    del yy, xx
    with open(path, "wb") as f:
        f.truncate(bands * rows * cols * 4)
    plane = rows * cols * 4
    for b in range(bands):
        mm = np.memmap(path, dtype="<f4", mode="r+", offset=b * plane, shape=(rows, cols))
        mm[:] = band_image(b, base)
        mm.flush()
        del mm
    write_envi_header(path, bands, rows, cols)


class _Windowed:
    """Maps the BSQ file only while a window is read or written, a few bands at a time, so
    mapped file pages never accumulate in RSS (they would count towards it)."""

    BAND_CHUNK = 16

    def __init__(self, path: Path, shape: tuple[int, int, int], write: bool):
        self.path, self.shape, self.write = Path(path), tuple(shape), write
        self.fd = os.open(self.path, os.O_RDWR if write else os.O_RDONLY)

    def _chunks(self, r0: int, r1: int):
        """Yield (band slice, mmap, view (nb, r1 - r0, cols)) over chunks of bands."""
        bands, rows, cols = self.shape
        plane = rows * cols * 4
        gran = mmap.ALLOCATIONGRANULARITY
        for b0 in range(0, bands, self.BAND_CHUNK):
            b1 = min(bands, b0 + self.BAND_CHUNK)
            first = b0 * plane + r0 * cols * 4
            start = first // gran * gran
            stop = (b1 - 1) * plane + r1 * cols * 4
            mm = mmap.mmap(self.fd, stop - start, offset=start,
                           access=mmap.ACCESS_WRITE if self.write else mmap.ACCESS_READ)
            view = np.ndarray((b1 - b0, r1 - r0, cols), "<f4", buffer=mm,
                              offset=first - start, strides=(plane, cols * 4, 4))
            yield slice(b0, b1), mm, view

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LocalSource(_Windowed):
    def __init__(self, path: Path, shape: tuple[int, int, int]):
        super().__init__(path, shape, write=False)
        from hsirestore.io.cube import Cube

        self.meta = Cube(np.zeros((shape[0], 1, 1), np.float32), source_dtype="float32")

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        out = np.empty((self.shape[0], r1 - r0, c1 - c0), np.float32)
        for bs, mm, view in self._chunks(r0, r1):
            out[bs] = view[:, :, c0:c1]
            del view
            mm.close()
        return out


class LocalSink(_Windowed):
    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.final = Path(path)
        tmp = self.final.with_name("." + self.final.name + ".tmp")
        with open(tmp, "wb") as f:
            f.truncate(int(np.prod(shape)) * 4)
        super().__init__(tmp, shape, write=True)

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        _, h, w = block.shape
        for bs, mm, view in self._chunks(r0, r0 + h):
            view[:, :, c0:c0 + w] = block[bs]
            del view
            mm.close()

    def commit(self) -> None:
        self.close()
        os.replace(self.path, self.final)
        write_envi_header(self.final, *self.shape)

    def abort(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def open_io(inp: Path, out: Path, shape, local: bool):
    """(source, sink, label): the project's ENVI streaming I/O if present, else the local one."""
    if not local:
        try:
            from hsirestore.io import create_cube, open_cube  # type: ignore[attr-defined]
        except ImportError:
            print("hsirestore.io.open_cube/create_cube not available: using --local-io")
        else:
            src = open_cube(inp)
            for call in (lambda: create_cube(out, src.shape, like=src.meta),
                         lambda: create_cube(out, src.meta, shape=src.shape),
                         lambda: create_cube(out, shape=src.shape, meta=src.meta)):
                try:
                    return src, call(), "hsirestore.io"
                except TypeError:
                    continue
            src.close()
            print("hsirestore.io.create_cube has an unexpected signature: using --local-io")
    return LocalSource(inp, shape), LocalSink(out, shape), "local memmap windows"


def existing_shape(path: Path, local: bool) -> tuple[int, int, int]:
    """(bands, rows, cols) of an existing input from its header; with ``local`` also check
    that the benchmark's own reader can map it (float32 little-endian BSQ, no header offset).
    Raises HsiRestoreError (unreadable file) or ValueError (not usable with --local-io)."""
    from hsirestore.io import open_cube

    src = open_cube(path)
    try:
        shape = tuple(int(v) for v in src.shape)
    finally:
        src.close()
    if local:
        from hsirestore.io.envi import EnviFile

        try:
            f = EnviFile(path)
        except Exception as e:
            raise ValueError(f"--local-io needs an ENVI file: {e}") from None
        raw = f.raw
        if f.interleave != "bsq" or raw.dtype != np.dtype("<f4") or raw.offset != 0:
            raise ValueError(f"--local-io needs float32 little-endian BSQ data without header "
                             f"offset; {path} is {f.interleave} {raw.dtype.str}, offset {raw.offset}")
        del f, raw
    return shape


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=None, help="rows of a created cube (default 2048)")
    ap.add_argument("--cols", type=int, default=None, help="columns of a created cube (default 2048)")
    ap.add_argument("--bands", type=int, default=None, help="bands of a created cube (default 200)")
    ap.add_argument("--path", type=Path,
                    help="input .img (kept): an existing one is used with the shape in its header, "
                         "a new one is created at --rows/--cols/--bands; default: temp")
    ap.add_argument("--workdir", type=Path, default=None, help="folder for temp files")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--local-io", action="store_true", help="use the benchmark's own ENVI I/O")
    ap.add_argument("--verify-full", action="store_true", help="compare every pixel")
    ap.add_argument("--samples", type=int, default=24, help="windows compared")
    ap.add_argument("--keep", action="store_true", help="keep the output cube")
    args = ap.parse_args(argv)

    def error(msg: str) -> int:
        print(f"stream_memory: error: {msg}", file=sys.stderr)
        return 2

    given = {k: getattr(args, k) for k in ("bands", "rows", "cols") if getattr(args, k) is not None}
    if any(v < 1 for v in given.values()) or args.tile < 1 or args.overlap < 0 \
            or args.batch_size < 1 or args.samples < 0:
        return error("--rows/--cols/--bands/--tile/--batch-size must be >= 1, --overlap and "
                     "--samples >= 0")
    reuse = args.path is not None and args.path.exists()
    if reuse:
        from hsirestore.errors import HsiRestoreError

        try:
            shape = existing_shape(args.path, args.local_io)
        except (HsiRestoreError, ValueError) as e:
            return error(str(e))
        differ = {k: v for k, v in given.items() if v != dict(zip(("bands", "rows", "cols"), shape))[k]}
        if differ:
            print(f"note: {args.path} is {shape[0]} bands x {shape[1]} x {shape[2]} (its header); "
                  f"{', '.join(f'--{k} {v}' for k, v in differ.items())} ignored")
    else:
        shape = (given.get("bands", 200), given.get("rows", 2048), given.get("cols", 2048))
    bands, rows, cols = shape

    import torch

    from hsirestore.inference.engine import TiledPredictor

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    nbytes = int(np.prod(shape)) * 4
    tmpdir = Path(tempfile.mkdtemp(prefix="hsir-stream-", dir=args.workdir))
    try:
        inp = args.path or tmpdir / "input.img"
        need = (1.1 if reuse else 2.2) * nbytes  # the output (and the input when created)
        free = shutil.disk_usage(tmpdir).free
        if free < need:
            return error(f"not enough disk space in {tmpdir}: {free / 1e9:.1f} GB free, "
                         f"{need / 1e9:.1f} GB needed")
        if reuse:
            print(f"reusing {inp} {shape}")
        else:
            t0 = time.perf_counter()
            create_input(inp, *shape)
            print(f"created {inp} {shape} float32 ({nbytes / 1e9:.2f} GB) in "
                  f"{time.perf_counter() - t0:.1f} s")
        out = tmpdir / "output.img"
        rss_before = vm_status("VmRSS")
        hwm_before = vm_status("VmHWM")
        reset = reset_peak()
        source, sink, label = open_io(inp, out, shape, args.local_io)
        pred = TiledPredictor(lambda t: t, tile=args.tile, overlap=args.overlap,
                              batch_size=args.batch_size, device="cpu", amp="none")
        sampler = RssSampler()
        sampler.start()
        t0 = time.perf_counter()
        try:
            pred.predict_stream(source, sink)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        finally:
            source.close()
        secs = time.perf_counter() - t0
        sampled = sampler.stop()
        hwm = vm_status("VmHWM")
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        # verification
        rng = np.random.default_rng(1)
        win = 64
        bad = 0
        checks = []
        for _ in range(args.samples):
            r = int(rng.integers(0, max(1, rows - win)))
            c = int(rng.integers(0, max(1, cols - win)))
            checks.append((r, min(r + win, rows), c, min(c + win, cols)))
        checks += [(0, min(win, rows), 0, min(win, cols)),
                   (max(0, rows - win), rows, max(0, cols - win), cols)]
        if args.verify_full:
            step = max(1, (64 << 20) // (bands * cols * 4))
            checks = [(r, min(r + step, rows), 0, cols) for r in range(0, rows, step)]
        from hsirestore.io import open_cube

        src_in, src_out = open_cube(inp), open_cube(out)
        try:
            for r0, r1, c0, c1 in checks:
                a = src_in.read_window(r0, r1, c0, c1)
                b = src_out.read_window(r0, r1, c0, c1)
                bad += int(((a != b) & ~(np.isnan(a) & np.isnan(b))).sum())
        finally:
            src_in.close()
            src_out.close()
        mb = nbytes / 1e6
        print(f"io: {label}; tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}")
        print(f"cube {shape} float32, {mb:.0f} MB; predict_stream + commit {secs:.1f} s, "
              f"{mb / secs:.1f} MB/s")
        print(f"RSS before streaming {rss_before / 2**20:.0f} MiB (VmHWM before {hwm_before / 2**20:.0f} MiB)")
        print(f"peak RSS: ru_maxrss {maxrss / 2**20:.0f} MiB (whole process), "
              f"VmHWM {hwm / 2**20:.0f} MiB ({'reset before streaming' if reset else 'whole process'}), "
              f"sampled VmRSS {sampled / 2**20:.0f} MiB")
        scope = "all pixels" if args.verify_full else f"{len(checks)} windows"
        print(f"verify ({scope}): {'OK, output == input' if bad == 0 else f'{bad} values differ'}")
        peak = max(hwm, sampled)
        print(f"target peak RSS < 1.5 GB: {'PASS' if peak < 1.5e9 else 'FAIL'} ({peak / 1e9:.2f} GB)")
        if args.keep:
            print(f"output kept at {out}")
        return 0 if bad == 0 else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
