"""`hsirestore cassi`: decode a CASSI snapshot into a cube."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.preview import preview_path
from hsirestore.cli.common import (DEVICE_HELP, FORMAT_HELP, SPECTRA_HELP, THREADS_HELP, _err,
                                   check_cube_output, command, expand_inputs, parse_pixels,
                                   run_jobs)


def _default_output(meas: Path, outdir: Path | None = None, ext: str = ".h5") -> Path:
    return (outdir or meas.parent) / f"{meas.stem}_cube{ext}"


def _expand(inputs: list[Path], mask: Path) -> tuple[list[Path], bool]:
    """Measurements to decode and whether a folder was given. Folders contribute their
    files, except hidden ones, earlier outputs (NAME_cube.*, reports) and masks (the --mask
    file and any file named mask*)."""
    from hsirestore.io import CUBE_KINDS

    def skip(f: Path) -> bool:
        return (f.stem.endswith("_cube") or "_cube_report" in f.stem
                or f.stem.lower().startswith("mask")
                or (mask.exists() and f.resolve() == mask.resolve()))

    return expand_inputs(inputs, CUBE_KINDS, "no measurements ({suffixes}) in this folder "
                         "(masks, NAME_cube.* outputs and hidden files are skipped)", skip=skip)


@command(app, "cassi", help="""Decode a CASSI snapshot measurement into a spectral cube.

The measurement is (H, W + step*(bands-1)) and the coded-aperture mask (H, W); e.g. the
simulation geometry 256x310 with a 256x256 mask, or the real TSA-Net system 660x714 with a
660x660 mask (decoded in overlapping tiles). The output cube has the 28 TSA-Net band
centres (453.3-648.1 nm) when --bands is 28. The decoder is linear in scale: a measurement
in raw counts decodes to a cube in the matching units.

Several measurements or a folder (all taken with the one --mask): one cube per measurement
in OUT (a folder; default beside each input), named MEAS_cube with the --format suffix;
folders skip masks (mask*), earlier outputs and hidden files. Existing outputs are skipped
unless --force; one JSON line per file (input, output, status ok/skipped/error, seconds,
message, method, shape); an error on one file does not stop the batch, but the exit code is
1 at the end.

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
  hsirestore cassi measurements/ --mask mask_256.mat -o cubes/ --summary cubes/log.jsonl
""")
def cassi(
    meas: list[Path] = typer.Argument(..., help="Measurement files (.mat, .h5, .tif, ENVI) or folders."),
    mask: Path = typer.Option(..., "--mask", help="Coded-aperture mask file."),
    output: Path = typer.Option(None, "-o", "--output", help="Output cube (one input; format by "
                                "suffix) or folder; default MEAS_cube.<format> beside the input."),
    method: str = typer.Option("s2former", help="s2former (learned) or gap-tv (classical)."),
    model: str = typer.Option(None, help="Registered model name (default s2former-gaptv; s2former-unfolded is several times faster on a CPU)."),
    weights: Path = typer.Option(None, help="Checkpoint file (safetensors, or the authors' .pth)."),
    var: str = typer.Option(None, help="Variable/dataset of the measurement (e.g. meas_real)."),
    mask_var: str = typer.Option(None, help="Variable/dataset of the mask (e.g. mask)."),
    bands: int = typer.Option(28, help="Number of spectral bands."),
    step: int = typer.Option(2, help="Dispersion step in pixels per band."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: int = typer.Option(0, help=THREADS_HELP),
    tile: int = typer.Option(256, help="Tile size for large inputs (0: whole image at once; else "
                             ">= 16: two of the S2-Transformer's 8 px attention windows)."),
    overlap: int = typer.Option(64, help="Tile overlap in pixels (at most a quarter of the tile is used)."),
    iterations: int = typer.Option(None, help="--method gap-tv: iterations (default 120, tuned on CAVE "
                                   "train crops). The learned s2former-gaptv runs GAP-TV as it was trained."),
    ensemble: bool = typer.Option(False, help="Learned decoders: flip self-ensemble, averaging "
                                  "with the decode of the up-down flipped measurement and mask "
                                  "(another valid CASSI system); twice the model time."),
    flip_ensemble: bool = typer.Option(False, "--flip-ensemble/--no-flip-ensemble", hidden=True,
                                       help="Old name of --ensemble."),
    reference: Path = typer.Option(None, help="Ground-truth cube (one measurement): also write a "
                                   "metric report (OUTPUT_report.json/.md/_bands.csv, as "
                                   "'hsirestore evaluate')."),
    data_range: float = typer.Option(1.0, help="With --reference: peak value for PSNR/SSIM, as in "
                                     "'hsirestore evaluate'."),
    fmt: str = typer.Option("h5", "--format", help=FORMAT_HELP),
    preview: bool = typer.Option(False, help="Write a false-colour OUTPUT_preview.png beside each output."),
    spectra: list[str] = typer.Option(None, help=SPECTRA_HELP),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
    summary: Path = typer.Option(None, help="Also append the JSON lines to this file."),
) -> None:
    import numpy as np

    from hsirestore.cli.common import (check_batch_files, check_distinct_targets, format_suffix,
                                       output_is_folder, set_threads)
    from hsirestore.errors import FormatError, OptionError, ShapeError
    from hsirestore.inference.cassi import CassiDecoder, as_plane
    from hsirestore.io import read_cube
    from hsirestore.io.atomic import check_writable

    ext = format_suffix(fmt)
    if iterations is not None and iterations < 1:
        raise OptionError(f"--iterations must be >= 1; got {iterations}")
    if method == "gap-tv" and (model is not None or weights is not None):
        raise OptionError("--model and --weights apply to --method s2former, not gap-tv")
    if method != "gap-tv" and iterations is not None:
        _err("warning: --iterations applies to --method gap-tv only (s2former-gaptv runs GAP-TV "
             "with the settings it was trained with)", prefix=False)
    if not (np.isfinite(data_range) and data_range > 0):
        raise OptionError(f"--data-range must be > 0; got {data_range:g}")
    set_threads(threads)

    files, folder = _expand(meas, mask)
    batch = len(files) > 1 or folder
    if spectra and not preview:
        raise OptionError("--spectra needs --preview (the spectra are plotted beside the preview)")
    if batch and (reference is not None or spectra):
        raise OptionError("--reference and --spectra take one measurement, not a batch")
    to_folder = output_is_folder(output, batch)
    outdir = output if to_folder else None
    if batch:
        jobs = [(f, _default_output(f, outdir, ext)) for f in files]
        check_distinct_targets(jobs)
    else:
        if not files[0].exists():
            raise FormatError(f"{files[0]}: file not found")
        dst = output if output is not None and not to_folder else _default_output(files[0], outdir, ext)
        check_cube_output(dst, "the decoded cube")
        jobs = [(files[0], dst)]
    check_batch_files(files + [mask, reference],
                      [p for _, dst in jobs for p in _targets(dst, preview, reference)],
                      summary, outdir)
    if not batch and not to_folder:
        check_writable(_targets(jobs[0][1], preview, reference), force)

    m = read_cube(mask, var=mask_var)
    mask_plane = as_plane(m, "mask", str(mask))  # checked before the (long) model load
    pixels = parse_pixels(spectra, m.rows, m.cols) if preview else None
    ref = None
    if reference is not None:  # read and check before the (long) decode
        ref = read_cube(reference)
        want = (bands, m.rows, m.cols)
        if ref.shape != want:
            raise ShapeError(f"reference {'x'.join(map(str, ref.shape))} does not match the decoded "
                             f"cube {'x'.join(map(str, want))} (bands x rows x cols)")
    decoder = CassiDecoder(method=method, model_name=model, weights=weights, device=device,
                           tile=tile or None, overlap=overlap, bands=bands, step=step,
                           gaptv_iters=iterations or 120, flip_ensemble=ensemble or flip_ensemble)
    for note in decoder.notes:
        _err(f"warning: {note}", prefix=False)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        if not batch:
            check_writable(_targets(jobs[0][1], preview, reference), force)

    def one(src: Path, dst: Path) -> dict:
        return _decode_one(decoder, src, var, mask_plane, mask, dst, preview, pixels, ref,
                           reference, data_range, force)

    run_jobs(jobs, batch=batch, force=force, summary=summary, process=one,
             outputs_of=lambda dst: _targets(dst, preview, None))


def _targets(dst: Path, preview: bool, reference) -> list[Path]:
    """Every file one decode writes: the cube, its preview, its report."""
    from hsirestore.io import output_paths

    out = output_paths(dst)
    if preview:
        out.append(preview_path(dst))
    if reference is not None:
        from hsirestore.metrics import report_paths

        out += report_paths(dst.with_name(dst.stem + "_report"))
    return out


def _decode_one(decoder, src: Path, var, mask_plane, mask: Path, dst: Path, preview: bool,
                pixels, ref, reference, data_range: float, force: bool) -> dict:
    """Decode one measurement file and write its cube (+ preview, + report)."""
    from hsirestore.io import read_cube, write_cube

    y = read_cube(src, var=var)
    t0 = time.perf_counter()
    out = decoder.decode_cube(y, mask_plane, name=str(src))
    seconds = time.perf_counter() - t0
    out.attrs.update(measurement=str(src), mask=str(mask))
    write_cube(out, dst, force=force)
    cube, wl = out.data, out.wavelengths
    if preview:
        from hsirestore.preview import write_preview

        write_preview(cube, preview_path(dst), wavelengths=wl, pixels=pixels,
                      force=force)
    result = {"method": decoder.describe(),
              "shape": list(cube.shape), "decode_seconds": round(seconds, 3)}
    if ref is not None:
        from hsirestore.metrics import compute_metrics, write_report

        metrics = compute_metrics(cube, ref.data, valid=ref.valid, data_range=data_range)
        write_report(metrics, dst.with_name(dst.stem + "_report"), force=force, wavelengths=wl,
                     extra={"prediction": str(dst), "reference": str(reference),
                            "data_range": data_range})
        result.update(mpsnr=round(metrics["mpsnr"], 3), mssim=round(metrics["mssim"], 4),
                      sam_deg=round(metrics["sam_deg"], 3))
    return result
