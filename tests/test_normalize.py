"""Units and scale: Scaling, fit_scaling rules."""
import numpy as np
import pytest
import torch

from hsirestore.errors import HsiRestoreError, InvalidValueError, OptionError
from hsirestore.inference.engine import TiledPredictor
from hsirestore.inference.normalize import (
    Scaling, band_means, fit_scaling, parse_rule, sample_pixels,
)
from hsirestore.io.common import cast_for_writing
from hsirestore.io.cube import ArraySource, Cube


def _scene(seed=0, shape=(5, 40, 50)):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 0.9, size=shape).astype(np.float32)


def test_scaling_round_trip_numpy_and_torch():
    s = Scaling(offset=2.0, scale=1234.5, rule="test")
    x = np.random.default_rng(1).uniform(0, 5000, (3, 8, 8)).astype(np.float32)
    z = s.to_model(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(s.from_model(z), x, rtol=1e-6, atol=1e-3)
    t = torch.from_numpy(x)
    zt = s.to_model(t)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-6)
    np.testing.assert_allclose(s.from_model(zt).numpy(), x, rtol=1e-6, atol=1e-3)
    # integer input is promoted to float
    assert s.to_model(np.array([2, 1236], np.uint16)).dtype == np.float32
    with pytest.raises(InvalidValueError):
        Scaling(scale=0.0)
    with pytest.raises(InvalidValueError):
        Scaling(scale=float("nan"))


@pytest.mark.parametrize("rule", ["auto", "percentile:99.9", "max"])
@pytest.mark.parametrize("s", [1.0, 255.0, 10000.0, 3.7e-3, 65535.0 / 0.9])
def test_scaled_cube_gives_same_model_input_and_round_trips(s, rule):
    base = _scene()
    base[0, 0, 0] = 2.0  # one bright outlier: auto must not squash the scene
    x = base * np.float32(s)
    sc = fit_scaling(x, rule)
    assert sc.offset == 0.0
    np.testing.assert_allclose(sc.from_model(sc.to_model(x)), x, rtol=1e-6)
    if rule == "auto" and (x.max() <= 1 or 0.5 <= np.percentile(x, 99.9) <= 1.5):
        assert sc.is_identity  # floats (about) in [0, 1] are kept as they are
        return
    # linear rule: the normalised data do not depend on the input's units (the base scene
    # itself counts as unit data for "auto", so compare with the percentile auto falls back to)
    ref = fit_scaling(base, "percentile:99.9" if rule == "auto" else rule)
    np.testing.assert_allclose(sc.to_model(x), ref.to_model(base), rtol=1e-5)
    np.testing.assert_allclose(sc.scale, ref.scale * s, rtol=1e-5)
    if rule != "max":
        assert np.percentile(sc.to_model(x), 50) > 0.2  # the outlier did not squash the scene


def test_auto_rule_choices():
    unit = _scene()
    assert fit_scaling(unit).rule == "auto:unit" and fit_scaling(unit).is_identity
    noisy = unit + np.random.default_rng(1).normal(0, 30 / 255, unit.shape).astype(np.float32)
    assert noisy.min() < 0 and noisy.max() > 1
    assert fit_scaling(noisy).rule == "auto:unit"  # noisy [0, 1] data keep their scale
    assert fit_scaling(unit * 3).rule.startswith("auto:percentile")
    dim = noisy * 0.02  # dark-subtracted radiance: some negatives, tiny values
    assert fit_scaling(dim).rule.startswith("auto:percentile")
    u8 = (unit * 255).astype(np.uint8)
    assert fit_scaling(u8).scale == 255.0 and fit_scaling(u8).rule == "auto:dtype"
    u16 = (unit * 4095).astype(np.uint16)  # 12-bit counts in a uint16 file
    sc = fit_scaling(u16)
    assert sc.rule.startswith("auto:percentile") and 3000 < sc.scale <= 4095
    # float32 cube that came from uint16 counts: source_dtype decides nothing special
    sc2 = fit_scaling(u16.astype(np.float32), source_dtype="uint16")
    assert sc2.scale == pytest.approx(sc.scale)
    # all-zero image: a usable identity-like scaling, not a division by zero
    assert fit_scaling(np.zeros((2, 4, 4), np.uint16)).scale == 1.0


def test_other_rules():
    x = _scene() * 100
    assert fit_scaling(x, "none").is_identity
    assert fit_scaling(x, "scale:250").scale == 250.0
    assert fit_scaling(x, "max").scale == pytest.approx(float(x.max()))
    assert fit_scaling(x, "percentile:50").scale == pytest.approx(float(np.median(x)), rel=1e-6)
    assert fit_scaling(x.astype(np.uint16), "dtype").scale == 65535.0
    assert fit_scaling(x.astype(np.int16), "dtype").scale == 32767.0
    assert fit_scaling(x, "dtype").is_identity  # floats are taken as [0, 1]
    assert fit_scaling(x, "dtype", source_dtype="uint8").scale == 255.0


def test_cube_and_source_inputs_ignore_invalid_pixels():
    x = _scene(2) * 10
    x[:, 0, 0] = np.nan
    x[:, 1, 1] = 1e9  # flagged invalid by the mask: must not drive "max"
    valid = np.ones(x.shape[1:], bool)
    valid[1, 1] = False
    cube = Cube(x, valid=valid)
    assert fit_scaling(cube, "max").scale == pytest.approx(float(np.nanmax(x[:, 2:, 2:])), rel=0.1)
    nod = Cube(np.where(np.isnan(x), -1.0, x).astype(np.float32), nodata=1e9)
    sc = fit_scaling(ArraySource(nod), "max")
    assert sc.scale < 11
    means = band_means(cube)
    assert means.shape == (5,) and np.allclose(means, np.nanmean(x[:, 2:], axis=(1, 2)), rtol=0.1)


def test_sample_pixels_subsamples_large_sources():
    class Src:
        shape = (10, 2000, 3000)
        reads = []

        def read_window(self, r0, r1, c0, c1):
            self.reads.append((r1 - r0) * (c1 - c0))
            return np.full((10, r1 - r0, c1 - c0), 0.5, np.float32)

    px = sample_pixels(Src(), max_values=200_000)
    assert px.shape[0] == 10 and 5_000 <= px.shape[1] <= 25_000
    assert max(Src.reads) <= 32 * 32


def test_result_returns_to_input_scale_through_the_engine():
    counts = (_scene(3) * 3000 + 100).astype(np.uint16)
    sc = fit_scaling(counts)
    p = TiledPredictor(lambda t: t.clamp(min=0), tile=16, overlap=4, device="cpu")
    y = p.predict_array(counts.astype(np.float32), normalizer=sc)
    out = cast_for_writing(y, "uint16")  # what the writers do
    assert out.dtype == np.uint16
    assert np.abs(out.astype(int) - counts.astype(int)).max() <= 1


@pytest.mark.parametrize("rule", ["", "bogus", "percentile", "percentile:0", "percentile:101",
                                  "scale:-1", "scale:x", "max:3", "scale:inf"])
def test_bad_rules(rule):
    with pytest.raises(OptionError) as e:
        fit_scaling(np.ones((1, 2, 2), np.float32), rule)
    assert isinstance(e.value, HsiRestoreError) and "\n" not in str(e.value)


def test_parse_rule():
    assert parse_rule("Percentile:99.5") == ("percentile", 99.5)
    assert parse_rule("auto") == ("auto", None)
