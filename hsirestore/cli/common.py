"""Helpers every command uses: one-line errors, shared option types."""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable

import typer

from hsirestore.errors import HsiRestoreError


def _err(msg: str) -> None:
    print(f"hsirestore: error: {msg}", file=sys.stderr)


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
