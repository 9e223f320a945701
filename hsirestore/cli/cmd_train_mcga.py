"""`hsirestore train mcga`: two-stage MCGA training (resumable)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import train_app
from hsirestore.cli.common import command


@command(train_app, "mcga", help="""Train MCGA (RGB -> 31-band HSI) in two stages.

Stage 1 learns the multi-scale VQ-VAE and one codebook set per source (CAVE train scenes;
synthetic scenes from colour-science reflectances x illuminants): the Mixture of Codebooks.
Stage 2 trains GANet on RGB rendered through the NTIRE 2022 response and camspec cameras
(Nokia_N900 held out), with the MoC and stage-1 decoder frozen. Checkpoints OUT/stage{1,2}.pt,
log OUT/log.jsonl; stage 2 exports OUT/<preset>.safetensors (use with rgb2hsi --weights).

\b
Examples:
  hsirestore train mcga --stage 1 --preset mcga-compact --steps 20000 --out runs/mcga
  hsirestore train mcga --stage 2 --preset mcga-compact --steps 40000 --out runs/mcga
  hsirestore train mcga --stage 2 --out runs/mcga --resume --max-minutes 60
""")
def train_mcga(
    stage: int = typer.Option(..., help="1 (VQ-VAE + codebooks) or 2 (GANet)."),
    preset: str = typer.Option("mcga-compact", help="mcga, mcga-compact or mcga-tiny."),
    steps: int = typer.Option(20000, help="Total optimisation steps of this stage."),
    out: Path = typer.Option(Path("runs/mcga"), help="Run folder (checkpoints, log.jsonl)."),
    resume: bool = typer.Option(False, help="Continue from OUT/stage<N>.pt."),
    max_minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    batch_size: int = typer.Option(8, help="Patches per step."),
    patch: int = typer.Option(64, help="Patch size (multiple of 8)."),
    lr: float = typer.Option(4e-4, help="AdamW learning rate (peak)."),
    warmup: int = typer.Option(200, help="Linear warm-up steps before the cosine decay."),
    log_every: int = typer.Option(50, help="Log every N steps."),
    ckpt_every: int = typer.Option(500, help="Checkpoint every N steps (and every 5 minutes)."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    from hsirestore.training.mcga import TrainConfig, Trainer

    cfg = TrainConfig(stage=stage, preset=preset, steps=steps, batch_size=batch_size, patch=patch,
                      lr=lr, warmup=warmup, log_every=log_every, ckpt_every=ckpt_every, max_minutes=max_minutes,
                      seed=seed)
    result = Trainer(cfg, out, resume=resume).run(echo=typer.echo)
    typer.echo(json.dumps(result))
