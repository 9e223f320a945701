"""MCGA training: stage 1 (multi-scale VQ-VAE, Mixture of Codebooks) and stage 2 (GANet).

Sources (one codebook set each, order = source index):
  0. CAVE train scenes (../shared/data/cave/train; research use, Yasuma et al. 2008).
  1. Synthetic mosaic scenes from the reflectance spectra shipped with colour-science
     (BSD-3-Clause): ColorChecker (BabelColor average, N Ohta), ISO 17321-1 and PMC
     reflectances, times the illuminants D65, D50, A, FL2, FL11 and E
     (:func:`hsirestore.inference.camera.spectral_library`), laid out as random rectangles
     over a background with a smooth shading ramp.

Stage 1: random patch from a source (alternating), random band masking (31 -> 16 kept),
loss = Charbonnier(recon, x) + beta * (L1 + L2); codebook entries unused for
``restart_every`` steps are re-initialised from encoder features.
Stage 2 (``init_weights``: fine-tune the GANet of an exported model instead of starting
from OUT/stage1.pt; ``w_consistency`` > 0 adds w * Charbonnier(projection of the output onto
the spectra that render exactly to the input RGB through the sample's camera, HSI), which
trains the part of the spectrum the camera cannot see for use with ``rgb2hsi
--consistency`` while the plain loss keeps the raw output usable; ``w_mrae`` > 0 adds
w * mean(|out - hsi| / (hsi + 0.01)) on the output (and on the projection), the NTIRE MRAE
criterion that weighs dark pixels more than the Charbonnier loss does): the MoC and stage-1 decoder are frozen; RGB is rendered from the HSI patch through
the NTIRE 2022 response or (probability ``p_camspec``) a camspec camera other than the held
out one(s) (``HELDOUT_CAMERAS``: Nokia_N900, kept for the unseen-camera test), after a
brightness change x U(0.4, 1.2) applied to the cube (so RGB and target stay consistent);
loss = Charbonnier(GANet+decoder(rgb), hsi). Synthetic scenes are mixed in with probability
``p_synthetic``.

AdamW, lr 4e-4 (linear warm-up then cosine decay), random flips/rotations. Checkpoints
``OUT/stage{1,2}.pt`` (model, optimiser, step, config) every ``ckpt_minutes`` minutes (and
every ``ckpt_every`` steps where given), at the end and on Ctrl-C; ``OUT/log.jsonl`` one JSON
line per logged step; ``--resume`` continues from the last checkpoint. Stage 2 starts from
``OUT/stage1.pt``. The final stage-2 model is exported to ``OUT/<preset>.safetensors``
(float32, metadata: preset, config, steps).
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

from hsirestore.errors import FormatError, HsiRestoreError, ModelError, OptionError
from hsirestore.models.mcga import charbonnier
from hsirestore.training.common import set_torch_rng_state, torch_rng_state

HELDOUT_CAMERAS = ("Nokia_N900",)
BANDS = 31
WAVELENGTHS = np.arange(400.0, 701.0, 10.0)


@dataclass
class TrainConfig:
    stage: int = 1
    preset: str = "mcga-compact"
    steps: int = 20000
    batch_size: int = 8
    patch: int = 64
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    beta: float = 0.25
    p_camspec: float = 0.3
    p_synthetic: float = 0.15
    brightness: tuple = (0.4, 1.2)
    restart_every: int = 250
    ckpt_minutes: float = 3.0  # minutes between checkpoints
    ckpt_every: int | None = None  # also checkpoint every N steps (None: by time only)
    log_every: int = 50
    max_minutes: float = 0.0  # 0 (or None): no limit
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0: cores - 1 (at least 1, at most 8)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    init_weights: str = ""  # stage 2: start from these full-model weights instead of OUT/stage1.pt
    init_steps: int | None = None  # stage-2 steps behind init_weights (set when training starts)
    w_consistency: float = 0.0  # stage 2: weight of the loss on the RGB-consistent projection
    w_mrae: float = 0.0  # stage 2: weight of the relative-error (MRAE) loss term
    extra: dict = field(default_factory=dict)


def relative_error(pred: torch.Tensor, ref: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Mean |pred - ref| / (ref + eps) over (B, C, H, W) tensors (differentiable MRAE; eps keeps
    near-black pixels from dominating)."""
    return ((pred - ref).abs() / (ref.clamp_min(0) + eps)).mean()


# ---------------------------------------------------------------------- data
class SyntheticSpectra:
    """Mosaic scenes from the colour-science spectral library: (31, p, p) float32 in [0, 1]."""

    def __init__(self, seed: int = 0):
        from hsirestore.inference.camera import spectral_library

        lib = spectral_library(WAVELENGTHS)
        self.spectra = (lib / max(lib.max(), 1e-6)).astype(np.float32)
        self.rng = np.random.default_rng(seed)

    def sample(self, p: int) -> np.ndarray:
        rng = self.rng
        out = np.empty((BANDS, p, p), np.float32)
        out[:] = self.spectra[rng.integers(len(self.spectra))][:, None, None]
        for _ in range(rng.integers(3, 12)):
            h, w = rng.integers(p // 8, p, size=2)
            r0, c0 = rng.integers(0, p - h + 1), rng.integers(0, p - w + 1)
            out[:, r0:r0 + h, c0:c0 + w] = self.spectra[rng.integers(len(self.spectra))][:, None, None]
        ramp = np.linspace(rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), p, dtype=np.float32)
        shade = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        return out * shade[None]


def _augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(4))
    patch = np.rot90(patch, k, axes=(1, 2))
    if rng.random() < 0.5:
        patch = patch[:, :, ::-1]
    return np.ascontiguousarray(patch)


class PatchSampler:
    """Random patches from in-memory cubes (list of (31, H, W) float32)."""

    def __init__(self, cubes: list[np.ndarray], seed: int = 0):
        if not cubes:
            raise FormatError("no training scenes (CAVE train not found under the data folder; "
                              "set HSIRESTORE_DATA)")
        self.cubes = cubes
        self.rng = np.random.default_rng(seed)

    def sample(self, p: int) -> np.ndarray:
        c = self.cubes[self.rng.integers(len(self.cubes))]
        _, h, w = c.shape
        if h < p or w < p:
            raise OptionError(f"patch {p} is larger than a training scene ({h}x{w})")
        r0, c0 = self.rng.integers(0, h - p + 1), self.rng.integers(0, w - p + 1)
        return _augment(c[:, r0:r0 + p, c0:c0 + p], self.rng)


def camera_bank(data_dir: Path | None = None) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """(NTIRE response (3, 31), [camspec responses (3, 31) except HELDOUT_CAMERAS], names),
    each normalised as render_rgb does (green sums to 1)."""
    from hsirestore.physics.rgb import default_camera_path, load_camera_response
    from hsirestore.training.cave import shared_data_dir

    def sampled(path):
        wl, r = load_camera_response(path)
        m = np.stack([np.interp(WAVELENGTHS, wl, x, left=0, right=0) for x in r])
        return (m / m[1].sum()).astype(np.float32)

    ntire = default_camera_path()
    if ntire is None:
        raise HsiRestoreError("NTIRE 2022 camera response not found (ntire2022_rgb_qe.csv)")
    folder = (data_dir or shared_data_dir()) / "camera" / "camspec"
    names = [p.stem for p in sorted(folder.glob("*.csv")) if p.stem not in HELDOUT_CAMERAS]
    return sampled(ntire), [sampled(folder / f"{n}.csv") for n in names], names


def render_batch(hsi: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
    """hsi (N, 31, h, w), resp (N, 3, 31) -> rgb (N, 3, h, w) clipped to [0, 1]."""
    return torch.einsum("ncb,nbhw->nchw", resp, hsi).clamp(0.0, 1.0)


def project_batch(out: torch.Tensor, rgb: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
    """Differentiable RGB-consistency projection (as ``rgb2hsi --consistency``, without the
    clipping): out (N, 31, h, w), rgb (N, 3, h, w), resp (N, 3, 31) ->
    out + R^T (R R^T)^-1 (rgb - R out); pixels with a saturated channel are left as they are."""
    gram_inv = torch.linalg.inv(resp @ resp.transpose(1, 2))  # (N, 3, 3)
    proj = resp.transpose(1, 2) @ gram_inv  # (N, 31, 3)
    resid = rgb - torch.einsum("ncb,nbhw->nchw", resp, out)
    fixed = out + torch.einsum("nbc,nchw->nbhw", proj, resid)
    saturated = (rgb >= 0.999).any(1, keepdim=True)
    return torch.where(saturated, out, fixed)


# ---------------------------------------------------------------------- loop
def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Runs one stage. ``cubes``: training HSI cubes (default: CAVE train); ``synthetic``:
    a SyntheticSpectra (default built from colour-science); ``cameras``: (ntire, [others])
    responses (default from the data folder)."""

    def __init__(self, cfg: TrainConfig, out: Path, resume: bool = False, cubes=None,
                 synthetic=None, cameras=None):
        from hsirestore.registry import build_model, get_spec
        from hsirestore.training.common import (check_config, check_resume_preset,
                                                check_run_folder, check_task, checkpoint_preset,
                                                init_steps, load_checkpoint, load_weights,
                                                require_stage2_start)

        if cfg.stage not in (1, 2):
            raise OptionError(f"--stage must be 1 or 2; got {cfg.stage}")
        check_config(cfg)
        check_task(cfg.preset, "rgb2hsi")
        spec = get_spec(cfg.preset)
        if cfg.patch % spec.size_multiple:
            raise OptionError(f"--patch must be a multiple of {spec.size_multiple}")
        self.cfg, self.out, self.spec = cfg, Path(out), spec
        if cfg.init_weights and cfg.stage != 2:
            raise OptionError("--init-weights is for stage 2 (GANet fine-tuning)")
        if cfg.w_consistency < 0:
            raise OptionError(f"--w-consistency must be >= 0; got {cfg.w_consistency}")
        if cfg.w_consistency and cfg.stage != 2:
            raise OptionError("--w-consistency is a stage-2 loss")
        if cfg.w_mrae < 0:
            raise OptionError(f"--w-mrae must be >= 0; got {cfg.w_mrae}")
        if cfg.w_mrae and cfg.stage != 2:
            raise OptionError("--w-mrae is a stage-2 loss")
        # the file stage 2 starts from: --init-weights or OUT/stage1.pt (loaded even to resume)
        start = None
        if cfg.stage == 2:
            start = require_stage2_start(cfg.init_weights, self.out / "stage1.pt")
        check_run_folder(self.out / f"stage{cfg.stage}.pt", resume)
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads or max(1, min(8, (os.cpu_count() or 2) - 1)))
        self.rng = np.random.default_rng(cfg.seed)
        self.model = build_model(cfg.preset, beta=cfg.beta)
        if cubes is None:
            from hsirestore.training.cave import load_cave

            cubes = [c for _, c, _ in load_cave("train")]
        small = [c.shape for c in cubes if min(c.shape[1:]) < cfg.patch]
        if small:
            raise OptionError(f"--patch {cfg.patch} is larger than a training scene "
                              f"({small[0][1]}x{small[0][2]})")
        self.cave = PatchSampler(cubes, cfg.seed)
        self.synth = synthetic if synthetic is not None else SyntheticSpectra(cfg.seed)
        if cfg.stage == 2:
            if cameras is None:
                ntire, others, _ = camera_bank()
            else:
                ntire, others = cameras
            self.ntire = torch.from_numpy(np.asarray(ntire, np.float32))
            self.others = [torch.from_numpy(np.asarray(o, np.float32)) for o in others]
        from hsirestore.inference.device import resolve_device

        self.device = resolve_device(cfg.device)
        self.model.to(self.device)
        self.ckpt = self.out / f"stage{cfg.stage}.pt"
        self.step = 0
        if cfg.stage == 2:
            if cfg.init_weights:  # fine-tune a whole model (frozen stage 1, GANet continues)
                from hsirestore.weights import load_state_dict, recorded_model

                state, meta = load_state_dict(start)
                load_weights(self.model, state, start, cfg.preset,
                             holds=recorded_model(state, meta)[0])
                cfg.init_steps = init_steps(start, meta)
            else:
                ck = load_checkpoint(start)
                load_weights(self.model, ck["model"], start, cfg.preset, holds=checkpoint_preset(ck))
            self.model.freeze_stage1()
            params = [p for p in self.model.stage2_parameters()]
        else:
            params = list(self.model.vq.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.usage = {}  # stage 1: {(source, scale): codes used since the last restart}
        self._ctl = None  # the LoopControl of run()
        if resume:
            ck = load_checkpoint(self.ckpt)
            check_resume_preset(self.ckpt, ck, cfg.preset)
            load_weights(self.model, ck["model"], self.ckpt, cfg.preset)
            try:
                self.opt.load_state_dict(ck["optimizer"])
                self.step = int(ck["step"])
                # older checkpoints lack some of these: those parts restart from the seed
                for key, gen in (("rng", self.rng), ("cave_rng", self.cave.rng),
                                 ("synth_rng", getattr(self.synth, "rng", None))):
                    if key in ck and gen is not None:
                        gen.bit_generator.state = ck[key]
                if "torch_rng" in ck:
                    set_torch_rng_state(ck)
                self.usage = {(int(s), int(i)): used.bool().cpu() for s, i, used in ck.get("usage", [])}
            except (KeyError, ValueError, TypeError, RuntimeError) as e:
                raise ModelError(f"cannot resume from {self.ckpt}: {type(e).__name__}: "
                                 f"{(str(e).splitlines() or [''])[0][:200]}") from e
            cfg.init_steps = ck.get("config", {}).get("init_steps")  # steps behind the run's start

    # -- batches
    def _hsi_batch(self, source: int) -> torch.Tensor:
        p = self.cfg.patch
        sampler = self.cave if source == 0 else self.synth
        return torch.from_numpy(np.stack([sampler.sample(p) for _ in range(self.cfg.batch_size)])).to(self.device)

    def _stage2_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        p, n = self.cfg.patch, self.cfg.batch_size
        hsi = np.stack([(self.synth if self.rng.random() < self.cfg.p_synthetic else self.cave).sample(p)
                        for _ in range(n)])
        lo, hi = self.cfg.brightness
        hsi = hsi * self.rng.uniform(lo, hi, size=(n, 1, 1, 1)).astype(np.float32)
        hsi_t = torch.from_numpy(np.ascontiguousarray(hsi))
        resp = torch.stack([
            self.others[self.rng.integers(len(self.others))]
            if self.others and self.rng.random() < self.cfg.p_camspec else self.ntire
            for _ in range(n)])
        hsi_t, resp = hsi_t.to(self.device), resp.to(self.device)
        self._last_resp = resp
        return render_batch(hsi_t, resp), hsi_t

    # -- steps
    def _stage1_step(self) -> dict:
        source = self.step % self.model.vq.sources
        x = self._hsi_batch(source if source < 2 else 0)
        rec, vq = self.model.vq(x, source=source, mask_bands=True)
        loss = charbonnier(rec, x) + self.cfg.beta * vq
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with self._ctl.commit():  # Ctrl-C waits until the step is whole
            self.opt.step()
            vqm = self.model.vq
            for i, idx in vqm.last_indices.items():
                key = (source, i)
                used = self.usage.setdefault(key, torch.zeros(vqm.codebook_size, dtype=torch.bool))
                used[idx.flatten().unique().cpu()] = True
            restarted = 0
            if self.cfg.restart_every and (self.step + 1) % self.cfg.restart_every == 0:
                for (s, i), used in list(self.usage.items()):
                    if s == source:
                        restarted += vqm.restart_entries(s, i, ~used)
                        self.usage[(s, i)] = torch.zeros_like(used)
            self.step += 1
        return {"loss": float(loss.detach()), "vq": float(vq.detach()), "source": source, "restarted": restarted}

    def _stage2_step(self) -> dict:
        rgb, hsi = self._stage2_batch()
        self.model.train()
        cfg = self.cfg
        if cfg.w_consistency > 0 or cfg.w_mrae > 0:
            out, _, vq = self.model._run(rgb)
            loss = charbonnier(out, hsi) + self.model.vq.beta * vq + cfg.w_mrae * relative_error(out, hsi)
            if cfg.w_consistency > 0:
                proj = project_batch(out, rgb, self._last_resp)
                loss = loss + cfg.w_consistency * (charbonnier(proj, hsi)
                                                   + cfg.w_mrae * relative_error(proj, hsi))
        else:
            loss = self.model.stage2_loss(rgb, hsi)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.model.stage2_parameters()), 1.0)
        with self._ctl.commit():  # Ctrl-C waits until the step is whole
            self.opt.step()
            self.step += 1
        return {"loss": float(loss.detach())}

    def _rng_state(self) -> dict:
        """Everything random a resume needs to continue exactly: the generators of the
        trainer and both patch sources, torch's, and the stage-1 code usage."""
        state = {"rng": self.rng.bit_generator.state, "cave_rng": self.cave.rng.bit_generator.state,
                 **torch_rng_state(),
                 "usage": [[s, i, used.clone()] for (s, i), used in self.usage.items()]}
        if getattr(self.synth, "rng", None) is not None:
            state["synth_rng"] = self.synth.rng.bit_generator.state
        return state

    def save(self, rngs: dict | None = None) -> None:
        """Checkpoint the stage (``rngs``: a snapshot taken after the last whole step)."""
        self.out.mkdir(parents=True, exist_ok=True)
        _save(self.ckpt, {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                          "step": self.step, "preset": self.cfg.preset, "stage": self.cfg.stage,
                          "config": {k: v for k, v in asdict(self.cfg).items()},
                          **(rngs or self._rng_state())})

    def export(self) -> Path:
        from hsirestore.weights import save_state_dict

        path = self.out / f"{self.cfg.preset}.safetensors"
        save_state_dict(self.model.state_dict(), path,
                        metadata={"preset": self.cfg.preset, "config": dict(self.spec.config),
                                  "steps": self.step + int(self.cfg.init_steps or 0)})
        return path

    def run(self, echo=print) -> dict:
        """Train to ``cfg.steps`` (or the time limit) and checkpoint. Ctrl-C or an error
        after at least one step of this call checkpoints the last whole step first; an
        error before that leaves no checkpoint behind (so the corrected command can start
        the run again)."""
        from hsirestore.training.common import LoopControl

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        losses = []
        ctl = self._ctl = LoopControl(self.save, self.ckpt, echo, lambda: self.step, self._rng_state,
                                      cfg.ckpt_minutes, cfg.max_minutes, cfg.ckpt_every)
        # leaving the loop: a checkpoint (on Ctrl-C or an error: of the last whole step, re-raised)
        with ctl, open(self.out / "log.jsonl", "a") as log:
            while self.step < cfg.steps:
                for g in self.opt.param_groups:
                    g["lr"] = _lr_at(self.step, cfg)
                rec = self._stage1_step() if cfg.stage == 1 else self._stage2_step()
                losses.append(rec["loss"])
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    line = {"stage": cfg.stage, "step": self.step, "lr": self.opt.param_groups[0]["lr"],
                            "loss": float(np.mean(losses[-cfg.log_every:])),
                            "elapsed_s": round(time.time() - ctl.t0, 1)}
                    line.update({k: v for k, v in rec.items() if k not in ("loss",)})
                    log.write(json.dumps(line) + "\n")
                    log.flush()
                    echo(json.dumps(line))
                if ctl.after_step(self.step):  # checkpoint when due; True at the time limit
                    break
        result = {"stage": cfg.stage, "step": self.step, "checkpoint": str(self.ckpt),
                  "loss_first": losses[0] if losses else None,
                  "loss_last": float(np.mean(losses[-10:])) if losses else None}
        if cfg.stage == 2:
            result["weights"] = str(self.export())
        return result


def export_weights(checkpoint, out_file=None, metrics: dict | None = None, note: str = "",
                   overwrite: bool = True) -> dict:
    """Write the model of a stage-2 checkpoint (OUT/stage2.pt) as fp16 safetensors (into
    weights/ by default, named by the preset's spec) and record it in that folder's
    manifest.json with ``metrics`` (e.g. the JSON of benchmarks/rgb2hsi_val.py).
    ``overwrite=False`` (the CLI without --force) refuses to replace an existing file or
    manifest entry; a checkpoint of another kind is a one-line ModelError."""
    from hsirestore.registry import get_spec
    from hsirestore.training.common import check_export_target, load_checkpoint, require_kind
    from hsirestore.weights import publish_weights, weights_dir

    ck = load_checkpoint(checkpoint)
    preset = require_kind(ck, checkpoint, "rgb2hsi")
    if ck.get("stage") != 2:
        raise OptionError(f"{checkpoint} is a stage-{ck.get('stage')} checkpoint; export a "
                          "stage-2 checkpoint (OUT/stage2.pt)")
    spec = get_spec(preset)
    name = spec.weights or f"{spec.name}.safetensors"
    out_file = Path(out_file) if out_file else weights_dir() / name
    check_export_target(out_file, overwrite)
    cfg = ck.get("config", {})
    prior = int(cfg.get("init_steps") or 0)  # stage-2 steps behind --init-weights
    total = int(ck["step"]) + prior
    entry = {
        "model": spec.name,
        "config": dict(spec.config),
        "training_data": (
            "stage 1: CAVE train split (20 scenes, 31 bands 400-700 nm) and synthetic mosaics of "
            "colour-science reflectances (ColorChecker, ISO 17321-1, PMC; BSD-3-Clause) under D65, "
            "D50, A, FL2, FL11, E; stage 2: CAVE train rendered through the NTIRE 2022 response "
            f"and camspec cameras except {', '.join(HELDOUT_CAMERAS)} (p={cfg.get('p_camspec')}), "
            f"brightness x U{tuple(cfg.get('brightness', ()))}, "
            f"{cfg.get('patch')}x{cfg.get('patch')} patches, batch {cfg.get('batch_size')}"),
        "training": {**{k: cfg.get(k) for k in ("lr", "warmup", "beta", "seed", "init_weights",
                                                "w_consistency", "w_mrae") if cfg.get(k)},
                     "steps": total, "run_steps": int(ck["step"]), "prior_steps": prior},
        "steps": total,
        "val_metrics": metrics or {},
        "note": note,
    }
    return publish_weights(ck["model"], out_file, entry)
