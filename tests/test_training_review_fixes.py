"""Training-side fixes of review 14: one missing-file error (FormatError, exit 1) for
--init-weights, the stage-1 checkpoint and the checkpoint to export, checked once and before
any work; one reader of the preset a file records and one wording of a preset mismatch
(--resume included); load_weights passes the file and preset to load_into; LoopControl keeps
the step/random-state bookkeeping itself (one snapshot per step, no second checkpoint at
the end, --ckpt-minutes > 0); the export options and body in cli/train_common.py; the
initial weights read once. Tiny presets, generated data."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import FormatError, ModelError, OptionError
from hsirestore.registry import build_model
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


def _scenes():
    rng = np.random.default_rng(0)
    return [rng.random((31, 32, 32)).astype(np.float32) for _ in range(2)]


def _weights(path, preset, metadata):
    torch.manual_seed(0)
    save_state_dict(build_model(preset).state_dict(), path, metadata=metadata)
    return path


def _hsivar_cfg(tmp_path, stage, steps=1, **kw):
    from hsirestore.training.hsivar import HsivarTrainConfig

    base = dict(stage=stage, preset="hsivar-tiny", out=str(tmp_path / "h"), steps=steps,
                batch_size=1, patch=16, val_every=0, threads=1, log_every=1)
    return HsivarTrainConfig(**{**base, **kw})


def _mcga(out, stage=1, steps=1, resume=False, **kw):
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    cfg = dict(stage=stage, preset="mcga-tiny", steps=steps, batch_size=2, patch=16, warmup=2,
               log_every=1, threads=1)
    return Trainer(TrainConfig(**{**cfg, **kw}), out, resume=resume,
                   cubes=[SyntheticSpectra(seed=9).sample(32)], synthetic=SyntheticSpectra(seed=3),
                   cameras=(np.ones((3, 31), np.float32) / 31, []))


def _no_data(*_, **__):
    raise AssertionError("the training data were set up before the missing file was noticed")


# ----------------------------------------------------------------------------- finding 2
def test_a_missing_init_weights_file_is_one_format_error_before_any_work(fake_cassi_data, tmp_path,
                                                                         monkeypatch):
    import hsirestore.training.cassi as tc
    import hsirestore.training.hsivar as th
    import hsirestore.training.mcga as tm
    from hsirestore.training.cassi import CassiTrainConfig

    absent = tmp_path / "absent.safetensors"
    want = f"--init-weights {absent}: file not found"
    monkeypatch.setattr(tc, "CassiPatches", _no_data)  # cassi noticed only after these
    with pytest.raises(FormatError) as e:
        tc.train(CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "c"), steps=1, batch_size=1,
                                  patch=16, val_every=0, threads=1, init_weights=str(absent)),
                 data_dir=fake_cassi_data(tmp_path / "data"), log=_quiet)
    assert str(e.value) == want
    monkeypatch.setattr(th, "load_scenes", _no_data)
    with pytest.raises(FormatError) as e:
        th.train(_hsivar_cfg(tmp_path, 2, init=str(absent)), log=_quiet)
    assert str(e.value) == want
    with pytest.raises(FormatError) as e:
        tm.Trainer(tm.TrainConfig(stage=2, preset="mcga-tiny", init_weights=str(absent), threads=1),
                   tmp_path / "m", cubes=None)  # None: CAVE would be read after the check
    assert str(e.value) == want
    assert not any((tmp_path / d).exists() for d in ("c", "h", "m"))


def test_the_cli_gives_exit_1_and_the_same_line_for_a_missing_init_weights_file(fake_cassi_data, tmp_path):
    absent = tmp_path / "absent.safetensors"
    data = fake_cassi_data(tmp_path / "data")
    runs = {
        "cassi": ("train", "cassi", "--preset", "s2former-tiny", "--data", data, "--steps", 1,
                  "--patch", 16, "--batch-size", 1, "--val-every", 0, "--threads", 1),
        "hsivar": ("train", "hsivar", "--stage", 2, "--preset", "hsivar-tiny", "--data", data,
                   "--steps", 1, "--patch", 16, "--batch-size", 1, "--threads", 1),
        "mcga": ("train", "mcga", "--stage", 2, "--preset", "mcga-tiny", "--steps", 1, "--patch", 16,
                 "--batch-size", 1, "--threads", 1),
    }
    for name, args in runs.items():
        r = _invoke(*args, "--out", tmp_path / name, "--init-weights", absent)
        assert r.exit_code == 1, (name, r.output)
        assert _one_line(r) == f"hsirestore: error: --init-weights {absent}: file not found", name
        assert not (tmp_path / name).exists()


def test_a_missing_stage1_checkpoint_is_worded_alike_in_hsivar_and_mcga(tmp_path, monkeypatch):
    import hsirestore.training.hsivar as th
    import hsirestore.training.mcga as tm

    hint = "(run --stage 1 first, or pass --init-weights FILE)"
    monkeypatch.setattr(th, "load_scenes", _no_data)
    with pytest.raises(FormatError) as e:
        th.train(_hsivar_cfg(tmp_path, 2), log=_quiet)
    assert str(e.value) == f"stage-1 checkpoint {tmp_path / 'h' / 'stage1' / 'last.pt'}: file not found {hint}"
    monkeypatch.setattr(tm, "camera_bank", _no_data)
    with pytest.raises(FormatError) as e:
        tm.Trainer(tm.TrainConfig(stage=2, preset="mcga-tiny", threads=1), tmp_path / "m", cubes=None)
    assert str(e.value) == f"stage-1 checkpoint {tmp_path / 'm' / 'stage1.pt'}: file not found {hint}"
    r = _invoke("train", "mcga", "--stage", 2, "--preset", "mcga-tiny", "--out", tmp_path / "m2",
                "--steps", 1, "--threads", 1)
    assert r.exit_code == 1 and _one_line(r).endswith(f"stage-1 checkpoint {tmp_path / 'm2' / 'stage1.pt'}: "
                                                      f"file not found {hint}")


@pytest.mark.parametrize("cmd", ["cassi-export", "hsivar-export", "mcga-export"])
def test_a_missing_checkpoint_to_export_is_the_training_loaders_error(cmd, tmp_path):
    import importlib

    absent = tmp_path / "absent.pt"
    r = _invoke("train", cmd, absent, "-o", tmp_path / "w" / "x.safetensors")
    assert r.exit_code == 1
    assert _one_line(r) == f"hsirestore: error: checkpoint {absent}: file not found"
    trainer = importlib.import_module("hsirestore.training." + cmd.split("-")[0])
    with pytest.raises(FormatError, match="file not found"):
        trainer.export_weights(absent, tmp_path / "w" / "x.safetensors")
    # a missing .safetensors path is missing too, not "exported weights"
    with pytest.raises(FormatError, match="file not found"):
        trainer.export_weights(tmp_path / "absent.safetensors", tmp_path / "w" / "x.safetensors")
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- finding 3
def test_one_reader_of_the_recorded_preset():
    import hsirestore.training.common as common
    from hsirestore import weights

    assert not hasattr(weights, "_recorded_model") and not hasattr(common, "weights_preset")
    state = {"w": torch.zeros(1)}
    assert weights.recorded_model(state, {"model": "a"})[0] == "a"
    assert weights.recorded_model(state, {"training_config": {"preset": "b"}})[0] == "b"
    assert weights.recorded_model(state, {"config": {"preset": "c"}})[0] == "c"
    # training checkpoints as load_checkpoint returns them: mcga at the top, the others in config
    assert common.checkpoint_preset({"model": state, "preset": "mcga-tiny", "config": {}}) == "mcga-tiny"
    assert common.checkpoint_preset({"model": state, "config": {"preset": "hsivar-tiny"}}) == "hsivar-tiny"
    assert common.checkpoint_preset({"model": {}, "config": {}}) is None


def test_weights_whose_config_names_the_preset_are_recognised_by_the_trainers(tmp_path):
    from hsirestore.training.hsivar import train

    # the rule training.common.weights_preset left out: a config that names a preset
    w = _weights(tmp_path / "w.safetensors", "mcga-tiny", {"config": {"preset": "mcga-tiny"}})
    with pytest.raises(ModelError, match=f"^{w} holds mcga-tiny weights, not hsivar-tiny weights"):
        train(_hsivar_cfg(tmp_path, 2, init=str(w)), scenes=_scenes(), log=_quiet)


def test_resume_and_init_weights_of_another_preset_are_worded_alike(tmp_path):
    _mcga(tmp_path / "run").run(echo=_quiet)
    with pytest.raises(ModelError) as resumed:
        _mcga(tmp_path / "run", steps=2, resume=True, preset="mcga-compact")
    w = _weights(tmp_path / "w.safetensors", "mcga-tiny", {"model": "mcga-tiny"})
    with pytest.raises(ModelError) as started:
        _mcga(tmp_path / "ft", stage=2, preset="mcga-compact", init_weights=str(w))
    same = "holds mcga-tiny weights, not mcga-compact weights (pass --preset mcga-tiny"
    assert str(resumed.value) == f"{tmp_path / 'run' / 'stage1.pt'} {same} to continue it)"
    assert str(started.value) == f"{w} {same}, or weights of mcga-compact)"


# ----------------------------------------------------------------------------- finding 4
def test_load_weights_names_the_file_and_preset_through_load_into(monkeypatch):
    import hsirestore.weights as weights
    from hsirestore.training.common import load_weights

    seen = {}

    def load_into(model, state, strict=True, *, source="checkpoint", target="the model"):
        seen.update(source=source, target=target)
        raise ModelError(f"{source} and {target}: reworded")  # no re-parsing of the text

    monkeypatch.setattr(weights, "load_into", load_into)
    with pytest.raises(ModelError, match="^w.pt and s2former-tiny: reworded$"):
        load_weights(build_model("s2former-tiny"), {}, "w.pt", "s2former-tiny")
    assert seen == {"source": "w.pt", "target": "s2former-tiny"}


# ----------------------------------------------------------------------------- finding 13
def test_ckpt_minutes_must_be_above_zero_in_every_trainer(fake_cassi_data, tmp_path):
    from hsirestore.training.cassi import CassiTrainConfig
    from hsirestore.training.cassi import train as train_cassi
    from hsirestore.training.hsivar import train as train_hsivar

    with pytest.raises(OptionError, match=r"^--ckpt-minutes must be > 0; got 0$"):
        train_cassi(CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "c"), ckpt_minutes=0),
                    data_dir=tmp_path, log=_quiet)
    with pytest.raises(OptionError, match=r"^--ckpt-minutes must be > 0; got 0.0$"):
        train_hsivar(_hsivar_cfg(tmp_path, 1, ckpt_minutes=0.0), scenes=_scenes(), log=_quiet)
    with pytest.raises(OptionError, match=r"^--ckpt-minutes must be > 0; got nan$"):
        _mcga(tmp_path / "m", ckpt_minutes=float("nan"))
    r = _invoke("train", "mcga", "--stage", 1, "--preset", "mcga-tiny", "--out", tmp_path / "m2",
                "--ckpt-minutes", 0)
    assert r.exit_code == 2 and _one_line(r).endswith("--ckpt-minutes must be > 0; got 0.0")
    assert not any((tmp_path / d).exists() for d in ("c", "h", "m", "m2"))


def test_loop_control_records_each_commit_and_saves_the_end_once(monkeypatch):
    import hsirestore.training.common as common

    saves, snaps = [], []
    step = 0

    def rng_state():
        snaps.append(step)
        return f"after step {step}"

    ctl = common.LoopControl(lambda rngs=None: saves.append((step, rngs)), "ck.pt", _quiet,
                             lambda: step, rng_state, ckpt_minutes=60, ckpt_every=2)
    with ctl:
        while step < 4:
            with ctl.commit():
                step += 1
            assert (ctl.step, ctl.rngs) == (step, f"after step {step}")
            ctl.after_step(step)
    assert snaps == [1, 2, 3, 4]  # one snapshot per step
    assert saves == [(2, None), (4, None)]  # step 4 was just saved: not again at the end
    saves.clear()
    with common.LoopControl(lambda rngs=None: saves.append(rngs), "ck.pt", _quiet, lambda: 7,
                            dict, ckpt_minutes=60):
        pass  # nothing to run (a resume at --steps): the end's checkpoint is still written
    assert saves == [None]


def test_a_time_limit_right_after_a_checkpoint_writes_it_once(tmp_path, monkeypatch):
    import hsirestore.training.common as common
    from hsirestore.training.mcga import Trainer

    now = [1000.0]
    monkeypatch.setattr(common.time, "time", lambda: now[0])
    saved = []
    orig = Trainer.save

    def save(self, rngs=None):
        saved.append(self.step)
        orig(self, rngs)

    monkeypatch.setattr(Trainer, "save", save)
    tr = _mcga(tmp_path, steps=10, max_minutes=1, ckpt_minutes=0.5)
    orig_step = tr._stage1_step

    def step():
        now[0] += 35
        return orig_step()

    tr._stage1_step = step
    assert tr.run(echo=_quiet)["step"] == 2
    assert saved == [1, 2]  # step 2: due and at the time limit -- one write


def test_the_random_state_is_snapshot_once_per_step(tmp_path, monkeypatch):
    from hsirestore.training.mcga import Trainer

    calls = []
    orig = Trainer._rng_state

    def rng_state(self):
        calls.append(self.step)
        return orig(self)

    monkeypatch.setattr(Trainer, "_rng_state", rng_state)
    _mcga(tmp_path, steps=3).run(echo=_quiet)
    assert calls == [1, 2, 3, 3]  # after each commit, and for the checkpoint at the end


def _interrupt_in_batch(monkeypatch, cls, name, n):
    """Ctrl-C right after the n-th call of cls.name (a batch drawn: inside a step, outside a
    commit, with the generators already moved on)."""
    orig = getattr(cls, name)
    calls = []

    def batch(self, *a, **k):
        calls.append(1)
        out = orig(self, *a, **k)
        if len(calls) == n:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(cls, name, batch)


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ctrl_c_inside_a_step_resumes_exactly_mcga(tmp_path, monkeypatch):
    from hsirestore.training.mcga import Trainer

    _mcga(tmp_path / "full", steps=5, warmup=100).run(echo=_quiet)
    # stage 1 draws one batch per step: the 4th is drawn in step 4, after step 3's commit
    _interrupt_in_batch(monkeypatch, Trainer, "_hsi_batch", 4)
    msgs = []
    with pytest.raises(KeyboardInterrupt):
        _mcga(tmp_path / "int", steps=5, warmup=100).run(echo=msgs.append)
    assert "interrupted at step 3: checkpoint saved" in msgs[-1]
    monkeypatch.undo()
    _mcga(tmp_path / "int", steps=5, warmup=100, resume=True).run(echo=_quiet)
    _same_weights(torch.load(tmp_path / "full" / "stage1.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "int" / "stage1.pt", weights_only=True)["model"])
    full = [json.loads(x)["loss"] for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    resumed = [json.loads(x)["loss"] for x in (tmp_path / "int" / "log.jsonl").read_text().splitlines()]
    assert resumed == full


def test_ctrl_c_inside_a_step_resumes_exactly_hsivar(tmp_path, monkeypatch):
    from hsirestore.training.hsivar import HsiPatches, train

    sc = _scenes()
    kw = dict(restart_every=2, warmup=100, batch_size=2)
    train(_hsivar_cfg(tmp_path, 1, 5, out=str(tmp_path / "full"), **kw), scenes=sc, log=_quiet)
    _interrupt_in_batch(monkeypatch, HsiPatches, "clean", 4)
    with pytest.raises(KeyboardInterrupt):
        train(_hsivar_cfg(tmp_path, 1, 5, out=str(tmp_path / "int"), **kw), scenes=sc, log=_quiet)
    assert torch.load(tmp_path / "int/stage1/last.pt", weights_only=True)["step"] == 3
    monkeypatch.undo()
    train(_hsivar_cfg(tmp_path, 1, 5, out=str(tmp_path / "int"), **kw), resume=True, scenes=sc, log=_quiet)
    _same_weights(torch.load(tmp_path / "full/stage1/last.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "int/stage1/last.pt", weights_only=True)["model"])


# ----------------------------------------------------------------------------- finding 14
def test_the_export_commands_share_cli_train_common():
    import hsirestore.cli.cmd_train_cassi as cassi
    import hsirestore.cli.cmd_train_hsivar as hsivar
    import hsirestore.cli.cmd_train_mcga as mcga
    import hsirestore.cli.train_common as shared

    for mod in (cassi, hsivar, mcga):
        assert mod.run_export is shared.run_export
        assert (mod.EXPORT_OUTPUT, mod.EXPORT_NOTE, mod.EXPORT_FORCE) == \
            (shared.EXPORT_OUTPUT, shared.EXPORT_NOTE, shared.EXPORT_FORCE)
    assert "def run_export" not in open(cassi.__file__).read()


# ----------------------------------------------------------------------------- finding 16
def test_init_weights_are_read_once_and_hashed_only_when_the_manifest_disagrees(tmp_path, monkeypatch):
    import hsirestore.weights as weights
    from hsirestore.training.common import init_steps

    folder = tmp_path / "w"
    folder.mkdir()
    w = _weights(folder / "mcga-tiny.safetensors", "mcga-tiny", {"model": "mcga-tiny", "steps": 25})
    weights.write_manifest({"files": {w.name: {"sha256": weights.sha256_file(w), "steps": 25}}}, folder)
    reads, hashes = [], []
    load, sha = weights.load_state_dict, weights.sha256_file
    monkeypatch.setattr(weights, "load_state_dict", lambda p, *a, **k: reads.append(p) or load(p, *a, **k))
    monkeypatch.setattr(weights, "sha256_file", lambda p: hashes.append(p) or sha(p))
    tr = _mcga(tmp_path / "ft", stage=2, init_weights=str(w))
    assert tr.cfg.init_steps == 25 and reads == [w] and hashes == []
    # the manifest says otherwise: it decides when it lists this very file (as recorded_steps)
    _, meta = load(w)
    weights.write_manifest({"files": {w.name: {"sha256": sha(w), "steps": 40}}}, folder)
    assert init_steps(w, meta) == 40 == weights.recorded_steps(w)
    weights.write_manifest({"files": {w.name: {"sha256": "0" * 64, "steps": 40}}}, folder)
    assert init_steps(w, meta) == 25 == weights.recorded_steps(w)
    # a training checkpoint as initial weights: its step plus the steps behind it
    assert init_steps(tmp_path / "x.pt", {"step": 7, "training_config": {"init_steps": 3}}) == 10
