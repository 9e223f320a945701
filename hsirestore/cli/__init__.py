"""Command-line interface: thin Typer commands, one module per command."""
from hsirestore.cli.app import app, train_app  # noqa: F401

# Each module registers its commands on import.
from hsirestore.cli import (  # noqa: F401,E402
    cmd_cassi,
    cmd_degrade,
    cmd_demo,
    cmd_denoise,
    cmd_evaluate,
    cmd_info,
    cmd_models,
    cmd_render,
    cmd_rgb2hsi,
    cmd_simulate,
    cmd_train_cassi,
    cmd_train_hsivar,
    cmd_train_mcga,
)


def main() -> None:
    app()
