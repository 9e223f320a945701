"""Training commands: Ctrl-C checkpoints, exact resumes, run-folder and resume checks, option
checks, export checks (wrong checkpoint kinds, --force), mcga step-0 errors and the cassi log
after a resume. Tiny presets, a few steps, generated data."""
import json
import os
import signal

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hsirestore.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def _invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def _one_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code not in (0, 3) and len(lines) == 1, (r.exit_code, r.output)
    return lines[0]


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _quiet(*_):
    pass


def _interrupt_at(step: int):
    """A ``log`` callback that acts as Ctrl-C right after the log line of ``step``."""
    def log(msg):
        if isinstance(msg, str) and msg.startswith("{") and json.loads(msg).get("step") == step:
            raise KeyboardInterrupt
    return log


@pytest.fixture
def sigint_in_scheduler_step(monkeypatch):
    """Factory: send a real SIGINT to this process from inside the n-th LambdaLR.step() call
    (the one at construction counts), i.e. while a cassi/hsivar step commits its update."""
    def arm(n: int):
        orig = torch.optim.lr_scheduler.LambdaLR.step
        calls = []

        def step(self, *a, **k):
            calls.append(1)
            if len(calls) == n:
                os.kill(os.getpid(), signal.SIGINT)
            return orig(self, *a, **k)

        monkeypatch.setattr(torch.optim.lr_scheduler.LambdaLR, "step", step)
    return arm


# ----------------------------------------------------------------------------- cassi
def _cassi_cfg(tmp_path, name, steps, **kw):
    from hsirestore.training.cassi import CassiTrainConfig

    base = dict(preset="s2former-tiny", out=str(tmp_path / name), steps=steps, batch_size=2,
                patch=16, log_every=1, val_every=0, aux_steps=2, warmup=2, threads=1)
    return CassiTrainConfig(**{**base, **kw})


def test_cassi_ctrl_c_checkpoints_the_last_whole_step_and_resumes_exactly(
        fake_cassi_data, tmp_path, sigint_in_scheduler_step):
    from hsirestore.training.cassi import train

    data = fake_cassi_data(tmp_path / "data")
    train(_cassi_cfg(tmp_path, "full", 5), data_dir=data, log=_quiet)
    # a real SIGINT while step 3 commits: deferred to the end of the step, then checkpointed
    sigint_in_scheduler_step(4)
    msgs = []
    with pytest.raises(KeyboardInterrupt):
        train(_cassi_cfg(tmp_path, "int", 5), data_dir=data, log=msgs.append)
    assert any("interrupted at step 3" in str(m) for m in msgs), msgs
    assert torch.load(tmp_path / "int" / "last.pt", weights_only=True)["step"] == 3
    # Ctrl-C between steps (here: while logging step 4)
    with pytest.raises(KeyboardInterrupt):
        train(_cassi_cfg(tmp_path, "int", 5), resume=True, data_dir=data, log=_interrupt_at(4))
    assert torch.load(tmp_path / "int" / "last.pt", weights_only=True)["step"] == 4
    train(_cassi_cfg(tmp_path, "int", 5), resume=True, data_dir=data, log=_quiet)
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    assert resumed["step"] == 5
    _same_weights(full["model"], resumed["model"])


def test_cassi_interrupt_before_the_first_step_writes_nothing(fake_cassi_data, tmp_path, monkeypatch):
    import hsirestore.training.cassi as tc

    data = fake_cassi_data(tmp_path / "data")

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tc, "simulate", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tc.train(_cassi_cfg(tmp_path, "run", 5), data_dir=data, log=_quiet)
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing to continue: rerun freely
    monkeypatch.undo()
    tc.train(_cassi_cfg(tmp_path, "run", 1), data_dir=data, log=_quiet)


def test_cassi_cli_ctrl_c_exits_130_with_a_checkpoint(fake_cassi_data, tmp_path, monkeypatch):
    import hsirestore.training.cassi as tc

    data = fake_cassi_data(tmp_path / "data")
    orig, calls = tc.simulate, []

    def simulate(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(tc, "simulate", simulate)
    r = _invoke("train", "cassi", "--preset", "s2former-tiny", "--data", data, "--out", tmp_path / "run",
                "--steps", 100, "--batch-size", 1, "--patch", 16, "--val-every", 0, "--threads", 1)
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert "interrupted at step 2" in r.stdout
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2


def test_cassi_first_log_line_after_a_resume_averages_the_steps_run(fake_cassi_data, tmp_path):
    from hsirestore.training.cassi import train

    data = fake_cassi_data(tmp_path / "data")
    # (all steps in the warm-up: the learning rate does not depend on --steps)
    train(_cassi_cfg(tmp_path, "ref", 5, warmup=100), data_dir=data, log=_quiet)
    per_step = [json.loads(x)["loss"] for x in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    train(_cassi_cfg(tmp_path, "run", 3, log_every=5, warmup=100), data_dir=data, log=_quiet)
    train(_cassi_cfg(tmp_path, "run", 5, log_every=5, warmup=100), resume=True, data_dir=data, log=_quiet)
    (line,) = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert line["step"] == 5
    assert line["loss"] == pytest.approx(np.mean(per_step[3:5]), rel=1e-6)


def test_cassi_run_folder_and_resume_checks(fake_cassi_data, tmp_path):
    from hsirestore.training.cassi import train

    data = fake_cassi_data(tmp_path / "data")
    train(_cassi_cfg(tmp_path, "run", 2), data_dir=data, log=_quiet)
    base = ["train", "cassi", "--data", data, "--steps", 3, "--batch-size", 1, "--patch", 16,
            "--val-every", 0, "--threads", 1]
    log_before = (tmp_path / "run" / "log.jsonl").read_text()
    line = _one_line(_invoke(*base, "--preset", "s2former-tiny", "--out", tmp_path / "run"))
    assert "last.pt exists; pass --resume to continue it or use another --out" in line
    line = _one_line(_invoke(*base, "--preset", "s2former-compact", "--out", tmp_path / "run", "--resume"))
    assert "holds s2former-tiny weights, not s2former-compact weights (pass --preset s2former-tiny" in line
    line = _one_line(_invoke(*base, "--preset", "s2former-tiny", "--out", tmp_path / "run",
                             "--resume", "--no-mask-aware"))
    assert "mask-aware" in line
    # the refused commands left the run as it was
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2
    assert (tmp_path / "run" / "log.jsonl").read_text() == log_before
    line = _one_line(_invoke(*base, "--preset", "s2former-tiny", "--out", tmp_path / "typo", "--resume"))
    assert "no checkpoint" in line and str(tmp_path / "typo" / "last.pt") in line
    assert not (tmp_path / "typo").exists()
    # a truncated checkpoint: one line, not a torch traceback
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "last.pt").write_bytes((tmp_path / "run" / "last.pt").read_bytes()[:500])
    line = _one_line(_invoke(*base, "--preset", "s2former-tiny", "--out", tmp_path / "bad", "--resume"))
    assert "cannot read the checkpoint" in line


def test_cassi_resume_with_other_explicit_model_options_is_refused(fake_cassi_data, tmp_path):
    from hsirestore.training.cassi import train

    data = fake_cassi_data(tmp_path / "data")
    tiny = dict(stages=2, embed_dim=8, depth=1, num_heads=1, spe_dim_head=8)
    train(_cassi_cfg(tmp_path, "run", 1, preset="s2former-unfolded", batch_size=1,
                     model_overrides=tiny), data_dir=data, log=_quiet)
    r = _invoke("train", "cassi", "--preset", "s2former-unfolded", "--stages", 3, "--data", data,
                "--out", tmp_path / "run", "--resume", "--steps", 2, "--patch", 16)
    assert "was trained with stages=2 (not 3)" in _one_line(r)


@pytest.mark.parametrize("args,expected", [
    (["--log-every", "0"], "--log-every must be >= 1; got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1; got 0"),
    (["--steps", "0"], "--steps must be >= 1; got 0"),
    (["--steps", "-5"], "--steps must be >= 1; got -5"),
    (["--patch", "0"], "--patch must be >= 1; got 0"),
    (["--patch", "12"], "--patch must be a multiple of 8"),
    (["--patch", "56"], "--patch 56 is larger than the CAVE train scene s0 (48x48)"),
    (["--lr", "-1"], "--lr must be a finite number > 0; got -1.0"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--max-minutes", "-1"], "--max-minutes must be >= 0; got -1.0"),
    (["--ckpt-minutes", "-1"], "--ckpt-minutes must be > 0; got -1.0"),
    (["--shot-noise", "-1"], "--shot-noise must be a finite number >= 0; got -1.0"),
    (["--val-every", "-1"], "--val-every must be >= 0"),
    (["--preset", "hsivar-compact"], "hsivar-compact is a restore (HSI-VAR) model, not a CASSI preset"),
    (["--preset", "mcga-tiny"], "mcga-tiny is an rgb2hsi (MCGA) model, not a CASSI preset"),
])
def test_cassi_option_errors(fake_cassi_data, tmp_path, args, expected):
    data = fake_cassi_data(tmp_path / "data")
    r = _invoke("train", "cassi", "--preset", "s2former-tiny", "--data", data, "--out", tmp_path / "run",
                "--steps", 2, "--batch-size", 1, "--patch", 16, "--val-every", 0, "--threads", 1, *args)
    assert expected in _one_line(r)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- hsivar
def _scenes(n=2, size=32):
    rng = np.random.default_rng(0)
    return [rng.random((31, size, size)).astype(np.float32) for _ in range(n)]


def _hsivar_cfg(tmp_path, name, stage, steps, **kw):
    from hsirestore.training.hsivar import HsivarTrainConfig

    base = dict(stage=stage, preset="hsivar-tiny", out=str(tmp_path / name), steps=steps,
                batch_size=2, patch=16, lr=3e-3, warmup=2, log_every=1, val_every=0, threads=1)
    return HsivarTrainConfig(**{**base, **kw})


def test_hsivar_stage1_resume_is_exact_across_dead_code_restarts(tmp_path):
    from hsirestore.training.hsivar import train

    sc = _scenes()
    # restarts at steps 4 and 8 (before 0.8 * 12); all steps in the warm-up, so the learning
    # rate does not depend on --steps and the 6-step run is the first half of the 12-step one
    kw = dict(restart_every=4, warmup=100)
    train(_hsivar_cfg(tmp_path, "full", 1, 12, **kw), scenes=sc, log=_quiet)
    train(_hsivar_cfg(tmp_path, "half", 1, 6, **kw), scenes=sc, log=_quiet)
    ck = torch.load(tmp_path / "half/stage1/last.pt", weights_only=True)
    assert ck["quantizer_usage"].sum() > 0  # counted since the restart at step 4
    train(_hsivar_cfg(tmp_path, "half", 1, 12, **kw), resume=True, scenes=sc, log=_quiet)
    _same_weights(torch.load(tmp_path / "full/stage1/last.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "half/stage1/last.pt", weights_only=True)["model"])


def test_hsivar_checkpoints_without_usage_still_resume(tmp_path):
    from hsirestore.training.hsivar import train

    sc = _scenes()
    train(_hsivar_cfg(tmp_path, "run", 1, 2), scenes=sc, log=_quiet)
    path = tmp_path / "run/stage1/last.pt"
    ck = torch.load(path, weights_only=True)
    del ck["quantizer_usage"]  # as written by 0.1.0
    torch.save(ck, path)
    msgs = []
    train(_hsivar_cfg(tmp_path, "run", 1, 3), resume=True, scenes=sc, log=msgs.append)
    assert any("at step 2" in str(m) for m in msgs)


def test_hsivar_ctrl_c_in_both_stages_checkpoints_and_resumes_exactly(tmp_path, sigint_in_scheduler_step):
    from hsirestore.training.hsivar import train

    sc = _scenes()
    train(_hsivar_cfg(tmp_path, "full", 1, 4), scenes=sc, log=_quiet)
    with pytest.raises(KeyboardInterrupt):
        train(_hsivar_cfg(tmp_path, "int", 1, 4), scenes=sc, log=_interrupt_at(2))
    assert torch.load(tmp_path / "int/stage1/last.pt", weights_only=True)["step"] == 2
    train(_hsivar_cfg(tmp_path, "int", 1, 4), resume=True, scenes=sc, log=_quiet)
    _same_weights(torch.load(tmp_path / "full/stage1/last.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "int/stage1/last.pt", weights_only=True)["model"])
    # stage 2: a real SIGINT while step 2 commits
    train(_hsivar_cfg(tmp_path, "full", 2, 3), scenes=sc, log=_quiet)
    sigint_in_scheduler_step(3)
    msgs = []
    with pytest.raises(KeyboardInterrupt):
        train(_hsivar_cfg(tmp_path, "int", 2, 3, init=str(tmp_path / "full/stage1/last.pt")),
              scenes=sc, log=msgs.append)
    assert any("interrupted at step 2" in str(m) for m in msgs), msgs
    assert torch.load(tmp_path / "int/stage2/last.pt", weights_only=True)["step"] == 2
    train(_hsivar_cfg(tmp_path, "int", 2, 3), resume=True, scenes=sc, log=_quiet)
    _same_weights(torch.load(tmp_path / "full/stage2/last.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "int/stage2/last.pt", weights_only=True)["model"])


def test_hsivar_run_folder_and_resume_checks(tmp_path):
    from hsirestore.errors import ModelError, OptionError
    from hsirestore.training.hsivar import train

    sc = _scenes()
    train(_hsivar_cfg(tmp_path, "run", 1, 2), scenes=sc, log=_quiet)
    from hsirestore.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="last.pt exists; pass --resume to continue it or use another --out"):
        train(_hsivar_cfg(tmp_path, "run", 1, 3), scenes=sc, log=_quiet)
    with pytest.raises(ModelError, match="holds hsivar-tiny weights, not hsivar-compact weights"):
        train(_hsivar_cfg(tmp_path, "run", 1, 3, preset="hsivar-compact"), resume=True, scenes=sc, log=_quiet)
    with pytest.raises(OptionError, match=r"no checkpoint .*stage2[/\\]last.pt"):
        train(_hsivar_cfg(tmp_path, "run", 2, 3), resume=True, scenes=sc, log=_quiet)
    assert torch.load(tmp_path / "run/stage1/last.pt", weights_only=True)["step"] == 2
    assert not (tmp_path / "run" / "stage2").exists()


@pytest.mark.parametrize("args,expected", [
    (["--log-every", "0"], "--log-every must be >= 1; got 0"),
    (["--patch", "0"], "--patch must be >= 1; got 0"),
    (["--patch", "-4"], "--patch must be >= 1"),
    (["--patch", "64"], "--patch 64 is larger than a training scene"),
    (["--lr", "-1"], "--lr must be a finite number > 0; got -1.0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--max-minutes", "-1"], "--max-minutes must be >= 0"),
    (["--ckpt-minutes", "-1"], "--ckpt-minutes must be > 0"),
    (["--preset", "s2former-tiny"], "s2former-tiny is a CASSI model, not a restore (HSI-VAR) preset"),
])
def test_hsivar_option_errors(tmp_path, args, expected):
    import h5py

    (tmp_path / "data" / "cave" / "train").mkdir(parents=True)
    with h5py.File(tmp_path / "data" / "cave" / "train" / "a.h5", "w") as f:
        ds = f.create_dataset("cube", data=np.full((31, 32, 32), 1000, np.uint16))
        ds.attrs["scale"] = 1 / 4095
        f["wavelength_nm"] = np.arange(400, 701, 10)
    r = _invoke("train", "hsivar", "--stage", 1, "--preset", "hsivar-tiny", "--data", tmp_path / "data",
                "--out", tmp_path / "run", "--steps", 2, "--batch-size", 1, "--patch", 16,
                "--val-every", 0, "--threads", 1, *args)
    assert expected in _one_line(r)
    assert not (tmp_path / "run" / "stage1" / "last.pt").exists()


# ----------------------------------------------------------------------------- mcga
def _mcga(tmp_path, name, steps, resume=False, **kw):
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    cubes = [SyntheticSpectra(seed=9).sample(32) for _ in range(2)]
    cfg = dict(stage=1, preset="mcga-tiny", steps=steps, batch_size=2, patch=16, warmup=2,
               log_every=1, ckpt_every=1000, restart_every=3, threads=1)
    return Trainer(TrainConfig(**{**cfg, **kw}), tmp_path / name, resume=resume, cubes=cubes,
                   synthetic=SyntheticSpectra(seed=3))


def _mcga_losses(path):
    return [json.loads(x)["loss"] for x in path.read_text().splitlines()]


def test_mcga_resume_continues_exactly(tmp_path):
    # dead-code restarts of source 1 at steps 6 and 12: the restart at step 6 re-initialises
    # codes from features, so the window of the one at step 12 (steps 7-12) counts varied
    # code use from before the resume at 8 too; all steps in the warm-up, so the learning
    # rate does not depend on --steps and the 8-step run is the start of the 12-step one
    _mcga(tmp_path, "full", 12, warmup=100).run(echo=_quiet)
    _mcga(tmp_path, "half", 8, warmup=100).run(echo=_quiet)
    ck = torch.load(tmp_path / "half" / "stage1.pt", weights_only=True)
    assert {"cave_rng", "synth_rng", "usage"} <= ck.keys() and ck["usage"]
    _mcga(tmp_path, "half", 12, resume=True, warmup=100).run(echo=_quiet)
    _same_weights(torch.load(tmp_path / "full" / "stage1.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "half" / "stage1.pt", weights_only=True)["model"])
    assert _mcga_losses(tmp_path / "half" / "log.jsonl") == _mcga_losses(tmp_path / "full" / "log.jsonl")


def test_mcga_ctrl_c_resumes_exactly(tmp_path):
    _mcga(tmp_path, "full", 6).run(echo=_quiet)
    with pytest.raises(KeyboardInterrupt):
        _mcga(tmp_path, "int", 6).run(echo=_interrupt_at(3))
    assert torch.load(tmp_path / "int" / "stage1.pt", weights_only=True)["step"] == 3
    _mcga(tmp_path, "int", 6, resume=True).run(echo=_quiet)
    _same_weights(torch.load(tmp_path / "full" / "stage1.pt", weights_only=True)["model"],
                  torch.load(tmp_path / "int" / "stage1.pt", weights_only=True)["model"])


def test_mcga_error_at_step_0_leaves_no_checkpoint(tmp_path, monkeypatch):
    from hsirestore.errors import OptionError
    from hsirestore.training.mcga import Trainer

    with pytest.raises(OptionError, match="--patch 64 is larger than a training scene"):
        _mcga(tmp_path, "run", 2, patch=64)
    assert not (tmp_path / "run").exists()

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "_stage1_step", boom)
    with pytest.raises(RuntimeError):
        _mcga(tmp_path, "run", 2).run(echo=_quiet)
    assert not (tmp_path / "run" / "stage1.pt").exists()
    monkeypatch.undo()
    assert _mcga(tmp_path, "run", 2).run(echo=_quiet)["step"] == 2  # the rerun is not blocked


def test_mcga_resume_checks(tmp_path):
    from hsirestore.errors import ModelError, OptionError

    with pytest.raises(OptionError, match="no checkpoint"):
        _mcga(tmp_path, "run", 2, resume=True)
    _mcga(tmp_path, "run", 1).run(echo=_quiet)
    with pytest.raises(ModelError, match="holds mcga-tiny weights, not mcga-compact weights"):
        _mcga(tmp_path, "run", 2, resume=True, preset="mcga-compact")


@pytest.mark.parametrize("args,expected", [
    (["--log-every", "0"], "--log-every must be >= 1; got 0"),
    (["--ckpt-every", "0"], "--ckpt-every must be >= 1; got 0"),
    (["--patch", "0"], "--patch must be >= 1; got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--lr", "-1"], "--lr must be a finite number > 0; got -1.0"),
    (["--max-minutes", "-1"], "--max-minutes must be >= 0"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--preset", "hsivar-tiny"], "hsivar-tiny is a restore (HSI-VAR) model, not an rgb2hsi (MCGA) preset"),
])
def test_mcga_option_errors(tmp_path, args, expected):
    r = _invoke("train", "mcga", "--stage", 1, "--preset", "mcga-tiny", "--out", tmp_path / "run",
                "--steps", 2, "--batch-size", 1, "--patch", 16, "--threads", 1, *args)
    assert expected in _one_line(r)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- exports
@pytest.fixture
def fake_checkpoints(tmp_path):
    """Checkpoint-shaped files of each kind (enough for the kind checks), and broken ones."""
    d = tmp_path / "ck"
    d.mkdir()
    torch.save({"model": {}, "step": 1, "config": {"preset": "s2former-tiny", "mask_aware": True}},
               d / "cassi.pt")
    torch.save({"model": {}, "step": 1, "config": {"preset": "hsivar-tiny", "stage": 2}}, d / "hsivar.pt")
    torch.save({"model": {}, "step": 1, "preset": "mcga-tiny", "stage": 2,
                "config": {"preset": "mcga-tiny", "stage": 2}}, d / "mcga.pt")
    torch.save({"model": {}, "step": 1, "config": {"preset": "hsivar-tiny", "stage": 1}}, d / "hsivar1.pt")
    (d / "trunc.pt").write_bytes((d / "cassi.pt").read_bytes()[:100])
    (d / "w.safetensors").write_bytes(b"not really")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": {}, "step": 1, "x": Evil()}, d / "evil.pt")
    return d


@pytest.mark.parametrize("cmd,file,expected", [
    ("cassi-export", "w.safetensors", "holds exported weights, not a training checkpoint"),
    ("cassi-export", "hsivar.pt", "is an HSI-VAR (train hsivar) checkpoint, not a CASSI (train cassi) one; "
                                  "export it with 'hsirestore train hsivar-export'"),
    ("cassi-export", "mcga.pt", "is an MCGA (train mcga) checkpoint, not a CASSI"),
    ("cassi-export", "trunc.pt", "cannot read the checkpoint"),
    ("cassi-export", "evil.pt", "cannot read the checkpoint"),
    ("hsivar-export", "mcga.pt", "is an MCGA (train mcga) checkpoint, not an HSI-VAR"),
    ("hsivar-export", "cassi.pt", "is a CASSI (train cassi) checkpoint, not an HSI-VAR"),
    ("hsivar-export", "hsivar1.pt", "is a stage-1 checkpoint"),
    ("hsivar-export", "w.safetensors", "holds exported weights"),
    ("mcga-export", "cassi.pt", "is a CASSI (train cassi) checkpoint, not an MCGA"),
    ("mcga-export", "hsivar.pt", "is an HSI-VAR (train hsivar) checkpoint, not an MCGA"),
    ("mcga-export", "trunc.pt", "cannot read the checkpoint"),
])
def test_exports_refuse_other_kinds_of_checkpoint(fake_checkpoints, tmp_path, cmd, file, expected):
    out = tmp_path / "out" / "x.safetensors"
    r = _invoke("train", cmd, fake_checkpoints / file, "-o", out)
    assert expected in _one_line(r)
    assert not out.parent.exists()


def test_export_needs_force_to_overwrite(fake_cassi_data, tmp_path, monkeypatch):
    import hsirestore.training.cassi as tc
    from hsirestore.weights import read_manifest

    monkeypatch.setattr(tc, "shared_data_dir", lambda: tmp_path / "absent")  # skip validation
    data = fake_cassi_data(tmp_path / "data")
    tc.train(_cassi_cfg(tmp_path, "run", 1), data_dir=data, log=_quiet)
    ck = tmp_path / "run" / "last.pt"
    out = tmp_path / "w" / "tiny.safetensors"
    out.parent.mkdir()
    assert _invoke("train", "cassi-export", ck, "-o", out).exit_code == 0
    before = out.read_bytes()
    line = _one_line(_invoke("train", "cassi-export", ck, "-o", out, "--note", "again"))
    assert "exists; pass --force" in line and out.read_bytes() == before
    r = _invoke("train", "cassi-export", ck, "-o", out, "--note", "again", "--force")
    assert r.exit_code == 0, r.output
    assert read_manifest(out.parent)["files"]["tiny.safetensors"]["note"] == "again"
    out.unlink()  # the manifest entry alone is also protected
    assert "already lists tiny.safetensors; pass --force" in _one_line(_invoke("train", "cassi-export", ck, "-o", out))
    # without -o: the weights folder's file (the shipped weights) is protected the same way
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path / "shipped"))
    (tmp_path / "shipped").mkdir()
    assert _invoke("train", "cassi-export", ck).exit_code == 0
    assert (tmp_path / "shipped" / "s2former-tiny.safetensors").exists()
    assert "exists; pass --force" in _one_line(_invoke("train", "cassi-export", ck))


# ----------------------------------------------------------------------------- the guard
def test_interrupt_guard_defers_sigint_only_inside_a_commit():
    from hsirestore.training.common import InterruptGuard

    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with InterruptGuard() as guard:
            with pytest.raises(KeyboardInterrupt):  # outside a commit: at once
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
            with guard.commit():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                done.append(1)  # the commit finished before the interrupt
    assert done == [1] and not guard.broken
    assert signal.getsignal(signal.SIGINT) is before


def test_torch_rng_state_roundtrip_and_cuda_part(monkeypatch):
    """Checkpoints carry torch's CPU generator and, once CUDA is in use, every GPU's (GPU
    resumes drew different channel masks / dead-code picks before); the CUDA part is only
    restored onto the same number of GPUs."""
    import torch

    from hsirestore.training.common import set_torch_rng_state, torch_rng_state

    state = torch_rng_state()
    first = torch.rand(4)
    set_torch_rng_state(state)
    assert torch.equal(torch.rand(4), first)

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1, 2], dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: restored.append(s))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    state = torch_rng_state()
    assert [t.tolist() for t in state["cuda_rng"]] == [[1, 2]]
    set_torch_rng_state(state)
    assert len(restored) == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # another machine: CPU part only
    set_torch_rng_state(state)
    assert len(restored) == 1
