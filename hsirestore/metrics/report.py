"""Metric reports: <prefix>.json, <prefix>.md and <prefix>_bands.csv, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

from hsirestore.io.atomic import atomic_paths
from hsirestore.metrics.core import CONVENTIONS

SUMMARY = (("mpsnr", "MPSNR (dB)"), ("psnr_global", "PSNR global (dB)"), ("mssim", "MSSIM"),
           ("sam_deg", "SAM (deg)"), ("ergas", "ERGAS"), ("rmse", "RMSE"), ("mrae", "MRAE"))


def report_paths(prefix) -> list[Path]:
    prefix = Path(prefix)
    return [prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md"),
            prefix.with_name(prefix.name + "_bands.csv")]


def write_report(metrics: dict, prefix, force: bool = False, wavelengths=None,
                 extra: dict | None = None) -> list[Path]:
    paths = report_paths(prefix)
    doc = {"metrics": {k: metrics[k] for k, _ in SUMMARY if k in metrics},
           "per_band": metrics.get("per_band", {}), "data_range": metrics.get("data_range", 1.0),
           "conventions": CONVENTIONS, **(extra or {})}
    if wavelengths is not None:
        doc["wavelengths"] = [float(w) for w in wavelengths]
    md = ["# hsirestore metric report", ""]
    for k, v in (extra or {}).items():
        md.append(f"- {k}: {v}")
    md += ["", "| metric | value |", "|---|---|"]
    md += [f"| {label} | {metrics[k]:.4f} |" for k, label in SUMMARY if k in metrics]
    md += ["", "Conventions:", ""] + [f"- {v}" for v in CONVENTIONS.values()]
    pb = metrics.get("per_band", {})
    n = len(pb.get("psnr", []))
    csv = ["band,wavelength,psnr,ssim,rmse"]
    for i in range(n):
        wl = "" if wavelengths is None else f"{float(wavelengths[i]):g}"
        csv.append(f"{i},{wl},{pb['psnr'][i]:.6f},{pb['ssim'][i]:.6f},{pb['rmse'][i]:.8f}")
    with atomic_paths(paths, force=force) as (tj, tm, tc):
        tj.write_text(json.dumps(doc, indent=2, allow_nan=True))
        tm.write_text("\n".join(md) + "\n")
        tc.write_text("\n".join(csv) + "\n")
    return paths
