"""`hsirestore cassi`: decode a CASSI snapshot into a cube."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import SPECTRA_HELP, _err, command, parse_pixels


def _default_output(meas: Path) -> Path:
    return meas.with_name(meas.stem + "_cube.h5")


@command(app, "cassi", help="""Decode a CASSI snapshot measurement into a spectral cube.

The measurement is (H, W + step*(bands-1)) and the coded-aperture mask (H, W); e.g. the
simulation geometry 256x310 with a 256x256 mask, or the real TSA-Net system 660x714 with a
660x660 mask (decoded in overlapping tiles). The output cube has the 28 TSA-Net band
centres (453.3-648.1 nm) when --bands is 28. The decoder is linear in scale: a measurement
in raw counts decodes to a cube in the matching units.

The default model, s2former-gaptv, runs GAP-TV over the whole measurement and refines it
with learned S2-Transformer stages (the most accurate shipped decoder); --model
s2former-unfolded is several times faster on a CPU (1.0 s against 6-7 s per 256x256 measurement) and less accurate.

\b
Examples:
  hsirestore cassi meas_real_scene1.mat --mask mask_real_660.mat -o scene1.h5 --preview
  hsirestore cassi meas.mat --mask mask_256.mat --model s2former-unfolded -o fast.h5
  hsirestore cassi meas.mat --mask mask_256.mat --method gap-tv -o cube.tif
  hsirestore cassi meas.mat --mask mask.mat --weights model_epoch_255.pth -o cube.mat
  hsirestore cassi meas.mat --mask mask.mat --reference truth.h5 -o cube.h5
""")
def cassi(
    meas: Path = typer.Argument(..., help="Measurement file (.mat, .h5, .tif, ENVI)."),
    mask: Path = typer.Option(..., "--mask", help="Coded-aperture mask file."),
    output: Path = typer.Option(None, "-o", "--output", help="Output cube (format by suffix); default MEAS_cube.h5."),
    method: str = typer.Option("s2former", help="s2former (learned) or gap-tv (classical)."),
    model: str = typer.Option(None, help="Registered model name (default s2former-gaptv; s2former-unfolded is several times faster on a CPU)."),
    weights: Path = typer.Option(None, help="Checkpoint file (safetensors, or the authors' .pth)."),
    var: str = typer.Option(None, help="Variable/dataset of the measurement (e.g. meas_real)."),
    mask_var: str = typer.Option(None, help="Variable/dataset of the mask (e.g. mask)."),
    bands: int = typer.Option(28, help="Number of spectral bands."),
    step: int = typer.Option(2, help="Dispersion step in pixels per band."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    tile: int = typer.Option(256, help="Tile size for large inputs (0: whole image at once; else >= 16)."),
    overlap: int = typer.Option(64, help="Tile overlap in pixels (at most a quarter of the tile is used)."),
    iterations: int = typer.Option(None, help="--method gap-tv: iterations (default 120, tuned on CAVE "
                                   "train crops). The learned s2former-gaptv runs GAP-TV as it was trained."),
    flip_ensemble: bool = typer.Option(False, help="Learned decoders: average with the decode of the up-down flipped measurement and mask (another valid CASSI system); twice the model time."),
    reference: Path = typer.Option(None, help="Ground-truth cube: also write a metric report "
                                   "(OUTPUT_report.json/.md/_bands.csv, as 'hsirestore evaluate')."),
    data_range: float = typer.Option(1.0, help="With --reference: peak value for PSNR/SSIM, as in "
                                     "'hsirestore evaluate'."),
    preview: bool = typer.Option(False, help="Write a false-colour PNG beside the output."),
    spectra: list[str] = typer.Option(None, help=SPECTRA_HELP),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    import numpy as np

    from hsirestore.errors import InvalidValueError, OptionError, ShapeError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.io import Cube, output_paths, read_cube, write_cube
    from hsirestore.cli.common import refuse_overwriting_inputs
    from hsirestore.io.atomic import check_writable
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28

    output = output or _default_output(meas)
    targets = output_paths(output)
    png = output.with_name(output.stem + ".png")
    report = output.with_name(output.stem + "_report")
    if preview:
        targets.append(png)
    if reference is not None:
        from hsirestore.metrics import report_paths

        targets += report_paths(report)
    refuse_overwriting_inputs([meas, mask, reference], targets)
    check_writable(targets, force)
    if iterations is not None and iterations < 1:
        raise OptionError(f"--iterations must be >= 1; got {iterations}")
    if method == "gap-tv" and (model is not None or weights is not None):
        raise OptionError("--model and --weights apply to --method s2former, not gap-tv")
    if method != "gap-tv" and iterations is not None:
        _err("warning: --iterations applies to --method gap-tv; the learned decoder runs GAP-TV "
             "with the settings it was trained with", prefix=False)
    if tile and tile < 16:
        raise OptionError(f"--tile must be 0 (whole image) or at least 16; got {tile}")
    if overlap < 0:
        raise OptionError(f"--overlap must be >= 0; got {overlap}")
    if not (np.isfinite(data_range) and data_range > 0):
        raise InvalidValueError(f"--data-range must be > 0; got {data_range:g}")
    y = read_cube(meas, var=var)
    m = read_cube(mask, var=mask_var)
    pixels = parse_pixels(spectra, m.rows, m.cols) if preview else None
    for path, c, what in ((meas, y, "measurement"), (mask, m, "mask")):
        if c.valid is not None and not c.valid.all():
            raise InvalidValueError(f"{path}: the {what} has {int((~c.valid).sum())} NaN/Inf/nodata "
                                    "pixels; CASSI decoding needs every pixel")
    if y.bands != 1:
        raise ShapeError(f"{meas}: the measurement must be a single 2-D image; got {y.bands} bands")
    ref = None
    if reference is not None:  # read and check before the (long) decode
        ref = read_cube(reference)
        want = (bands, m.rows, m.cols)
        if ref.shape != want:
            raise ShapeError(f"reference {'x'.join(map(str, ref.shape))} does not match the decoded "
                             f"cube {'x'.join(map(str, want))} (bands x rows x cols)")
    decoder = CassiDecoder(method=method, model_name=model, weights=weights, device=device,
                           tile=tile or None, overlap=overlap, bands=bands, step=step,
                           gaptv_iters=iterations or 120, flip_ensemble=flip_ensemble)
    t0 = time.perf_counter()
    cube = decoder.decode(y.data[0], m.data if m.bands > 1 else m.data[0])
    seconds = time.perf_counter() - t0
    wl = np.asarray(CASSI_WAVELENGTHS_28) if bands == 28 else None
    out = Cube(cube, wavelengths=wl, wavelength_units="nm" if wl is not None else None,
               attrs={"method": decoder.describe(), "measurement": str(meas), "mask": str(mask)})
    written = write_cube(out, output, force=force)
    if preview:
        from hsirestore.preview import write_preview

        written += write_preview(cube, png, wavelengths=wl, pixels=pixels, force=force)
    result = {"input": str(meas), "output": str(output), "method": decoder.describe(),
              "shape": list(cube.shape), "seconds": round(seconds, 3)}
    if ref is not None:
        from hsirestore.metrics import compute_metrics, write_report

        metrics = compute_metrics(cube, ref.data, valid=ref.valid, data_range=data_range)
        written += write_report(metrics, report, force=force, wavelengths=wl,
                                extra={"prediction": str(output), "reference": str(reference),
                                       "data_range": data_range})
        result.update(mpsnr=round(metrics["mpsnr"], 3), mssim=round(metrics["mssim"], 4),
                      sam_deg=round(metrics["sam_deg"], 3))
    typer.echo(json.dumps(result))
