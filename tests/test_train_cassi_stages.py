"""Unfolded CASSI decoders: output projection, growing stages, freezing stages, resuming."""
import pytest
import torch
from typer.testing import CliRunner

from hsirestore.models.s2former import _shift_stack
from hsirestore.registry import build_model
from hsirestore.training.cassi import CassiTrainConfig, _grow_stages, train
from hsirestore.weights import save_state_dict

_TINY = dict(stages=2, embed_dim=8, depth=1, num_heads=1, spe_dim_head=8, in_chans=6)


def _meas(n=1, b=6, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, b, h, w, generator=g)
    mask = (torch.rand(n, 1, h, w, generator=g) > 0.4).float()
    return x, mask, _shift_stack(x * mask, 2)


def test_project_output_reproduces_the_measurement():
    torch.manual_seed(0)
    model = build_model("s2former-unfolded", **_TINY).eval()
    for st in model.stages:  # stages that change their input noticeably
        torch.nn.init.normal_(st.conv_last.weight, std=0.1)
    x, mask, y = _meas()
    with torch.no_grad():
        plain, _ = model(torch.zeros_like(x), mask, y)
        model.project_output = True
        out, pins = model(torch.zeros_like(x), mask, y)
    torch.testing.assert_close(_shift_stack(out * mask, 2), y, atol=1e-5, rtol=1e-5)
    assert len(pins) == 1
    assert (_shift_stack(plain * mask, 2) - y).abs().max() > 1e-2  # not so without it
    assert build_model("s2former-unfolded", **_TINY, project_output=True).project_output


def test_grown_model_starts_as_the_smaller_one_plus_a_projection():
    torch.manual_seed(0)
    small = build_model("s2former-unfolded", **_TINY).eval()
    for st in small.stages:  # non-trivial output convolutions
        torch.nn.init.normal_(st.conv_last.weight, std=0.05)
    big = build_model("s2former-unfolded", **{**_TINY, "stages": 4}).eval()
    state = small.state_dict()
    missing, unexpected = big.load_state_dict(state, strict=False)
    assert _grow_stages(big, state) == [2, 3]
    assert not unexpected and all(k.startswith(("stages.2.", "stages.3.")) for k in missing)
    # the new stages share the last stage's weights except the zeroed output convolution
    for k, v in small.stages[1].state_dict().items():
        got = big.stages[3].state_dict()[k]
        if k.startswith("conv_last."):
            assert float(got.abs().max()) == 0
        else:
            torch.testing.assert_close(got, v)
    small.project_output = True
    x, mask, y = _meas(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(big(x, mask, y)[0], small(x, mask, y)[0])
    assert _grow_stages(small, state) == []  # nothing to add


def test_freeze_stages_trains_only_the_rest_and_resume_keeps_the_architecture(
        fake_cassi_data, tmp_path):
    fake_cassi_data(tmp_path / "data")
    torch.manual_seed(0)
    tiny = {**_TINY, "in_chans": 28}
    w = tmp_path / "w.safetensors"
    start = build_model("s2former-unfolded", **tiny).state_dict()
    save_state_dict(start, w)
    cfg = CassiTrainConfig(preset="s2former-unfolded", out=str(tmp_path / "run"), steps=2,
                           batch_size=1, patch=16, val_every=0, init_weights=str(w), lr=1e-2,
                           warmup=1, aux_steps=1, freeze_stages=2,
                           model_overrides={**tiny, "stages": 3})
    msgs = []
    train(cfg, data_dir=tmp_path / "data", log=msgs.append)
    assert any("stages 2..2 added" in str(m) for m in msgs), msgs
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    for k, v in start.items():  # the first two stages are exactly the initial weights
        torch.testing.assert_close(ck["model"][k], v)
    trained = [k for k in ck["model"] if k.startswith("stages.2.")]
    assert any(not torch.equal(ck["model"][k], start[k.replace("stages.2.", "stages.1.")])
               for k in trained)
    # --resume rebuilds the run's 3-stage model even when the options do not say so
    cfg2 = CassiTrainConfig(preset="s2former-unfolded", out=str(tmp_path / "run"), steps=3,
                            batch_size=1, patch=16, val_every=0, lr=1e-2, warmup=1, aux_steps=1,
                            model_overrides=dict(tiny))
    train(cfg2, resume=True, data_dir=tmp_path / "data", log=msgs.append)
    ck2 = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck2["step"] == 3 and ck2["config"]["freeze_stages"] == 2
    assert ck2["config"]["model_overrides"]["stages"] == 3
    for k, v in start.items():
        torch.testing.assert_close(ck2["model"][k], v)


def test_freeze_stages_must_leave_a_stage_to_train(fake_cassi_data, tmp_path):
    fake_cassi_data(tmp_path / "data")
    cfg = CassiTrainConfig(preset="s2former-unfolded", out=str(tmp_path / "run"), steps=1,
                           batch_size=1, patch=16, val_every=0, freeze_stages=2,
                           model_overrides={**_TINY, "in_chans": 28})
    with pytest.raises(ValueError, match="freeze_stages must be between 1 and 1"):
        train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)


@pytest.mark.parametrize("args,expected", [
    (["--preset", "s2former-compact", "--stages", "4"], "apply to unfolded presets"),
    (["--preset", "s2former-unfolded", "--freeze-stages", "3"],
     "--freeze-stages must be below the number of stages (3)"),
    (["--preset", "s2former-unfolded", "--stages", "-1"], "must be >= 0"),
    (["--loss", "huber"], "--loss must be l1 or l2; got 'huber'"),
])
def test_stage_option_errors(tmp_path, args, expected):
    from hsirestore.cli import app

    (tmp_path / "data" / "cave" / "train").mkdir(parents=True)
    (tmp_path / "data" / "cassi").mkdir()
    r = CliRunner().invoke(app, ["train", "cassi", "--data", str(tmp_path / "data"),
                                 "--out", str(tmp_path / "run"), *args])
    assert r.exit_code != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], r.output
    assert not (tmp_path / "run").exists()


def test_l2_loss_option(fake_cassi_data, tmp_path):
    import json

    fake_cassi_data(tmp_path / "data")
    kw = dict(preset="s2former-unfolded", batch_size=1, patch=16, val_every=0, log_every=1,
              warmup=1, aux_steps=1, threads=1, model_overrides={**_TINY, "in_chans": 28})
    train(CassiTrainConfig(out=str(tmp_path / "a"), steps=2, loss="l2", seed=1, **kw),
          data_dir=tmp_path / "data", log=lambda *_: None)
    train(CassiTrainConfig(out=str(tmp_path / "b"), steps=2, loss="l1", seed=1, **kw),
          data_dir=tmp_path / "data", log=lambda *_: None)
    l2 = [json.loads(x)["loss"] for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    l1 = [json.loads(x)["loss"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    # same first batch and weights (unweighted in the first step): mean square against mean
    # absolute error of the same residuals, so E[e^2] >= E[|e|]^2 (Jensen) and they differ
    assert l2[0] >= l1[0] ** 2 * (1 - 1e-4) and abs(l2[0] - l1[0]) > 1e-3
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["config"]["loss"] == "l2"
    with pytest.raises(ValueError, match="loss must be"):
        train(CassiTrainConfig(out=str(tmp_path / "c"), steps=1, loss="l3", **kw),
              data_dir=tmp_path / "data", log=lambda *_: None)
