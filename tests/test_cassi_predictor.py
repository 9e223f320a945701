import numpy as np
import pytest

from hsirestore.errors import InvalidValueError, OptionError, ShapeError
from hsirestore.inference.cassi import CassiDecoder
from hsirestore.physics.cassi import cassi_forward

B, STEP = 8, 2


def _scene(h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.full((B, h, w), 0.1, np.float32)
    k = np.linspace(0, 1, B, dtype=np.float32)[:, None, None]
    x[:, 3:15, 5:25] = 0.2 + 0.6 * k
    x[:, 10:22, 18:38] = 0.8 - 0.5 * k
    mask = (rng.random((h, w)) > 0.5).astype(np.float32)
    return x, mask, cassi_forward(x, mask, STEP)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    import torch

    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    model = build_model("s2former-tiny", in_chans=B)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_state_dict(model.state_dict(), path, metadata={"model_overrides": {"in_chans": B}})
    return path


@pytest.mark.parametrize("scale", [4095.0, 1.0 / 3.7, 2.0 / 28.0])
def test_gaptv_decoder_is_homogeneous(scale):
    _, mask, y = _scene()
    dec = CassiDecoder(method="gap-tv", bands=B, step=STEP, gaptv_iters=8, device="cpu")
    a = dec.decode(y, mask)
    b = dec.decode(y * scale, mask)
    assert a.shape == (B, 24, 40) and a.dtype == np.float32
    np.testing.assert_allclose(b, a * scale, rtol=2e-3, atol=2e-4 * scale * float(np.abs(a).max()))


def test_model_decoder_tiles_and_is_homogeneous(tiny_weights):
    _, mask, y = _scene()
    dec = CassiDecoder(method="s2former", model_name="s2former-tiny", weights=tiny_weights,
                       bands=B, step=STEP, tile=16, overlap=4, device="cpu")
    a = dec.decode(y, mask)
    assert a.shape == (B, 24, 40) and np.isfinite(a).all()
    for scale in (4095.0, 2.0 / 28.0):
        np.testing.assert_allclose(dec.decode(y * scale, mask), a * scale, rtol=1e-3,
                                   atol=1e-4 * scale * float(np.abs(a).max()))
    # whole-image decode agrees with tiles away from the seams only approximately, but has the shape
    whole = CassiDecoder(method="s2former", model_name="s2former-tiny", weights=tiny_weights,
                         bands=B, step=STEP, tile=None, device="cpu").decode(y, mask)
    assert whole.shape == a.shape


def test_flip_ensemble_averages_the_decode_of_the_flipped_system(tmp_path):
    import torch

    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    model = build_model("s2former-tiny", in_chans=B)
    torch.nn.init.normal_(model.conv_last.weight, std=0.2)  # far from the identity
    weights = tmp_path / "tiny.safetensors"
    save_state_dict(model.state_dict(), weights, metadata={"model_overrides": {"in_chans": B}})
    _, mask, y = _scene()
    kw = dict(method="s2former", model_name="s2former-tiny", weights=weights, bands=B,
              step=STEP, tile=None, device="cpu")
    plain = CassiDecoder(**kw).decode(y, mask)
    flipped = CassiDecoder(**kw).decode(y[::-1].copy(), mask[::-1].copy())
    dec = CassiDecoder(**kw, flip_ensemble=True)
    assert "flip ensemble" in dec.describe()
    ens = dec.decode(y, mask)
    np.testing.assert_allclose(ens, 0.5 * (plain + flipped[:, ::-1]), rtol=1e-4, atol=1e-5)
    assert np.abs(ens - plain).max() > 1e-2  # the flipped pass is not the same computation
    # rows that are not a multiple of the window: padded, flipped, cropped back
    _, mask, y = _scene(h=21)
    assert dec.decode(y, mask).shape == (B, 21, 40)
    with pytest.raises(OptionError, match="flip-ensemble"):
        CassiDecoder(method="gap-tv", flip_ensemble=True)


def test_gaptv_decoder_beats_shift_back():
    from hsirestore.physics.cassi import mask_phi_sum, shift_back

    x, mask, y = _scene()
    rec = CassiDecoder(method="gap-tv", bands=B, step=STEP, gaptv_iters=60, device="cpu").decode(y, mask)
    base = shift_back(y / np.maximum(mask_phi_sum(mask, B, STEP), 1e-6), B, STEP) * mask
    mse = lambda a: float(((a - x) ** 2).mean())  # noqa: E731
    assert mse(rec) < 0.3 * mse(base)


def test_mask_scaled_0_255_is_normalised():
    _, mask, y = _scene()
    dec = CassiDecoder(method="gap-tv", bands=B, step=STEP, gaptv_iters=5, device="cpu")
    np.testing.assert_allclose(dec.decode(y, mask * 255), dec.decode(y * 1.0, mask), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("change, err", [
    (lambda y, m: (y[:, :-1], m), ShapeError),
    (lambda y, m: (y, m[:, :-2]), ShapeError),
    (lambda y, m: (np.where(np.arange(y.size).reshape(y.shape) == 3, np.nan, y), m), InvalidValueError),
    (lambda y, m: (y, np.where(m > 0, np.inf, m)), InvalidValueError),
    (lambda y, m: (y, -m), InvalidValueError),
    (lambda y, m: (y, np.stack([m] * B)), ShapeError),
])
def test_bad_inputs_raise_typed_errors(change, err):
    _, mask, y = _scene()
    dec = CassiDecoder(method="gap-tv", bands=B, step=STEP, gaptv_iters=2, device="cpu")
    with pytest.raises(err):
        dec.decode(*change(y, mask))


def test_unknown_method():
    with pytest.raises(OptionError):
        CassiDecoder(method="magic")


def test_real_measurement_decodes(shared_data):
    from hsirestore.io import read_cube

    y = read_cube(shared_data / "cassi" / "meas_real_scene1.mat", var="meas_real").data[0]
    mask = read_cube(shared_data / "cassi" / "mask_real_660.mat", var="mask").data[0]
    cube = CassiDecoder(method="gap-tv", gaptv_iters=1, device="cpu").decode(y, mask)
    assert cube.shape == (28, 660, 660)
    assert np.isfinite(cube).all() and cube.mean() > 0


def test_tiles_see_the_light_dispersed_from_their_neighbours(tmp_path):
    """A decoder made only of projections onto the measurement is local (each scene column
    depends on the measurement and mask within step*(bands-1) columns), so tiles with that
    much context give exactly the whole-image result; without it the tile ends were wrong."""
    import torch

    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    over = dict(in_chans=B, stages=2, embed_dim=8, depth=1, num_heads=2, project_output=True)
    model = build_model("s2former-unfolded", **over)
    with torch.no_grad():  # every stage the identity: the decoder is the projections alone
        for st in model.stages:
            st.conv_last.weight.zero_()
            st.conv_last.bias.zero_()
    weights = tmp_path / "proj.safetensors"
    save_state_dict(model.state_dict(), weights, metadata={"model_overrides": over})
    rng = np.random.default_rng(0)
    r, c = np.mgrid[0:48, 0:96] / 48
    x = (0.4 + 0.3 * np.sin(3 * r + 5 * c + np.linspace(0, 2, B)[:, None, None])).astype(np.float32)
    mask = (rng.random((48, 96)) > 0.5).astype(np.float32)
    y = cassi_forward(x, mask, STEP)
    kw = dict(model_name="s2former-unfolded", weights=weights, bands=B, step=STEP, device="cpu")
    whole = CassiDecoder(tile=None, **kw).decode(y, mask)
    tiled = CassiDecoder(tile=32, overlap=8, **kw).decode(y, mask)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    res = np.linalg.norm(cassi_forward(tiled, mask, STEP) - y) / np.linalg.norm(y)
    assert res < 1e-5
