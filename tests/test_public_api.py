"""The package namespace: the public API is re-exported lazily from ``hsirestore`` (no torch
on import), ``hsirestore.inference`` exports the predictors, ``hsirestore.io`` the array
sources and sinks; and the one nodata test is used by readers, scaling and restoration."""
import subprocess
import sys

import numpy as np

import hsirestore


def test_import_hsirestore_does_not_import_torch():
    code = ("import sys, hsirestore; assert 'torch' not in sys.modules; "
            "hsirestore.read_cube; hsirestore.list_models(); hsirestore.parse_degradation; "
            "hsirestore.compute_metrics; assert 'torch' not in sys.modules; "
            "hsirestore.Restorer; assert 'torch' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_public_names_resolve():
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.inference.restore import Restorer
    from hsirestore.inference.rgb2hsi import RgbToHsi
    from hsirestore.io import Cube, read_cube

    assert hsirestore.Restorer is Restorer and hsirestore.RgbToHsi is RgbToHsi
    assert hsirestore.CassiDecoder is CassiDecoder
    assert hsirestore.Cube is Cube and hsirestore.read_cube is read_cube
    for name in hsirestore.__all__:
        assert getattr(hsirestore, name) is not None and name in dir(hsirestore)
    assert {"Restorer", "RgbToHsi", "CassiDecoder", "read_cube", "write_cube", "open_cube",
            "create_cube", "Cube", "compute_metrics", "parse_degradation", "list_models",
            "build_model"} <= set(hsirestore.__all__)
    try:
        hsirestore.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("unknown names must raise AttributeError")


def test_subpackage_exports():
    import hsirestore.inference as inf
    import hsirestore.io as io

    assert {"Restorer", "RgbToHsi", "CassiDecoder"} <= set(inf.__all__)
    assert inf.CassiDecoder is hsirestore.CassiDecoder
    assert {"ArraySource", "ArraySink"} <= set(io.__all__)
    for mod in (inf, io):
        for name in mod.__all__:
            assert getattr(mod, name) is not None


def test_one_nodata_test_compared_in_the_data_precision():
    from hsirestore.inference.normalize import invalid_mask, missing_entries
    from hsirestore.inference.restore import _is_nodata
    from hsirestore.io.common import equals_nodata, valid_mask

    nodata = 0.1  # not exact in float32: compared as float32(0.1) in float32 data
    for dtype in (np.float32, np.float64):
        x = np.ones((3, 2, 2), dtype)
        x[:, 0, 0] = dtype(nodata)  # a nodata pixel
        x[1, 1, 1] = dtype(nodata)  # one missing value
        eq = equals_nodata(x, nodata)
        assert eq.sum() == 4
        np.testing.assert_array_equal(_is_nodata(x, nodata), eq)
        assert not valid_mask(x, nodata)[0, 0] and valid_mask(x, nodata).sum() == 3
        np.testing.assert_array_equal(invalid_mask(x, nodata), ~valid_mask(x, nodata))
        assert missing_entries(x, nodata).sum() == 1
    assert equals_nodata(np.zeros(3), None) is None and equals_nodata(np.zeros(3), np.nan) is None
    assert not _is_nodata(np.zeros(3), None).any()
    assert equals_nodata(np.array([-9999, 3], np.int16), -9999.0).tolist() == [True, False]
