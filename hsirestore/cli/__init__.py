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


def _click_exceptions():
    """The Click exception module Typer uses (Typer >= 0.20 vendors Click as typer._click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older Typer on top of Click
        from click import exceptions
    return exceptions


def main() -> None:
    """Console entry point: Click usage errors (unknown option, missing argument, bad value)
    become one ``hsirestore: error: ...`` line with exit code 2, like every other error."""
    import sys

    import typer

    cx = _click_exceptions()
    try:
        code = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as e:  # a bare command group: show its help
        print(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(0)
    except cx.UsageError as e:
        where = e.ctx.command_path if e.ctx else "hsirestore"
        print(f"hsirestore: error: {e.format_message()} (see '{where} --help')", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("hsirestore: error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
