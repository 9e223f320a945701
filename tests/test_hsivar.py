"""HSI-VAR model, training stages (tiny config), resume and export."""
import json

import numpy as np
import pytest
import torch

from hsirestore.registry import build_model, get_spec, list_models


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(one_thread):
    torch.manual_seed(0)
    m = build_model("hsivar-tiny").eval()
    m.init_condition_encoder()
    return m


def test_specs_registered():
    names = {s.name for s in list_models("restore")}
    assert {"hsivar", "hsivar-compact", "hsivar-tiny"} <= names
    c = get_spec("hsivar-compact")
    assert c.weights == "hsivar-compact.safetensors" and c.bands == 31 and c.size_multiple == 4
    assert get_spec("hsivar").config["tf_depth"] == 16 and get_spec("hsivar").size_multiple == 8


def test_shapes_any_tile(tiny):
    for h, w in ((16, 16), (16, 24), (4, 4)):
        x = torch.rand(2, 31, h, w)
        rec, vq, idx = tiny.autoencode(x)
        assert rec.shape == x.shape and vq.ndim == 0
        assert tuple(idx[-1].shape) == (2, h // 4, w // 4)
        t = torch.zeros(2, 12)
        assert tiny(x, t).shape == x.shape


def test_kv_cache_generation_matches_block_causal_teacher_forcing(tiny):
    x = torch.rand(2, 31, 16, 20)
    t = torch.zeros(2, 12)
    t[0, 0] = t[1, 6] = 1
    with torch.no_grad():
        f_cond, skips, d = tiny.condition(x, t)
        idx = tiny.generate(f_cond, d)
        logits = tiny.teacher_logits(idx, f_cond, d)
    for lg, i in zip(logits, idx):
        assert torch.equal(lg.argmax(-1), i.flatten(1))
    # scale k's logits do not depend on later scales (block-causal mask)
    alt = [i.clone() for i in idx]
    alt[-1] = (alt[-1] + 1) % tiny.quantizer.codebook_size
    with torch.no_grad():
        logits2 = tiny.teacher_logits(alt, f_cond, d)
    for a, b in zip(logits[:-1], logits2[:-1]):
        torch.testing.assert_close(a, b)


def test_sampling_seeded_and_topk1_is_argmax(tiny):
    x = torch.rand(1, 31, 16, 16)
    t = torch.zeros(1, 12)
    f_cond, _, d = tiny.condition(x, t)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = tiny.generate(f_cond, d, temperature=1.0, generator=g1)
    b = tiny.generate(f_cond, d, temperature=1.0, generator=g2)
    assert all(torch.equal(i, j) for i, j in zip(a, b))
    greedy = tiny.generate(f_cond, d)
    k1 = tiny.generate(f_cond, d, temperature=2.0, top_k=1, generator=g1)
    assert all(torch.equal(i, j) for i, j in zip(greedy, k1))


def test_dag_linear_combination_and_condition_encoder_copy(tiny):
    m = (torch.eye(12)[[0]] + torch.eye(12)[[6]])
    d = tiny.dag(m)
    expect = tiny.dag.base + tiny.dag.lam * (tiny.dag.types[0] + tiny.dag.types[6])
    torch.testing.assert_close(d[0], expect)
    torch.testing.assert_close(tiny.dag(torch.zeros(1, 12))[0], tiny.dag.base)
    for (k, a), (_, b) in zip(tiny.encoder.state_dict().items(), tiny.cond_encoder.state_dict().items()):
        assert torch.equal(a, b), k
    alphas = [b.alpha for b in tiny.decoder.ssa]
    assert len(alphas) == 3 and all(a.requires_grad for a in alphas)


def _scenes():
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    out = []
    for s in range(2):
        out.append(np.stack([0.45 + 0.3 * np.sin(2 * np.pi * (xx * (1 + s) + yy) + b / 8)
                             for b in range(31)]).astype(np.float32))
    return out


def _losses(path, key):
    return [json.loads(line)[key] for line in open(path) if '"step"' in line]


def test_two_stage_training_resume_and_export(tmp_path, monkeypatch):
    from hsirestore.errors import OptionError
    from hsirestore.training.hsivar import HsivarTrainConfig, export_weights, train

    sc = _scenes()
    kw = dict(preset="hsivar-tiny", out=str(tmp_path / "run"), batch_size=4, patch=16, lr=3e-3, threads=1,
              warmup=2, log_every=5, val_every=0, restart_every=10)
    from hsirestore.errors import FormatError

    with pytest.raises(FormatError, match="stage-1 checkpoint .*: file not found"):
        train(HsivarTrainConfig(stage=2, steps=2, **kw), scenes=sc, log=lambda s: None)
    train(HsivarTrainConfig(stage=1, steps=20, **kw), scenes=sc, log=lambda s: None)
    msgs = []
    train(HsivarTrainConfig(stage=1, steps=30, **kw), resume=True, scenes=sc, log=msgs.append)
    assert any("at step 20" in m for m in msgs)
    ck = torch.load(tmp_path / "run/stage1/last.pt", weights_only=False)
    assert ck["step"] == 30
    l1 = _losses(tmp_path / "run/stage1/log.jsonl", "l1")
    assert len(l1) == 6 and np.mean(l1[-2:]) < l1[0]

    with pytest.raises(OptionError, match="stage-1"):
        export_weights(tmp_path / "run/stage1/last.pt", tmp_path / "w.safetensors")
    train(HsivarTrainConfig(stage=2, steps=15, **kw), scenes=sc, log=lambda s: None)
    train(HsivarTrainConfig(stage=2, steps=25, **{**kw, "val_every": 25}), resume=True, scenes=sc,
          val_scenes=sc[:1], log=lambda s: None)
    ck2 = torch.load(tmp_path / "run/stage2/last.pt", weights_only=False)
    assert ck2["step"] == 25 and "mean" in ck2["last"]["val"]
    ce = _losses(tmp_path / "run/stage2/log.jsonl", "ce")
    assert len(ce) == 5 and ce[-1] < ce[0]
    # stage 2 froze E and the quantizer
    for k in ("encoder.conv_in.weight", "quantizer.codebook.weight"):
        assert torch.equal(ck["model"][k], ck2["model"][k])

    entry = export_weights(tmp_path / "run/stage2/last.pt", tmp_path / "w.safetensors", note="t")
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["files"]["w.safetensors"]["sha256"] == entry["sha256"] and entry["steps"] == 25
    from hsirestore.inference.restore import Restorer

    r = Restorer("hsivar-tiny", weights=tmp_path / "w.safetensors", device="cpu", tile=16, overlap=4)
    out = r.restore(sc[0][:, :20, :24], "noise")
    assert out.shape == (31, 20, 24) and np.isfinite(out.data).all()

    # stage 2 continues from exported weights (E_cond kept); into a residual model the
    # decoder's output conv is zeroed, so it starts as the identity LQ -> LQ
    state = torch.load(tmp_path / "run/stage2/last.pt", weights_only=True)["model"]
    msgs = []
    kw2 = {**kw, "out": str(tmp_path / "cont"), "init": str(tmp_path / "w.safetensors")}
    train(HsivarTrainConfig(stage=2, steps=1, **kw2), scenes=sc, log=msgs.append)
    assert any("continues from" in m and "(25 steps)" in m for m in msgs)
    assert not any("zeroed" in m for m in msgs)
    e2 = export_weights(tmp_path / "cont/stage2/last.pt", tmp_path / "cont" / "w2.safetensors")
    assert e2["steps"] == 26 and e2["training"]["prior_steps"] == 25  # cumulative
    cont = torch.load(tmp_path / "cont/stage2/last.pt", weights_only=True)["model"]
    assert not torch.equal(cont["cond_encoder.conv_in.weight"], cont["encoder.conv_in.weight"])
    torch.testing.assert_close(cont["encoder.conv_in.weight"], state["encoder.conv_in.weight"],
                               atol=2e-3, rtol=0)  # fp16 export, frozen E
    msgs = []
    kw3 = {**kw2, "out": str(tmp_path / "res"), "lr": 1e-12, "model_overrides": {"residual": True}}
    train(HsivarTrainConfig(stage=2, steps=1, **kw3), scenes=sc, log=msgs.append)
    assert any("zeroed" in m for m in msgs)
    res = build_model("hsivar-tiny", residual=True).eval()
    res.load_state_dict(torch.load(tmp_path / "res/stage2/last.pt", weights_only=True)["model"])
    lq = torch.from_numpy(sc[0][None, :, :16, :16])
    t = torch.zeros(1, res.num_types)
    torch.testing.assert_close(res.restore(lq, t), lq, atol=1e-6, rtol=0)
    # a training last.pt is rebuilt with its run's model overrides
    assert Restorer("hsivar-tiny", weights=tmp_path / "res/stage2/last.pt", device="cpu").model.residual
    assert not Restorer("hsivar-tiny", weights=tmp_path / "cont/stage2/last.pt", device="cpu").model.residual
