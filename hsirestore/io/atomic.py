"""Atomic output: write to temporary files beside the targets, then rename them into place.

Never replaces an existing file unless ``force`` is true. Never touches inputs.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from hsirestore.errors import OutputError, OutputExistsError


def check_writable(paths: Sequence[os.PathLike | str], force: bool) -> list[Path]:
    """Raise OutputExistsError / OutputError before any work is done."""
    out = []
    for p in paths:
        p = Path(p)
        if p.exists() and not force:
            raise OutputExistsError(f"{p} exists; pass --force to overwrite it")
        if p.exists() and p.is_dir():
            raise OutputError(f"{p} is a directory")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.exists():
            raise OutputError(f"cannot write {p}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"cannot write {p}: folder {parent} is not writable")
        out.append(p)
    return out


@contextlib.contextmanager
def atomic_paths(paths: Sequence[os.PathLike | str], force: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths (same folder, same suffix) for ``paths``.

    On success every temporary file is renamed onto its target; on error they are removed
    and the targets are left as they were.
    """
    targets = check_writable(paths, force)
    temps: list[Path] = []
    try:
        for t in targets:
            fd, name = tempfile.mkstemp(prefix=f".{t.stem}.", suffix=f".tmp{t.suffix}", dir=t.parent or ".")
            os.close(fd)
            os.unlink(name)  # writers create the file themselves
            temps.append(Path(name))
        yield temps
        for tmp, t in zip(temps, targets):
            if not tmp.exists():
                raise OutputError(f"writer did not produce {t}")
        if not force:
            for t in targets:
                if t.exists():
                    raise OutputExistsError(f"{t} appeared while writing; pass --force to overwrite it")
        for tmp, t in zip(temps, targets):
            os.replace(tmp, t)
    except OSError as e:
        raise OutputError(f"cannot write {targets[0]}: {e.strerror or e}") from e
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                if tmp.exists():
                    tmp.unlink()
            # GDAL sidecars of the temporary file
            with contextlib.suppress(OSError):
                Path(str(tmp) + ".aux.xml").unlink()
