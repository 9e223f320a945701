"""One way to read weights for the three predictors (weights.load_checkpoint): presets and
builder configurations recorded in the files are honoured alike, the same mistake gives
the same ModelError wording in Restorer, RgbToHsi and CassiDecoder, tile multiples come
from the built model, and output wavelengths from the registry."""
import numpy as np
import pytest
import torch

from hsirestore.errors import ModelError, ShapeError
from hsirestore.inference.cassi import CassiDecoder
from hsirestore.inference.restore import Restorer
from hsirestore.inference.rgb2hsi import RgbToHsi
from hsirestore.registry import build_model, get_spec, list_models
from hsirestore.weights import load_checkpoint, save_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"restore": "hsivar-tiny", "rgb2hsi": "mcga-tiny", "cassi": "s2former-tiny"}
WHAT = {"restore": "a restoration model", "rgb2hsi": "an RGB-to-hyperspectral model",
        "cassi": "a CASSI decoder"}


def _predictor(task, **kw):
    if task == "restore":
        return Restorer(device="cpu", **kw)
    if task == "rgb2hsi":
        return RgbToHsi(device="cpu", **kw)
    return CassiDecoder(device="cpu", **kw)


def _export(path, name, **overrides):
    """Weights of ``name`` built with ``overrides``, saved as the exporters do."""
    torch.manual_seed(0)
    model = build_model(name, **overrides)
    save_state_dict(model.state_dict(), path,
                    metadata={"model": name, "config": {**get_spec(name).config, **overrides}})
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    return {task: _export(d / f"{name}.safetensors", name) for task, name in TINY.items()}


# ------------------------------------------------------------------ configurations in files
@pytest.mark.parametrize("style", ["export", "overrides", "last.pt"])
def test_mcga_weights_with_model_overrides_load(tmp_path, style):
    """MCGA weights trained with overrides load in RgbToHsi (they failed as 'missing keys')."""
    over = {"dim": 8, "dec_hidden": 8}
    torch.manual_seed(0)
    model = build_model("mcga-tiny", **over)
    if style == "export":
        path = _export(tmp_path / "m.safetensors", "mcga-tiny", **over)
    elif style == "overrides":
        path = tmp_path / "m.safetensors"
        save_state_dict(model.state_dict(), path, metadata={"preset": "mcga-tiny",
                                                            "model_overrides": over})
    else:
        path = tmp_path / "last.pt"
        torch.save({"model": model.state_dict(), "preset": "mcga-tiny", "stage": 2, "step": 1,
                    "config": {"preset": "mcga-tiny", "model_overrides": over}}, path)
    pred = RgbToHsi(weights=path, device="cpu", tile=None)
    assert pred.model_name == "mcga-tiny" and pred.model.vq.dims == model.vq.dims
    out = pred.predict(np.full((3, 16, 24), 0.5, np.float32))
    assert out.shape == (31, 16, 24) and np.isfinite(out.data).all()


def test_checkpoint_resolution(tmp_path, files):
    ck = load_checkpoint(files["restore"], "restore", None, "hsivar-compact")
    assert ck.name == "hsivar-tiny"
    assert ck.config == {k: list(v) if isinstance(v, tuple) else v  # JSON metadata: lists
                         for k, v in get_spec("hsivar-tiny").config.items()}
    # a file that names no preset is built as the model asked for (or the default)
    bare = tmp_path / "bare.safetensors"
    save_state_dict(build_model("hsivar-tiny").state_dict(), bare)
    assert load_checkpoint(bare, "restore", "hsivar-tiny", "hsivar-compact").name == "hsivar-tiny"
    assert load_checkpoint(bare, "restore", None, "hsivar-compact").name == "hsivar-compact"
    # training checkpoints: the run's preset and overrides; the training-only aux head is dropped
    m = build_model("s2former-tiny", in_chans=8, aux_head=True)
    torch.save({"model": m.state_dict(), "step": 2,
                "config": {"preset": "s2former-tiny", "model_overrides": {"in_chans": 8}}},
               tmp_path / "last.pt")
    ck = load_checkpoint(tmp_path / "last.pt", "cassi", None, "s2former-unfolded")
    assert ck.name == "s2former-tiny" and ck.overrides == {"in_chans": 8}
    assert not any(k.startswith("aux.") for k in ck.state)
    dec = CassiDecoder(weights=tmp_path / "last.pt", bands=8, device="cpu")
    assert dec.model_name == "s2former-tiny"
    with pytest.raises(ShapeError, match="decodes 8 bands"):
        CassiDecoder(weights=tmp_path / "last.pt", device="cpu")


def test_official_s2former_checkpoint_is_recognised_by_every_predictor(tmp_path):
    from test_s2former import _official_state

    model = build_model("s2former")
    path = tmp_path / "model_epoch_255.pth"
    torch.save({"model_weights": _official_state(model), "lr_last_record": [1e-4]}, path)
    assert CassiDecoder(weights=path, device="cpu").model_name == "s2former"
    for task in ("restore", "rgb2hsi"):
        with pytest.raises(ModelError, match=f"holds weights of the cassi model 's2former', "
                                             f"not {WHAT[task]}"):
            _predictor(task, weights=path)


# ------------------------------------------------------------------ same mistake, same error
@pytest.mark.parametrize("task", sorted(TINY))
def test_weights_of_another_task(task, files):
    for other, path in files.items():
        if other != task:
            with pytest.raises(ModelError, match=f"holds weights of the {other} model "
                                                 f"'{TINY[other]}', not {WHAT[task]}$"):
                _predictor(task, weights=path)


@pytest.mark.parametrize("task", sorted(TINY))
def test_model_of_another_task(task):
    other = next(t for t in TINY if t != task)
    with pytest.raises(ModelError, match=f"model '{TINY[other]}' is a {other} model, "
                                         f"not {WHAT[task]}$"):
        _predictor(task, model_name=TINY[other])


@pytest.mark.parametrize("task", sorted(TINY))
def test_weights_of_another_preset_and_bad_configs(task, tmp_path):
    name = TINY[task]
    # a file that names no preset, holding weights of another configuration
    over = {"restore": {"width": 4}, "rgb2hsi": {"dim": 8}, "cassi": {"embed_dim": 10}}[task]
    bare = tmp_path / "bare.safetensors"
    save_state_dict(build_model(name, **over).state_dict(), bare)
    with pytest.raises(ModelError, match=f"bare.safetensors does not fit {name}: .*"
                                         "(missing keys|differ in shape)"):
        _predictor(task, model_name=name, weights=bare)
    # a recorded configuration the model cannot take
    bad = tmp_path / "bad.safetensors"
    save_state_dict(build_model(name).state_dict(), bad,
                    metadata={"model": name, "config": {**get_spec(name).config, "no_such": 1}})
    with pytest.raises(ModelError, match=f"bad.safetensors: cannot build {name} with this "
                                         "configuration"):
        _predictor(task, weights=bad)


@pytest.mark.parametrize("task", sorted(TINY))
def test_no_shipped_weights(task):
    with pytest.raises(ModelError, match=f"model '{TINY[task]}' has no shipped weights; "
                                         "pass --weights FILE"):
        _predictor(task, model_name=TINY[task])


# ------------------------------------------------------------------ size multiples
def test_every_model_has_the_size_multiple_of_its_spec():
    for spec in list_models():
        assert build_model(spec.name).size_multiple == spec.size_multiple, spec.name


def test_restorer_pads_to_the_multiple_of_the_model_the_weights_describe(tmp_path):
    path = _export(tmp_path / "h.safetensors", "hsivar-tiny", mults=(1, 2, 2, 2))
    r = Restorer("hsivar-tiny", weights=path, device="cpu", tile=16, overlap=4)
    assert r.model.size_multiple == 8 and r.multiple == 8 != get_spec("hsivar-tiny").size_multiple
    x = np.random.default_rng(0).random((31, 20, 27)).astype(np.float32)
    assert r.restore(x, "noise").shape == x.shape


def test_unfolded_decoders_skip_the_single_pass_input(tmp_path, monkeypatch):
    import hsirestore.physics.cassi as pc

    over = dict(in_chans=8, stages=1, embed_dim=8, depth=1, num_heads=2)
    path = _export(tmp_path / "u.safetensors", "s2former-unfolded", **over)
    dec = CassiDecoder(weights=path, bands=8, device="cpu", tile=None)
    assert dec.model_name == "s2former-unfolded"

    def no(*a, **k):
        raise AssertionError("model_input computed for an unfolded model")

    monkeypatch.setattr(pc, "model_input", no)
    mask = (np.random.default_rng(0).random((16, 16)) > 0.5).astype(np.float32)
    y = pc.cassi_forward(np.full((8, 16, 16), 0.5, np.float32), mask, 2)
    assert dec.decode(y, mask).shape == (8, 16, 16)


# ------------------------------------------------------------------ wavelengths from the registry
def test_output_wavelengths_come_from_the_registry(files, tmp_path):
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28

    for spec in list_models():
        if spec.task == "restore":
            assert spec.wavelengths is None  # restoration keeps the input's bands
        else:
            assert spec.wavelengths is not None and len(spec.wavelengths) == spec.bands, spec.name
    dec = CassiDecoder(weights=files["cassi"], device="cpu")
    assert tuple(dec.wavelengths) == get_spec("s2former-tiny").wavelengths == CASSI_WAVELENGTHS_28
    assert tuple(CassiDecoder(method="gap-tv", device="cpu").wavelengths) == CASSI_WAVELENGTHS_28
    assert CassiDecoder(method="gap-tv", bands=8, device="cpu").wavelengths is None
    pred = RgbToHsi(weights=files["rgb2hsi"], device="cpu", tile=None)
    out = pred.predict(np.full((3, 8, 8), 0.5, np.float32))
    np.testing.assert_array_equal(out.wavelengths, get_spec("mcga-tiny").wavelengths)


def test_models_command_shows_the_references():
    import json

    from typer.testing import CliRunner

    from hsirestore.cli import app

    r = CliRunner().invoke(app, ["models", "--json"])
    rows = json.loads(r.stdout)
    assert all(row["reference"] == get_spec(row["name"]).reference for row in rows)
    r = CliRunner().invoke(app, ["models", "--task", "rgb2hsi"])
    assert r.exit_code == 0 and "[1] Yang, Sun, Dong" in r.stdout
