"""Fixes from a first-user walkthrough: degrade on 8-bit photos, missing values in
evaluate and info, scaled GeoTIFF outputs and dataset tags, --var output names, option
checks (cassi --spectra, evaluate --ergas-ratio)."""
import json

import imagecodecs
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.io import Cube, read_cube, write_cube

runner = CliRunner()


def _geotiff(path, counts, **tags):
    with rasterio.open(path, "w", driver="GTiff", height=counts.shape[1], width=counts.shape[2],
                       count=counts.shape[0], dtype=counts.dtype.name, nodata=-9999,
                       crs="EPSG:32633", transform=from_origin(500000, 4200000, 2, 2)) as ds:
        ds.write(counts)
        ds.scales = [1e-4] * counts.shape[0]
        if tags:
            ds.update_tags(**tags)
    return path


def test_degrade_an_8bit_photo_scales_once(tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    photo.write_bytes(imagecodecs.png_encode((rng.uniform(0.1, 0.9, (32, 32, 3)) * 255).astype(np.uint8)))
    r = runner.invoke(app, ["degrade", str(photo), str(tmp_path / "n.h5"), "-d", "noise:sigma=30"])
    assert r.exit_code == 0, r.output
    clean, noisy = read_cube(photo).data, read_cube(tmp_path / "n.h5").data
    assert np.std(noisy - clean) * 255 == pytest.approx(30, rel=0.1)  # was ~255 x too strong


def test_evaluate_leaves_out_pixels_with_a_missing_value(tmp_path):
    rng = np.random.default_rng(1)
    ref = rng.uniform(0.2, 0.8, (4, 12, 12)).astype(np.float32)
    pred = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    holey = ref.copy()
    holey[2, 5, 5] = -9999  # one missing value in an otherwise valid pixel
    write_cube(Cube(pred), tmp_path / "p.h5")
    write_cube(Cube(ref), tmp_path / "r.h5")
    write_cube(Cube(holey, nodata=-9999), tmp_path / "rh.h5")
    out = []
    for name in ("r.h5", "rh.h5"):
        r = runner.invoke(app, ["evaluate", str(tmp_path / "p.h5"), str(tmp_path / name),
                                "-o", str(tmp_path / name.replace(".h5", "_rep"))])
        assert r.exit_code == 0, r.output
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert out[1]["psnr_global"] == pytest.approx(out[0]["psnr_global"], abs=0.1)  # was < 0 dB
    assert out[1]["rmse"] < 0.02
    rep = json.loads((tmp_path / "rh_rep.json").read_text())
    assert rep["valid_pixels"] == 143 and any("missing value" in n for n in rep["notes"])


def test_info_statistics_skip_missing_values_and_name_the_stored_type(tmp_path):
    counts = np.full((3, 6, 8), 5000, np.int16)
    counts[:, 0, 0] = -9999  # an invalid pixel
    counts[1, 2, 2] = -9999  # a single missing value
    path = _geotiff(tmp_path / "s.tif", counts)
    r = runner.invoke(app, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["values"]["min"] == pytest.approx(0.5) and d["values"]["mean"] == pytest.approx(0.5)
    assert d["invalid_pixels"] == 1 and d["missing_values"] == 1
    assert d["stored_dtype"] == "int16" and "band scales applied" in d["read_as"] and d["epsg"] == 32633
    text = runner.invoke(app, ["info", str(path)]).stdout
    assert "crs:         EPSG:32633" in text and "1 missing values" in text


def test_scaled_geotiff_outputs_stay_scaled_integers_and_keep_dataset_tags(tmp_path):
    counts = np.full((3, 8, 8), 4000, np.int16)
    path = _geotiff(tmp_path / "s.tif", counts, ACQUISITION_DATE="2024-05-01")
    r = runner.invoke(app, ["degrade", str(path), str(tmp_path / "n.tif"), "-d", "noise:sigma=5"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "n.tif") as ds:
        assert ds.dtypes[0] == "int16" and ds.scales[0] == pytest.approx(1e-4)
        assert ds.tags()["ACQUISITION_DATE"] == "2024-05-01"
        assert abs(float(ds.read().mean()) - 4000) < 100
    # to another format: float values (the scale cannot be carried)
    r = runner.invoke(app, ["degrade", str(path), str(tmp_path / "n.h5"), "-d", "noise:sigma=5"])
    assert r.exit_code == 0 and read_cube(tmp_path / "n.h5").source_dtype == "float32"


def test_denoise_var_names_the_output(tmp_path):
    from hsirestore.cli.cmd_denoise import _target

    assert _target(tmp_path / "scenes.h5", tmp_path / "out", "scene2").name == "scenes_scene2_restored.h5"
    assert _target(tmp_path / "scenes.h5", None).name == "scenes_restored.h5"


def test_option_checks(tmp_path):
    write_cube(Cube(np.ones((3, 4, 4), np.float32)), tmp_path / "a.h5")
    r = runner.invoke(app, ["evaluate", str(tmp_path / "a.h5"), str(tmp_path / "a.h5"),
                            "--ergas-ratio", "-1", "-o", str(tmp_path / "rep")])
    assert r.exit_code == 2 and "--ergas-ratio" in r.stderr
    r = runner.invoke(app, ["cassi", str(tmp_path / "a.h5"), "--mask", str(tmp_path / "a.h5"),
                            "--spectra", "1,1"])
    assert r.exit_code == 2 and "--spectra needs --preview" in r.stderr


def test_denoise_auto_leaves_a_clean_cube_unchanged(tmp_path, hsivar_tiny_weights):
    """-d auto on a clean cube: written unchanged with a warning (the model made a clean
    CAVE crop 28 dB), in memory and streamed; naming a degradation still runs the model."""
    r0, c0 = np.mgrid[0:24, 0:24] / 24.0
    x = (0.3 + 0.2 * np.sin(3 * r0 + 2 * c0 + np.linspace(0, 2, 31)[:, None, None])).astype(np.float32)
    write_cube(Cube(x, wavelengths=np.arange(400, 701, 10.0)), tmp_path / "c.h5")
    common = ["--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights), "--device", "cpu"]
    for extra, name in (([], "o.h5"), (["--stream"], "s.h5")):
        r = runner.invoke(app, ["denoise", str(tmp_path / "c.h5"), "-o", str(tmp_path / name)]
                          + common + extra)
        assert r.exit_code == 0, r.output
        assert "written unchanged" in r.stderr and "written unchanged" in r.stdout
        np.testing.assert_array_equal(read_cube(tmp_path / name).data, x)
        import h5py

        with h5py.File(tmp_path / name) as f:  # the processing note, in memory and streamed
            notes = {**f.attrs, **f["cube"].attrs}
        assert any("nothing detected" in str(v) for v in notes.values()), (name, notes)
    r = runner.invoke(app, ["denoise", str(tmp_path / "c.h5"), "-o", str(tmp_path / "g.h5"),
                            "-d", "generic"] + common)
    assert r.exit_code == 0 and "unchanged" not in r.stderr
    assert not np.array_equal(read_cube(tmp_path / "g.h5").data, x)


def test_outputs_that_cannot_hold_the_cube_are_usage_errors(tmp_path):
    write_cube(Cube(np.random.default_rng(0).random((31, 8, 8)).astype(np.float32)), tmp_path / "c.h5")
    for args in (["denoise", str(tmp_path / "c.h5"), "-o", str(tmp_path / "x.png"), "-d", "noise"],
                 ["denoise", str(tmp_path / "c.h5"), "-o", str(tmp_path / "x.xyz"), "-d", "noise"],
                 ["degrade", str(tmp_path / "c.h5"), str(tmp_path / "x.xyz"), "-d", "noise"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "-o " in r.stderr, (args, r.output)
    assert not any(p.name.startswith("x.") for p in tmp_path.iterdir())


def test_auto_does_not_call_a_cube_clean_when_its_sample_is_mostly_invalid():
    """The pass-through needs a sample it can judge: an invalid centre (nodata swath) runs
    the model as before instead of copying a possibly noisy cube."""
    from hsirestore.inference.restore import auto_degradation

    x = np.full((31, 64, 64), 0.4, np.float32)
    assert auto_degradation(x)[1]["degradation"] == "none"
    x[:, 4:60, 4:60] = np.nan  # 23 % of the sample valid
    names, info = auto_degradation(x)
    assert names == [] and info["degradation"] == "generic"


def test_compare_cubes_is_what_evaluate_reports():
    """The evaluate rules are a library function: Python callers get the command's numbers."""
    from hsirestore.metrics import compare_cubes

    rng = np.random.default_rng(2)
    ref = rng.uniform(0.2, 0.8, (4, 10, 10)).astype(np.float32)
    holey = ref.copy()
    holey[1, 3, 3] = -9999
    pred = ref + 0.01
    m, notes = compare_cubes(Cube(pred), Cube(holey, nodata=-9999))
    assert m["valid_pixels"] == 99 and m["rmse"] == pytest.approx(0.01, rel=1e-3)
    assert any("missing value" in n for n in notes)
    with pytest.raises(Exception, match="differ in shape"):
        compare_cubes(Cube(pred[:, :5]), Cube(ref))
