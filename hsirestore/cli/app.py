"""The Typer application objects shared by the command modules."""
import typer

HELP = """Restore hyperspectral images with learned models.

\b
Examples:
  hsirestore demo out/                                   # synthetic scene, no data needed
  hsirestore info scene.hdr
  hsirestore cassi meas.mat --mask mask.mat -o cube.h5 --preview
  hsirestore denoise noisy.hdr -o clean.hdr --degradation blur+noise
  hsirestore rgb2hsi photo.png -o cube.h5 --tta
  hsirestore simulate-cassi scene.h5 --mask mask.mat -o meas.mat
  hsirestore degrade clean.hdr noisy.hdr --degradation blur+noise:sigma=15
  hsirestore evaluate pred.h5 ref.h5 -o report
  hsirestore models
"""

app = typer.Typer(
    name="hsirestore",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

train_app = typer.Typer(
    help="Train the models (resumable; see each subcommand).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(train_app, name="train")


def _show_version(value: bool) -> None:
    if value:
        import platform

        from hsirestore import __version__

        typer.echo(f"hsirestore {__version__} (Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """Restore hyperspectral images with learned models."""
    import logging

    # readers turn decoding problems into one-line errors; tifffile's own log lines about
    # the same problem would only repeat them on stderr
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
