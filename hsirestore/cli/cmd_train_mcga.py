"""`hsirestore train mcga`: two-stage MCGA training (resumable)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import train_app
from hsirestore.cli.common import command
from hsirestore.cli.train_common import EXPORT_FORCE, EXPORT_NOTE, EXPORT_OUTPUT, run_export
from hsirestore.errors import OptionError


@command(train_app, "mcga", help="""Train MCGA (RGB -> 31-band HSI) in two stages.

Stage 1 learns the multi-scale VQ-VAE and one codebook set per source (CAVE train scenes;
synthetic scenes from colour-science reflectances x illuminants): the Mixture of Codebooks.
Stage 2 trains GANet on RGB rendered through the NTIRE 2022 response and camspec cameras
(Nokia_N900 held out), with the MoC and stage-1 decoder frozen. Checkpoints go to
OUT/stage{1,2}.pt every few minutes and on Ctrl-C, logs to OUT/log.jsonl; --resume continues
(without it, an existing checkpoint of the stage is refused). Stage 2 writes
OUT/<preset>.safetensors (use with rgb2hsi --weights); export the shipped weights with
'hsirestore train mcga-export OUT/stage2.pt'.

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
    max_minutes: float = typer.Option(0.0, help="Stop (with a checkpoint) after this many minutes (0: no limit)."),
    batch_size: int = typer.Option(8, help="Patches per step."),
    patch: int = typer.Option(64, help="Patch size (multiple of 8)."),
    lr: float = typer.Option(4e-4, help="AdamW learning rate (peak)."),
    warmup: int = typer.Option(200, help="Linear warm-up steps before the cosine decay."),
    log_every: int = typer.Option(50, help="Log every N steps."),
    ckpt_minutes: float = typer.Option(3.0, help="Minutes between checkpoints (also one at the end and on Ctrl-C)."),
    ckpt_every: int = typer.Option(None, hidden=True, help="Also checkpoint every N steps (the cadence before --ckpt-minutes)."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: cores - 1)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (CUDA when available)."),
    init_weights: Path = typer.Option(None, help="Stage 2: fine-tune these exported weights (e.g. "
                                      "weights/mcga-compact.safetensors) instead of OUT/stage1.pt."),
    w_consistency: float = typer.Option(0.0, help="Stage 2: weight of the loss on the output "
                                        "projected onto the input RGB (for rgb2hsi --consistency)."),
    w_mrae: float = typer.Option(0.0, help="Stage 2: weight of a relative-error (MRAE) loss term "
                                 "on the output (and its projection), which weighs dark pixels more."),
) -> None:
    from hsirestore.training.common import check_lr
    from hsirestore.training.mcga import TrainConfig, Trainer

    check_lr(lr)
    cfg = TrainConfig(stage=stage, preset=preset, steps=steps, batch_size=batch_size, patch=patch,
                      lr=lr, warmup=warmup, log_every=log_every, ckpt_minutes=ckpt_minutes,
                      ckpt_every=ckpt_every, max_minutes=max_minutes,
                      seed=seed, threads=threads, device=device,
                      init_weights=str(init_weights) if init_weights else "",
                      w_consistency=w_consistency, w_mrae=w_mrae)
    result = Trainer(cfg, out, resume=resume).run(echo=typer.echo)
    typer.echo(json.dumps(result))


@command(train_app, "mcga-export", help="""Export a stage-2 MCGA checkpoint as shipped weights.

Writes fp16 safetensors into weights/ (file name from the preset, e.g.
mcga-compact.safetensors) or --output, and records sha256, config, training data, steps and
the validation metrics (--metrics: the JSON written by benchmarks/rgb2hsi_val.py --json) in
that folder's manifest.json. An existing file or manifest entry is only replaced with --force.

\b
Examples:
  python benchmarks/rgb2hsi_val.py --weights runs/mcga/stage2.pt --json val.json
  hsirestore train mcga-export runs/mcga/stage2.pt --metrics val.json
""")
def export_mcga(
    checkpoint: Path = typer.Argument(..., help="Stage-2 training checkpoint (OUT/stage2.pt)."),
    output: Path = EXPORT_OUTPUT,
    metrics: Path = typer.Option(None, help="Validation metrics JSON to record in the manifest."),
    note: str = EXPORT_NOTE, force: bool = EXPORT_FORCE,
) -> None:
    from hsirestore.training.mcga import export_weights

    val = None
    if metrics is not None:
        try:
            val = json.loads(metrics.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise OptionError(f"--metrics {metrics}: cannot read JSON ({e})") from e
    run_export(export_weights, checkpoint, output, note, force, metrics=val)
