import numpy as np
from PIL import Image

from hsirestore.preview import false_colour, pick_bands, write_preview


def test_pick_bands_by_wavelength_and_spread():
    wl = np.arange(400, 701, 10.0)
    assert pick_bands(31, wl) == [24, 15, 6]  # 640, 550, 460 nm
    assert pick_bands(31, wl / 1000) == [24, 15, 6]  # micrometres
    assert len(set(pick_bands(200))) == 3


def test_false_colour_stretch_and_nan():
    cube = np.random.default_rng(0).random((31, 20, 30)).astype(np.float32)
    cube[:, 0, 0] = np.nan
    img = false_colour(cube, np.arange(400, 701, 10.0))
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert img.max() == 255 and img.min() == 0


def test_write_preview_with_spectra(tmp_path):
    cube = np.random.default_rng(1).random((10, 16, 16)).astype(np.float32)
    paths = write_preview(cube, tmp_path / "p.png", pixels=[(1, 2), (8, 8)])
    assert [p.name for p in paths] == ["p.png", "p_spectra.png"]
    assert Image.open(paths[0]).size == (16, 16)
    assert Image.open(paths[1]).size == (640, 400)
