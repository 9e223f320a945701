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


def test_saved_weights_are_byte_reproducible(tmp_path):
    """The same tensors and metadata give the same file (safetensors alone writes the
    metadata in a random order, so exports differed in sha256), and it loads back."""
    import torch
    from safetensors import safe_open

    state = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(5)}
    meta = {f"key{i}": {"z": i, "a": [i, i + 1]} for i in range(8)}
    shas = {W.save_state_dict(state, tmp_path / f"w{i}.safetensors", metadata=meta, half=True)
            for i in range(5)}
    assert len(shas) == 1
    path = tmp_path / "w0.safetensors"
    n = int.from_bytes(path.read_bytes()[:8], "little")
    assert n % 8 == 0
    loaded, got_meta = W.load_state_dict(path)
    assert got_meta == meta
    assert torch.equal(loaded["b.weight"], state["b.weight"]) and loaded["a.bias"].dtype == torch.float32
    with safe_open(str(path), "pt") as f:  # the reference reader accepts the rewritten header
        assert sorted(f.keys()) == ["a.bias", "b.weight"] and f.get_tensor("a.bias").dtype == torch.float16
