"""Metric reports: ``<prefix>.json``, ``<prefix>.md`` and ``<prefix>_bands.csv``, written
atomically (all three or none; no overwrite without ``force``).

The JSON holds {"metrics": {...}, "per_band": [{"band", "wavelength", "psnr", "ssim",
"rmse"}, ...], "data_range", "valid_pixels", "bands", "wavelengths", "conventions",
"inputs": {...}} plus any other ``extra`` keys. It is strict JSON: non-finite numbers (the
infinite PSNR of an exact band, NaN when nothing could be measured) are written as the
strings "inf", "-inf" and "nan".
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hsirestore.io.atomic import atomic_paths
from hsirestore.metrics.core import CONVENTIONS

__all__ = ["SUMMARY", "report_paths", "write_report", "format_value"]

SUMMARY = (("mpsnr", "MPSNR (dB)"), ("psnr_global", "PSNR global (dB)"), ("mssim", "MSSIM"),
           ("sam_deg", "SAM (deg)"), ("ergas", "ERGAS"), ("rmse", "RMSE"), ("mrae", "MRAE"))
_NON_FINITE_NOTE = ("non-finite numbers are written as the strings 'inf', '-inf' and 'nan' "
                    "(an exact band has infinite PSNR)")


def report_paths(prefix) -> list[Path]:
    """[<prefix>.json, <prefix>.md, <prefix>_bands.csv]."""
    prefix = Path(prefix)
    return [prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md"),
            prefix.with_name(prefix.name + "_bands.csv")]


def _clean(v: Any) -> Any:
    """JSON-able copy: numpy scalars/arrays to Python, non-finite floats to strings."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, Path):
        return str(v)
    return v


#: public name for the JSON cleaner (strict JSON: no NaN/Infinity tokens)
jsonable = _clean


def format_value(v: float, digits: int = 4) -> str:
    """Number for tables: fixed digits, 'inf' / 'nan' spelled out."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def write_report(metrics: dict, out_prefix, force: bool = False, wavelengths=None,
                 extra: dict | None = None) -> list[Path]:
    """Write the three report files for ``metrics`` (from ``compute_metrics``).

    ``wavelengths``: band centres (bands,) or None; ``extra``: JSON-able facts recorded with
    the report (e.g. {"prediction": path, "reference": path}; paths go under "inputs").
    Returns the written paths.
    """
    paths = report_paths(out_prefix)
    pb = metrics.get("per_band", {})
    n = len(pb.get("psnr", []))
    wl = None if wavelengths is None else [float(w) for w in np.asarray(wavelengths).reshape(-1)]
    if wl is not None and len(wl) != n and n:
        wl = None
    extra = dict(extra or {})
    inputs = {k: extra.pop(k) for k in ("prediction", "reference") if k in extra}
    bands = [{"band": i, "wavelength": None if wl is None else wl[i],
              **{k: pb[k][i] for k in ("psnr", "ssim", "rmse") if k in pb}} for i in range(n)]
    doc = {
        "metrics": {k: metrics[k] for k, _ in SUMMARY if k in metrics},
        "per_band": bands,
        "data_range": metrics.get("data_range", 1.0),
        "valid_pixels": metrics.get("valid_pixels"),
        "bands": metrics.get("bands", n),
        "wavelengths": wl,
        "conventions": {**CONVENTIONS, "json": _NON_FINITE_NOTE},
        "inputs": inputs,
        **extra,
    }

    md = ["# hsirestore metric report", ""]
    for k, v in inputs.items():
        md.append(f"- {k}: `{v}`")
    for k, v in extra.items():
        md.append(f"- {k}: {v}")
    md.append(f"- data range (PSNR/SSIM peak): {doc['data_range']:g}")
    if doc["valid_pixels"] is not None:
        md.append(f"- bands: {doc['bands']}, valid pixels: {doc['valid_pixels']}")
    md += ["", "| metric | value |", "|---|---:|"]
    md += [f"| {label} | {format_value(metrics[k])} |" for k, label in SUMMARY if k in metrics]
    md += ["", "Per band: see the `_bands.csv` file.", "", "## Conventions", ""]
    md += [f"- {v}" for v in CONVENTIONS.values()]

    csv = ["band,wavelength,psnr,ssim,rmse"]
    for b in bands:
        w = "" if b["wavelength"] is None else f"{b['wavelength']:g}"
        vals = [format_value(b.get(k, float("nan")), d) for k, d in (("psnr", 6), ("ssim", 6), ("rmse", 8))]
        csv.append(",".join([str(b["band"]), w, *vals]))

    text = json.dumps(_clean(doc), indent=2, allow_nan=False)
    with atomic_paths(paths, force=force) as (tj, tm, tc):
        tj.write_text(text + "\n")
        tm.write_text("\n".join(md) + "\n")
        tc.write_text("\n".join(csv) + "\n")
    return paths
