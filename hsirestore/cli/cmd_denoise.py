"""`hsirestore denoise` (alias `restore`): all-in-one restoration of degraded cubes (HSI-VAR)."""
from __future__ import annotations

from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.preview import preview_path
from hsirestore.cli.common import (DEVICE_HELP, FORMATS, THREADS_HELP, _err, check_cube_output,
                                   command, expand_inputs, run_jobs)

_TYPES = ("noise, niid-noise, poisson, impulse, stripes, deadlines, blur, motion-blur, sr, "
          "inpaint, band-missing, haze")

HELP = f"""Restore degraded hyperspectral cubes (denoising, deblurring, destriping,
inpainting, super-resolution, band filling, dehazing) with HSI-VAR.

--degradation tells the model what happened to the data: 'auto' (default) estimates the
noise level per band (robust MAD of a Haar high-pass) and looks for empty bands and
scattered missing pixels, and says what it chose (a cube where it finds nothing, e.g. noise
below 3/255, is written unchanged with a warning); or name the types, combined with '+': {_TYPES}; or 'generic'. Parameters such as
noise:sigma=30 are accepted (sigma is in units of 1/255 of the normalised range) but the
model is guided by the types. Inputs are normalised (floats in [0, 1], or noisy [0, 1] data
whose 0.1th/99.9th percentiles lie in [-0.5, 1.5] with the 99.9th >= 0.5, as they are; 8-bit
by 255; others by their 99.9th percentile; --scaling overrides) and results are written on
the input's scale (and integer data type when the input held integer counts). Any band
count: 31-band groups with overlap (fewer than 31 bands are resampled; fewer than 8 are
refused); ENVI bad bands (bbl = 0) are written back as read.

Several inputs or a folder: one output per cube in OUT (a folder; default beside the input,
named NAME_restored with the input's format or --format's; NAME_DATASET_restored for
file.h5:/DATASET or --var DATASET); a folder contributes its cube files (ENVI, TIFF, .mat,
HDF5; RGB images, hidden files and earlier NAME_restored outputs are skipped); existing
outputs are skipped unless --force; one JSON line per file (input, output, status
ok/skipped/error, seconds, message); an error on one file does not stop the batch, but the
exit code is 1 at the end.

\b
Examples:
  hsirestore denoise noisy.hdr -o clean.hdr
  hsirestore denoise scene.tif --degradation blur+noise -o out.tif --preview
  hsirestore restore cubes/ -o restored/ --summary restored/summary.jsonl
  hsirestore denoise scene.h5 --model hsivar-tiny --weights my.safetensors -o out.h5
"""


def _expand(inputs: list[Path]) -> tuple[list[Path], bool]:
    """Files to restore and whether a folder was given. Folders contribute their cubes,
    except hidden files and earlier outputs (NAME_restored.*)."""
    from hsirestore.io import CUBE_KINDS

    return expand_inputs(inputs, CUBE_KINDS, "no cubes ({suffixes}) in this folder",
                         skip=lambda f: f.stem.endswith("_restored"))


def _out_suffix(src: Path) -> str:
    from hsirestore.io import detect_format
    from hsirestore.io.hdf5 import split_path

    file = split_path(src)[0]
    try:
        return ".hdr" if detect_format(src) == "envi" else file.suffix
    except Exception:
        return file.suffix


def _target(src: Path, outdir: Path | None, var: str | None = None, ext: str | None = None) -> Path:
    """OUTDIR/NAME_restored.<suffix> (the input's, or ``ext`` from --format);
    NAME_DATASET_restored.h5 for file.h5:/group/DATASET inputs, and NAME_VAR_restored.<suffix>
    with --var, so that two datasets (variables) of one file get two outputs."""
    from hsirestore.io.hdf5 import split_path

    file, dataset = split_path(src)
    dataset = dataset or var
    name = file.stem + (f"_{dataset.rstrip('/').rsplit('/', 1)[-1]}" if dataset else "")
    return (outdir or file.parent) / f"{name}_restored{ext or _out_suffix(src)}"


def _restore_cmd(
    inputs: list[Path] = typer.Argument(..., help="Cubes (ENVI .hdr, GeoTIFF, .mat, HDF5 file.h5 "
                                        "or file.h5:/dataset) or folders."),
    output: Path = typer.Option(None, "-o", "--output", help="Output cube (one input) or folder."),
    degradation: str = typer.Option("auto", "--degradation", "-d", help="auto, generic, or types "
                                     "joined by '+' (e.g. blur+noise:sigma=30; sigma in 1/255 of "
                                     "the normalised range): " + _TYPES + "."),
    var: str = typer.Option(None, help="Variable/dataset to read from .mat/HDF5 inputs "
                            "(default: the only 3-D one)."),
    layout: str = typer.Option(None, help="bands-first or bands-last, when a .mat/HDF5/TIFF "
                               "array's band axis is ambiguous."),
    model: str = typer.Option(None, help="Registered restoration model (default hsivar-compact; "
                              "a --weights file that records its preset is built as that)."),
    weights: Path = typer.Option(None, help="Checkpoint (.safetensors export or training last.pt) "
                                 "instead of the shipped weights."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    tile: int = typer.Option(128, help="Tile size in pixels (0: whole image at once; else >= 8, "
                             "the largest HSI-VAR downsampling)."),
    overlap: int = typer.Option(16, help="Tile overlap in pixels."),
    band_overlap: int = typer.Option(8, help="Bands shared by neighbouring 31-band groups."),
    amp: str = typer.Option("auto", help="Mixed precision on CUDA: auto, bf16, fp16, none."),
    temperature: float = typer.Option(0.0, help="Token sampling temperature (0: argmax, deterministic)."),
    top_k: int = typer.Option(None, "--top-k", help="Sample among the K most likely tokens."),
    seed: int = typer.Option(None, help="Seed for sampling (with --temperature > 0)."),
    threads: int = typer.Option(0, help=THREADS_HELP),
    scaling: str = typer.Option("auto", help="Normalisation: auto, none, dtype, max, percentile:P, scale:S."),
    keep_observed: str = typer.Option("auto", help="Return non-zero input values unchanged: auto (when "
                                      "every type is inpaint, band-missing or deadlines), on, off."),
    ensemble: bool = typer.Option(False, help="Average the model over 4 flipped copies of each tile "
                                  "(self-ensemble: a little better, 4x slower)."),
    stream: bool = typer.Option(False, help="Bounded memory: read and write tile by tile (ENVI, "
                                "GeoTIFF and HDF5 window I/O, .mat v7.3 windowed reads; .mat "
                                "outputs and TIFF page stacks are buffered in memory)."),
    fmt: str = typer.Option(None, "--format", help="Output format when the output is named for "
                            f"you (folder outputs, no -o): {', '.join(FORMATS)}; default: the "
                            "input's format."),
    preview: bool = typer.Option(False, help="Write a false-colour OUTPUT_preview.png beside each output."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
    summary: Path = typer.Option(None, help="Also append the JSON lines to this file."),
) -> None:
    from hsirestore.inference.restore import Restorer, restore_file
    from hsirestore.io import output_paths
    from hsirestore.io.atomic import check_writable

    from hsirestore.cli.common import (check_batch_files, check_distinct_targets, check_layout,
                                       format_suffix, output_is_folder, refuse_overwriting_inputs,
                                       set_threads)
    from hsirestore.io.hdf5 import split_path

    check_layout(layout)
    ext = format_suffix(fmt)
    files, folder = _expand(inputs)
    batch = len(files) > 1 or folder
    to_folder = output_is_folder(output, batch)
    if batch:
        jobs = [(f, _target(f, output, var, ext)) for f in files]
        check_distinct_targets(jobs)
    else:
        src = files[0]
        if not split_path(src)[0].exists():
            from hsirestore.errors import FormatError

            raise FormatError(f"{src}: file not found")
        dst = _target(src, output, var, ext) if to_folder or output is None else output
        check_cube_output(dst, "the restored cube")
        jobs = [(src, dst)]
        targets = output_paths(dst) + ([preview_path(dst)] if preview else [])
        refuse_overwriting_inputs([src], targets)
        if not to_folder:
            check_writable(targets, force)
    check_batch_files(files, [p for _, dst in jobs for p in output_paths(dst)
                              + ([preview_path(dst)] if preview else [])],
                      summary, output if to_folder else None)
    if "+" in degradation or degradation.strip().lower() not in ("auto", "generic", "unknown"):
        from hsirestore.physics.degradations import parse_degradation

        parse_degradation(degradation)  # fail before loading anything
    if to_folder and output is not None:
        output.mkdir(parents=True, exist_ok=True)
        if not batch:
            check_writable(targets, force)

    set_threads(threads)
    restorer = Restorer(model_name=model, weights=weights, device=device, tile=tile or None,
                        overlap=overlap if tile else 0, amp=amp, temperature=temperature,
                        top_k=top_k, seed=seed, group_overlap=band_overlap, scaling=scaling,
                        keep_observed=keep_observed, ensemble=ensemble)
    for note in restorer.notes:
        _err(f"warning: {note}", prefix=False)
    if (seed is not None or top_k is not None) and temperature == 0:
        _err("warning: --seed and --top-k only matter when sampling (--temperature > 0); "
             "decoding is deterministic", prefix=False)
    def one(src: Path, dst: Path) -> dict:
        shape = restore_file(restorer, src, dst, degradation, stream=stream, force=force,
                             var=var, layout=layout)["shape"]
        if preview:
            _preview(dst, stream, force)
        info = restorer.last_info
        message = info["degradation"] + (f" (estimated sigma {info['sigma_255']}/255)"
                                         if info.get("estimated") else "")
        if info.get("unchanged"):
            message = (f"nothing to restore detected (estimated sigma {info['sigma_255']}/255, no "
                       "empty bands, no scattered empty pixels): written unchanged; name the "
                       "degradation with -d (or -d generic) to run the model anyway")
            _err(f"warning: {src}: {message}", prefix=False)
        return {"message": message,
                "degradation": info["degradation"], "model": info["model"], "shape": list(shape)}

    def outputs_of(dst: Path) -> list[Path]:
        return output_paths(dst) + ([preview_path(dst)] if preview else [])

    run_jobs(jobs, batch=batch, force=force, summary=summary, outputs_of=outputs_of, process=one)


def _preview(dst: Path, stream: bool, force: bool) -> None:
    """False-colour preview of a written output (a subsampled read when it was streamed)."""
    from hsirestore.io import open_cube, read_cube
    from hsirestore.preview import decimated, write_preview

    if stream:  # never load the streamed output
        src_out = open_cube(dst)
        try:
            out = decimated(src_out)
        finally:
            src_out.close()
    else:
        out = read_cube(dst)
    write_preview(out.data, preview_path(dst), wavelengths=out.wavelengths, valid=out.valid,
                  force=force)


command(app, "denoise", help=HELP)(_restore_cmd)
command(app, "restore", help="Alias of 'denoise'.\n\n" + HELP)(_restore_cmd)
