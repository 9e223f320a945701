import pytest
import torch

from hsirestore.errors import ModelError
from hsirestore.models.s2former import S2Transformer, official_key_map
from hsirestore.registry import build_model, get_spec
from hsirestore.weights import load_into, load_state_dict


def test_tiny_forward_shapes_and_pins():
    torch.manual_seed(0)
    model = build_model("s2former-tiny")
    x = torch.rand(2, 28, 16, 24)
    mask = torch.rand(2, 1, 16, 24)
    out, pins = model(x, mask)
    assert out.shape == x.shape
    assert len(pins) == 1 and pins[0].shape == x.shape
    # zero-initialised output conv: an untrained model starts as the identity on its input
    assert torch.allclose(out, x)


def test_rejects_sizes_not_multiple_of_window():
    model = build_model("s2former-tiny")
    with pytest.raises(ValueError):
        model(torch.rand(1, 28, 12, 16), torch.rand(1, 1, 12, 16))


def test_shifted_windows_and_mask_change_output():
    torch.manual_seed(0)
    model = S2Transformer(in_chans=28, embed_dim=20, depths=(2,), num_heads=(2,), mlp_ratio=1.0,
                          mask_norm="channel")
    torch.nn.init.normal_(model.conv_last.weight, std=0.1)
    x = torch.rand(1, 28, 16, 16)
    a, _ = model(x, torch.rand(1, 1, 16, 16))
    b, _ = model(x, torch.rand(1, 1, 16, 16))
    assert not torch.allclose(a, b)


def _official_state(model: S2Transformer) -> dict:
    """A state dict in the authors' layout: DataParallel prefix, unused twin branches,
    relative position indices and shifted-window masks for a 256x256 input."""
    sd = {}
    for k, v in model.state_dict().items():
        sd["module." + k] = torch.randn_like(v)
    for k in list(sd):
        if k.endswith("win_wrap_spatial.attn.qkv.weight"):
            base = k[: -len("win_wrap_spatial.attn.qkv.weight")]
            for name in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
                         "relative_position_bias_table"):
                src = sd[base + "win_wrap_spatial.attn." + name]
                sd[base + "win_wrap_spatial2.attn." + name] = torch.randn_like(src)
            sd[base + "win_wrap_spatial.attn.relative_position_index"] = torch.zeros(64, 64, dtype=torch.long)
            sd[base + "win_wrap_spatial.attn_mask"] = torch.zeros(1024, 64, 64)
            for name in ("to_q.weight", "to_k.weight", "to_v.weight", "rescale", "proj.weight",
                         "proj.bias", "pos_emb.0.weight", "pos_emb.2.weight"):
                sd[base + "chl_msa2." + name] = torch.randn_like(sd[base + "chl_msa." + name])
    return sd


def test_official_checkpoint_loads_strictly(tmp_path):
    spec = get_spec("s2former")
    model = build_model("s2former")
    n_params = sum(p.numel() for p in model.parameters())
    official = _official_state(model)
    n_official = sum(v.numel() for k, v in official.items()
                     if "relative_position_index" not in k and "attn_mask" not in k)
    # the published model has about 4.15 M parameters (unused twin branches included)
    assert 4.0e6 < n_official < 4.3e6
    assert n_params < n_official
    assert official["module.conv_first.weight"].shape == (60, 28, 3, 3)
    assert official["module.conv_last.weight"].shape == (28, 60, 3, 3)
    assert official["module.RSTB_pin.weight"].shape == (28, 60, 1, 1)
    path = tmp_path / "model_epoch_255.pth"
    torch.save({"model_weights": official, "lr_last_record": [1e-4]}, path)
    state, meta = load_state_dict(path)
    fresh = build_model("s2former")
    load_into(fresh, official_key_map(state), strict=True)
    w = fresh.state_dict()["layers.0.residual_group.blocks.0.win_wrap_spatial.attn.qkv.weight"]
    assert torch.equal(w, official["module.layers.0.residual_group.blocks.0.win_wrap_spatial.attn.qkv.weight"])
    assert spec.bands == 28


def test_mismatched_checkpoint_is_a_model_error():
    model = build_model("s2former-tiny")
    with pytest.raises(ModelError):
        load_into(model, {"conv_first.weight": torch.zeros(1)}, strict=True)


def test_unfolded_model_is_data_consistent_at_start():
    """With zero-initialised output convs every stage is the identity, so the result is the
    GAP projection of the first estimate: it reproduces the measurement exactly."""
    from hsirestore.physics.cassi import cassi_forward

    torch.manual_seed(0)
    model = build_model("s2former-unfolded", stages=2, embed_dim=16, depth=1, num_heads=2)
    x = torch.rand(1, 28, 16, 16)
    mask = torch.rand(1, 1, 16, 16) * 0.9 + 0.1
    y = cassi_forward(x[0], mask[0, 0])[None]
    out, inter = model(torch.zeros_like(x), mask, y)
    assert out.shape == x.shape and len(inter) == 1
    torch.testing.assert_close(cassi_forward(out[0], mask[0, 0]), y[0], rtol=1e-4, atol=1e-4)


def test_unfolded_gaptv_init_matches_external_estimate():
    """init="gap-tv" runs GAP-TV on the measurement itself unless an estimate is passed."""
    import pytest

    from hsirestore.physics.gaptv import gap_tv
    from hsirestore.models.s2former import UnfoldedS2Transformer
    from hsirestore.physics.cassi import cassi_forward

    torch.manual_seed(0)
    model = UnfoldedS2Transformer(in_chans=28, stages=2, embed_dim=8, depth=1, num_heads=1,
                                  spe_dim_head=8, init="gap-tv", gaptv_iters=4).eval()
    x = torch.rand(28, 16, 16)
    mask = (torch.rand(16, 16) > 0.5).float()
    y = cassi_forward(x, mask, 2)[None]
    est = gap_tv(y[0], mask, 28, 2, iterations=4)[None]
    with torch.no_grad():
        a, _ = model(torch.zeros(1, 28, 16, 16), mask[None, None], y)
        b, _ = model(torch.zeros(1, 28, 16, 16), mask[None, None], y, init_est=est)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="init"):
        UnfoldedS2Transformer(init="zeros")
