"""`animecolor app`: colour drawings in the browser (the Gradio page of pipeline/app.py), served locally.

Gradio is an optional extra (`pip install -e '.[app]'`) and is imported only when the command
runs, so `animecolor --help` stays fast and works without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import typer
from rich.markup import escape

from pipeline.model.defaults import DEFAULT_MODEL
from stages.common import console, user_errors


def _fail(message: str) -> None:
    """One red line and exit 2, like `user_errors`, with the text printed literally ("[app]" is not markup)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@user_errors
def main(model: Path = typer.Option(DEFAULT_MODEL, help="Exported model (.safetensors, see `export`)."),
         host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every network interface)."),
         port: int = typer.Option(7860, min=1, max=65535, help="Port to listen on."),
         device: str = typer.Option("auto", help="auto | cpu | cuda.")) -> None:
    """Colour drawings in a web page: upload or draw a drawing, give a reference, press Colorize."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported (the page also says so)
    try:
        import gradio  # noqa: F401
    except ImportError:
        _fail("the app needs Gradio: pip install -e '.[app]'")
    if not model.exists():
        _fail(f"{model}: model file not found: run `dvc repro` or pass --model")
    if not model.is_file():
        _fail(f"{model}: not a regular file (a model is one .safetensors file)")
    from pipeline.app import bind_url, exposure_warning, launch

    # results, uploads and Gradio's cache in one private folder (0700, files 0600), removed on exit,
    # Ctrl-C and SIGTERM alike
    work = Path(tempfile.mkdtemp(prefix="animecolor-app-"))
    gradio_temp = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    umask = os.umask(0o077)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        demo, _ = launch(model, host, port, device, block=False, quiet=True, work_dir=work / "page")
        console.print(f"animecolor app: {model} on {bind_url(host, port)} (Ctrl-C to stop)", highlight=False,
                      soft_wrap=True)
        warning = exposure_warning(host)
        if warning:
            console.print(f"[bold yellow]warning[/]: {escape(warning)}", highlight=False, soft_wrap=True)
        demo.block_thread()
    except KeyboardInterrupt:  # a server has nothing to resume: just say it stopped
        console.print("animecolor app: stopped")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.umask(umask)
        if gradio_temp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = gradio_temp
        signal.signal(signal.SIGTERM, previous)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does, so the work folder is removed
