"""`hsirestore train hsivar` (two stages) and `hsirestore train hsivar-export`."""
from __future__ import annotations

from pathlib import Path

import typer

from hsirestore.cli.app import train_app
from hsirestore.cli.common import command
from hsirestore.cli.train_common import EXPORT_FORCE, EXPORT_NOTE, EXPORT_OUTPUT, run_export
from hsirestore.errors import OptionError


@command(train_app, "hsivar", help="""Train HSI-VAR on CAVE (two stages, resumable).

Stage 1 trains the multi-scale VQ-VAE (encoder, residual quantizer, SSA decoder) on clean
crops. Stage 2 starts from OUT/stage1/last.pt (or --init-weights), copies the encoder into
the condition encoder (with --init-weights FILE.safetensors, exported weights, it instead
continues training that restoration model, condition encoder included), freezes the encoder
and codebook, and trains the condition encoder
(alignment loss), degradation embeddings, next-scale transformer (token cross-entropy) and
decoder (L1) on random degradations of every type and mixtures. Checkpoints go to
OUT/stage{1,2}/last.pt every few minutes and on Ctrl-C, logs to OUT/stage{1,2}/log.jsonl;
--resume continues (without it, a stage folder that holds a checkpoint is refused).
Export with 'hsirestore train hsivar-export OUT/stage2/last.pt'.

\b
Examples:
  hsirestore train hsivar --stage 1 --preset hsivar-compact --steps 6000 --out runs/hsivar
  hsirestore train hsivar --stage 2 --preset hsivar-compact --steps 20000 --out runs/hsivar
  hsirestore train hsivar --stage 2 --out runs/hsivar --resume --max-minutes 60
  hsirestore train hsivar --stage 2 --init-weights weights/hsivar-compact.safetensors --out runs/more
  hsirestore train hsivar --stage 1 --preset hsivar --patch 128 --batch-size 16 --device cuda
""")
def train_hsivar(
    stage: int = typer.Option(..., help="1 (VQ-VAE on clean cubes) or 2 (restoration)."),
    preset: str = typer.Option("hsivar-compact", help="Registered HSI-VAR variant."),
    out: Path = typer.Option(Path("runs/hsivar"), help="Run folder (stage1/, stage2/)."),
    steps: int = typer.Option(20000, help="Total optimisation steps of this stage."),
    batch_size: int = typer.Option(8, help="Crops per step."),
    patch: int = typer.Option(64, help="Crop size in pixels (multiple of the model's size multiple)."),
    lr: float = typer.Option(4e-4, help="Peak learning rate (AdamW, warm-up then cosine)."),
    resume: bool = typer.Option(False, help="Continue from OUT/stageN/last.pt."),
    init_weights: Path = typer.Option(None, help="Stage 2: stage-1 checkpoint (default OUT/stage1/last.pt), or exported .safetensors weights to continue."),
    init: Path = typer.Option(None, "--init", hidden=True, help="Old spelling of --init-weights."),
    data: Path = typer.Option(None, help="Data folder with cave/train and cave/val (default ../shared/data)."),
    max_mix: int = typer.Option(2, help="Stage 2: at most this many degradation types mixed."),
    free_run: float = typer.Option(0.25, help="Stage 2: share of steps whose pixel loss decodes "
                                   "tokens generated as at inference (0..1)."),
    max_minutes: float = typer.Option(0.0, help="Stop (with a checkpoint) after this many minutes (0: no limit)."),
    val_every: int = typer.Option(1000, help="Validate every N steps (0: never)."),
    log_every: int = typer.Option(50, help="Log every N steps."),
    ckpt_minutes: float = typer.Option(3.0, help="Minutes between checkpoints (also one at the end and on Ctrl-C)."),
    threads: int = typer.Option(0, help="CPU threads (0: cores - 1)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (CUDA when available)."),
) -> None:
    from hsirestore.training.common import check_lr
    from hsirestore.training.hsivar import HsivarTrainConfig, train

    check_lr(lr)
    if stage not in (1, 2):
        raise OptionError(f"--stage must be 1 or 2; got {stage}")
    if steps < 1 or batch_size < 1 or max_mix < 1:
        raise OptionError("--steps, --batch-size and --max-mix must be at least 1")
    if not 0.0 <= free_run <= 1.0:
        raise OptionError(f"--free-run must be in [0, 1]; got {free_run}")
    if init is not None and init_weights is not None:
        raise OptionError("--init is the old spelling of --init-weights: give one of them")
    init = init_weights or init  # a missing file: the trainer's one check (exit 1)
    cfg = HsivarTrainConfig(stage=stage, preset=preset, out=str(out), steps=steps,
                            batch_size=batch_size, patch=patch, lr=lr, max_mix=max_mix, free_run=free_run,
                            max_minutes=max_minutes, val_every=val_every, log_every=log_every,
                            ckpt_minutes=ckpt_minutes, threads=threads, seed=seed,
                            init=str(init) if init else "", device=device)
    train(cfg, resume=resume, data_dir=data, log=typer.echo)


@command(train_app, "hsivar-export", help="""Export a stage-2 HSI-VAR checkpoint as shipped weights.

Writes fp16 safetensors into weights/ (file name from the preset, e.g.
hsivar-compact.safetensors) or --output, and records sha256, config, training data, steps
and the last validation metrics in that folder's manifest.json. An existing file or
manifest entry is only replaced with --force.

\b
Examples:
  hsirestore train hsivar-export runs/hsivar/stage2/last.pt
""")
def export_hsivar(
    checkpoint: Path = typer.Argument(..., help="Stage-2 training checkpoint (last.pt)."),
    output: Path = EXPORT_OUTPUT, note: str = EXPORT_NOTE, force: bool = EXPORT_FORCE,
) -> None:
    from hsirestore.training.hsivar import export_weights

    run_export(export_weights, checkpoint, output, note, force)
