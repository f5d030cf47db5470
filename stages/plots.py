"""`animecolor plots`: the DAG's plots as PNG files and a page that needs no network.

`dvc plots show` writes an HTML page whose training curves are drawn by Vega scripts from a CDN,
so they are blank offline. This command runs it (the page is kept, for online use), then renders
every curve to a PNG with vl-convert and writes `offline.html` beside it: the curves and the
image plots, nothing fetched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import typer

from pipeline.errors import AnimecolorError
from stages.common import console, progress_bar, user_errors


def _dvc(*args: str) -> str:
    dvc = shutil.which("dvc")
    if dvc is None:
        raise AnimecolorError("dvc is not installed (pip install dvc)")
    done = subprocess.run([dvc, *args], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise AnimecolorError(f"dvc {' '.join(args[:2])}: {last[0][:200]}")
    return done.stdout


def render_plots(out: Path, revs: list[str]) -> list[Path]:
    """Write `out`/index.html (dvc's own), `out`/curves/*.png and `out`/offline.html; returns the PNGs."""
    from pipeline.report import plots_page, vega_png

    _dvc("root")  # outside a DVC project this fails; `dvc plots show` would just print nothing
    command = ("plots", "diff", *revs) if revs else ("plots", "show")
    _dvc(*command, "-o", str(out))
    shown = json.loads(_dvc(*command, "--json", "-o", str(out)))
    curves, sections = out / "curves", []
    shutil.rmtree(curves, ignore_errors=True)
    curves.mkdir(parents=True)
    written = []
    entries = [(name, entry) for name, items in shown.get("data", {}).items() for entry in items]
    if not entries:
        raise AnimecolorError("dvc plots: no plots to render (run `dvc repro` first, or name revisions that have them)")
    with progress_bar("plots", len(entries)) as advance:
        for name, entry in entries:
            if entry.get("type") == "vega":
                png = curves / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")
                png.write_bytes(vega_png(entry["content"]))
                written.append(png)
                sections.append((name, png.relative_to(out).as_posix()))
            elif entry.get("type") == "image" and entry.get("url"):
                image = Path(entry["url"])
                label = f"{name} ({', '.join(entry.get('revisions', []))})"
                sections.append((label, image.relative_to(out.resolve()).as_posix() if image.is_absolute()
                                 else image.as_posix()))
            advance()
    (out / "offline.html").write_text(plots_page("animecolor plots", sections))
    return written


@user_errors
def main(revs: list[str] = typer.Argument(None, help="Revisions or experiments to compare (none: the workspace)."),
         out: Path = typer.Option(Path("dvc_plots"), "--out", "-o", help="Folder for the pages and PNGs.")) -> None:
    """Render the pipeline's plots to PNG and an offline page (training curves without a CDN)."""
    written = render_plots(out, list(revs or []))
    console.print(f"plots: {len(written)} curves as PNG, {out / 'offline.html'} (offline), "
                  f"{out / 'index.html'} (dvc's page, needs the network for its curves)")
