"""Which files a job reads and writes: folder listings by format, and the rule that an
output never replaces an input (no torch)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from hsirestore.errors import OptionError

#: the formats of cube files (what ``denoise`` and ``cassi`` list in a folder)
CUBE_KINDS = ("envi", "tiff", "mat", "hdf5")
#: RGB photos: PNG/JPEG and TIFF (what ``rgb2hsi`` lists)
IMAGE_KINDS = ("rgb", "tiff")
#: suffixes listed for a kind, where that is not every suffix of the kind in the format
#: table: an ENVI cube is listed by its header (its data file belongs to the header)
_LISTED = {"envi": (".hdr",)}


def cube_suffixes(kinds: Iterable[str] = CUBE_KINDS) -> tuple[str, ...]:
    """The lower-case suffixes :func:`cube_files` lists for these format ``kinds`` (names of
    :func:`hsirestore.io.detect_format`: envi, tiff, mat, hdf5, rgb), in the order of the
    format table; OptionError for an unknown kind."""
    from hsirestore.io import _SUFFIX

    kinds = tuple(kinds)
    known = set(_SUFFIX.values())
    for k in kinds:
        if k not in known:
            raise OptionError(f"unknown file kind {k!r}; use {', '.join(sorted(known))}")
    return tuple(s for s, k in _SUFFIX.items() if k in kinds and s in _LISTED.get(k, (s,)))


def cube_files(folder, kinds: Iterable[str] = CUBE_KINDS,
               skip: Callable[[Path], bool] | None = None) -> list[Path]:
    """Sorted files directly in ``folder`` whose suffix is one of ``kinds`` (see
    :func:`cube_suffixes`; e.g. ``kinds=IMAGE_KINDS`` for RGB photos), leaving out hidden
    files, sub-folders and any file for which ``skip(path)`` is true (e.g. earlier outputs).
    An empty list when there is none."""
    suffixes = cube_suffixes(kinds)
    return sorted(f for f in Path(folder).iterdir()
                  if f.suffix.lower() in suffixes and not f.name.startswith(".") and f.is_file()
                  and not (skip is not None and skip(f)))


def input_files(path) -> list[Path]:
    """The files a cube path reads (ENVI: header and data file; HDF5 ``file.h5:/ds``: the
    file), for the never-overwrite-an-input check."""
    from hsirestore.io import detect_format
    from hsirestore.io.hdf5 import split_path

    file = split_path(path)[0]
    files = [file]
    try:
        if detect_format(path) == "envi":
            from hsirestore.io.envi import data_path, header_path

            hdr = header_path(file)
            files = [hdr, data_path(hdr, file)]
    except Exception:  # unreadable inputs are reported by the reader, not here
        pass
    return files


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(inputs, outputs) -> None:
    """OptionError when any output file is one of the input files (even with ``force``:
    inputs are never modified); None entries of ``inputs`` are ignored."""
    ins = [f for p in inputs if p is not None for f in input_files(p)]
    for out in outputs:
        out = Path(out)
        for f in ins:
            if _same(out, f) or out.resolve() == f.resolve():
                raise OptionError(f"{out} would overwrite the input {f}; choose another "
                                  "output (inputs are never overwritten, even with --force)")
