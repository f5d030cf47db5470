"""User-facing errors: the CLI prints these as one line, never as a traceback."""


class AnimecolorError(Exception):
    """A problem the user can fix (bad input file, bad parameter, missing model...)."""


class ParamsError(AnimecolorError):
    """An invalid `params.yaml` value; the message names the key."""


def shown(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to about `limit` characters for an error line: a 100k-character prompt or
    a 50 MB params value is named, never pasted."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
