"""Restoration predictor: band grouping for any band count, degradation choice, weights."""
import numpy as np
import pytest
import torch

from hsirestore.errors import ModelError, OptionError, ShapeError
from hsirestore.inference.restore import (Restorer, auto_degradation, band_groups, band_weights,
                                          estimate_noise, types_vector)
from hsirestore.io.cube import ArraySink, ArraySource, Cube


pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth(bands, h=24, w=28, seed=0, grain=0.05):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    b = np.linspace(0, 1, bands)[:, None, None]
    x = 0.4 + 0.25 * np.sin(2 * np.pi * (xx + 0.5 * yy + 0.7 * b)) + grain * rng.random((1, h, w))
    return np.clip(x, 0, 1).astype(np.float32)


@pytest.mark.parametrize("bands", [31, 32, 156, 224])
def test_band_groups_cover_in_order_with_overlap(bands):
    g = band_groups(bands, 31, 8)
    assert g[0][0] == 0 and g[-1][1] == bands
    assert all(e - s == 31 for s, e in g)
    assert all(b[0] <= a[1] - 8 for a, b in zip(g, g[1:]))
    total = np.zeros(bands)
    for (s, e), w in zip(g, band_weights(g, bands)):
        assert (w > 0).all()
        total[s:e] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


@pytest.mark.parametrize("bands", [31, 156, 224])
def test_identity_stand_in_reproduces_input_exactly(bands):
    x = _smooth(bands)
    seen = []

    def ident(t, types):
        seen.append(t.shape[1])
        return t

    r = Restorer(net=ident, device="cpu", tile=16, overlap=4)
    out = r.restore(Cube(x, wavelengths=np.linspace(400, 2500, bands)), "noise")
    assert set(seen) == {31}
    assert out.shape == x.shape and np.array_equal(out.data, x)
    np.testing.assert_array_equal(out.wavelengths, np.linspace(400, 2500, bands))


def test_affine_stand_in_keeps_band_order_and_scale():
    x = _smooth(224) * 4000  # uint16-like counts: normalised, restored, mapped back
    r = Restorer(net=lambda t, types: 0.5 * t, device="cpu", tile=None)
    out = r.restore(Cube(x, source_dtype="uint16"), "generic")
    np.testing.assert_allclose(out.data, 0.5 * x, rtol=1e-5)
    assert r.last_info["degradation"] == "generic" and "percentile" in r.last_info["scaling"]


def test_fewer_bands_resampled_and_too_few_refused():
    x = _smooth(20)
    out = Restorer(net=lambda t, types: t, device="cpu", tile=None).restore(x, "blur")
    assert out.shape == x.shape
    np.testing.assert_allclose(out.data, x, atol=0.02)
    with pytest.raises(ShapeError, match="at least 8 bands"):
        Restorer(net=lambda t, types: t, device="cpu").restore(_smooth(3), "noise")


def test_degradation_choice_explicit_auto_and_errors():
    got = []

    def rec(t, types):
        got.append(types[0].numpy().copy())
        return t

    r = Restorer(net=rec, device="cpu", tile=None)
    r.restore(_smooth(31), "blur+noise:sigma=30")
    np.testing.assert_array_equal(got[-1], types_vector(["blur", "noise"]))
    assert types_vector(["blur", "noise"]).sum() == 2
    rng = np.random.default_rng(1)
    noisy = _smooth(31, 64, 64) + rng.normal(0, 20 / 255, (31, 64, 64)).astype(np.float32)
    r.restore(np.clip(noisy, 0, 1), "auto")
    assert r.last_info["degradation"] == "noise" and 15 < r.last_info["sigma_255"] < 25
    np.testing.assert_array_equal(got[-1], types_vector(["noise"]))
    clean = _smooth(31, 64, 64, grain=0.0)
    calls = len(got)
    out = r.restore(clean, "auto")  # nothing detected: returned unchanged, the model not run
    assert r.last_info["degradation"] == "none" and r.last_info["unchanged"] and len(got) == calls
    np.testing.assert_array_equal(out.data, clean)
    r.restore(clean, "generic")  # asked for: the base embedding alone
    assert r.last_info["degradation"] == "generic" and got[-1].sum() == 0 and len(got) > calls
    clean[5] = 0
    names, info = auto_degradation(clean)
    assert names == ["band-missing"] and info["missing_bands"] == [5]
    with pytest.raises(OptionError, match="unknown degradation"):
        r.restore(clean, "sharpen")
    with pytest.raises(OptionError):
        Restorer(net=rec, temperature=-1)


def test_noise_estimate_accuracy():
    rng = np.random.default_rng(0)
    x = _smooth(4, 128, 128) + rng.normal(0, 0.05, (4, 128, 128))
    np.testing.assert_allclose(estimate_noise(x), 0.05, rtol=0.12)
    # dark scene, noise clipped at 0 in the dark half: the clipped blocks are left out
    dark = _smooth(4, 128, 128) * 0.5
    dark[:, :, :64] = 0.01
    y = np.clip(dark + rng.normal(0, 0.05, dark.shape), 0, 1)
    np.testing.assert_allclose(estimate_noise(y), 0.05, rtol=0.15)


def _tiny_weights(tmp_path):
    from hsirestore.registry import build_model, get_spec
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    m = build_model("hsivar-tiny")
    m.init_condition_encoder()
    path = tmp_path / "tiny.safetensors"
    save_state_dict(m.state_dict(), path, metadata={"model": "hsivar-tiny",
                                                    "config": get_spec("hsivar-tiny").config})
    return path


def test_tiny_model_restore_tiled_and_streaming_agree(tmp_path):
    w = _tiny_weights(tmp_path)
    x = _smooth(45, 22, 26) * 1000
    r = Restorer("hsivar-tiny", weights=w, device="cpu", tile=16, overlap=4)
    out = r.restore(Cube(x), "noise")
    assert out.shape == x.shape and np.isfinite(out.data).all()
    assert r.last_info["band_groups"] == [(0, 31), (14, 45)]
    sink = ArraySink(x.shape)
    r.restore_stream(ArraySource(Cube(x)), sink, "noise")
    np.testing.assert_allclose(sink.data, out.data, rtol=1e-5, atol=1e-3)
    # sampling with a seed is reproducible
    rs = Restorer("hsivar-tiny", weights=w, device="cpu", tile=None, temperature=1.0, top_k=5, seed=3)
    a, b = rs.restore(x[:31], "noise").data, rs.restore(x[:31], "noise").data
    np.testing.assert_array_equal(a, b)


def test_missing_shipped_weights_and_wrong_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path))
    with pytest.raises(ModelError, match="no shipped weights 'hsivar-compact.safetensors'"):
        Restorer("hsivar-compact", device="cpu")
    with pytest.raises(ModelError, match="not a restoration model"):
        Restorer("s2former-tiny", device="cpu")
    with pytest.raises(ModelError, match="unknown model"):
        Restorer("nope", device="cpu")
    w = _tiny_weights(tmp_path)
    with pytest.raises(ModelError, match="does not fit"):
        Restorer("hsivar-tiny", weights=_bad(tmp_path, w), device="cpu")


def _bad(tmp_path, w):
    from hsirestore.weights import load_state_dict, save_state_dict

    state, _ = load_state_dict(w)
    state.pop("decoder.conv_out.weight")
    p = tmp_path / "bad.safetensors"
    save_state_dict(state, p)
    return p


@pytest.mark.parametrize("bands", [20, 31, 45])
def test_keep_observed_for_completion_tasks(bands):
    x = _smooth(bands) + 0.1
    x[:, 3:6, 4:9] = 0.0  # missing pixels (all bands)
    x[2] = 0.0  # a missing band

    def half(t, types):
        return torch.full_like(t, 0.5)

    r = Restorer(net=half, device="cpu", tile=None, scaling="none")
    zero = x == 0
    for spec in ("inpaint", "band-missing", "inpaint+band-missing"):
        out = r.restore(Cube(x), spec).data
        assert r.last_info["keep_observed"] is True
        np.testing.assert_array_equal(out[~zero], x[~zero])
        np.testing.assert_allclose(out[zero], 0.5, atol=1e-6)
    out = r.restore(Cube(x), "inpaint+noise").data  # noisy observations: model output everywhere
    assert r.last_info["keep_observed"] is False
    np.testing.assert_allclose(out, 0.5, atol=1e-6)
    on = Restorer(net=half, device="cpu", tile=None, scaling="none", keep_observed="on")
    np.testing.assert_array_equal(on.restore(Cube(x), "noise").data[~zero], x[~zero])
    off = Restorer(net=half, device="cpu", tile=None, scaling="none", keep_observed="off")
    np.testing.assert_allclose(off.restore(Cube(x), "inpaint").data, 0.5, atol=1e-6)
    with pytest.raises(OptionError, match="--keep-observed"):
        Restorer(net=half, device="cpu", keep_observed="maybe")
    # counts on a percentile scale, in memory and streamed: observed values stay bit-exact
    counts = (x * 3000.0).astype(np.float32)
    r = Restorer(net=half, device="cpu", tile=16, overlap=4)
    out = r.restore(Cube(counts), "inpaint").data
    assert r.last_info["scaling"].startswith("auto:percentile")
    np.testing.assert_array_equal(out[~zero], counts[~zero])
    assert np.all(out[zero] > 0)
    sink = ArraySink(counts.shape)
    r.restore_stream(ArraySource(Cube(counts)), sink, "inpaint")
    np.testing.assert_array_equal(sink.data[~zero], counts[~zero])
    np.testing.assert_allclose(sink.data, out, rtol=1e-6)


def test_streamed_output_keeps_processing_notes(tmp_path):
    from hsirestore.io import create_cube, open_cube, read_cube, write_cube

    x = _smooth(31)
    write_cube(Cube(x), tmp_path / "in.hdr")
    src = open_cube(tmp_path / "in.hdr")
    sink = create_cube(tmp_path / "out.hdr", src.meta, src.shape)
    r = Restorer(net=lambda t, types: t, device="cpu", tile=16, overlap=4)
    r.restore_stream(src, sink, "noise")
    sink.commit()
    src.close()
    desc = read_cube(tmp_path / "out.hdr").attrs["description"]
    assert "restoration = noise" in desc and "restoration_model = stand-in" in desc
    assert "restoration" not in src.meta.attrs  # the source's metadata is not touched


def test_flip_ensemble_averages_flipped_copies():
    from hsirestore.inference.ensemble import flip_ensemble

    x = torch.rand(2, 3, 6, 8)
    # a flip-equivariant map (per-pixel) is unchanged by the ensemble
    torch.testing.assert_close(flip_ensemble(lambda t: t * 2 + 1)(x), x * 2 + 1)
    # a map that is not equivariant (a fixed ramp added) gets the ramp averaged over the flips
    ramp = torch.arange(8.0)[None, None, None, :].expand(1, 1, 6, 8)
    out = flip_ensemble(lambda t: t + ramp)(x)
    torch.testing.assert_close(out, x + 3.5)  # mean of the ramp and its mirror image
    # stripes stay column stripes: every copy keeps the row and column axes
    seen = []
    flip_ensemble(lambda t: seen.append(t.shape) or t)(x)
    assert seen == [x.shape] * 4


def test_restorer_ensemble_runs_four_copies_per_tile():
    calls = []

    def net(t, types):
        calls.append(tuple(t.shape))
        return t

    x = _smooth(31)
    r = Restorer(net=net, device="cpu", tile=None, ensemble=True)
    out = r.restore(x, "noise")
    np.testing.assert_allclose(out.data, x, atol=1e-6)
    assert len(calls) == 4 and "flip ensemble" in r.describe()
