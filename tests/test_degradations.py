import numpy as np
import pytest

from hsirestore.errors import OptionError
from hsirestore.physics.degradations import (DEGRADATION_TYPES, motion_kernel, parse_degradation,
                                             random_degradation)


@pytest.fixture
def cube():
    rng = np.random.default_rng(0)
    base = np.linspace(0.2, 0.8, 48, dtype=np.float32)
    return (base[None, None, :] * np.ones((10, 40, 1), np.float32)
            + 0.05 * rng.random((10, 40, 48)).astype(np.float32))


def test_grammar_and_errors():
    d = parse_degradation("blur+noise:sigma=30")
    assert d.names == ["blur", "noise"] and d.steps[1].params == {"sigma": 30.0}
    assert parse_degradation(d.spec()).spec() == d.spec()
    for bad, msg in [("foo", "unknown degradation"), ("noise:sgma=3", "bad parameter"),
                     ("noise:sigma=abc", "must be a number"), ("", "empty")]:
        with pytest.raises(OptionError, match=msg):
            parse_degradation(bad)


def test_every_type_runs_deterministically(cube):
    for name in DEGRADATION_TYPES:
        d = parse_degradation(name)
        a, info = d.apply(cube, 3)
        b, _ = d.apply(cube, 3)
        assert a.shape == cube.shape and a.dtype == np.float32, name
        assert np.array_equal(a, b), name
        assert not np.array_equal(a, cube), name
        assert info["steps"][0]["name"] == name


def test_noise_statistics(cube):
    y, info = parse_degradation("noise:sigma=30").apply(cube, 0)
    assert abs((y - cube).std() - 30 / 255) < 0.005
    y, info = parse_degradation("niid-noise").apply(cube, 0)
    sig = np.asarray(info["steps"][0]["sigma_per_band"]) / 255
    assert np.all((sig >= 10 / 255) & (sig <= 70 / 255))
    np.testing.assert_allclose((y - cube).std(axis=(1, 2)), sig, rtol=0.1)


def test_masks_and_ratios(cube):
    y, info = parse_degradation("inpaint:ratio=0.7").apply(cube, 0)
    missing = (y == 0).all(axis=0)
    assert abs(missing.mean() - 0.7) < 0.05
    y, info = parse_degradation("band-missing:ratio=0.3").apply(cube, 0)
    assert sorted(np.where((y == 0).all(axis=(1, 2)))[0].tolist()) == info["steps"][0]["bands"]
    assert len(info["steps"][0]["bands"]) == 3
    y, info = parse_degradation("deadlines").apply(cube, 0)
    dead = (y == 0).all(axis=1)  # (bands, cols)
    assert np.all((dead.mean(axis=1) >= 0.04) & (dead.mean(axis=1) <= 0.16))


def test_blur_and_sr_keep_mean_and_size(cube):
    for spec in ("blur", "motion-blur:length=7,angle=30", "sr:scale=4"):
        y, _ = parse_degradation(spec).apply(cube, 0)
        assert y.shape == cube.shape
        assert abs(y.mean() - cube.mean()) < 0.01, spec
    k = motion_kernel(7, 45)
    assert np.isclose(k.sum(), 1.0) and k.shape == (7, 7)


def test_random_degradation_is_valid():
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = random_degradation(rng, max_mix=2)
        assert 1 <= len(d.steps) <= 2 and set(d.names) <= set(DEGRADATION_TYPES)
