"""Make docs/img/app.png: the `animecolor app` page after colouring its first example, in headless Chromium.

    python scripts/figures/app_screenshot.py [--model models/animecolor.safetensors] [--out docs/img/app.png]

The page is driven by tests/browser.py (`find_chromium`, `open_page`, `colorize`), the steps the
browser test (tests/test_app.py) takes, so the README screenshot and the test take the same path.
Without --model and without a trained models/animecolor.safetensors, an untrained model with the
default params.yaml architecture is used, and the page's colours are then noise (the layout is
what the screenshot shows).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.browser

from tests.browser import colorize, find_chromium, free_port, open_page  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="exported model (default: models/animecolor.safetensors "
                                                  "if present, else an untrained default-size model)")
    ap.add_argument("--out", default="docs/img/app.png")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from pipeline.app import launch

    chromium = find_chromium()
    if chromium is None:
        sys.exit("no system Chromium: apt-get install chromium")
    work = Path(tempfile.mkdtemp(prefix="animecolor-shot-"))
    model = args.model
    if model is None:
        model = "models/animecolor.safetensors"
        if not Path(model).is_file():
            from tests.benchmarks.bench_app import untrained_model

            model = untrained_model(work / "untrained.safetensors")
            print(f"no trained model: using an untrained default-size one ({model})")
    demo, url = launch(model, port=free_port(), device="cpu", block=False, quiet=True, work_dir=work / "app")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = open_page(browser, url)
            examples = work / "app" / "examples"  # written by the app at start-up
            _, seconds = colorize(page, examples / "example1_drawing.png", examples / "example1_reference.png")
            page.locator("#variations").click()
            page.wait_for_function("document.querySelectorAll('#gallery img').length >= 5", timeout=120_000)
            page.wait_for_timeout(500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        print(f"wrote {args.out} (click to image: {seconds:.2f} s)")
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
