"""`hsirestore train cassi`, `train cassi-pool` and `train cassi-export`: train
S2-Transformer on CAVE with simulated CASSI measurements."""
from __future__ import annotations

from pathlib import Path

import typer

from hsirestore.cli.app import train_app
from hsirestore.cli.common import command
from hsirestore.cli.train_common import EXPORT_FORCE, EXPORT_NOTE, EXPORT_OUTPUT, run_export
from hsirestore.errors import FormatError, OptionError


@command(train_app, "cassi", help="""Train S2-Transformer for CASSI decoding (resumable).

Needs the CAVE scenes and CASSI masks laid out as in ../shared/data (or --data DIR).
Checkpoints go to OUT/last.pt every few minutes and on Ctrl-C; --resume continues from
there (without it, a folder that holds a checkpoint is refused).
Export the shipped weights with 'hsirestore train cassi-export OUT/last.pt'.

\b
Examples:
  hsirestore train cassi --preset s2former-compact --steps 20000 --out runs/cassi
  hsirestore train cassi --out runs/cassi --resume --max-minutes 60
  hsirestore train cassi --preset s2former-unfolded --init-weights weights/s2former-unfolded.safetensors
  hsirestore train cassi --preset s2former --patch 128 --batch-size 8   # published size, GPU
  hsirestore train cassi --preset s2former-gaptv --device cuda --gaptv-online 1024 \\
      --patch 256 --batch-size 8 --max-minutes 60 --time-schedule            # GAP-TV made on the GPU
""")
def train_cassi(
    preset: str = typer.Option("s2former-compact", help="Registered model name."),
    out: Path = typer.Option(Path("runs/cassi"), help="Run folder (checkpoints, logs)."),
    steps: int = typer.Option(20000, help="Total optimisation steps."),
    batch_size: int = typer.Option(4, help="Patches per step."),
    patch: int = typer.Option(64, help="Patch size in pixels (multiple of the window)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (AdamW, cosine decay)."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    data: Path = typer.Option(None, help="Data folder with cave/ and cassi/ (default ../shared/data)."),
    mask_aware: bool = typer.Option(True, help="Mask-aware learning (auxiliary head + weighted loss)."),
    shot_noise: float = typer.Option(0.0, help="Shot noise: photons at value 1 (0: off)."),
    max_minutes: float = typer.Option(0.0, help="Stop (with a checkpoint) after this many minutes (0: no limit)."),
    val_every: int = typer.Option(500, help="Validate every N steps (0: never)."),
    log_every: int = typer.Option(50, help="Log every N steps."),
    ckpt_minutes: float = typer.Option(3.0, help="Minutes between checkpoints (also one at the end and on Ctrl-C)."),
    seed: int = typer.Option(0, help="Random seed."),
    init_weights: Path = typer.Option(None, help="Start from these weights (e.g. weights/s2former-unfolded.safetensors)."),
    reset_output: bool = typer.Option(False, help="Zero each stage's output convolution after --init-weights (start as the identity on the stage input)."),
    loss: str = typer.Option("l1", help="Reconstruction loss: l1 (as published) or l2 (mean squared error, e.g. to fine-tune for PSNR)."),
    stages: int = typer.Option(0, help="Unfolded presets: number of stages (0: the preset's). With --init-weights of fewer stages, the new ones start as copies of the last with zeroed output (identity)."),
    freeze_stages: int = typer.Option(0, help="Unfolded presets: keep the first K stages fixed and train the rest."),
    project_output: bool = typer.Option(None, "--project-output/--no-project-output", help="Unfolded presets: end with a projection onto the measurement (default: the preset's)."),
    gaptv_pool: Path = typer.Option(None, help="Precomputed GAP-TV tiles for GAP-TV-initialised presets (s2former-gaptv); see 'train cassi-pool'."),
    gaptv_online: int = typer.Option(0, help="Instead of --gaptv-pool: make a pool of this many GAP-TV tiles on the training device (fast on a GPU), remade a few at a time as training goes."),
    gaptv_tile: int = typer.Option(256, help="Tile size of the --gaptv-online pool (<= 256, >= --patch)."),
    gaptv_refresh: int = typer.Option(16, help="--gaptv-online: tiles remade every 20 steps (0: never)."),
    time_schedule: bool = typer.Option(False, help="Fit the cosine learning-rate decay to --max-minutes, counted from the start of this invocation (ends at the time limit or --steps, whichever comes first)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (CUDA when available)."),
    threads: int = typer.Option(0, help="CPU threads (0: cores - 1)."),
) -> None:
    from hsirestore.registry import get_spec
    from hsirestore.training.cassi import CassiTrainConfig, train
    from hsirestore.training.cave import shared_data_dir
    from hsirestore.training.common import check_config, check_lr, check_task

    check_lr(lr)
    check_task(preset, "cassi")
    spec = get_spec(preset)
    data_dir = data or shared_data_dir()
    if not (data_dir / "cave" / "train").is_dir() or not (data_dir / "cassi").is_dir():
        raise FormatError(f"training data not found under {data_dir} (expected cave/train and cassi/)")
    cfg = CassiTrainConfig(preset=preset, out=str(out), steps=steps, batch_size=batch_size,
                           patch=patch, lr=lr, mask_aware=mask_aware, shot_noise=shot_noise,
                           max_minutes=max_minutes, val_every=val_every, log_every=log_every,
                           ckpt_minutes=ckpt_minutes, seed=seed,
                           init_weights=str(init_weights) if init_weights else "", device=device,
                           threads=threads, reset_output=reset_output,
                           gaptv_pool=str(gaptv_pool) if gaptv_pool else "",
                           gaptv_online=gaptv_online, gaptv_tile=gaptv_tile,
                           gaptv_refresh=gaptv_refresh, time_schedule=time_schedule,
                           freeze_stages=freeze_stages, loss=loss)
    check_config(cfg)  # counts >= 1, durations and noise >= 0
    if patch % spec.size_multiple:
        raise OptionError(f"--patch must be a multiple of {spec.size_multiple}")
    if loss not in ("l1", "l2"):
        raise OptionError(f"--loss must be l1 or l2; got {loss!r}")
    unfolded = "stages" in spec.config
    if (stages or freeze_stages or project_output is not None) and not unfolded:
        raise OptionError(f"--stages, --freeze-stages and --project-output apply to unfolded "
                          f"presets (s2former-unfolded, s2former-gaptv), not {preset}")
    if stages < 0 or freeze_stages < 0:
        raise OptionError("--stages and --freeze-stages must be >= 0")
    if stages:
        cfg.model_overrides["stages"] = stages
    if project_output is not None:
        cfg.model_overrides["project_output"] = project_output
    n_stages = stages or spec.config.get("stages", 0)
    if freeze_stages and freeze_stages >= n_stages:
        raise OptionError(f"--freeze-stages must be below the number of stages ({n_stages})")
    if gaptv_online < 0 or gaptv_refresh < 0:
        raise OptionError("--gaptv-online and --gaptv-refresh must be >= 0")
    if gaptv_online and not patch <= gaptv_tile <= 256:
        raise OptionError(f"--gaptv-tile must be between --patch ({patch}) and 256; got {gaptv_tile}")
    if time_schedule and not max_minutes:
        raise OptionError("--time-schedule needs --max-minutes")
    if reset_output and not init_weights:
        raise OptionError("--reset-output only applies with --init-weights")

    if spec.config.get("init") == "gap-tv":
        if not gaptv_online and (gaptv_pool is None or not any(gaptv_pool.glob("*.npz"))):
            raise OptionError(f"{preset} refines GAP-TV estimates: build them first with "
                              "'hsirestore train cassi-pool --out DIR' and pass --gaptv-pool DIR")
    if resume and (cfg.model_overrides or freeze_stages) and (out / "last.pt").is_file():
        # options that say otherwise than the run's architecture are an error here (the
        # Python API keeps the run's); left out, they are taken from the run
        from hsirestore.errors import ModelError
        from hsirestore.training.common import (check_resume_preset, load_checkpoint,
                                                resume_overrides)

        ck = load_checkpoint(out / "last.pt")
        check_resume_preset(out / "last.pt", ck, preset)
        run_cfg = ck.get("config") or {}
        resume_overrides(out / "last.pt", preset, run_cfg.get("model_overrides"),
                         cfg.model_overrides, strict=True)
        if freeze_stages and freeze_stages != int(run_cfg.get("freeze_stages") or 0):
            raise ModelError(f"{out / 'last.pt'} was trained with --freeze-stages "
                             f"{int(run_cfg.get('freeze_stages') or 0)}, not {freeze_stages}")
        del ck
    train(cfg, resume=resume, data_dir=data_dir, log=typer.echo)


@command(train_app, "cassi-pool", help="""Precompute GAP-TV estimates for training s2former-gaptv.

Cuts every CAVE train scene into 256x256 tiles coded by mask_256.mat, plus --real-per-scene
tiles coded by random crops of mask_real_660.mat, and stores each tile's GAP-TV estimate
(120 iterations, as at inference) in OUT/<scene>_<k>.npz. Resumable; --shard/--shards split
the work between processes (run one per core).

\b
Examples:
  hsirestore train cassi-pool --out runs/gaptv_pool
  hsirestore train cassi-pool --out runs/gaptv_pool --shard 0 --shards 2 &
  hsirestore train cassi-pool --out runs/gaptv_pool --shard 1 --shards 2 &
""")
def train_cassi_pool(
    out: Path = typer.Option(Path("runs/gaptv_pool"), help="Folder for the tiles."),
    data: Path = typer.Option(None, help="Data folder with cave/ and cassi/ (default ../shared/data)."),
    real_per_scene: int = typer.Option(1, help="Tiles per scene coded by the real-system mask."),
    shard: int = typer.Option(0, help="This process's share of the tiles (0 .. shards-1)."),
    shards: int = typer.Option(1, help="Number of processes sharing the work."),
    iterations: int = typer.Option(120, help="GAP-TV iterations (keep the preset's value)."),
    threads: int = typer.Option(1, help="CPU threads."),
) -> None:
    from hsirestore.training.cassi_pool import build_gaptv_pool
    from hsirestore.training.cave import shared_data_dir

    data_dir = data or shared_data_dir()
    if not (data_dir / "cave" / "train").is_dir() or not (data_dir / "cassi").is_dir():
        raise FormatError(f"training data not found under {data_dir} (expected cave/train and cassi/)")
    if shards < 1 or not 0 <= shard < shards:
        raise OptionError(f"--shard must be in 0..{shards - 1}; got {shard}")
    if real_per_scene < 0 or iterations < 1 or threads < 1:
        raise OptionError("--real-per-scene must be >= 0, --iterations and --threads >= 1")
    made = build_gaptv_pool(out, data_dir, iterations=iterations, real_per_scene=real_per_scene,
                            shard=shard, shards=shards, threads=threads, log=typer.echo)
    typer.echo(f"{made} tiles computed; {len(list(out.glob('*.npz')))} in {out}")


@command(train_app, "cassi-export", help="""Export a CASSI training checkpoint as shipped weights.

Writes fp16 safetensors into weights/ (or --output) and records sha256, config, training
data, steps and validation metrics (recomputed on the exported weights when ../shared/data
is present) in weights/manifest.json. An existing file or manifest entry is only replaced
with --force.

\b
Examples:
  hsirestore train cassi-export runs/cassi/last.pt
""")
def export_cassi(
    checkpoint: Path = typer.Argument(..., help="Training checkpoint (last.pt)."),
    output: Path = EXPORT_OUTPUT, note: str = EXPORT_NOTE, force: bool = EXPORT_FORCE,
) -> None:
    from hsirestore.training.cassi import export_weights

    run_export(export_weights, checkpoint, output, note, force)
