"""Benchmark: crawl throughput of the `urls` source against the loopback server (tests/loopback.py).

    python tests/benchmarks/bench_download.py [--n 300] [--latency 0.05]

Each image request waits `--latency` seconds in the server (a stand-in for a remote host's
round trip), then returns a real 256 px face from ../shared/data/anime-faces-256. Printed side
by side in one run:
  baseline   a plain sequential urllib loop: fetch and write, no checks at all
  animecolor the downloader (robots.txt, rate limiter, streaming limits, magic bytes, full
             decode, content-hash names, journal) at 1, 4 and 16 workers, rate limit off
  polite     16 workers with the default per-host rate limit (2 requests/s) -- the cap, not the
             machine, sets the speed; printed to show that the cap holds
"""

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopback import SHARED, LoopbackServer, face_images  # noqa: E402

from pipeline.data.crawl import crawl_urls  # noqa: E402
from pipeline.data.download import DownloadConfig  # noqa: E402


def baseline(urls: list[str], out: Path) -> float:
    start = time.perf_counter()
    for i, url in enumerate(urls):
        with urllib.request.urlopen(url, timeout=20) as resp:
            (out / f"{i}.jpg").write_bytes(resp.read())
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args()
    images = face_images(args.n, SHARED.parent / "anime-faces-256")
    megabytes = sum(map(len, images)) / 1e6
    print(f"{args.n} images, {megabytes:.1f} MB, {args.latency * 1000:.0f} ms server latency per image")
    print(f"{'run':<34}{'seconds':>9}{'images/s':>10}{'MB/s':>8}")
    with LoopbackServer(images, slow_image_delay=args.latency) as srv, tempfile.TemporaryDirectory() as tmp:
        urls = [srv.url(f"/slowimg/{i}.jpg") for i in range(args.n)]
        (Path(tmp) / "urls.txt").write_text("\n".join(urls))

        def row(name, seconds, n=args.n):
            print(f"{name:<34}{seconds:>9.2f}{n / seconds:>10.1f}{megabytes * n / args.n / seconds:>8.2f}")

        (Path(tmp) / "base").mkdir()
        row("baseline urllib, sequential", baseline(urls, Path(tmp) / "base"))
        for workers in (1, 4, 16):
            cfg = DownloadConfig(workers=workers, rate_limit=0)
            _, stats = crawl_urls(Path(tmp) / f"w{workers}", Path(tmp) / "urls.txt", cfg)
            assert stats["ok"] == args.n, stats
            row(f"animecolor, {workers} worker(s)", stats["seconds"])
        polite = 20
        (Path(tmp) / "polite.txt").write_text("\n".join(urls[:polite]))
        _, stats = crawl_urls(Path(tmp) / "polite", Path(tmp) / "polite.txt", DownloadConfig(workers=16))
        row("animecolor, 16 workers, 2 req/s", stats["seconds"], polite)


if __name__ == "__main__":
    main()
