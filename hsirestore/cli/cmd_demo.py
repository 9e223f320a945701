"""`hsirestore demo`: the whole CASSI job on a synthetic scene, no user data needed."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import command


@command(app, "demo", help="""Run a complete example on a synthetic scene (no data needed).

Builds a 256x256 scene from the 24 measured ColorChecker reflectances shipped by
colour-science, simulates a CASSI snapshot through a random coded mask, decodes it with the
shipped S2-Transformer (or GAP-TV with --method gap-tv), and writes into OUTDIR:
scene_ref.h5, measurement.mat (variable `meas`), mask.mat (variable `mask`), decoded.h5,
report.json/.md/_bands.csv and previews (scene_ref_preview.png, decoded_preview.png, decoded_spectra.png).

\b
Examples:
  hsirestore demo demo_out/
  hsirestore demo demo_out/ --method gap-tv --force
""")
def demo(
    outdir: Path = typer.Argument(Path("hsirestore_demo"), help="Output folder (created)."),
    method: str = typer.Option("s2former", help="s2former (shipped weights) or gap-tv."),
    seed: int = typer.Option(0, help="Seed for the scene and the mask (>= 0)."),
    size: int = typer.Option(256, help="Scene size in pixels (16 to 4096)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    import numpy as np

    from hsirestore.demo import check_scene_options, synthetic_scene
    from hsirestore.errors import OutputError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.io import Cube, output_paths, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.metrics import compute_metrics, write_report
    from hsirestore.metrics.report import report_paths
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, cassi_forward
    from hsirestore.preview import spectra_path, write_preview

    # every option is checked, and the decoder loaded, before anything is written
    check_scene_options(size, seed)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} exists and is not a folder")
    decoder = CassiDecoder(method=method, device=device)
    targets = [p for name in ("scene_ref.h5", "measurement.mat", "mask.mat", "decoded.h5")
               for p in output_paths(outdir / name)]
    targets += list(report_paths(outdir / "report")) + [
        outdir / "scene_ref_preview.png", outdir / "decoded_preview.png",
        spectra_path(outdir / "decoded_preview.png")]
    if outdir.exists():
        check_writable(targets, force)
    outdir.mkdir(parents=True, exist_ok=True)

    wl = np.asarray(CASSI_WAVELENGTHS_28)
    scene = synthetic_scene(wl, size=size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    mask = rng.uniform(0.0, 1.0, (size, size)).astype(np.float32)
    meas = cassi_forward(scene, mask, 2).astype(np.float32)

    ref = Cube(scene, wavelengths=wl, wavelength_units="nm")
    write_cube(ref, outdir / "scene_ref.h5", force=force)
    write_cube(Cube(meas[None]), outdir / "measurement.mat", force=force, var="meas")
    write_cube(Cube(mask[None]), outdir / "mask.mat", force=force, var="mask")

    t0 = time.perf_counter()
    cube = decoder.decode(meas, mask)
    seconds = time.perf_counter() - t0
    write_cube(Cube(cube, wavelengths=wl, wavelength_units="nm"), outdir / "decoded.h5", force=force)
    metrics = compute_metrics(cube, scene)  # as `hsirestore evaluate decoded.h5 scene_ref.h5`
    write_report(metrics, outdir / "report", force=force, wavelengths=wl,
                 extra={"task": "CASSI decoding of a synthetic ColorChecker scene",
                        "method": decoder.describe(), "seconds": round(seconds, 3)})
    write_preview(scene, outdir / "scene_ref_preview.png", wavelengths=wl, force=force)
    pixels = [(size // 8, size // 8), (size // 2, size // 3), (int(size * 0.87), size // 2)]
    write_preview(cube, outdir / "decoded_preview.png", wavelengths=wl, pixels=pixels, force=force)
    summary = {"method": decoder.describe(), "mpsnr": round(metrics["mpsnr"], 2),
               "mssim": round(metrics["mssim"], 4), "sam_deg": round(metrics["sam_deg"], 2),
               "seconds": round(seconds, 2), "outdir": str(outdir)}
    typer.echo(json.dumps(summary))
