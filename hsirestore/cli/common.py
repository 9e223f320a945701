"""Helpers every command uses: one-line errors, shared option types."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable

import typer

from hsirestore.errors import HsiRestoreError
from hsirestore.io.files import refuse_overwriting_inputs  # noqa: F401 (for the commands)


def _err(msg: str, prefix: bool = True) -> None:
    """One line on stderr: ``hsirestore: error: MSG`` (``hsirestore: MSG`` without prefix)."""
    print(f"hsirestore: {'error: ' if prefix else ''}{msg}", file=sys.stderr)


def handle_errors(fn: Callable) -> Callable:
    """Turn expected failures into one line on stderr and a non-zero exit.

    HsiRestoreError -> its exit code (1); OSError -> 1; any other exception is a bug and
    exits 3 with one line (set HSIRESTORE_DEBUG=1 to see the traceback).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except HsiRestoreError as e:
            _err(str(e))
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130)
        except MemoryError:
            _err("out of memory: try a smaller --tile, --stream, or a machine with more RAM")
            raise typer.Exit(1)
        except OSError as e:
            _err(f"{e.strerror or e}{': ' + str(e.filename) if getattr(e, 'filename', None) else ''}")
            raise typer.Exit(1)
        except Exception as e:  # pragma: no cover - bugs
            if os.environ.get("HSIRESTORE_DEBUG"):
                raise
            _err(f"internal error ({type(e).__name__}: {e}); rerun with HSIRESTORE_DEBUG=1 "
                 "for a traceback and please report it")
            raise typer.Exit(3)

    return wrapper


def command(app: typer.Typer, *args, **kwargs) -> Callable:
    """``@command(app, "name", help=...)``: register a command wrapped by handle_errors."""

    def deco(fn: Callable) -> Callable:
        return app.command(*args, **kwargs)(handle_errors(fn))

    return deco


FORCE_HELP = "Overwrite existing outputs."
DEVICE_HELP = "Device: auto (CUDA if available), cpu, cuda or cuda:N."
THREADS_HELP = "CPU threads for torch (0: its default)."
#: --format values: output formats of outputs named for the user (folder outputs, no -o)
FORMATS = ("h5", "tif", "mat", "hdr")
FORMAT_HELP = ("Output format when the output is named for you (folder outputs, no -o): "
               + ", ".join(FORMATS) + ".")


def format_suffix(fmt: str | None) -> str | None:
    """--format value -> output suffix (".h5"); None stays None; OptionError if unknown."""
    from hsirestore.errors import OptionError

    if fmt is None:
        return None
    if fmt.lstrip(".") not in FORMATS:
        raise OptionError(f"--format {fmt!r}: use {', '.join(FORMATS)}")
    return "." + fmt.lstrip(".")


def set_threads(threads: int) -> None:
    """--threads: torch's CPU thread count (0: leave torch's default); OptionError if < 0."""
    from hsirestore.errors import OptionError

    if threads < 0:
        raise OptionError(f"--threads must be >= 0; got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def expand_inputs(inputs, kinds, empty: str, skip=None) -> tuple[list[Path], bool]:
    """(files to process, whether a folder was given): files as given, folders as
    :func:`hsirestore.io.cube_files` lists them (``kinds``, ``skip``); a folder without any
    is a FormatError ``"FOLDER: " + empty`` (``{suffixes}`` in ``empty``: the suffixes
    looked for)."""
    from hsirestore.errors import FormatError
    from hsirestore.io import cube_files, cube_suffixes

    files: list[Path] = []
    folder = False
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            folder = True
            found = cube_files(p, kinds, skip)
            if not found:
                raise FormatError(f"{p}: " + empty.format(suffixes=", ".join(cube_suffixes(kinds))))
            files += found
        else:
            files.append(p)
    return files, folder


SPECTRA_HELP = ("With --preview: also plot the spectra at these pixels, as ROW,COL "
                "(repeatable), into <output>_spectra.png.")


def parse_pixels(values: list[str] | None, rows: int, cols: int) -> list[tuple[int, int]] | None:
    """['10,20', ...] -> [(10, 20), ...] checked against the image size."""
    from hsirestore.errors import OptionError

    if not values:
        return None
    out = []
    for v in values:
        try:
            r, c = (int(x) for x in v.split(","))
        except ValueError:
            raise OptionError(f"--spectra {v!r}: expected ROW,COL") from None
        if not (0 <= r < rows and 0 <= c < cols):
            raise OptionError(f"--spectra {v}: outside the {rows}x{cols} image")
        out.append((r, c))
    return out


def output_is_folder(output: Path | None, several: bool) -> bool:
    """Whether ``-o OUTPUT`` names a folder: an existing folder, or any OUTPUT without a file
    extension (created on demand); with several inputs OUTPUT must be a folder (an
    OptionError when it names a file such as out.h5)."""
    from hsirestore.errors import OptionError

    from hsirestore.io.hdf5 import split_path

    if output is None:
        return several
    file, dataset = split_path(output)
    folder = dataset is None and (file.is_dir() or (not file.exists() and file.suffix == ""))
    if several and not folder:
        raise OptionError(f"-o {output}: several inputs need an output folder, not a file")
    return folder


def check_distinct_targets(jobs) -> None:
    """OptionError when two inputs of a batch would write the same output file."""
    from hsirestore.errors import OptionError

    seen: dict = {}
    for src, dst in jobs:
        key = str(Path(dst).resolve())
        if key in seen:
            raise OptionError(f"{seen[key]} and {src} would both write {dst}; process them in "
                              "separate runs (or separate output folders)")
        seen[key] = src


def run_jobs(jobs, *, batch: bool, force: bool, summary: Path | None, outputs_of, process) -> None:
    """Run ``process(src, dst) -> dict`` for every (src, dst) job and print one JSON line per
    job on stdout (also appended to ``summary``): input, output, status ok/skipped/error,
    seconds, message, then the fields ``process`` returns. In a batch, a job whose outputs
    (``outputs_of(dst)``) exist is skipped unless ``force``, and an error is recorded and the
    batch goes on, ending with exit code 1; a single job's error propagates (one-line error)."""
    import json
    import time

    failed = 0
    for src, dst in jobs:
        t0 = time.perf_counter()
        rec: dict = {"input": str(src), "output": str(dst)}
        try:
            if batch and not force and any(Path(p).exists() for p in outputs_of(dst)):
                # "skipped": "exists" is kept for scripts written for earlier versions
                rec.update(status="skipped", seconds=0.0, message="output exists (use --force)",
                           skipped="exists")
            else:
                extra = dict(process(src, dst))
                rec.update(status="ok", seconds=round(time.perf_counter() - t0, 3),
                           message=extra.pop("message", ""), **extra)
        except (HsiRestoreError, OSError) as e:
            if not batch:
                raise
            failed += 1
            msg = str(e) if isinstance(e, HsiRestoreError) else f"{e.strerror or e}"
            rec.update(status="error", seconds=round(time.perf_counter() - t0, 3), message=msg)
        line = json.dumps(rec)
        typer.echo(line)
        if summary is not None:
            with open(summary, "a") as f:
                f.write(line + "\n")
    if failed:
        _err(f"{failed} of {len(jobs)} inputs failed")
        raise typer.Exit(1)


def check_batch_files(inputs, outputs, summary: Path | None, outdir: Path | None) -> None:
    """Before any work: no output (of any job) and no --summary file is one of the inputs
    (of any job, so a batch never rewrites a file it has still to read), and --summary's
    folder exists or is the output folder about to be made."""
    from hsirestore.errors import OptionError

    refuse_overwriting_inputs(inputs, list(outputs) + ([summary] if summary is not None else []))
    if summary is not None and not summary.parent.exists():
        pending = outdir is not None and summary.parent.resolve() == Path(outdir).resolve()
        if not pending:
            raise OptionError(f"--summary {summary}: folder {summary.parent} does not exist")


def check_layout(layout: str | None) -> str | None:
    """--layout value checked: None, "bands-first" or "bands-last" (OptionError otherwise)."""
    from hsirestore.errors import OptionError

    if layout is not None and layout not in ("bands-first", "bands-last"):
        raise OptionError(f"--layout must be bands-first or bands-last, not {layout!r}")
    return layout


def check_cube_output(dst, what: str = "the cube", allow_rgb: bool = False,
                      option: str = "-o") -> None:
    """A usage error (exit 2) for an output path that cannot hold the result: an unknown
    suffix, or PNG/JPEG (3-band images) unless ``allow_rgb``."""
    from hsirestore.errors import FormatError, OptionError
    from hsirestore.io import detect_format

    try:
        fmt = detect_format(dst)
    except FormatError:
        raise OptionError(f"{option} {dst}: unknown output format; write {what} as .h5, .tif, "
                          ".mat or .hdr") from None
    if fmt == "rgb" and not allow_rgb:
        raise OptionError(f"{option} {dst}: PNG/JPEG hold 3-band images; write {what} as .h5, "
                          ".tif, .mat or .hdr")
