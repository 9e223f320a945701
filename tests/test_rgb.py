"""Camera responses and RGB rendering (physics/rgb.py)."""
import numpy as np
import pytest

from hsirestore.errors import FormatError, ShapeError
from hsirestore.physics.rgb import (builtin_response, default_camera_path, load_camera_response,
                                    render_rgb, sample_response, wavelengths_nm)

WL = np.arange(400, 701, 10.0)


def _write(path, text):
    path.write_text(text)
    return path


def test_headerless_camspec_with_four_or_five_columns(tmp_path):
    four = _write(tmp_path / "c4.csv", "#Camera: x\n#License: y\n400,0.1,0.2,0.9\n500,0.2,0.9,0.3\n"
                                      "600,0.9,0.3,0.1\n")
    wl, r = load_camera_response(four)
    assert wl.tolist() == [400, 500, 600]
    np.testing.assert_allclose(r[:, 1], [0.2, 0.9, 0.3])
    five = _write(tmp_path / "c5.csv", "400,0.1,0.2,0.4,0.9\n500,0.2,0.6,0.8,0.3\n")
    wl, r = load_camera_response(five)
    np.testing.assert_allclose(r[:, 0], [0.1, 0.3, 0.9])  # G1/G2 averaged, B is the last column


@pytest.mark.parametrize("text, msg", [
    ("", "empty"),
    ("# only comments\n", "empty"),
    ("Wavelength,R,G,B\n400,0.1,0.2\n", "fewer than"),
    ("Wavelength,R,G,B\n400,0.1,0.2,x\n500,1,1,1\n", "non-numeric"),
    ("Wavelength,R,B\n400,0.1,0.2\n500,1,1\n", "expected columns"),
    ("400,0.1,0.2\n500,1,1\n", "3 columns"),
    ("Wavelength,R,G,B\n400,0.1,0.2,0.3\n", "at least 2"),
    ("Wavelength,R,G,B\n400,0.1,nan,0.3\n500,1,1,1\n", "non-finite"),
    ("Wavelength,R,G,B\n400,0.1,0.2,0.3\n400,1,1,1\n", "repeated"),
    ("Wavelength,R,G,B\n400,0,0.2,0.3\n500,0,1,1\n", "zero everywhere"),
])
def test_bad_response_files(tmp_path, text, msg):
    with pytest.raises(FormatError, match=msg):
        load_camera_response(_write(tmp_path / "bad.csv", text))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FormatError, match="not found"):
        load_camera_response(tmp_path / "nope.csv")
    with pytest.raises(FormatError, match="not found"):
        load_camera_response(tmp_path)


def test_render_normalisation_linearity_and_units(tmp_path):
    f = _write(tmp_path / "cam.csv", "Wavelength[nm],R,G1,G2,B\n380,0,0,0,1\n450,0.1,0.2,0.2,1\n"
                                     "550,0.2,1,1,0.1\n650,1,0.2,0.2,0\n750,0.5,0,0,0\n")
    rwl, resp = load_camera_response(f)
    white = render_rgb(np.ones((31, 3, 4), np.float32), WL, rwl, resp, clip=False)
    assert white.shape == (3, 3, 4) and white.dtype == np.float32
    np.testing.assert_allclose(white[1], 1.0, rtol=1e-6)
    rng = np.random.default_rng(0)
    cube = rng.random((31, 5, 6)).astype(np.float32)
    a = render_rgb(cube, WL, rwl, resp, clip=False)
    np.testing.assert_allclose(render_rgb(0.5 * cube, WL, rwl, resp, clip=False), 0.5 * a, rtol=1e-5)
    # direct integration: sum over bands of response(band) * value, green normalised to 1
    m = np.stack([np.interp(WL, rwl, r) for r in resp])
    m /= m[1].sum()
    np.testing.assert_allclose(a[:, 2, 3], m @ cube[:, 2, 3], rtol=1e-5)
    # micrometres are recognised; clipping; non-finite values count as 0
    np.testing.assert_allclose(render_rgb(cube, WL / 1000, rwl, resp, clip=False), a, rtol=1e-6)
    assert render_rgb(3 * cube, WL, rwl, resp).max() <= 1.0
    cube[:, 0, 0] = np.nan
    assert np.isfinite(render_rgb(cube, WL, rwl, resp)).all()
    np.testing.assert_allclose(wavelengths_nm([0.4, 0.5], "um"), [400, 500])
    np.testing.assert_allclose(wavelengths_nm([400.0, 500.0], "nm"), [400, 500])


def test_render_errors():
    with pytest.raises(ShapeError):
        render_rgb(np.ones((31, 4)), WL)
    with pytest.raises(ShapeError, match="30 wavelengths for 31 bands"):
        render_rgb(np.ones((31, 2, 2)), WL[:30])
    with pytest.raises(FormatError, match="no green sensitivity"):
        render_rgb(np.ones((5, 2, 2)), np.linspace(1000, 2000, 5))


def test_builtin_response_is_a_white_balanced_srgb_observer():
    wl, resp = builtin_response()
    assert resp.shape == (3, wl.size) and (resp >= 0).all()
    assert 560 < wl[np.argmax(resp[0])] < 640 and 500 < wl[np.argmax(resp[1])] < 570
    assert 420 < wl[np.argmax(resp[2])] < 480
    white = render_rgb(np.ones((31, 1, 1)), WL, clip=False)
    np.testing.assert_allclose(white.ravel(), 1.0, rtol=1e-6)
    mono = np.zeros((31, 1, 1))
    for lam, ch in ((450, 2), (540, 1), (630, 0)):
        mono[:] = 0
        mono[int((lam - 400) // 10)] = 1
        assert np.argmax(render_rgb(mono, WL).ravel()) == ch, lam
    np.testing.assert_allclose(sample_response(WL).sum(axis=1), 1.0)


def test_shared_camera_files(shared_data):
    path = default_camera_path()
    assert path is not None and path.name == "ntire2022_rgb_qe.csv"
    wl, resp = load_camera_response(path)
    assert wl[0] == 360 and wl[-1] == 750 and resp.shape == (3, 391)
    files = sorted((shared_data / "camera" / "camspec").glob("*.csv"))
    assert len(files) == 18
    for f in files:
        cwl, cresp = load_camera_response(f)
        assert cwl[0] == 400 and cresp.shape == (3, cwl.size) and (cresp >= 0).all(), f.name
        white = render_rgb(np.ones((31, 1, 1)), WL, cwl, cresp, clip=False).ravel()
        assert white[1] == pytest.approx(1.0) and 0.1 < white[0] < 3 and 0.1 < white[2] < 3, f.name


def test_cmyk_jpeg_grey_alpha_and_pixel_limit(tmp_path, monkeypatch):
    from PIL import Image

    import hsirestore.io.rgb as rgbio
    from hsirestore.errors import FormatError

    cmyk = np.zeros((20, 30, 4), np.uint8)
    cmyk[..., 3] = 200  # mostly black ink: a dark grey, not white
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg")
    want = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")).mean() / 255
    got = rgbio.read_rgb(tmp_path / "c.jpg").data
    assert got.shape == (3, 20, 30) and got.mean() == pytest.approx(want, abs=1e-3) and got.max() < 0.5
    la = np.zeros((12, 20, 2), np.uint8)
    la[..., 0], la[..., 1] = 100, 255
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(rgbio.read_rgb(tmp_path / "la.png").data, 100 / 255, rtol=1e-6)
    monkeypatch.setattr(rgbio, "MAX_PIXELS", 100)
    with pytest.raises(FormatError, match="HSIRESTORE_MAX_PIXELS"):
        rgbio.read_rgb(tmp_path / "la.png")
