"""User-facing errors: the CLI prints these as one line, never as a traceback."""


class AnimecolorError(Exception):
    """A problem the user can fix (bad input file, bad parameter, missing model...)."""


class ParamsError(AnimecolorError):
    """An invalid `params.yaml` value; the message names the key."""
