"""`hsirestore rgb2hsi`: reconstruct 31-band cubes (400-700 nm) from RGB photos."""
from __future__ import annotations

from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.preview import preview_path
from hsirestore.cli.common import (DEVICE_HELP, FORMAT_HELP, THREADS_HELP, check_cube_output,
                                   command, expand_inputs, format_suffix, run_jobs, set_threads)



def _is_own_output(f: Path) -> bool:
    """NAME_hsi.* cubes and NAME_hsi_preview.png previews written by earlier runs."""
    return f.stem.endswith("_hsi") or f.stem.endswith("_hsi_preview")


@command(app, "rgb2hsi", help="""Reconstruct a 31-band spectral cube (400-700 nm, 10 nm steps)
from RGB images.

Input: PNG/JPEG/TIFF, 8 or 16 bit (divided by 255 or 65535), EXIF orientation applied.
The models expect LINEAR camera RGB (as rendered through the NTIRE 2022 camera response);
pass --srgb for ordinary gamma-encoded photos. --camera converts RGB from another camera
(a response CSV, or 'cie': the built-in response render-rgb uses by default) into the
training camera's space before the model runs (a 3x3 map fitted on colour-science
reflectances; no extra data needed). Output values are reflectance-like on the input's scale (white -> about 1).

Methods: mcga (learned; needs shipped or --weights checkpoints) or poly (root-polynomial
regression baseline, shipped).

Several inputs or a folder: one output per image in OUT (a folder; default beside the input),
named PHOTO_hsi with the --format suffix; folders skip hidden files and earlier outputs
(*_hsi.*). Existing outputs are skipped unless --force; one JSON line per file (input,
output, status ok/skipped/error, seconds, message, method, shape); an error on one file does
not stop the batch, but the exit code is 1 at the end. One input with -o FOLDER (an existing
folder or a name without suffix) writes FOLDER/PHOTO_hsi.<format>.

\b
Examples:
  hsirestore rgb2hsi photo.png -o cube.tif --method poly --preview
  hsirestore rgb2hsi photo.jpg --srgb -o cube.h5 --tta --tta-steps 5
  hsirestore rgb2hsi photos/ -o cubes/ --method poly --summary cubes/summary.jsonl
  hsirestore rgb2hsi canon.png --camera Canon_60D.csv --consistency -o cube.h5
  hsirestore rgb2hsi rendered.png --camera cie -o cube.h5   # from `render-rgb` (default camera)
""")
def rgb2hsi(
    inputs: list[Path] = typer.Argument(..., help="RGB images or folders of images."),
    output: Path = typer.Option(None, "-o", "--output", help="Output cube (one input; format by "
                                "suffix) or folder; default PHOTO_hsi.<format> beside the photo."),
    method: str = typer.Option("mcga", help="mcga (learned) or poly (root-polynomial baseline)."),
    model: str = typer.Option(None, help="Registered MCGA variant (default mcga-compact)."),
    weights: Path = typer.Option(None, help="Checkpoint (.safetensors/.pt) or baseline .npz."),
    tta: bool = typer.Option(False, help="Test-time adaptation (MCGA): per image, minimise the "
                             "codebook-query entropy over the GA parameters, then restore them."),
    tta_steps: int = typer.Option(None, help="With --tta: optimisation steps per image (tile); "
                                  "default 5."),
    tta_lr: float = typer.Option(None, help="With --tta: learning rate (Adam); default 1e-4."),
    camera: str = typer.Option(None, help="The input's camera: a response CSV (R, G, B columns), "
                               "'cie' (render-rgb's default) or 'ntire' (the training camera, "
                               "the default)."),
    consistency: bool = typer.Option(False, help="Make every output spectrum render exactly to the "
                                     "input RGB through the camera response (needs --camera, or "
                                     "the NTIRE response in HSIRESTORE_DATA)."),
    srgb: bool = typer.Option(False, help="Input is gamma-encoded sRGB: linearise it first."),
    fmt: str = typer.Option("h5", "--format", help=FORMAT_HELP),
    tile: int = typer.Option(256, help="Tile size for big photos (0: whole image at once)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    threads: int = typer.Option(0, help=THREADS_HELP),
    preview: bool = typer.Option(False, help="Write a false-colour OUTPUT_preview.png beside each output."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
    summary: Path = typer.Option(None, help="Also append the JSON lines to this file."),
) -> None:
    from hsirestore.cli.common import (_err, check_batch_files, check_distinct_targets,
                                       output_is_folder, refuse_overwriting_inputs)
    from hsirestore.errors import FormatError
    from hsirestore.inference.rgb2hsi import RgbToHsi
    from hsirestore.io import output_paths, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.io.rgb import read_rgb

    ext = format_suffix(fmt)
    set_threads(threads)
    ignored = [] if tta else [o for o, v in (("--tta-steps", tta_steps), ("--tta-lr", tta_lr))
                              if v is not None]
    if ignored:
        _err(f"warning: {' and '.join(ignored)} {'are' if len(ignored) > 1 else 'is'} ignored "
             "without --tta", prefix=False)
    from hsirestore.io.files import IMAGE_KINDS

    files, folder = expand_inputs(inputs, IMAGE_KINDS, "no PNG/JPEG/TIFF images in this folder "
                                  "(earlier outputs NAME_hsi.* and hidden files are not read)",
                                  skip=_is_own_output)
    batch = len(files) > 1 or folder
    to_folder = output_is_folder(output, batch)

    def named(src: Path) -> Path:
        return (output or src.parent) / (src.stem + "_hsi" + ext)

    if batch:
        jobs = [(f, named(f)) for f in files]
        check_distinct_targets(jobs)
    else:
        src = files[0]
        if not src.exists():
            raise FormatError(f"{src}: file not found")
        dst = named(src) if to_folder or output is None else output
        check_cube_output(dst, "the 31-band cube")
        jobs = [(src, dst)]
        targets = output_paths(dst) + ([preview_path(dst)] if preview else [])
        refuse_overwriting_inputs([src], targets)
        if not (to_folder and output is not None and not output.exists()):
            check_writable(targets, force)
    check_batch_files(files, [p for _, dst in jobs for p in output_paths(dst)
                              + ([preview_path(dst)] if preview else [])],
                      summary, output if to_folder else None)

    pred = RgbToHsi(model_name=model, weights=weights, device=device, tta=tta,
                    tta_steps=5 if tta_steps is None else tta_steps,
                    tta_lr=1e-4 if tta_lr is None else tta_lr, method=method, srgb=srgb,
                    camera=camera, tile=tile or None, consistency=consistency)
    for note in pred.notes:
        _err(f"warning: {note}", prefix=False)
    if to_folder and output is not None:
        output.mkdir(parents=True, exist_ok=True)
    def one(src: Path, dst: Path) -> dict:
        rgb = read_rgb(src)
        cube = pred.predict(rgb)
        cube.attrs["source"] = str(src)
        write_cube(cube, dst, force=force)
        if preview:
            from hsirestore.preview import write_preview

            write_preview(cube.data, preview_path(dst), wavelengths=cube.wavelengths,
                          valid=cube.valid, force=force)
        return {"message": f"{rgb.rows}x{rgb.cols} RGB -> {cube.bands} bands",
                "method": pred.describe(), "shape": list(cube.shape)}

    def outputs_of(dst: Path) -> list[Path]:
        return output_paths(dst) + ([preview_path(dst)] if preview else [])

    run_jobs(jobs, batch=batch, force=force, summary=summary, outputs_of=outputs_of, process=one)
