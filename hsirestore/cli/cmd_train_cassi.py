"""`hsirestore train cassi`: train S2-Transformer on CAVE with simulated CASSI measurements."""
from __future__ import annotations

from pathlib import Path

import typer

from hsirestore.cli.app import train_app
from hsirestore.cli.common import command
from hsirestore.errors import OptionError


@command(train_app, "cassi", help="""Train S2-Transformer for CASSI decoding (resumable).

Needs the CAVE scenes and CASSI masks laid out as in ../shared/data (or --data DIR).
Checkpoints go to OUT/last.pt every few minutes; --resume continues from there.
Export the shipped weights with 'hsirestore train cassi-export OUT/last.pt'.

\b
Examples:
  hsirestore train cassi --preset s2former-compact --steps 20000 --out runs/cassi
  hsirestore train cassi --out runs/cassi --resume --max-minutes 60
  hsirestore train cassi --preset s2former-unfolded --init-weights weights/s2former-unfolded.safetensors
  hsirestore train cassi --preset s2former --patch 128 --batch-size 8   # published size, GPU
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
    max_minutes: float = typer.Option(0.0, help="Stop after this many minutes (0: no limit)."),
    val_every: int = typer.Option(500, help="Validate every N steps (0: never)."),
    log_every: int = typer.Option(50, help="Log every N steps."),
    ckpt_minutes: float = typer.Option(3.0, help="Minutes between checkpoints."),
    seed: int = typer.Option(0, help="Random seed."),
    init_weights: Path = typer.Option(None, help="Start from these weights (e.g. weights/s2former-unfolded.safetensors)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto (CUDA when available)."),
    threads: int = typer.Option(0, help="CPU threads (0: cores - 1)."),
) -> None:
    from hsirestore.training.cassi import CassiTrainConfig, train
    from hsirestore.training.cave import shared_data_dir

    data_dir = data or shared_data_dir()
    if not (data_dir / "cave" / "train").is_dir() or not (data_dir / "cassi").is_dir():
        raise OptionError(f"training data not found under {data_dir} (expected cave/train and cassi/)")
    if patch % 8:
        raise OptionError("--patch must be a multiple of 8")
    if threads < 0:
        raise OptionError(f"--threads must be >= 0; got {threads}")
    cfg = CassiTrainConfig(preset=preset, out=str(out), steps=steps, batch_size=batch_size,
                           patch=patch, lr=lr, mask_aware=mask_aware, shot_noise=shot_noise,
                           max_minutes=max_minutes, val_every=val_every, log_every=log_every,
                           ckpt_minutes=ckpt_minutes, seed=seed,
                           init_weights=str(init_weights) if init_weights else "", device=device,
                           threads=threads)
    train(cfg, resume=resume, data_dir=data_dir, log=typer.echo)


@command(train_app, "cassi-export", help="""Export a CASSI training checkpoint as shipped weights.

Writes fp16 safetensors into weights/ (or --output) and records sha256, config, training
data, steps and validation metrics (recomputed on the exported weights when ../shared/data
is present) in weights/manifest.json.

\b
Examples:
  hsirestore train cassi-export runs/cassi/last.pt
""")
def export_cassi(
    checkpoint: Path = typer.Argument(..., help="Training checkpoint (last.pt)."),
    output: Path = typer.Option(None, "-o", "--output", help="Weights file (default weights/<preset>)."),
    note: str = typer.Option("", help="Free note stored in the manifest."),
) -> None:
    import json

    from hsirestore.training.cassi import export_weights

    if not checkpoint.exists():
        raise OptionError(f"{checkpoint}: checkpoint not found")
    entry = export_weights(checkpoint, output, note=note)
    typer.echo(json.dumps({k: entry[k] for k in ("model", "steps", "sha256", "val_metrics")}))
