import json

import numpy as np
import pytest

from hsirestore.errors import OptionError, ShapeError
from hsirestore.physics.degradations import (DEGRADATION_TYPES, bicubic_matrix, jsonable_info,
                                             motion_kernel, parse_degradation, random_degradation)


@pytest.fixture
def cube():
    rng = np.random.default_rng(0)
    base = np.linspace(0.2, 0.8, 48, dtype=np.float32)
    return (base[None, None, :] * np.ones((10, 40, 1), np.float32)
            + 0.05 * rng.random((10, 40, 48)).astype(np.float32))


def test_types_in_model_order():
    assert DEGRADATION_TYPES == ("noise", "niid-noise", "poisson", "impulse", "stripes",
                                 "deadlines", "blur", "motion-blur", "sr", "inpaint",
                                 "band-missing", "haze")


def test_grammar_and_errors():
    d = parse_degradation("blur+noise:sigma=30")
    assert d.names == ["blur", "noise"] and d.steps[1].params == {"sigma": 30.0}
    assert parse_degradation(d.spec()).spec() == d.spec()
    assert parse_degradation(" Blur : sigma=2 , radius=6 + NOISE ").spec() == "blur:sigma=2,radius=6+noise"
    for bad, msg in [("foo", "unknown degradation 'foo'; valid: noise, niid-noise"),
                     ("noise:sgma=3", "bad parameter"), ("noise:sigma", "bad parameter"),
                     ("noise:sigma=abc", "must be a number"), ("", "empty"), ("blur++noise", "empty name"),
                     ("noise:sigma=-1", "must be >= 0"), ("inpaint:ratio=1.5", r"in \[0, 1\]"),
                     ("sr:scale=2.5", "whole number"), ("sr:scale=0", r"in \[1, 64\]"),
                     ("niid-noise:min=50,max=20", "larger than max"), ("stripes:max=3", "fractions"),
                     ("noise:sigma=nan", "must be"), ("motion-blur:length=0", ">= 1")]:
        with pytest.raises(OptionError, match=msg):
            parse_degradation(bad)
    with pytest.raises(ShapeError):
        parse_degradation("noise").apply(np.zeros((4, 4)), 0)


def test_every_type_runs_deterministically(cube):
    for name in DEGRADATION_TYPES:
        d = parse_degradation(name)
        a, info = d.apply(cube, 3)
        b, _ = d.apply(cube, seed=np.random.default_rng(3))
        c, _ = d.apply(cube, 4)
        assert a.shape == cube.shape and a.dtype == np.float32, name
        assert np.array_equal(a, b), name
        assert not np.array_equal(a, cube), name
        assert info["steps"][0]["name"] == name and info["spec"] == name
        json.dumps(jsonable_info(info))  # the recorded parameters are JSON-able
        if name not in ("blur", "motion-blur", "sr", "haze"):
            assert not np.array_equal(a, c), name  # the seed matters
    assert np.array_equal(cube, cube.copy())  # inputs are not modified


def test_noise_statistics(cube):
    y, info = parse_degradation("noise").apply(cube, 0)
    assert info["steps"][0]["sigma"] == 30 and abs((y - cube).std() - 30 / 255) < 0.003
    y, _ = parse_degradation("noise:sigma=70").apply(cube, 0)
    assert abs((y - cube).std() - 70 / 255) < 0.005 and abs((y - cube).mean()) < 0.005
    y, info = parse_degradation("niid-noise").apply(cube, 0)
    sig = np.asarray(info["steps"][0]["sigma_per_band"]) / 255
    assert sig.shape == (10,) and np.all((sig >= 10 / 255) & (sig <= 70 / 255)) and sig.std() > 0
    np.testing.assert_allclose((y - cube).std(axis=(1, 2)), sig, rtol=0.1)
    # Poisson: mean preserved, variance = x / peak
    flat = np.full((4, 60, 60), 0.5, np.float32)
    y, _ = parse_degradation("poisson:peak=20").apply(flat, 0)
    assert abs(y.mean() - 0.5) < 0.01 and abs(y.var() - 0.5 / 20) < 0.003


def test_impulse_stripes_deadlines_ratios(cube):
    y, info = parse_degradation("impulse:ratio=0.4").apply(cube, 0)
    hit = info["masks"]["impulse"]
    assert abs(hit.mean() - 0.4) < 0.02 and set(np.unique(y[hit])) <= {0.0, 1.0}
    assert abs((y[hit] == 1).mean() - 0.5) < 0.05 and np.array_equal(y[~hit], cube[~hit])
    y, info = parse_degradation("impulse").apply(cube, 0)
    r = np.asarray(info["steps"][0]["ratio_per_band"])
    assert np.all((r >= 0.1) & (r <= 0.7)) and r.std() > 0
    np.testing.assert_allclose(info["masks"]["impulse"].mean(axis=(1, 2)), r, atol=0.04)

    y, info = parse_degradation("stripes").apply(cube, 0)
    changed = (y != cube).all(axis=1)  # (bands, cols): whole columns offset
    r = np.asarray(info["steps"][0]["ratio_per_band"])
    np.testing.assert_allclose(changed.mean(axis=1), r, atol=1 / 48)
    assert np.all((r >= 0.05) & (r <= 0.15))
    diff = (y - cube)[:, :, changed[0]][0]
    assert np.allclose(diff, diff[0:1], atol=1e-6) and np.abs(diff).max() <= 0.25 + 1e-6
    assert np.array_equal(y[~np.broadcast_to(changed[:, None, :], y.shape)],
                          cube[~np.broadcast_to(changed[:, None, :], y.shape)])

    y, info = parse_degradation("deadlines").apply(cube, 0)
    dead = (y == 0).all(axis=1)  # (bands, cols)
    assert np.array_equal(dead, info["masks"]["deadlines"])
    np.testing.assert_allclose(dead.mean(axis=1), info["steps"][0]["ratio_per_band"], atol=1 / 48)


def test_inpaint_and_band_missing_masks(cube):
    y, info = parse_degradation("inpaint").apply(cube, 0)
    mask = info["masks"]["inpaint"]
    assert mask.shape == (40, 48) and abs(mask.mean() - 0.7) < 0.03
    assert (y[:, mask] == 0).all() and np.array_equal(y[:, ~mask], cube[:, ~mask])
    assert info["steps"][0]["missing_fraction"] == pytest.approx(mask.mean(), abs=1e-6)
    y, info = parse_degradation("band-missing").apply(cube, 0)
    bands = info["steps"][0]["bands"]
    assert len(bands) == 3 and np.where(info["masks"]["band-missing"])[0].tolist() == bands
    assert sorted(np.where((y == 0).all(axis=(1, 2)))[0].tolist()) == bands
    assert jsonable_info(info)["mask_fraction"]["band-missing"] == pytest.approx(0.3)


def test_blur_motion_sr_keep_mean_and_size(cube):
    for spec in ("blur", "blur:radius=15", "motion-blur:length=7,angle=30", "sr:scale=4", "sr"):
        y, _ = parse_degradation(spec).apply(cube, 0)
        assert y.shape == cube.shape
        assert abs(y.mean() - cube.mean()) < 0.01, spec
        assert np.abs(np.diff(y, axis=2)).mean() < np.abs(np.diff(cube, axis=2)).mean(), spec
    k = motion_kernel(7, 45)
    assert np.isclose(k.sum(), 1.0) and k.shape == (7, 7)
    assert np.count_nonzero(k) == np.count_nonzero(np.diag(np.fliplr(k))) == 5  # on the anti-diagonal
    assert np.count_nonzero(motion_kernel(9, 0)[4]) == 9  # horizontal line
    # blur with a known sigma: an impulse spreads with that standard deviation
    imp = np.zeros((1, 41, 41), np.float32)
    imp[0, 20, 20] = 1
    y, info = parse_degradation("blur").apply(imp, 0)
    r = np.arange(41) - 20
    assert np.sqrt((y[0].sum(0) * r**2).sum()) == pytest.approx(1.6, rel=0.02)
    _, info = parse_degradation("blur:radius=15").apply(imp, 0)
    assert info["steps"][0] == {"name": "blur", "sigma": 5.0, "radius": 15}
    # sr on a size that is not a multiple of the scale
    y, info = parse_degradation("sr:scale=8").apply(cube[:, :37, :45], 0)
    assert y.shape == (10, 37, 45) and info["steps"][0]["low_size"] == [5, 6]


def test_haze_brightens_and_flattens(cube):
    y, info = parse_degradation("haze:density=0.8").apply(cube, 0)
    assert (y > cube).mean() > 0.9  # airlight 0.8 above most values
    assert y[:, -1].std() < cube[:, -1].std()  # contrast lost, most at the bottom rows
    assert (y[0] - cube[0]).mean() > (y[-1] - cube[-1]).mean()  # shorter bands hazier


def test_mixture_and_random_degradation(cube):
    y, info = parse_degradation("blur+noise:sigma=10").apply(cube, 0)
    assert [s["name"] for s in info["steps"]] == ["blur", "noise"]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        d = random_degradation(rng, max_mix=2)
        assert 1 <= len(d.steps) <= 2 and set(d.names) <= set(DEGRADATION_TYPES)
        assert len(set(d.names)) == len(d.names)
        assert parse_degradation(d.spec()).spec() == d.spec()  # drawn params are valid
        seen.update(d.names)
    assert seen == set(DEGRADATION_TYPES)
    a = random_degradation(np.random.default_rng(5)).spec()
    assert a == random_degradation(np.random.default_rng(5)).spec()
    assert all(len(random_degradation(rng, 1).steps) == 1 for _ in range(5))


def test_bicubic_matrix():
    np.testing.assert_allclose(bicubic_matrix(8, 8, 1), np.eye(8), atol=1e-12)
    m = bicubic_matrix(32, 8, 4, 2)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    ramp = np.arange(8.0)
    x = (np.arange(32) - 2) / 4
    inner = (x >= 1) & (x <= 6)  # away from the replicated edges a ramp is reproduced exactly
    np.testing.assert_allclose((m @ ramp)[inner], x[inner], atol=1e-12)
    np.testing.assert_allclose(m[2::4], np.eye(8), atol=1e-12)  # samples land on the low pixels
