"""What every stage shares: reading its params sections, seeding, progress, error exits."""

from __future__ import annotations

import difflib
import functools
import os
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

from pipeline.errors import AnimecolorError, ParamsError, shown

console = Console(stderr=True)  # progress, notes and errors go to stderr; stdout stays clean


MAX_PARAMS_BYTES = 1_000_000  # params.yaml is ~10 KB; a 50 MB file is a mistake or an attack
MAX_YAML_DEPTH = 32           # params nest 3 deep; 900 nested "[" would overflow the YAML composer's recursion
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: same results, faster


def check_yaml_shape(text: str, path: str | Path) -> None:
    """Refuse, from the YAML event stream (no recursion, nothing expanded), what params.yaml never
    needs and what would make loading it wrong or explosive: anchors and aliases (a "billion
    laughs" alias bomb expands to gigabytes), a key given twice in one mapping (YAML keeps the last
    one silently), and nesting deeper than MAX_YAML_DEPTH. One ParamsError line each."""
    stack: list[dict] = []  # open collections: {"map": bool, "keys": {key: line}, "want_key": bool, "at": path}
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ParamsError(f"{path}: line {line}: YAML anchors and aliases (&name, *name) are not allowed in "
                              "params: write each value out")
        if not isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
            continue
        where = ""
        if stack:
            parent = stack[-1]
            where = parent["at"]
            if parent["map"] and parent["want_key"]:
                key = event.value if isinstance(event, yaml.ScalarEvent) else None
                if key is not None:
                    dotted = f"{where}.{key}" if where else key
                    dotted = dotted if len(dotted) <= 80 and dotted.isprintable() else shown(dotted)
                    if key in parent["keys"]:
                        raise ParamsError(f"{path}: {dotted}: given twice (lines {parent['keys'][key]} and {line}); "
                                          "YAML would keep the last silently: delete one")
                    parent["keys"][key] = line
                    parent["key"] = key
                parent["want_key"] = False
            elif parent["map"]:
                parent["want_key"] = True
                where = f"{where}.{parent.get('key')}" if where else str(parent.get("key"))
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_YAML_DEPTH:
                raise ParamsError(f"{path}: line {line}: nested more than {MAX_YAML_DEPTH} deep (params nest 3 deep)")
            stack.append({"map": isinstance(event, yaml.MappingStartEvent), "keys": {}, "want_key": True,
                          "at": where})


def read_params_file(path: Path, extra: tuple[str, ...] = ()) -> dict | None:
    """A params-shaped YAML file (params.yaml, a recipe) as a dict of known sections (and `extra`
    top-level keys), unvalidated; None when empty. Refuses what `check_yaml_shape` refuses and
    unknown section names."""
    from stages.params import SECTIONS

    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        if path.stat().st_size > MAX_PARAMS_BYTES:
            raise ParamsError(f"{path}: {path.stat().st_size:,} bytes; a params file is a few KB "
                              f"(over {MAX_PARAMS_BYTES:,} is refused)")
        text = path.read_text()
        check_yaml_shape(text, path)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot read ({exc})") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must be a mapping of sections")
    for name in data:
        if name not in SECTIONS and name not in extra:
            close = difflib.get_close_matches(str(name)[:100], SECTIONS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            shown_name = name if str(name).isprintable() and len(str(name)) <= 80 else shown(name)
            raise ParamsError(f"{path}: {shown_name}: unknown params section ({hint}known: {', '.join(SECTIONS)})")
    return data


def load_params(path: str | Path, *sections: str) -> dict:
    """Read `path` and validate the named sections (`stages/params.py`); returns {section: typed params}.

    Every section a stage reads must be present; an unknown section name is an error too (a typo
    such as `crawll:` would otherwise leave `crawl` silently on its defaults)."""
    # the library configs (and torch): only when a stage runs
    from stages.params import check_across, validate_section

    path = Path(path)
    data = read_params_file(path)
    if data is None:
        raise ParamsError(f"{path}: empty (it needs the sections {', '.join(sections)})")
    out = {}
    for section in sections:
        if section not in data:
            raise ParamsError(f"{path}: {section}: section is missing (this stage needs it)")
        try:
            out[section] = validate_section(section, data[section])
        except ParamsError as exc:
            raise ParamsError(f"{path}: {exc}") from None
    try:
        check_across(out)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    return out


def probe_cache_file() -> Path:
    """Where training's precision probe keeps this machine's answers (`pipeline.device.probe_precision`):
    $ANIMECOLOR_CACHE, else ~/.cache/animecolor; outside the repository, so runs on other machines
    time their own CPU."""
    root = os.environ.get("ANIMECOLOR_CACHE") or Path.home() / ".cache" / "animecolor"
    return Path(root) / "precision_probe.json"


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
