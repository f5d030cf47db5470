"""The `animecolor app` page driven in headless Chromium (Playwright): the steps shared by the browser
test (tests/test_app.py), scripts/figures/app_screenshot.py (docs/img/app.png) and
tests/benchmarks/bench_app.py. Start the app on a free port, upload a drawing and a reference
through the page's file inputs, press Colorize, wait for the output image. Chromium is the system
one (Debian package `chromium`); Playwright's own browser download is not needed."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The system Chromium's executable (Playwright's `executable_path`), or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_page(browser, url: str, width: int = 1400, height: int = 1000):
    """A page on the app, every request outside it refused (nothing may wait on the network)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    host = url.rstrip("/")
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(host) else route.abort())
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#drawing input[type=file]").wait_for(state="attached")
    page.locator("#reference input[type=file]").wait_for(state="attached")
    return page


def output_src(page) -> str | None:
    img = page.locator("#output img")
    return img.first.get_attribute("src") if img.count() else None


def upload(page, elem_id: str, path: str | Path) -> None:
    """Put a file into an upload component and wait until the page shows it."""
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.locator(f"#{elem_id} img").first.wait_for(state="attached")


# Gradio shows a status tracker (the progress bar) over every output while a request runs and
# hides it when the request ends. A MutationObserver records that it was shown, so a result is
# recognised even when it is identical to the previous one (same file, same URL).
_WATCH = """() => {
    const root = document.querySelector('#output');
    window.__acBusy = false;
    if (window.__acObserver) window.__acObserver.disconnect();
    const tracker = t => t.getAttribute && t.getAttribute('data-testid') === 'status-tracker';
    window.__acObserver = new MutationObserver(records => {
        for (const r of records) {
            const nodes = r.type === 'childList' ? [...r.addedNodes] : [r.target];
            for (const t of nodes) {
                if (!tracker(t)) continue;
                const shown = !t.classList.contains('hide') || (r.oldValue !== null && !r.oldValue.includes('hide'));
                if (shown) window.__acBusy = true;
            }
        }
    });
    window.__acObserver.observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['class'],
                                       attributeOldValue: true});
}"""

_FINISHED = """() => {
    const img = document.querySelector('#output img');
    const tracker = document.querySelector('#output [data-testid=status-tracker]');
    const idle = !tracker || tracker.classList.contains('hide');
    return window.__acBusy && idle && (!img || (img.complete && img.naturalWidth > 0));
}"""


def colorize(page, drawing: str | Path | None = None, reference: str | Path | None = None,
             button: str = "run", timeout_s: float = 120.0) -> tuple[str, float]:
    """Upload (when given) the drawing and the reference, press the button and wait until the
    request has finished; returns (the output image's URL, seconds from the click to the image
    decoded in the page). RuntimeError with the page's message when it shows an error."""
    if drawing is not None:
        upload(page, "drawing", drawing)
    if reference is not None:
        upload(page, "reference", reference)
    page.evaluate(_WATCH)
    t0 = time.perf_counter()
    page.locator(f"#{button}").click()
    page.wait_for_function(_FINISHED, timeout=timeout_s * 1000, polling=20)
    seconds = time.perf_counter() - t0
    status = page.locator("#status").inner_text()
    if status.strip().startswith("Error"):
        raise RuntimeError(f"the page says: {status}")
    return output_src(page), seconds
