"""Training on a chosen device: --device is passed through to the three trainers.

The CPU tests run everywhere; the CUDA ones are marked gpu and skip without a GPU.
"""
import numpy as np
import pytest
import torch

from hsirestore.errors import HsiRestoreError


def _mcga(tmp_path, device):
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    synth = SyntheticSpectra(seed=1)
    cubes = [synth.sample(32) for _ in range(2)]
    common = dict(preset="mcga-tiny", batch_size=2, patch=16, warmup=1, log_every=2,
                  restart_every=2, threads=1, device=device)
    Trainer(TrainConfig(stage=1, steps=4, **common), tmp_path, cubes=cubes,
            synthetic=synth).run(echo=lambda s: None)
    wl = np.arange(400.0, 701.0, 10.0)
    cam = np.stack([np.exp(-((wl - c) / 40) ** 2) for c in (600, 540, 460)]).astype(np.float32)
    tr = Trainer(TrainConfig(stage=2, steps=3, **common), tmp_path, cubes=cubes, synthetic=synth,
                 cameras=(cam, [cam]))
    r = tr.run(echo=lambda s: None)
    assert next(tr.model.parameters()).device.type == torch.device(device).type
    assert np.isfinite(r["loss_last"])


def _hsivar(tmp_path, device):
    from hsirestore.training.hsivar import HsivarTrainConfig, train

    rng = np.random.default_rng(0)
    scenes = [rng.random((31, 32, 32)).astype(np.float32) for _ in range(2)]
    for stage in (1, 2):
        cfg = HsivarTrainConfig(stage=stage, preset="hsivar-tiny", out=str(tmp_path), steps=2,
                                batch_size=2, patch=16, val_every=0, log_every=1, threads=1,
                                device=device)
        last = train(cfg, scenes=scenes, val_scenes=[], log=lambda s: None)
        assert np.isfinite(last["loss"])


def test_mcga_training_on_cpu_device(tmp_path):
    _mcga(tmp_path, "cpu")


def test_hsivar_training_on_cpu_device(tmp_path):
    _hsivar(tmp_path, "cpu")


def test_unknown_device_is_refused(tmp_path):
    with pytest.raises(HsiRestoreError):
        _hsivar(tmp_path, "tpu")


@pytest.mark.gpu
def test_mcga_training_on_cuda(tmp_path):
    _mcga(tmp_path, "cuda")


@pytest.mark.gpu
def test_hsivar_training_on_cuda(tmp_path):
    _hsivar(tmp_path, "cuda")
