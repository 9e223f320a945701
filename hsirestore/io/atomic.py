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


def temp_path(target: Path) -> Path:
    """A free temporary name beside ``target`` (``.stem.XXXX.tmp<suffix>``); the file is not
    created, so writers that refuse existing files (h5py mode "x") can create it."""
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}",
                                dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    os.unlink(name)
    return Path(name)


class StagedFile:
    """One output written under a temporary name beside its target and renamed onto it by
    :meth:`publish` (refusing a target that appeared meanwhile unless ``force``), or closed
    and removed by :meth:`discard`. ``opener(tmp)`` opens the temporary file and returns an
    object with ``close()`` (e.g. an ``h5py.File``), kept as ``self.f``."""

    def __init__(self, target: os.PathLike | str, force: bool, opener):
        self.target, self.force = Path(target), force
        self.tmp: Path | None = None
        self.f = None
        with self.guard():
            self.tmp = temp_path(self.target)
            self.f = opener(self.tmp)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run a block that writes the file: on any failure (or Ctrl-C) the temporary file is
        removed, and OS errors become one-line OutputErrors."""
        try:
            yield
        except OSError as e:
            self.discard()
            raise OutputError(f"cannot write {self.target}: {e.strerror or e}") from e
        except BaseException:
            self.discard()
            raise

    def publish(self, finish=None) -> None:
        """Close the file, run ``finish(tmp)`` (e.g. to write a header) and rename it onto the
        target; on any failure the temporary file is removed."""
        with self.guard():
            self.f.close()
            if finish is not None:
                finish(self.tmp)
            if not self.force and self.target.exists():
                raise OutputExistsError(f"{self.target} appeared while writing; pass --force to overwrite it")
            os.replace(self.tmp, self.target)

    def discard(self) -> None:
        """Close and remove the temporary file (the target is left as it was)."""
        if self.f is not None:
            with contextlib.suppress(Exception):
                self.f.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                if self.tmp.exists():
                    self.tmp.unlink()


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
            temps.append(temp_path(t))  # writers create the file themselves
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


def _size(nbytes: float) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= k:
            return f"{nbytes / k:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_free_space(path: os.PathLike | str, nbytes: int) -> None:
    """OutputError when the disk holding ``path`` has less than ``nbytes`` free, counting the
    space of an existing ``path`` that the write would replace (checked before writing, so a
    full disk is one clear error, not a crash half-way through)."""
    import shutil

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        free = shutil.disk_usage(parent).free
        if path.is_file():
            free += path.stat().st_size
    except OSError:
        return
    if free < nbytes:
        raise OutputError(f"cannot write {path}: it may need up to {_size(nbytes)} and only "
                          f"{_size(free)} are free on that disk")


def preallocate(path: os.PathLike | str, nbytes: int, target: os.PathLike | str | None = None) -> None:
    """Create ``path`` with ``nbytes`` reserved on disk (posix_fallocate), so that a memory
    map written later cannot hit a full disk (which kills the process with SIGBUS)."""
    with open(path, "wb") as f:
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, max(int(nbytes), 1))
            else:  # pragma: no cover - non-POSIX
                f.truncate(nbytes)
        except OSError as e:
            import errno

            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                f.close()
                Path(path).unlink(missing_ok=True)
                raise OutputError(f"cannot write {target or path}: not enough disk space "
                                  f"({_size(nbytes)} needed)") from e
            f.truncate(nbytes)  # no fallocate on this file system: sparse file as before
