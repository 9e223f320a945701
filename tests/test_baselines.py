import numpy as np
import pytest

from hsirestore.baselines import (RootPolyModel, fit_root_poly, load_shipped_poly, predict_root_poly,
                                  root_poly_features, root_poly_terms)
from hsirestore.errors import HsiRestoreError, ModelError, ShapeError


def test_term_counts():
    assert len(root_poly_terms(1)) == 3
    assert len(root_poly_terms(2)) == 6
    assert len(root_poly_terms(3)) == 13


def test_features_are_exposure_invariant():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 1, (3, 50))
    for d in (2, 3):
        np.testing.assert_allclose(root_poly_features(2.5 * rgb, d), 2.5 * root_poly_features(rgb, d),
                                   rtol=1e-10, atol=1e-12)
    assert np.isfinite(root_poly_features(np.zeros((3, 4)), 3)).all()


def test_fit_recovers_linear_map_and_predicts_image():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 1, (3, 2000))
    m = rng.uniform(0, 1, (31, 3))
    spectra = m @ rgb
    coef = fit_root_poly(rgb, spectra, degree=3, ridge=1e-9)
    pred = predict_root_poly(rgb.reshape(3, 40, 50), coef, 3)
    assert pred.shape == (31, 40, 50)
    np.testing.assert_allclose(pred.reshape(31, -1), spectra, atol=1e-4)


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.uniform(0, 1, (3, 500))
    model = RootPolyModel.fit(rgb, rng.uniform(0, 1, (31, 500)), degree=2)
    model.save(tmp_path / "p.npz")
    back = RootPolyModel.load(tmp_path / "p.npz")
    x = rng.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    with pytest.raises(ModelError):
        RootPolyModel.load(tmp_path / "missing.npz")


def test_bad_inputs():
    with pytest.raises(ShapeError):
        root_poly_features(np.zeros((4, 3)), 2)
    with pytest.raises(HsiRestoreError):
        root_poly_terms(7)
    with pytest.raises(ModelError):
        RootPolyModel(np.zeros((5, 31)), 3)


def test_shipped_baseline_checked_and_sane():
    model = load_shipped_poly()  # verifies the manifest sha256
    assert model.degree == 3 and model.coef.shape == (13, 31)
    grey = np.full((3, 4, 4), 0.5, np.float32)
    out = model.predict(grey)
    assert out.shape == (31, 4, 4) and (out >= 0).all()
    np.testing.assert_allclose(model.predict(2 * grey / 2.5), out * 0.8, rtol=1e-5)
