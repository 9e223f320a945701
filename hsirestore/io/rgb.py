"""RGB photos: PNG, JPEG and TIFF, 8 and 16 bit, EXIF orientation applied.

Pixel data are decoded with imagecodecs/tifffile (Pillow would reduce 16-bit RGB PNGs to
8 bit); Pillow only reads the EXIF orientation tag. Values are normalised to [0, 1] by the
bit depth (255 or 65535).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError, first_line
from hsirestore.io.atomic import atomic_paths
from hsirestore.io.cube import Cube

RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _orientation(path: Path) -> int:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _apply_orientation(img: np.ndarray, o: int) -> np.ndarray:
    """img (H, W, C); EXIF orientation 1..8 to the upright image."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[o](img)) if o in ops else img


def read_rgb(path) -> Cube:
    """Cube (3, H, W) float32 in [0, 1]: the stored 8/16-bit values divided by 255 / 65535,
    so, like other readers that apply a scale, ``source_dtype`` is "float32" and
    ``attrs["stored_dtype"]`` the file's type ("uint8", "uint16"; floats as they are)."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix not in RGB_SUFFIXES:
        raise FormatError(f"{path}: not an RGB image ({', '.join(RGB_SUFFIXES)})")
    _check_pixel_count(path, suffix)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            img = tifffile.imread(path)
        else:
            import imagecodecs

            img = imagecodecs.imread(str(path))
    except Exception as e:
        first = first_line(e)
        raise FormatError(f"{path}: cannot decode image ({first})") from e
    if img.ndim == 3 and img.shape[-1] == 4 and suffix in (".jpg", ".jpeg"):
        img = _cmyk_jpeg_as_rgb(path)  # JPEG has no alpha: four channels are CMYK
    if img.ndim == 3 and img.shape[-1] == 2:  # grey + alpha
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        if img.ndim == 3 and img.shape[0] in (3, 4):
            img = np.moveaxis(img, 0, -1)
        else:
            raise FormatError(f"{path}: expected an RGB image, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    elif img.dtype.kind == "f":
        scale = 1.0
    else:
        raise FormatError(f"{path}: unsupported pixel type {img.dtype}")
    img = _apply_orientation(img, _orientation(path))
    data = np.moveaxis(img.astype(np.float32) / np.float32(scale), -1, 0)
    attrs = {"bits": {255.0: 8, 65535.0: 16}.get(scale, 32)}
    if scale != 1.0:
        attrs.update(stored_dtype=img.dtype.name, scale=1.0 / scale)
    return Cube(data, band_names=["R", "G", "B"], source_dtype="float32", attrs=attrs)


#: the largest photo read (pixels); a small file can decode to gigabytes (decompression bomb)
MAX_PIXELS = int(os.environ.get("HSIRESTORE_MAX_PIXELS", 1 << 28))


def _check_pixel_count(path: Path, suffix: str) -> None:
    """FormatError, before decoding, for images above MAX_PIXELS (HSIRESTORE_MAX_PIXELS)."""
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shape = tf.pages[0].shape
            h, w = (shape[0], shape[1]) if len(shape) < 3 or shape[-1] <= 4 else shape[-2:]
        else:
            from PIL import Image

            with Image.open(path) as im:  # reads the header only
                w, h = im.size
    except Exception:
        return  # undecodable files are reported by the decoder
    if int(w) * int(h) > MAX_PIXELS:
        raise FormatError(f"{path}: {w} x {h} pixels is more than the {MAX_PIXELS} pixels this "
                          "tool reads (a decompression bomb?); set HSIRESTORE_MAX_PIXELS to allow it")


def _cmyk_jpeg_as_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of a CMYK JPEG, converted by Pillow (which handles Adobe's inverted
    CMYK)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_rgb(rgb: np.ndarray, path, force: bool = False, bits: int = 8) -> list[Path]:
    """rgb (3, H, W) float in [0, 1] (or uint8/uint16) -> PNG / JPEG / TIFF."""
    path = Path(path)
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise FormatError(f"write_rgb expects (3, H, W); got {arr.shape}")
    if bits not in (8, 16):
        raise FormatError("bits must be 8 or 16")
    if arr.dtype.kind == "f":
        top = 255 if bits == 8 else 65535
        arr = np.rint(np.clip(arr, 0, 1) * top).astype(np.uint8 if bits == 8 else np.uint16)
    img = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
    suffix = path.suffix.lower()
    with atomic_paths([path], force=force) as (tmp,):
        if suffix == ".png":
            import imagecodecs

            tmp.write_bytes(imagecodecs.png_encode(img))
        elif suffix in (".jpg", ".jpeg"):
            from PIL import Image

            if img.dtype != np.uint8:
                raise FormatError("JPEG holds 8-bit images only")
            Image.fromarray(img).save(tmp, format="JPEG", quality=95)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, img, photometric="rgb")
        else:
            raise FormatError(f"{path}: unknown image format (use .png, .jpg or .tif)")
    return [path]
