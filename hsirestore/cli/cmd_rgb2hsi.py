"""`hsirestore rgb2hsi`: reconstruct 31-band cubes (400-700 nm) from RGB photos."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import command

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _expand(inputs: list[Path]) -> list[Path]:
    from hsirestore.errors import FormatError

    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.name.startswith("."))
            if not found:
                raise FormatError(f"{p}: no PNG/JPEG/TIFF images in this folder")
            files += found
        elif not p.exists():
            raise FormatError(f"{p}: file not found")
        else:
            files.append(p)
    return files


@command(app, "rgb2hsi", help="""Reconstruct a 31-band spectral cube (400-700 nm, 10 nm steps)
from RGB images.

Input: PNG/JPEG/TIFF, 8 or 16 bit (divided by 255 or 65535), EXIF orientation applied.
The models expect LINEAR camera RGB (as rendered through the NTIRE 2022 camera response);
pass --srgb for ordinary gamma-encoded photos. --camera CSV converts RGB from another
camera into the NTIRE camera's space (a 3x3 map fitted on colour-science reflectances) before
the model runs. Output values are reflectance-like on the input's scale (white -> about 1).

Methods: mcga (learned; needs shipped or --weights checkpoints) or poly (root-polynomial
regression baseline, shipped). Several inputs or a folder: one output per image in OUT (a
folder), existing outputs are skipped (--force overwrites); one JSON line per file.

\b
Examples:
  hsirestore rgb2hsi photo.png -o cube.tif --method poly --preview
  hsirestore rgb2hsi photo.jpg --srgb -o cube.h5 --tta --tta-steps 5
  hsirestore rgb2hsi photos/ -o cubes/ --method poly
""")
def rgb2hsi(
    inputs: list[Path] = typer.Argument(..., help="RGB images or folders of images."),
    output: Path = typer.Option(None, "-o", "--output", help="Output cube (one input; format by "
                                "suffix) or folder (several inputs); default PHOTO_hsi.h5."),
    method: str = typer.Option("mcga", help="mcga (learned) or poly (root-polynomial baseline)."),
    model: str = typer.Option(None, help="Registered MCGA variant (default mcga-compact)."),
    weights: Path = typer.Option(None, help="Checkpoint (.safetensors/.pt) or baseline .npz."),
    tta: bool = typer.Option(False, help="Test-time adaptation (MCGA): per image, minimise the "
                             "codebook-query entropy over the GA parameters, then restore them."),
    tta_steps: int = typer.Option(5, help="TTA optimisation steps per image (tile)."),
    tta_lr: float = typer.Option(1e-4, help="TTA learning rate (Adam)."),
    camera: Path = typer.Option(None, help="Camera response CSV of the input (R, G, B columns)."),
    consistency: bool = typer.Option(False, help="Make every output spectrum render exactly to the "
                                     "input RGB through the camera response (needs --camera or "
                                     "the NTIRE response in HSIRESTORE_DATA)."),
    srgb: bool = typer.Option(False, help="Input is gamma-encoded sRGB: linearise it first."),
    fmt: str = typer.Option("h5", "--format", help="Output format for folder outputs: h5, tif, mat, hdr."),
    tile: int = typer.Option(256, help="Tile size for big photos (0: whole image at once)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    preview: bool = typer.Option(False, help="Write a false-colour OUTPUT_preview.png beside each output."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    from hsirestore.errors import OptionError
    from hsirestore.inference.rgb2hsi import RgbToHsi
    from hsirestore.io import output_paths, write_cube
    from hsirestore.cli.common import refuse_overwriting_inputs
    from hsirestore.io.atomic import check_writable
    from hsirestore.io.rgb import read_rgb

    files = _expand(inputs)
    if fmt.lstrip(".") not in ("h5", "tif", "mat", "hdr"):
        raise OptionError(f"--format {fmt!r}: use h5, tif, mat or hdr")
    ext = "." + fmt.lstrip(".")
    batch = len(files) > 1 or any(p.is_dir() for p in inputs)
    if batch:
        if output is not None and output.exists() and not output.is_dir():
            raise OptionError(f"-o {output}: several inputs need an output folder")
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
        jobs = [(f, (output or f.parent) / (f.stem + "_hsi" + ext)) for f in files]
    else:
        jobs = [(files[0], output or files[0].with_name(files[0].stem + "_hsi.h5"))]
    if not batch:
        targets = output_paths(jobs[0][1])
        if preview:
            targets.append(jobs[0][1].with_name(jobs[0][1].stem + "_preview.png"))
        refuse_overwriting_inputs([jobs[0][0]], targets)
        check_writable(targets, force)

    pred = RgbToHsi(model_name=model, weights=weights, device=device, tta=tta, tta_steps=tta_steps,
                    tta_lr=tta_lr, method=method, srgb=srgb, camera=camera, tile=tile or None,
                    consistency=consistency)
    for src, dst in jobs:
        png = dst.with_name(dst.stem + "_preview.png")
        if batch and not force and (any(p.exists() for p in output_paths(dst))
                                    or (preview and png.exists())):
            typer.echo(json.dumps({"input": str(src), "output": str(dst), "skipped": "exists"}))
            continue
        refuse_overwriting_inputs([src], output_paths(dst))
        rgb = read_rgb(src)
        t0 = time.perf_counter()
        cube = pred.predict(rgb)
        seconds = time.perf_counter() - t0
        cube.attrs["source"] = str(src)
        write_cube(cube, dst, force=force)
        if preview:
            from hsirestore.preview import write_preview

            write_preview(cube.data, png, wavelengths=cube.wavelengths, valid=cube.valid, force=force)
        typer.echo(json.dumps({"input": str(src), "output": str(dst), "method": pred.describe(),
                               "shape": list(cube.shape), "seconds": round(seconds, 3)}))
