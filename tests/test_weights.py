"""Where shipped weights are found, and the manifest / checksum checks."""
import json
import sys

import pytest

import hsirestore.weights as W
from hsirestore.errors import ModelError


def test_weights_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv("HSIRESTORE_WEIGHTS", raising=False)
    # a source checkout / editable install: <repo>/weights beside the package
    assert W.weights_dir() == (W.Path(W.__file__).resolve().parent.parent / "weights")
    # a non-editable install: no weights/ beside the package, data files under the prefix
    fake_pkg = tmp_path / "site" / "hsirestore" / "weights.py"
    fake_pkg.parent.mkdir(parents=True)
    monkeypatch.setattr(W, "__file__", str(fake_pkg))
    prefix = tmp_path / "prefix"
    installed = prefix / "share" / "hsirestore" / "weights"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "base_prefix", str(prefix))
    assert W.weights_dir() == tmp_path / "site" / "weights"  # nothing installed: the default
    installed.mkdir(parents=True)
    (installed / W.MANIFEST).write_text(json.dumps({"files": {}}))
    assert W.weights_dir() == installed
    with pytest.raises(ModelError, match="no shipped weights 'x.safetensors'"):
        W.shipped_weights_path("x.safetensors")
    # the environment variable wins
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path / "mine"))
    assert W.weights_dir() == tmp_path / "mine"
