"""Two-stage training of HSI-VAR on CAVE (resumable, CPU or GPU).

Stage 1 (VQ-VAE): encoder E, multi-scale residual quantizer and SSA decoder on clean random
P x P crops (flips, 90-degree rotations, random gain in [0.6, 1.2]); loss
L1(recon, x) + w_vq * VQ loss; unused codebook entries are restarted from encoder features
every ``restart_every`` steps.

Stage 2 (restoration): starts from the stage-1 model (``init`` or OUT/stage1/last.pt),
or continues from exported restoration weights (``init`` = a .safetensors file), copies E
into E_cond (stage-1 start only), freezes E and the quantizer, and trains E_cond, DAG, the next-scale
transformer and the decoder (SSA + skip convs) on degraded/clean pairs: every crop gets a
random degradation (one type or a mixture of up to ``max_mix`` types, strengths across the
protocol ranges, :func:`hsirestore.physics.degradations.random_degradation`). Losses:

    w_ce * CE(teacher-forced logits, clean tokens)          (all scales, mean over tokens)
  + w_align * ||E_cond(LQ) - E(HQ)||^2                       (latent-condition alignment)
  + w_pix * L1(decoder(predicted tokens, skips of E_cond(LQ)), HQ)

The predicted tokens are the argmax of the teacher-forced logits, or, on a ``free_run``
share of the steps, tokens generated scale by scale exactly as at inference (so the decoder
learns to cope with the transformer's own mistakes rather than only teacher-forced ones).

With probability ``type_dropout`` the degradation types are hidden (all-zero mask: the
generic d_base) so that unknown degradations ("auto") are handled too.

Run folder: OUT/stage{1,2}/ with last.pt (atomic, every ``ckpt_minutes``), log.jsonl and
config.json. ``export_weights`` writes the fp16 safetensors and the manifest entry.
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

from hsirestore.errors import FormatError, ModelError, OptionError
from hsirestore.training.common import set_torch_rng_state, torch_rng_state

VAL_TASKS = ("noise:sigma=30", "blur", "sr:scale=4", "inpaint:ratio=0.7", "stripes+noise:sigma=15")


@dataclass
class HsivarTrainConfig:
    stage: int = 1
    preset: str = "hsivar-compact"
    out: str = "runs/hsivar"
    steps: int = 20000
    batch_size: int = 8
    patch: int = 64
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup: int = 200
    max_minutes: float = 0.0  # 0: no limit
    ckpt_minutes: float = 3.0
    log_every: int = 50
    val_every: int = 1000
    w_vq: float = 1.0
    w_ce: float = 1.0
    w_align: float = 1.0
    w_pix: float = 1.0
    type_dropout: float = 0.1
    free_run: float = 0.25  # stage 2: share of steps whose pixel loss decodes generated tokens
    max_mix: int = 2
    restart_every: int = 200
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0: auto (cores - 1, at least 1, at most 8)
    init: str = ""  # stage-1 checkpoint for stage 2 (default OUT/stage1/last.pt)
    init_steps: int | None = None  # stage-2 steps behind an exported ``init`` (set at the start)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    model_overrides: dict = field(default_factory=dict)


class HsiPatches:
    """Random crops of preloaded scenes (each (31, H, W) float32 in [0, 1])."""

    def __init__(self, scenes: list[np.ndarray], patch: int, seed: int = 0):
        if not scenes:
            raise OptionError("no training scenes")
        small = [s.shape for s in scenes if min(s.shape[1:]) < patch]
        if small:
            raise OptionError(f"--patch {patch} is larger than a training scene {small[0]}")
        self.scenes, self.patch = scenes, patch
        self.rng = np.random.default_rng(seed)

    def clean(self, n: int) -> np.ndarray:
        """(n, 31, P, P) float32."""
        p, out = self.patch, []
        for _ in range(n):
            s = self.scenes[int(self.rng.integers(len(self.scenes)))]
            r = int(self.rng.integers(s.shape[1] - p + 1))
            c = int(self.rng.integers(s.shape[2] - p + 1))
            x = s[:, r:r + p, c:c + p]
            x = np.rot90(x, int(self.rng.integers(4)), axes=(1, 2))
            if self.rng.random() < 0.5:
                x = x[:, :, ::-1]
            out.append(np.clip(x * self.rng.uniform(0.6, 1.2), 0, 1))
        return np.ascontiguousarray(np.stack(out), dtype=np.float32)

    def pairs(self, n: int, max_mix: int = 2, type_dropout: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hq (n, 31, P, P), lq (n, 31, P, P), types (n, T)) float32."""
        from hsirestore.inference.restore import types_vector
        from hsirestore.physics.degradations import random_degradation

        hq = self.clean(n)
        lq = np.empty_like(hq)
        types = []
        for i in range(n):
            deg = random_degradation(self.rng, max_mix=max_mix)
            y, _ = deg.apply(hq[i], self.rng)
            lq[i] = np.clip(np.nan_to_num(y), -0.5, 1.5)
            hide = self.rng.random() < type_dropout
            types.append(types_vector([] if hide else deg.names))
        return hq, lq, np.stack(types).astype(np.float32)


def load_scenes(data_dir: Path | None = None, split: str = "train") -> list[np.ndarray]:
    from hsirestore.training.cave import load_cave_scene, shared_data_dir

    folder = (data_dir or shared_data_dir()) / "cave" / split
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise FormatError(f"no CAVE scenes (*.h5) in {folder}; pass --data DIR")
    return [load_cave_scene(f)[0] for f in files]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over bands of the per-band PSNR (peak 1), averaged over the batch."""
    mse = ((a.clamp(0, 1) - b) ** 2).mean((-1, -2)).clamp_min(1e-12)
    return float((-10 * torch.log10(mse)).mean())


@torch.no_grad()
def validate(model, stage: int, scenes: list[np.ndarray], crop: int = 64) -> dict:
    """Stage 1: reconstruction PSNR; stage 2: restoration PSNR per VAL_TASKS (seeded)."""
    from hsirestore.inference.restore import types_vector
    from hsirestore.physics.degradations import parse_degradation
    from hsirestore.training.cave import centre_crop

    model.eval()
    dev = next(model.parameters()).device
    x = torch.from_numpy(np.stack([centre_crop(s, crop) for s in scenes]).astype(np.float32)).to(dev)
    out: dict = {}
    if stage == 1:
        out["recon_psnr"] = round(psnr(model.autoencode(x)[0], x), 3)
    else:
        for spec in VAL_TASKS:
            deg = parse_degradation(spec)
            lq = np.stack([deg.apply(s, seed=i)[0] for i, s in enumerate(x.cpu().numpy())])
            t = torch.tensor(np.stack([types_vector(deg.names)] * len(lq)), dtype=torch.float32).to(dev)
            lq_t = torch.from_numpy(np.clip(lq, -0.5, 1.5).astype(np.float32)).to(dev)
            out[spec] = round(psnr(model.restore(lq_t, t), x), 3)
            out[spec + " (input)"] = round(psnr(lq_t, x), 3)
        out["mean"] = round(float(np.mean([out[s] for s in VAL_TASKS])), 3)
    model.train()
    return out


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _stage_dir(cfg: HsivarTrainConfig) -> Path:
    return Path(cfg.out) / f"stage{cfg.stage}"


def _trainable(model, stage: int) -> list:
    if stage == 1:
        mods = [model.encoder, model.quantizer, model.decoder]
    else:
        mods = [model.cond_encoder, model.dag, model.transformer, model.decoder]
        for m in (model.encoder, model.quantizer):
            m.requires_grad_(False)
    return [p for m in mods for p in m.parameters() if p.requires_grad]


def train(cfg: HsivarTrainConfig, resume: bool = False, scenes: list[np.ndarray] | None = None,
          val_scenes: list[np.ndarray] | None = None, data_dir: Path | None = None,
          log=print) -> dict:
    """Run (or resume) one stage; returns the last log record (with validation if any)."""
    from hsirestore.registry import get_spec
    from hsirestore.training.common import (check_config, check_run_folder, check_task,
                                            require_stage2_start)

    if cfg.stage not in (1, 2):
        raise OptionError(f"--stage must be 1 or 2; got {cfg.stage}")
    check_config(cfg)
    if cfg.max_mix < 1:
        raise OptionError(f"--max-mix must be >= 1; got {cfg.max_mix}")
    check_task(cfg.preset, "restore")
    mult = get_spec(cfg.preset).size_multiple
    if cfg.patch % mult:
        raise OptionError(f"--patch must be a multiple of {mult} for {cfg.preset}")
    check_run_folder(_stage_dir(cfg) / "last.pt", resume)
    if cfg.stage == 2 and not resume:  # the file stage 2 starts from, before any work
        require_stage2_start(cfg.init, Path(cfg.out) / "stage1" / "last.pt")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or max(1, min(8, (os.cpu_count() or 2) - 1)))
    try:
        return _train(cfg, resume, scenes, val_scenes, data_dir, log)
    finally:
        torch.set_num_threads(threads_before)


def _init_stage2(model, init: Path, cfg, log) -> None:
    """Start stage 2 from a stage-1 checkpoint (.pt: E_cond <- E) or from exported weights
    (.safetensors, e.g. weights/hsivar-compact.safetensors: continue training a restoration
    model; its E_cond is kept). Weights exported before the ``residual`` option (their
    config has no such key) restored non-residually: for a residual model the decoder's
    output conv is zeroed, so training starts from the identity LQ -> LQ."""
    from hsirestore.training.common import (checkpoint_preset, init_steps, load_checkpoint,
                                            load_weights)

    if init.suffix == ".safetensors":
        from hsirestore.weights import load_state_dict, recorded_model

        state, meta = load_state_dict(init)
        load_weights(model, state, init, cfg.preset, holds=recorded_model(state, meta)[0])
        was_residual = bool((meta.get("config") or {}).get("residual", False))
        if was_residual and not model.residual:
            raise ModelError(f"{init} is a residual model; train it with the same "
                             "model override (residual=True)")
        if model.residual and not was_residual:
            torch.nn.init.zeros_(model.decoder.conv_out.weight)
            torch.nn.init.zeros_(model.decoder.conv_out.bias)
            log("decoder output conv zeroed (non-residual weights -> residual model)")
        cfg.init_steps = init_steps(init, meta)
        log(f"stage 2 continues from {init} ({cfg.init_steps} steps)")
        return
    ck = load_checkpoint(init)
    load_weights(model, ck["model"], init, cfg.preset, holds=checkpoint_preset(ck))
    model.init_condition_encoder()
    log(f"stage 2 initialised from {init} (stage-1 step {ck.get('step')})")


def _train(cfg, resume, scenes, val_scenes, data_dir, log) -> dict:
    from hsirestore.registry import build_model
    from hsirestore.training.common import (LoopControl, check_resume_preset, load_checkpoint,
                                            load_weights, resume_overrides)

    torch.manual_seed(cfg.seed)
    out = _stage_dir(cfg)
    ckpt_path = out / "last.pt"
    ck = None
    if resume:
        ck = load_checkpoint(ckpt_path)
        check_resume_preset(ckpt_path, ck, cfg.preset)
        run_cfg = ck.get("config") or {}
        cfg.model_overrides = resume_overrides(ckpt_path, cfg.preset, run_cfg.get("model_overrides"),
                                               cfg.model_overrides, log=log)
    model = build_model(cfg.preset, **cfg.model_overrides)
    if cfg.stage == 2 and ck is None:  # (train() has checked that the file exists)
        init = Path(cfg.init) if cfg.init else Path(cfg.out) / "stage1" / "last.pt"
        _init_stage2(model, init, cfg, log)
    from hsirestore.inference.device import resolve_device

    dev = resolve_device(cfg.device)
    model.to(dev)
    params = _trainable(model, cfg.stage)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))

    def lr_at(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    if scenes is None:
        scenes = load_scenes(data_dir, "train")
    if val_scenes is None and cfg.val_every:
        try:
            val_scenes = load_scenes(data_dir, "val")
        except FormatError:  # no val split: train without validation
            val_scenes = []
    data = HsiPatches(scenes, cfg.patch, cfg.seed + 1000 * cfg.stage)
    usage = model.quantizer.usage  # code use since the last dead-code restart (stage 1)
    step, last = 0, {}
    if ck is not None:
        load_weights(model, ck["model"], ckpt_path, cfg.preset)
        try:
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            step, last = int(ck["step"]), ck.get("last", {})
            data.rng.bit_generator.state = ck["data_rng"]
            set_torch_rng_state(ck)
            if ck.get("quantizer_usage") is not None:  # older checkpoints: counted afresh
                usage.copy_(ck["quantizer_usage"].to(usage))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ModelError(f"cannot resume from {ckpt_path}: {type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:200]}") from e
        cfg.init_steps = ck.get("config", {}).get("init_steps")  # steps behind the run's start
        log(f"resumed from {ckpt_path} at step {step}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "config.json", "w") as f:
        json.dump(asdict(cfg), f, indent=2)

    def rng_state() -> dict:
        return {"data_rng": data.rng.bit_generator.state, **torch_rng_state(),
                "quantizer_usage": usage.detach().clone()}  # (stays on the device until saved)

    def checkpoint(rngs: dict | None = None):
        rngs = {k: v.cpu() if torch.is_tensor(v) else v for k, v in (rngs or rng_state()).items()}
        _save(ckpt_path, {"model": model.state_dict(), "opt": opt.state_dict(),
                          "sched": sched.state_dict(), "step": step, "config": asdict(cfg),
                          "last": last, **rngs})

    sums: dict[str, float] = {}
    count = 0
    ctl = LoopControl(checkpoint, ckpt_path, log, lambda: step, rng_state, cfg.ckpt_minutes,
                      cfg.max_minutes)
    model.train()
    if cfg.stage == 2:
        model.encoder.eval()
        model.quantizer.eval()
    # leaving the loop: a checkpoint (on Ctrl-C or an error: of the last whole step, re-raised)
    with ctl, open(out / "log.jsonl", "a") as logf:
        while step < cfg.steps:
            if cfg.stage == 1:
                x = torch.from_numpy(data.clean(cfg.batch_size)).to(dev)
                rec, vq, _ = model.autoencode(x)
                l1 = F.l1_loss(rec, x)
                loss = l1 + cfg.w_vq * vq
                parts = {"l1": l1.item(), "vq": vq.item()}
            else:
                hq, lq, types = (torch.from_numpy(a).to(dev) for a in data.pairs(cfg.batch_size, cfg.max_mix,
                                                                           cfg.type_dropout))
                with torch.no_grad():
                    f_hq, _ = model.encoder(hq)
                    idx = model.quantizer.features_to_indices(f_hq)
                f_cond, skips, d = model.condition(lq, types)
                align = F.mse_loss(f_cond, f_hq)
                logits = model.teacher_logits(idx, f_cond, d)
                ce = F.cross_entropy(torch.cat(logits, 1).flatten(0, 1),
                                     torch.cat([i.flatten(1) for i in idx], 1).flatten())
                with torch.no_grad():
                    pred = [lg.argmax(-1).view_as(i) for lg, i in zip(logits, idx)]
                    acc = float(torch.cat([(p == i).flatten() for p, i in zip(pred, idx)]).float().mean())
                    if cfg.free_run > 0 and float(torch.rand(())) < cfg.free_run:
                        pred = model.generate(f_cond.detach(), d.detach())  # as at inference
                    f_pred = model.quantizer.indices_to_features(pred)
                rec = model.reconstruct(f_pred, skips, lq)
                pix = F.l1_loss(rec, hq)
                loss = cfg.w_ce * ce + cfg.w_align * align + cfg.w_pix * pix
                parts = {"ce": ce.item(), "align": align.item(), "l1": pix.item(), "token_acc": acc}
            if not torch.isfinite(loss):
                raise ModelError(f"training diverged at step {step} (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            with ctl.commit():  # Ctrl-C waits until the step is whole
                opt.step()
                sched.step()
                step += 1
                if cfg.stage == 1 and cfg.restart_every and step % cfg.restart_every == 0 \
                        and step < 0.8 * cfg.steps:
                    with torch.no_grad():
                        f, _ = model.encoder(x)
                    parts["restarted"] = model.quantizer.restart_dead_codes(f)
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                last = {"stage": cfg.stage, "step": step,
                        **{k: round(v / count, 5) for k, v in sums.items()},
                        "lr": sched.get_last_lr()[0], "minutes": round((time.time() - ctl.t0) / 60, 2)}
                sums, count = {}, 0
                if cfg.val_every and val_scenes and (step % cfg.val_every == 0 or step == cfg.steps):
                    last["val"] = validate(model, cfg.stage, val_scenes, min(64, cfg.patch * 2))
                    if cfg.stage == 2:
                        model.encoder.eval()
                        model.quantizer.eval()
                logf.write(json.dumps(last) + "\n")
                logf.flush()
                log(json.dumps(last))
            if ctl.after_step(step):  # checkpoint when due; True at the time limit
                break
    return last


def export_weights(checkpoint, out_file=None, note: str = "", overwrite: bool = True) -> dict:
    """Write the model of a stage-2 checkpoint as fp16 safetensors (into weights/ by
    default, named by the preset's spec) and record it in that folder's manifest.json.
    ``overwrite=False`` (the CLI without --force) refuses to replace an existing file or
    manifest entry; a checkpoint of another kind is a one-line ModelError."""
    from hsirestore.registry import get_spec
    from hsirestore.training.common import check_export_target, load_checkpoint, require_kind
    from hsirestore.weights import publish_weights, weights_dir

    ck = load_checkpoint(checkpoint)
    preset = require_kind(ck, checkpoint, "restore")
    cfg = ck.get("config") or {}
    if cfg.get("stage") != 2:
        raise OptionError(f"{checkpoint} is a stage-{cfg.get('stage')} checkpoint; export a "
                          "stage-2 checkpoint (OUT/stage2/last.pt)")
    spec = get_spec(preset)
    name = spec.weights or f"{spec.name}.safetensors"
    out_file = Path(out_file) if out_file else weights_dir() / name
    check_export_target(out_file, overwrite)
    config = {**spec.config, **cfg.get("model_overrides", {})}
    prior = int(cfg.get("init_steps") or 0)  # stage-2 steps behind exported --init weights
    total = int(ck["step"]) + prior
    entry = {
        "model": spec.name,
        "config": config,
        "training_data": "CAVE train split (20 scenes, 31 bands 400-700 nm); "
                         f"{cfg['patch']}x{cfg['patch']} crops, batch {cfg['batch_size']}, "
                         f"random degradations (up to {cfg['max_mix']} mixed types)",
        "training": {**{k: cfg[k] for k in ("lr", "w_ce", "w_align", "w_pix", "seed")},
                     **({"init": cfg["init"]} if cfg.get("init") else {}),
                     "steps": total, "run_steps": int(ck["step"]), "prior_steps": prior},
        "steps": total,
        "val_metrics": {**ck.get("last", {}).get("val", {}),
                        "protocol": "CAVE val scenes, 64x64 centre crops, per-band PSNR (peak 1) "
                                    "averaged; tasks " + ", ".join(VAL_TASKS)},
        "note": note,
    }
    return publish_weights(ck["model"], out_file, entry)
