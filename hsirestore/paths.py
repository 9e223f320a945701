"""Where the development data folder is: ``$HSIRESTORE_DATA``, else ``../shared/data`` beside
the repository (training, benchmarks and the optional NTIRE camera response use it; an
installed package runs without it)."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """``$HSIRESTORE_DATA`` or ``../shared/data`` relative to the repository root (it may
    not exist: callers check for the files they need)."""
    env = os.environ.get("HSIRESTORE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
