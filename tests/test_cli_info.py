import json

import numpy as np
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.io import Cube, write_cube

runner = CliRunner()


def _cube(tmp_path):
    data = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    data[:, 0, 0] = -1
    write_cube(Cube(data, wavelengths=[500.0, 600.0], wavelength_units="nm", nodata=-1.0,
                    crs="EPSG:4326", transform=(0.1, 0, 10, 0, -0.1, 50)), tmp_path / "c.tif")
    return tmp_path / "c.tif"


def test_info_text_and_json(tmp_path):
    path = _cube(tmp_path)
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0, r.output
    assert "2 bands x 5 rows x 6 cols" in r.stdout and "500 to 600 nm" in r.stdout
    assert "invalid:     1 of 30" in r.stdout
    r = runner.invoke(app, ["info", str(path), "--json"])
    d = json.loads(r.stdout)
    assert d["shape"] == {"bands": 2, "rows": 5, "cols": 6}
    assert d["nodata"] == -1 and d["invalid_pixels"] == 1 and d["source_dtype"] == "float32"
    assert d["values"]["min"] == 1 and d["values"]["max"] == 59
    assert d["transform"][0] == 0.1 and "4326" in d["crs"] or "WGS" in d["crs"]


def test_info_windowed_matches_whole(tmp_path):
    from hsirestore.io.describe import describe_cube as cube_info

    path = _cube(tmp_path)
    a, b = cube_info(str(path)), cube_info(str(path), strip_pixels=12)  # one row per strip
    assert a["values"]["min"] == b["values"]["min"] and a["values"]["max"] == b["values"]["max"]
    assert abs(a["values"]["mean"] - b["values"]["mean"]) < 1e-9
    assert a["invalid_pixels"] == b["invalid_pixels"] == 1


def test_info_errors_one_line(tmp_path):
    for args in (["info", str(tmp_path / "missing.hdr")], ["info", str(tmp_path)],
                 ["info", str(_cube(tmp_path)), "--layout", "sideways"]):
        r = runner.invoke(app, args)
        assert r.exit_code != 0
        assert "Traceback" not in r.output
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("hsirestore: error:")
    (tmp_path / "junk.xyz").write_text("x")
    r = runner.invoke(app, ["info", str(tmp_path / "junk.xyz")])
    assert r.exit_code == 1 and "unknown format" in r.stderr
