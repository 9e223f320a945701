"""Training S2-Transformer for CASSI on CAVE scenes (simulated measurements).

Data: the CAVE train scenes interpolated onto the 28 CASSI wavelengths, random P x P crops
with flips / 90-degree rotations and a random gain, coded by random crops of the simulation
mask (mask_256.mat) or the real-system mask (mask_real_660.mat), optional shot noise.
GAP-TV-initialised presets (``s2former-gaptv``) also need each patch's GAP-TV estimate: read
from a precomputed pool folder (``gaptv_pool``, CPU) or made on the training device as it
goes (``gaptv_online``, meant for GPUs).

Loss (mask-aware learning, after the paper): for the first ``aux_steps`` steps the
auxiliary head learns to predict the coded signal mask * x from the model input; after
that the reconstruction loss is weighted per pixel by

    w = 1 + beta * eps / (a + eps),     a = mean over bands of the auxiliary prediction

(detached), i.e. pixels where little light passed the mask weigh up to 1 + beta times more.
The weights are divided by their mean so the loss scale does not change. Intermediate
predictions (pins) add ``pin_weight`` times their L1 loss.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hsirestore.errors import ModelError, OptionError
from hsirestore.physics.cassi import (CASSI_WAVELENGTHS_28, cassi_forward, interpolate_bands,
                                      mean_intensities, model_input)
from hsirestore.training.cassi_pool import load_mask
from hsirestore.training.cave import centre_crop, load_cave, shared_data_dir
from hsirestore.training.common import set_torch_rng_state, torch_rng_state

#: Mean reflectance the compact model is trained around; decoders scale inputs to it.
TRAIN_MEAN = 0.15
#: Steps between refreshes of an online GAP-TV pool.
REFRESH_EVERY = 20


@dataclass
class CassiTrainConfig:
    preset: str = "s2former-compact"
    out: str = "runs/cassi"
    steps: int = 20000
    batch_size: int = 4
    patch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    max_minutes: float = 0.0  # 0: no limit
    ckpt_minutes: float = 3.0
    log_every: int = 50
    val_every: int = 500
    mask_aware: bool = True
    aux_steps: int = 300
    beta: float = 1.0
    eps: float = 0.05
    pin_weight: float = 0.1
    loss: str = "l1"  # reconstruction loss: l1 (as published) or l2 (fine-tuning for PSNR)
    shot_noise: float = 0.0  # photons at value 1 (0: none)
    gain: tuple = (0.5, 1.5)
    scale_jitter: float = 1.0  # training scales are multiplied by exp(U(-j, j))
    seed: int = 0
    bands: int = 28
    step: int = 2
    model_overrides: dict = field(default_factory=dict)
    init_weights: str = ""  # start from these weights (e.g. the shipped ones) unless resuming
    init_steps: int | None = None  # training steps behind init_weights (set when training starts)
    reset_output: bool = False  # zero each stage's output conv after init_weights (identity start)
    freeze_stages: int = 0  # unfolded presets: leave the first K stages as they are
    gaptv_pool: str = ""  # folder of precomputed GAP-TV tiles (models with init="gap-tv")
    gaptv_online: int = 0  # instead: a pool of this many tiles made on the training device
    gaptv_tile: int = 256  # tile size of the online pool
    gaptv_refresh: int = 16  # online pool: tiles remade every REFRESH_EVERY steps
    time_schedule: bool = False  # cosine decay over max_minutes (or steps, whichever is first)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    threads: int = 0  # torch CPU threads; 0: cores - 1 (at least 1, at most 8)


class CassiPatches:
    """Random training batches: (cube (N, 28, P, P), mask (N, P, P)) as float32 tensors."""

    def __init__(self, cfg: CassiTrainConfig, data_dir: Path | None = None, split: str = "train"):
        self.cfg = cfg
        data_dir = data_dir or shared_data_dir()
        scenes = load_cave(split) if data_dir == shared_data_dir() else []
        if not scenes:
            from hsirestore.training.cave import load_cave_scene

            scenes = [(p.stem, *load_cave_scene(p)) for p in sorted((data_dir / "cave" / split).glob("*.h5"))]
        if not scenes:
            raise FileNotFoundError(f"no CAVE scenes under {data_dir}/cave/{split}")
        wl = np.asarray(CASSI_WAVELENGTHS_28)
        self.cubes = [interpolate_bands(c, w, wl).astype(np.float32) for _, c, w in scenes]
        self.masks = [load_mask(data_dir / "cassi" / "mask_256.mat"),
                      load_mask(data_dir / "cassi" / "mask_real_660.mat")]
        sizes = [(f"CAVE {split} scene {n}", c.shape[1:]) for n, c, _ in scenes]
        sizes += [(f"mask cassi/{f}", m.shape) for f, m in zip(("mask_256.mat", "mask_real_660.mat"),
                                                              self.masks)]
        for what, (h, w) in sizes:
            if min(h, w) < cfg.patch:
                raise OptionError(f"--patch {cfg.patch} is larger than the {what} ({h}x{w})")
        self.rng = np.random.default_rng(cfg.seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        p, rng = self.cfg.patch, self.rng
        xs, ms = [], []
        for _ in range(self.cfg.batch_size):
            cube = self.cubes[rng.integers(len(self.cubes))]
            r, c = rng.integers(0, cube.shape[1] - p + 1), rng.integers(0, cube.shape[2] - p + 1)
            x = cube[:, r : r + p, c : c + p]
            x = np.rot90(x, rng.integers(4), axes=(1, 2))
            if rng.random() < 0.5:
                x = x[:, :, ::-1]
            x = x * rng.uniform(*self.cfg.gain)
            mask = self.masks[rng.integers(len(self.masks))]
            r, c = rng.integers(0, mask.shape[0] - p + 1), rng.integers(0, mask.shape[1] - p + 1)
            xs.append(np.ascontiguousarray(x))
            ms.append(mask[r : r + p, c : c + p])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms))


class GaptvPatches:
    """Random training batches for GAP-TV-initialised models: (cube (N, 28, P, P),
    mask (N, P, P), GAP-TV estimate (N, 28, P, P)) cropped at one place from the tiles of a
    :class:`~hsirestore.training.cassi_pool.GaptvPool`, with up-down flips (left-right flips
    and rotations would change the dispersion direction the estimates were made with) and
    a random gain (GAP-TV is homogeneous of degree 1 in the measurement)."""

    def __init__(self, cfg: CassiTrainConfig, data_dir: Path | None = None):
        from hsirestore.training.cassi_pool import GaptvPool, load_scenes

        if not cfg.gaptv_pool:
            raise OptionError("a GAP-TV-initialised model needs --gaptv-pool (see train cassi-pool)")
        self.cfg = cfg
        self.pool = GaptvPool(cfg.gaptv_pool, load_scenes(data_dir or shared_data_dir()))
        tile = min(min(m.shape) for m in self.pool.masks)
        if tile < cfg.patch:
            raise OptionError(f"--patch {cfg.patch} is larger than the {tile}-pixel tiles of the "
                              f"GAP-TV pool {cfg.gaptv_pool}")
        self.rng = np.random.default_rng(cfg.seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p, rng = self.cfg.patch, self.rng
        xs, ms, es = [], [], []
        for _ in range(self.cfg.batch_size):
            i = rng.integers(len(self.pool))
            clean, est, mask = self.pool.clean[i], self.pool.gaptv[i], self.pool.masks[i]
            r, c = rng.integers(0, mask.shape[0] - p + 1), rng.integers(0, mask.shape[1] - p + 1)
            x, e, m = clean[:, r : r + p, c : c + p], est[:, r : r + p, c : c + p], mask[r : r + p, c : c + p]
            if rng.random() < 0.5:
                x, e, m = x[:, ::-1], e[:, ::-1], m[::-1]
            g = rng.uniform(*self.cfg.gain)
            xs.append(np.ascontiguousarray(x * g))
            es.append(np.ascontiguousarray(e * g))
            ms.append(np.ascontiguousarray(m))
        return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms)),
                torch.from_numpy(np.stack(es)))


def simulate(x: torch.Tensor, mask: torch.Tensor, bands: int, step: int, shot_noise: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Measurements (N, P, P + step*(bands-1)) of cubes (N, bands, P, P) under masks (N, P, P)."""
    y = cassi_forward(x, mask[:, None], step)
    if shot_noise > 0:
        y = torch.poisson(y.clamp_min(0) * shot_noise, generator=generator) / shot_noise
    return y


def normalised_input(y: torch.Tensor, mask: torch.Tensor, bands: int, step: int,
                     jitter: torch.Tensor | None = None, return_meas: bool = False):
    """(model input (N, bands, H, W), scales (N,)[, normalised measurements (N, H, W')])
    with each measurement scaled so that its estimated mean intensity
    (:func:`~hsirestore.physics.cassi.mean_intensities`) is TRAIN_MEAN (times ``jitter`` (N,)
    when given)."""
    scales = (mean_intensities(y, mask, bands) / TRAIN_MEAN).clamp_min(1e-8)
    if jitter is not None:
        scales = scales * jitter
    yn = y / scales[:, None, None]
    xin = model_input(yn, mask[:, None], bands, step)
    if return_meas:
        return xin, scales, yn
    return xin, scales


def _run(model, xin, mask4, meas, init_est=None):
    """Call single-pass (x, mask) or unfolded (x, mask, meas[, init_est]) models alike."""
    if getattr(model, "stages", None) is not None:
        return model(xin, mask4, meas, init_est=init_est)
    return model(xin, mask4)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over bands of per-band PSNR (peak 1)."""
    mse = ((a - b) ** 2).flatten(-2).mean(-1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


@torch.no_grad()
def validate(model, data_dir: Path, bands: int = 28, step: int = 2) -> dict:
    """Mean PSNR on the CAVE val scenes (256x256 centre crops, mask_256)."""
    from hsirestore.training.cave import load_cave_scene

    dev = next(model.parameters()).device
    mask = torch.from_numpy(load_mask(data_dir / "cassi" / "mask_256.mat")).to(dev)
    wl = np.asarray(CASSI_WAVELENGTHS_28)
    model.eval()
    out = {}
    for path in sorted((data_dir / "cave" / "val").glob("*.h5")):
        cube, w = load_cave_scene(path)
        x = torch.from_numpy(np.ascontiguousarray(centre_crop(interpolate_bands(cube, w, wl), 256)))[None].to(dev)
        y = simulate(x, mask[None], bands, step)
        xin, s, yn = normalised_input(y, mask[None], bands, step, return_meas=True)
        pred, _ = _run(model, xin, mask[None, None], yn)
        out[path.stem] = psnr((pred * s[:, None, None, None]).clamp(0, 1), x)
    model.train()
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out


def _added_stages(model, state: dict) -> list[int]:
    """Indices of the stages of an unfolded ``model`` beyond those in ``state`` (weights of
    fewer stages); none for other models."""
    stages = getattr(model, "stages", None)
    have = {k.split(".")[1] for k in state if k.startswith("stages.")}
    return list(range(len(have), len(stages))) if stages is not None and have else []


def _grow_stages(model, state: dict) -> list[int]:
    """Stages of an unfolded ``model`` beyond those in ``state`` (weights of fewer stages,
    already loaded): each becomes a copy of the last stage in ``state`` with its output
    convolution zeroed, so the grown model starts exactly where the smaller one left off
    (plus one projection onto the measurement per added stage). Returns the indices of the
    added stages."""
    added = _added_stages(model, state)
    if added:
        last = model.stages[added[0] - 1].state_dict()
        with torch.no_grad():
            for i in added:
                model.stages[i].load_state_dict(last)
                model.stages[i].conv_last.weight.zero_()
                model.stages[i].conv_last.bias.zero_()
    return added


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(cfg: CassiTrainConfig, resume: bool = False, data_dir: Path | None = None,
          log=print) -> dict:
    """Run (or resume) training; returns the last validation metrics.

    Without ``resume`` a run folder that holds a checkpoint is refused; with it the
    checkpoint must exist and be for the same preset. Ctrl-C (or an error) after at least
    one step writes a checkpoint of the last whole step before the exception propagates."""
    from hsirestore.registry import build_model
    from hsirestore.training.common import (LoopControl, check_config, check_resume_preset,
                                            check_run_folder, check_task, init_steps,
                                            load_checkpoint, load_weights, require_file,
                                            resume_overrides)

    check_config(cfg)
    check_task(cfg.preset, "cassi")
    if cfg.loss not in ("l1", "l2"):
        raise OptionError(f"loss must be 'l1' or 'l2'; got {cfg.loss!r}")
    out = Path(cfg.out)
    ckpt_path = out / "last.pt"
    check_run_folder(ckpt_path, resume)
    if cfg.init_weights and not resume:  # before the data are set up
        require_file(cfg.init_weights, "--init-weights")
    # one thread fewer than the cores: two OpenMP threads sharing a busy 2-core machine
    # with another job spin-wait and train about 8x slower than one thread
    torch.set_num_threads(cfg.threads or max(1, min(8, (os.cpu_count() or 2) - 1)))
    data_dir = data_dir or shared_data_dir()
    torch.manual_seed(cfg.seed)
    ck = None
    if resume:
        ck = load_checkpoint(ckpt_path)
        check_resume_preset(ckpt_path, ck, cfg.preset)
        run_cfg = ck.get("config") or {}  # the run's architecture, not this invocation's options
        cfg.model_overrides = resume_overrides(ckpt_path, cfg.preset, run_cfg.get("model_overrides"),
                                               cfg.model_overrides, log=log)
        cfg.freeze_stages = int(run_cfg.get("freeze_stages") or 0)
        if "mask_aware" in run_cfg and bool(run_cfg["mask_aware"]) != bool(cfg.mask_aware):
            raise ModelError(f"{ckpt_path} was trained "
                             + ("with mask-aware learning; resume it without --no-mask-aware"
                                if run_cfg["mask_aware"] else
                                "with --no-mask-aware; resume it with --no-mask-aware"))
    model = build_model(cfg.preset, aux_head=cfg.mask_aware, **cfg.model_overrides)
    mult = int(getattr(model, "size_multiple", 1) or 1)
    if cfg.patch % mult:
        raise OptionError(f"--patch must be a multiple of {mult} (the window size of {cfg.preset}); "
                          f"got {cfg.patch}")
    from hsirestore.inference.device import resolve_device

    dev = resolve_device(cfg.device)
    model.to(dev)
    if cfg.freeze_stages:
        n_stages = len(getattr(model, "stages", None) or [])
        if not 0 < cfg.freeze_stages < n_stages:
            raise OptionError(f"freeze_stages must be between 1 and {n_stages - 1} for "
                              f"{cfg.preset} ({n_stages} stages); got {cfg.freeze_stages}")
        for st in model.stages[: cfg.freeze_stages]:
            st.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)

    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    clock = {"t0": time.time()}

    def lr_at(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.time_schedule and cfg.max_minutes:  # the run ends at whichever comes first
            t = max(t, (time.time() - clock["t0"]) / (cfg.max_minutes * 60))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gaptv_init = getattr(model, "init", "adjoint") == "gap-tv"
    if gaptv_init and cfg.gaptv_online:
        from hsirestore.training.cassi_pool import OnlineGaptvPatches, load_scenes

        data = OnlineGaptvPatches(load_scenes(data_dir), load_mask(data_dir / "cassi" / "mask_256.mat"),
                                  load_mask(data_dir / "cassi" / "mask_real_660.mat"),
                                  cfg.gaptv_online, cfg.gaptv_tile, cfg.patch, cfg.batch_size, dev,
                                  gain=cfg.gain, iterations=model.gaptv_iters,
                                  tv_weight=model.gaptv_weight, seed=cfg.seed, log=log)
    else:
        data = GaptvPatches(cfg, data_dir) if gaptv_init else CassiPatches(cfg, data_dir)
    step = 0
    best = {}
    if ck is not None:
        load_weights(model, ck["model"], ckpt_path, cfg.preset)
        try:
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            step = int(ck["step"])
            data.rng.bit_generator.state = ck["data_rng"]
            set_torch_rng_state(ck)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ModelError(f"cannot resume from {ckpt_path}: {type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:200]}") from e
        cfg.init_steps = ck.get("config", {}).get("init_steps")  # steps behind the run's start
        best = ck.get("val", {})
        log(f"resumed from {ckpt_path} at step {step}")
    elif cfg.init_weights:
        from hsirestore.weights import load_state_dict

        # no check of the preset the file names: presets share architectures (the weights
        # of s2former-unfolded start s2former-gaptv); the weights must fit the model
        state, meta = load_state_dict(cfg.init_weights)
        load_weights(model, state, cfg.init_weights, cfg.preset,  # aux head and added stages
                     optional=("aux.", *(f"stages.{i}." for i in _added_stages(model, state))))
        grown = _grow_stages(model, state)
        if grown:
            log(f"stages {grown[0]}..{grown[-1]} added: copies of stage {grown[0] - 1} with "
                "zeroed output convolutions (each starts as the identity)")
        cfg.init_steps = init_steps(cfg.init_weights, meta)
        log(f"initialised from {cfg.init_weights} ({cfg.init_steps} steps behind it)")
        if cfg.reset_output:
            stages = getattr(model, "stages", None) or [model]
            with torch.no_grad():
                for st in stages:
                    st.conv_last.weight.zero_()
                    st.conv_last.bias.zero_()
            log("output convolutions reset to zero (each stage starts as the identity)")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "config.json", "w") as f:
        json.dump(asdict(cfg), f, indent=2)

    def rng_state() -> dict:
        return {"data_rng": data.rng.bit_generator.state, **torch_rng_state()}

    def checkpoint(rngs: dict | None = None):
        _save(ckpt_path, {"model": model.state_dict(), "opt": opt.state_dict(),
                          "sched": sched.state_dict(), "step": step, "config": asdict(cfg),
                          "val": best, **(rngs or rng_state())})

    running, count = 0.0, 0  # loss sum and steps since the last log line
    ctl = LoopControl(checkpoint, ckpt_path, log, lambda: step, rng_state, cfg.ckpt_minutes,
                      cfg.max_minutes)
    clock["t0"] = ctl.t0
    model.train()
    # leaving the loop: a checkpoint (on Ctrl-C or an error: of the last whole step, re-raised)
    with ctl, open(out / "log.jsonl", "a") as logf:
        while step < cfg.steps:
            if cfg.gaptv_refresh and step and step % REFRESH_EVERY == 0 and hasattr(data, "refresh"):
                data.refresh(cfg.gaptv_refresh)
            x, mask, *est = data.batch()
            x, mask = x.to(dev), mask.to(dev)
            y = simulate(x, mask, cfg.bands, cfg.step, cfg.shot_noise)
            jitter = torch.exp((torch.rand(x.shape[0], device=dev) * 2 - 1) * cfg.scale_jitter)
            xin, s, yn = normalised_input(y, mask, cfg.bands, cfg.step, jitter, return_meas=True)
            target = x / s[:, None, None, None]
            init_est = est[0].to(dev) / s[:, None, None, None] if est else None
            m4 = mask[:, None]
            pred, pins = _run(model, xin, m4, yn, init_est)
            err = (pred - target).abs() if cfg.loss == "l1" else (pred - target).square()
            loss_aux = torch.zeros((), device=dev)
            weight = None
            if cfg.mask_aware:
                coded = model.predict_coded(xin, m4)
                if step < cfg.aux_steps:
                    loss_aux = F.l1_loss(coded, target * m4)
                else:
                    a = coded.detach().mean(1, keepdim=True).clamp_min(0)
                    weight = 1 + cfg.beta * cfg.eps / (a + cfg.eps)
                    weight = weight / weight.mean()
            loss_rec = (err * weight).mean() if weight is not None else err.mean()
            pin_loss = F.l1_loss if cfg.loss == "l1" else F.mse_loss
            loss_pin = sum(pin_loss(p, target) for p in pins) / max(1, len(pins))
            loss = loss_rec + cfg.pin_weight * loss_pin + loss_aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            with ctl.commit():  # Ctrl-C waits until the step is whole
                opt.step()
                sched.step()
                step += 1
            running += loss_rec.item()
            count += 1
            if step % cfg.log_every == 0:
                # mean over the steps run since the last line (fewer after a resume)
                rec = {"step": step, "loss": running / count, "aux": loss_aux.item(),
                       "lr": sched.get_last_lr()[0], "minutes": (time.time() - ctl.t0) / 60}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(json.dumps(rec))
                running, count = 0.0, 0
            if cfg.val_every and step % cfg.val_every == 0 and (data_dir / "cave" / "val").is_dir():
                best = {"step": step, **validate(model, data_dir, cfg.bands, cfg.step)}
                logf.write(json.dumps({"val": best}) + "\n")
                logf.flush()
                log(json.dumps({"val": best}))
            if ctl.after_step(step):  # checkpoint when due; True at the time limit
                break
    return best


def _validate_state(name: str, state: dict, cfg: dict, path) -> dict:
    """Validation metrics of the weights (from the checkpoint ``path``) as shipped (rounded
    to fp16 first)."""
    from hsirestore.registry import build_model
    from hsirestore.training.common import load_weights

    data_dir = shared_data_dir()
    if not (data_dir / "cave" / "val").is_dir():
        return {}
    model = build_model(name, **cfg.get("model_overrides", {}))
    load_weights(model, {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()},
                 path, name)
    return {k: round(v, 3) for k, v in validate(model, data_dir).items()}


def _pool_description(cfg: dict) -> str:
    if cfg.get("gaptv_online"):
        return (f"; GAP-TV estimates made on the training device from random rotated/flipped "
                f"{cfg.get('gaptv_tile', 256)}-pixel scene crops (pool of {cfg['gaptv_online']} "
                f"tiles, {cfg.get('gaptv_refresh', 0)} remade every {REFRESH_EVERY} steps)")
    if cfg.get("gaptv_pool"):
        return ("; GAP-TV estimates precomputed on 256x256 tiles of every scene (train "
                "cassi-pool: 4 tiles coded by mask_256.mat and one by a random "
                "mask_real_660.mat crop per scene)")
    return ""


def export_weights(checkpoint, out_file=None, note: str = "", overwrite: bool = True) -> dict:
    """Write the model of a training checkpoint as fp16 safetensors into weights/ and record
    it in weights/manifest.json (sha256, config, training data, steps, validation metrics).
    The auxiliary (mask-aware learning) head is left out: it is only used in training.
    ``overwrite=False`` (the CLI without --force) refuses to replace an existing file or
    manifest entry; a checkpoint of another kind is a one-line ModelError."""
    from hsirestore.registry import get_spec
    from hsirestore.training.common import check_export_target, load_checkpoint, require_kind
    from hsirestore.weights import publish_weights, weights_dir

    ck = load_checkpoint(checkpoint)
    preset = require_kind(ck, checkpoint, "cassi")
    cfg = ck["config"]
    spec = get_spec(preset)
    out_file = Path(out_file) if out_file else weights_dir() / (spec.weights or f"{spec.name}.safetensors")
    check_export_target(out_file, overwrite)
    state = {k: v for k, v in ck["model"].items() if not k.startswith("aux.")}
    prior = cfg.get("init_steps")
    if prior is None:  # checkpoints from before init_steps was recorded
        from hsirestore.weights import recorded_steps

        prior = recorded_steps(cfg["init_weights"]) if cfg.get("init_weights") else 0
    total = int(ck["step"]) + int(prior)
    entry = {
        "model": spec.name,
        "config": {**spec.config, **cfg.get("model_overrides", {})},
        "training_data": "CAVE train split (20 scenes) interpolated to the 28 TSA-Net bands; "
                         "masks: mask_256.mat and random crops of mask_real_660.mat; "
                         f"{cfg['patch']}x{cfg['patch']} patches, batch {cfg['batch_size']}"
                         + _pool_description(cfg),
        "training": {**{k: cfg[k] for k in ("lr", "mask_aware", "shot_noise", "seed")},
                     "steps": total, "run_steps": int(ck["step"]), "prior_steps": prior},
        "steps": total,
        "val_metrics": {**_validate_state(spec.name, state, cfg, checkpoint),
                        "protocol": "3 CAVE val scenes, 256x256 centre crops, 28 bands, "
                                    "mask_256.mat; per-band PSNR (peak 1) averaged"},
        "note": note,
    }
    return publish_weights(state, out_file, entry)
