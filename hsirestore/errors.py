"""Typed exceptions. The CLI turns every :class:`HsiRestoreError` into a one-line message
and a non-zero exit; anything else is a bug. The value errors (InvalidValueError,
ShapeError, OptionError) are also ``ValueError``s, so Python callers may catch either."""


class HsiRestoreError(Exception):
    """Base class of every error the tool reports to users."""

    exit_code = 1


class FormatError(HsiRestoreError):
    """The file is missing, malformed, truncated, or of an unknown format/data type."""


class AmbiguousInputError(HsiRestoreError):
    """The input could be read more than one way (e.g. several 3-D .mat variables, layout)."""


class InvalidValueError(HsiRestoreError, ValueError):
    """Data values the operation cannot use (NaN/Inf where not allowed, wrong ranges)."""


class ShapeError(HsiRestoreError, ValueError):
    """Shapes that do not fit (band count a model cannot take, mask/measurement mismatch)."""


class OutputExistsError(HsiRestoreError):
    """The output exists and --force was not given."""


class OutputError(HsiRestoreError):
    """The output cannot be written (unwritable folder, disk full, ...)."""


class ModelError(HsiRestoreError):
    """Unknown model name, bad checkpoint, checksum mismatch, missing weights."""


class OptionError(HsiRestoreError, ValueError):
    """An option value that cannot be parsed (degradation spec, device, tile size...).
    A usage error: the CLI exits with status 2, as for Click's own option errors."""

    exit_code = 2


class UnknownModelError(ModelError, OptionError):
    """A model name that is not registered (--model, --preset): a usage error (exit 2)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), at most
    ``limit`` characters: third-party errors often carry paragraphs of advice."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
