"""What the three trainers share: one weights loader (same error type and wording for weights
of another preset), one loop control (checkpoint cadence, time limit, Ctrl-C), one spelling
of the shared options, one export command body. Tiny presets, generated data."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import ModelError
from hsirestore.registry import build_model, get_spec
from hsirestore.weights import save_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, (r.exit_code, r.output)
    return lines[0]


def _quiet(*_):
    pass


def _weights(tmp_path, preset, name=None):
    """Random ``preset`` weights exported like a training run's, named ``name``."""
    torch.manual_seed(0)
    path = tmp_path / f"{name or preset}.safetensors"
    save_state_dict(build_model(preset).state_dict(), path,
                    metadata={"model": name or preset, "config": get_spec(preset).config, "steps": 3})
    return path


def _scenes():
    rng = np.random.default_rng(0)
    return [rng.random((31, 32, 32)).astype(np.float32) for _ in range(2)]


# ----------------------------------------------------------------------------- load_weights
def test_load_weights_keeps_optional_keys_and_words_misfits_in_one_line(tmp_path):
    from hsirestore.training.common import load_weights

    torch.manual_seed(0)
    model = build_model("s2former-tiny", aux_head=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = build_model("s2former-tiny").state_dict()  # no aux head
    load_weights(model, other, "w.safetensors", "s2former-tiny", optional=("aux.",))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k] if k.startswith("aux.") else other[k], rtol=0, atol=0)

    with pytest.raises(ModelError) as e:  # without optional: the aux keys are missing
        load_weights(model, other, "w.safetensors", "s2former-tiny")
    assert str(e.value).startswith("w.safetensors does not fit s2former-tiny: ")
    assert "missing keys" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match=r"^w.pt does not fit s2former-tiny: 1 tensors differ in shape"):
        load_weights(build_model("s2former-tiny"), {**other, "conv_first.weight": torch.zeros(1)},
                     "w.pt", "s2former-tiny")
    with pytest.raises(ModelError, match=r"^w.pt holds mcga-tiny weights, not s2former-tiny weights"):
        load_weights(build_model("s2former-tiny"), other, "w.pt", "s2former-tiny", holds="mcga-tiny")
    with pytest.raises(ModelError, match="does not fit"):  # not a tensor
        load_weights(build_model("s2former-tiny"), {**other, "conv_first.weight": 1.0}, "w.pt",
                     "s2former-tiny")


def test_weights_of_another_preset_are_the_same_model_error_in_every_trainer(fake_cassi_data, tmp_path):
    from hsirestore.training.cassi import CassiTrainConfig
    from hsirestore.training.cassi import train as train_cassi
    from hsirestore.training.hsivar import HsivarTrainConfig
    from hsirestore.training.hsivar import train as train_hsivar
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    hsivar_w = _weights(tmp_path, "hsivar-tiny")
    mcga_w = _weights(tmp_path, "mcga-tiny")
    # cassi: presets share architectures (no name check); the shapes decide
    data = fake_cassi_data(tmp_path / "data")
    with pytest.raises(ModelError, match=f"^{hsivar_w} does not fit s2former-tiny: .*missing keys"):
        train_cassi(CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "c"), steps=1,
                                     batch_size=1, patch=16, val_every=0, init_weights=str(hsivar_w)),
                    data_dir=data, log=_quiet)
    # hsivar (was an OptionError, exit 2) and mcga: the name the weights record
    with pytest.raises(ModelError, match=f"^{mcga_w} holds mcga-tiny weights, not hsivar-tiny weights"):
        train_hsivar(HsivarTrainConfig(stage=2, preset="hsivar-tiny", out=str(tmp_path / "h"), steps=1,
                                       batch_size=1, patch=16, val_every=0, threads=1, init=str(mcga_w)),
                     scenes=_scenes(), log=_quiet)
    with pytest.raises(ModelError, match=f"^{hsivar_w} holds hsivar-tiny weights, not mcga-tiny weights"):
        Trainer(TrainConfig(stage=2, preset="mcga-tiny", steps=1, batch_size=1, patch=16, threads=1,
                            init_weights=str(hsivar_w)), tmp_path / "m",
                cubes=[SyntheticSpectra(seed=1).sample(32)], synthetic=SyntheticSpectra(seed=2),
                cameras=(np.ones((3, 31), np.float32), []))
    # weights that do not say which preset they are for: the shapes decide there too
    unnamed = tmp_path / "unnamed.safetensors"
    save_state_dict(build_model("hsivar-compact").state_dict(), unnamed)
    with pytest.raises(ModelError, match=f"^{unnamed} does not fit hsivar-tiny: "):
        train_hsivar(HsivarTrainConfig(stage=2, preset="hsivar-tiny", out=str(tmp_path / "h2"), steps=1,
                                       batch_size=1, patch=16, val_every=0, threads=1, init=str(unnamed)),
                     scenes=_scenes(), log=_quiet)
    assert not (tmp_path / "h" / "stage2" / "last.pt").exists()


def test_hsivar_cli_init_weights_of_another_preset_exits_1(tmp_path):
    import h5py

    (tmp_path / "data" / "cave" / "train").mkdir(parents=True)
    with h5py.File(tmp_path / "data" / "cave" / "train" / "a.h5", "w") as f:
        ds = f.create_dataset("cube", data=np.full((31, 32, 32), 1000, np.uint16))
        ds.attrs["scale"] = 1 / 4095
        f["wavelength_nm"] = np.arange(400, 701, 10)
    w = _weights(tmp_path, "mcga-tiny")
    common = ("train", "hsivar", "--stage", 2, "--preset", "hsivar-tiny", "--data", tmp_path / "data",
              "--steps", 1, "--batch-size", 1, "--patch", 16, "--val-every", 0, "--threads", 1)
    for opt in ("--init-weights", "--init"):  # --init: the old spelling, still accepted
        r = _invoke(*common, "--out", tmp_path / opt.strip("-"), opt, w)
        assert r.exit_code == 1
        assert "holds mcga-tiny weights, not hsivar-tiny weights" in _one_line(r)
    r = _invoke(*common, "--out", tmp_path / "both", "--init", w, "--init-weights", w)
    assert r.exit_code == 2 and "give one of them" in _one_line(r)
    r = _invoke(*common, "--out", tmp_path / "none", "--init-weights", tmp_path / "absent.safetensors")
    assert r.exit_code == 1  # a missing file: the trainers' one check (FormatError)
    assert _one_line(r).endswith(f"error: --init-weights {tmp_path / 'absent.safetensors'}: file not found")


def test_resume_from_a_checkpoint_that_does_not_fit_is_one_line(tmp_path):
    from hsirestore.training.hsivar import HsivarTrainConfig, train

    kw = dict(stage=1, preset="hsivar-tiny", out=str(tmp_path / "run"), batch_size=1, patch=16,
              val_every=0, threads=1, log_every=1)
    train(HsivarTrainConfig(steps=1, **kw), scenes=_scenes(), log=_quiet)
    path = tmp_path / "run" / "stage1" / "last.pt"
    ck = torch.load(path, weights_only=True)
    ck["model"].pop(next(iter(ck["model"])))
    torch.save(ck, path)
    with pytest.raises(ModelError, match=r"last.pt does not fit hsivar-tiny: 1 missing keys"):
        train(HsivarTrainConfig(steps=2, **kw), resume=True, scenes=_scenes(), log=_quiet)


# ----------------------------------------------------------------------------- LoopControl
class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_loop_control_cadence_time_limit_and_exit_checkpoint(monkeypatch):
    import hsirestore.training.common as common

    clock = _Clock()
    monkeypatch.setattr(common.time, "time", clock)
    saves, msgs = [], []
    ctl = common.LoopControl(lambda rngs=None: saves.append(rngs), "ck.pt", msgs.append,
                             lambda: 0, dict, ckpt_minutes=2, max_minutes=5, ckpt_every=10)
    with ctl:
        clock.now += 60
        assert not ctl.after_step(1) and saves == []      # nothing due yet
        clock.now += 61
        assert not ctl.after_step(2) and saves == [None]  # 2 minutes since the start
        assert not ctl.after_step(10) and len(saves) == 2  # every 10 steps too
        clock.now += 200
        assert ctl.after_step(11)                         # past 5 minutes: stop
    assert msgs == ["time limit reached at step 11"]

    # an exception after a whole step: the snapshot of that step is saved, then re-raised
    saves.clear()
    step = 4
    ctl = common.LoopControl(lambda rngs=None: saves.append(rngs), "ck.pt", msgs.append,
                             lambda: step, lambda: f"after step {step}", ckpt_minutes=3)
    with pytest.raises(KeyboardInterrupt):
        with ctl:
            with ctl.commit():
                step += 1
            raise KeyboardInterrupt
    assert saves == ["after step 5"]
    assert msgs[-1] == "interrupted at step 5: checkpoint saved to ck.pt (continue with --resume)"
    saves.clear()  # none before the first whole step
    with pytest.raises(RuntimeError):
        with common.LoopControl(lambda rngs=None: saves.append(rngs), "ck.pt", _quiet, lambda: 4,
                                dict, 3):
            raise RuntimeError("boom")
    assert saves == []


def _mcga(tmp_path, steps, **kw):
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    cfg = dict(stage=1, preset="mcga-tiny", steps=steps, batch_size=2, patch=16, warmup=2,
               log_every=1, threads=1)
    return Trainer(TrainConfig(**{**cfg, **kw}), tmp_path, cubes=[SyntheticSpectra(seed=9).sample(32)],
                   synthetic=SyntheticSpectra(seed=3))


def test_mcga_checkpoints_by_time_and_optionally_by_steps(tmp_path, monkeypatch):
    from hsirestore.training.mcga import Trainer

    saved = []
    orig = Trainer.save

    def save(self, rngs=None):
        saved.append(self.step)
        orig(self, rngs)

    monkeypatch.setattr(Trainer, "save", save)
    _mcga(tmp_path / "a", 4).run(echo=_quiet)
    assert saved == [4]  # default: every 3 minutes, and at the end
    saved.clear()
    _mcga(tmp_path / "c", 4, ckpt_every=2).run(echo=_quiet)  # the old step cadence
    assert saved == [2, 4]  # the end's checkpoint is not written twice


def test_mcga_time_limit_stops_with_a_checkpoint_and_says_so(tmp_path, monkeypatch):
    import hsirestore.training.common as common

    clock = _Clock()
    monkeypatch.setattr(common.time, "time", clock)
    tr = _mcga(tmp_path, 10, max_minutes=1)
    orig = tr._stage1_step

    def step():
        clock.now += 25
        return orig()

    tr._stage1_step = step
    msgs = []
    assert tr.run(echo=msgs.append)["step"] == 3
    assert "time limit reached at step 3" in msgs
    assert torch.load(tmp_path / "stage1.pt", weights_only=True)["step"] == 3


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("cmd", ["cassi", "hsivar", "mcga"])
def test_train_commands_spell_the_shared_options_alike(cmd):
    r = runner.invoke(app, ["train", cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0
    for opt in ("--init-weights", "--max-minutes", "--ckpt-minutes", "--resume", "--device",
                "--threads", "--seed", "--log-every"):
        assert opt in r.output, (cmd, opt)
    assert "0: no limit" in r.output
    assert "--init " not in r.output and "--ckpt-every" not in r.output  # hidden old spellings


def test_mcga_cli_checks_ckpt_minutes_and_keeps_ckpt_every(tmp_path):
    common = ("train", "mcga", "--stage", 1, "--preset", "mcga-tiny", "--steps", 2,
              "--batch-size", 1, "--patch", 16, "--threads", 1)
    r = _invoke(*common, "--out", tmp_path / "a", "--ckpt-minutes", -1)
    assert r.exit_code == 2 and "--ckpt-minutes must be > 0; got -1.0" in _one_line(r)
    r = _invoke(*common, "--out", tmp_path / "b", "--ckpt-every", 0)
    assert r.exit_code == 2 and "--ckpt-every must be >= 1; got 0" in _one_line(r)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- exports
@pytest.mark.parametrize("cmd", ["cassi-export", "hsivar-export", "mcga-export"])
def test_export_commands_share_their_options(cmd, tmp_path):
    r = runner.invoke(app, ["train", cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0
    for opt in ("--output", "--note", "--force"):
        assert opt in r.output
    assert ("--metrics" in r.output) == (cmd == "mcga-export")
    r = _invoke("train", cmd, tmp_path / "absent.pt")  # the training loader's check: exit 1
    assert r.exit_code == 1 and f"checkpoint {tmp_path / 'absent.pt'}: file not found" in _one_line(r)


def test_mcga_export_prints_the_same_fields_as_the_others(tmp_path):
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    cam = np.ones((3, 31), np.float32) / 31
    synth = SyntheticSpectra(seed=2)
    cubes = [SyntheticSpectra(seed=1).sample(32)]
    common = dict(preset="mcga-tiny", steps=1, batch_size=1, patch=16, threads=1)
    Trainer(TrainConfig(stage=1, **common), tmp_path, cubes=cubes, synthetic=synth).run(echo=_quiet)
    Trainer(TrainConfig(stage=2, **common), tmp_path, cubes=cubes, synthetic=synth,
            cameras=(cam, [])).run(echo=_quiet)
    (tmp_path / "m.json").write_text(json.dumps({"mrae": 0.5}))
    out = tmp_path / "w" / "x.safetensors"
    out.parent.mkdir()
    r = _invoke("train", "mcga-export", tmp_path / "stage2.pt", "-o", out, "--metrics", tmp_path / "m.json")
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(line) == {"model", "steps", "sha256", "val_metrics"}
    assert line["model"] == "mcga-tiny" and line["steps"] == 1 and line["val_metrics"] == {"mrae": 0.5}
