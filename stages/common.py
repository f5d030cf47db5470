"""What every stage shares: reading its params sections, seeding, progress, error exits."""

from __future__ import annotations

import difflib
import functools
import random
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from pipeline.errors import AnimecolorError, ParamsError

console = Console(stderr=True)  # progress, notes and errors go to stderr; stdout stays clean


def load_params(path: str | Path, *sections: str) -> dict:
    """Read `path` and validate the named sections (`stages/params.py`); returns {section: typed params}.

    Every section a stage reads must be present; an unknown section name is an error too (a typo
    such as `crawll:` would otherwise leave `crawl` silently on its defaults)."""
    from stages.params import SECTIONS, validate_section  # the library configs (and torch): only when a stage runs

    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot read ({exc})") from None
    if data is None:
        raise ParamsError(f"{path}: empty (it needs the sections {', '.join(sections)})")
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must be a mapping of sections")
    for name in data:
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), SECTIONS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ParamsError(f"{path}: {name}: unknown params section ({hint}known: {', '.join(SECTIONS)})")
    out = {}
    for section in sections:
        if section not in data:
            raise ParamsError(f"{path}: {section}: section is missing (this stage needs it)")
        try:
            out[section] = validate_section(section, data[section])
        except ParamsError as exc:
            raise ParamsError(f"{path}: {exc}") from None
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:  # stages that never import torch do not pay for it
        sys.modules["torch"].manual_seed(seed)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "-/s", style="cyan")


@contextmanager
def progress_bar(description: str, total: int):
    """Rich progress bar; yields an `advance(n)` callable for library functions."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextmanager
def counting_bar(description: str):
    """Progress bar with ok / skipped / failed counts; yields (advance(status), set_total(n))."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TextColumn("[green]{task.fields[ok]} ok[/] [dim]{task.fields[skipped]} skipped[/] "
                          "[red]{task.fields[failed]} failed[/]"), TimeElapsedColumn()]
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=None, **counts)

        def advance(status: str) -> None:
            counts[status] += 1
            progress.update(task, advance=1, **counts)

        yield advance, lambda n: progress.update(task, total=n)


def user_errors(fn: Callable) -> Callable:
    """Turn `AnimecolorError` (bad params, bad input) into one red line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AnimecolorError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: rerun the same command to resume")
            sys.exit(130)

    return wrapper
