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


def test_explicit_bands_cube_input_and_invalid_pixels(tmp_path):
    import pytest

    from hsirestore.errors import OptionError, OutputExistsError
    from hsirestore.io import Cube

    rng = np.random.default_rng(2)
    data = rng.random((8, 12, 14)).astype(np.float32)
    img = false_colour(data, bands=[0, 0, 0])
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    with pytest.raises(OptionError, match="three indices"):
        false_colour(data, bands=[0, 1, 9])
    valid = np.ones((12, 14), bool)
    valid[3, 4] = False
    cube = Cube(data, wavelengths=np.linspace(0.45, 0.65, 8), wavelength_units="um", valid=valid)
    paths = write_preview(cube, tmp_path / "c.png", pixels=[(0, 0)])
    arr = np.asarray(Image.open(paths[0]))
    assert arr.shape == (12, 14, 3) and (arr[3, 4] == 0).all()
    np.testing.assert_array_equal(arr, false_colour(data, np.linspace(450, 650, 8), valid=valid))
    with pytest.raises(OutputExistsError):
        write_preview(cube, tmp_path / "c.png")
    with pytest.raises(OptionError, match="outside"):
        write_preview(cube, tmp_path / "d.png", pixels=[(12, 0)])
    assert not (tmp_path / "d.png").exists()
    assert pick_bands(3) == [0, 1, 2] and pick_bands(1) == [0, 0, 0]


def test_spectra_plot_draws_lines_and_ticks():
    from hsirestore.preview import spectra_plot

    cube = np.zeros((31, 4, 4), np.float32)
    cube[:, 1, 1] = np.linspace(0, 1, 31)
    plot = spectra_plot(cube, [(1, 1), (2, 2)], wavelengths=np.arange(400, 701, 10.0))
    assert plot.shape == (400, 640, 3)
    red = (plot[..., 0] > 180) & (plot[..., 1] < 80) & (plot[..., 2] < 80)  # the first line
    assert red.sum() > 300
    cols = np.where(red.any(axis=0))[0]
    assert cols.min() < 100 and cols.max() > 540  # spans the x axis
    assert (plot < 100).all(-1).sum() > 500  # black frame, ticks and labels
