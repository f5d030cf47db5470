"""Benchmark: click-to-image latency of `animecolor app` vs the same picture through `animecolor colorize`.

    python tests/benchmarks/bench_app.py [--model PATH] [--runs 5] [--steps 20]

The page loads the model once and keeps it; the CLI pays Python start-up, the imports and the
model load on every call. Both colour the same drawing (the app's first example, 205x256) with
the same reference, DDIM steps and seed. App: headless system Chromium (Playwright) uploads the
two images once, then each run is one click on Colorize until the new output image is decoded
in the page (`tests/browser.py:colorize`). CLI: wall time of the whole subprocess.
Also printed: the bare `colorize_image` call in this process (the floor both pay). The three
are interleaved run by run, so other load on the machine hits them alike; min and median shown.

Without --model, an untrained model with the default params.yaml architecture is used
(64 px, channels 32, channel_mults [1, 2, 2], res_blocks 1): latency does not depend on the
weights. Needs the `app` and `test` extras and `apt-get install chromium`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARCH = dict(image_size=64, channels=32, channel_mults=(1, 2, 2), res_blocks=1, heads=4)


def untrained_model(path: str | Path, seed: int = 0, **arch) -> Path:
    """Export a randomly initialised model (the default architecture unless `arch` says otherwise)."""
    import torch

    from pipeline.colorize import export_model
    from pipeline.model.diffusion import DiffusionConfig
    from pipeline.model.unet import UNet, UNetConfig

    torch.manual_seed(seed)
    config = UNetConfig(**{**DEFAULT_ARCH, **arch})
    model = UNet(config)
    with torch.no_grad():  # the zero-initialised layers get small weights: a non-constant output
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.02)
    export_model({"unet": config.to_dict(), "diffusion": DiffusionConfig().to_dict(), "ema": model.state_dict(),
                  "step": 0}, path)
    return Path(path)


def cli_command() -> list[str]:
    exe = shutil.which("animecolor")
    return [exe] if exe else [sys.executable, "-m", "stages.cli"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from tests.browser import colorize, find_chromium, free_port, open_page

    from pipeline.app import launch
    from pipeline.colorize import ColorizeOptions, colorize_image, load_model
    from pipeline.data.imageio import read_user_image

    chromium = find_chromium()
    if chromium is None:
        sys.exit("no system Chromium: apt-get install chromium")
    work = Path(tempfile.mkdtemp(prefix="animecolor-bench-app-"))
    app_times, cli_times, call_times = [], [], []
    try:
        model = Path(args.model) if args.model else untrained_model(work / "default-untrained.safetensors")
        demo, url = launch(model, port=free_port(), device="cpu", block=False, quiet=True, work_dir=work / "app")
        examples = work / "app" / "examples"
        drawing, reference = examples / "example1_drawing.png", examples / "example1_reference.png"
        net, diffusion, info = load_model(model, "cpu")
        sketch, ref = read_user_image(drawing), read_user_image(reference)
        opts = ColorizeOptions(sample_steps=args.steps, seed=0)
        cli = [*cli_command(), "colorize", str(drawing), "-r", str(reference), "--model", str(model),
               "-o", str(work / "cli.png"), "--steps", str(args.steps), "--seed", "0", "--device", "cpu"]
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
                page = open_page(browser, url)
                page.locator("#steps input[type=number]").fill(str(args.steps))
                page.locator("#steps input[type=number]").press("Enter")
                colorize(page, drawing, reference)  # warm-ups: first request, first upload, first call
                colorize_image(net, diffusion, sketch, ref, opts)
                for _ in range(args.runs):  # interleaved, so other load on the machine hits all three alike
                    app_times.append(colorize(page)[1])
                    t0 = time.perf_counter()
                    subprocess.run(cli, check=True, capture_output=True, cwd=ROOT)
                    cli_times.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    colorize_image(net, diffusion, sketch, ref, opts)
                    call_times.append(time.perf_counter() - t0)
                browser.close()
        finally:
            demo.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    h, w = sketch.shape[:2]
    print(f"animecolor app vs CLI: {w}x{h} drawing, {info['image_size']} px model "
          f"(channels {info['unet']['channels']}, mults {list(info['unet']['channel_mults'])}), "
          f"{args.steps} DDIM steps, CPU, {torch.get_num_threads()} torch threads")
    print(f"  {'path':<34}{'median s':>10}{'min s':>9}  runs")
    for name, times in [("app: click -> image in the page", app_times), ("animecolor colorize (subprocess)", cli_times),
                        ("colorize_image call (in process)", call_times)]:
        print(f"  {name:<34}{med(times):>10.2f}{min(times):>9.2f}  {len(times)}")
    print(f"  the page is {med(cli_times) / med(app_times):.1f}x faster per picture than the CLI")


if __name__ == "__main__":
    main()
