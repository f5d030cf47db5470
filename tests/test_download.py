"""The `urls` and `booru` crawl sources against a real HTTP server on 127.0.0.1 (tests/loopback.py)."""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from loopback import LoopbackServer, booru_posts, face_images
from typer.testing import CliRunner

from pipeline.data.clean import CleanConfig, clean_dataset
from pipeline.data.crawl import crawl_booru, crawl_urls, read_url_list
from pipeline.data.download import DownloadConfig, sniff_extension
from pipeline.errors import AnimecolorError, ParamsError
from stages.cli import app
from stages.crawl import booru_auth
from stages.params import validate_section

ROOT = Path(__file__).resolve().parents[1]
FAST = DownloadConfig(workers=4, rate_limit=0, timeout=0.5, deadline=10, retries=2, backoff=0.05,
                      max_bytes=2_000_000, max_pixels=10_000_000)
FAULTS = {  # path -> reason the manifest must give
    "/always500.png": "http_500", "/slow.png": "timeout", "/truncated.png": "truncated",
    "/page.png": "not_image", "/disguised.png": "not_image", "/corrupt.png": "decode_error",
    "/huge.png": "too_large", "/huge-chunked.png": "too_large", "/loop/a": "redirect_loop",
    "/bomb.png": "too_many_pixels", "/missing.png": "http_404", "/private/11.png": "robots_disallowed",
}


def _stored_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16] + sniff_extension(data[:16])


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    """The downloader honours HTTP(S)_PROXY like any client; the loopback server is never proxied."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def images():
    return face_images(12)


def _fault_list(srv, tmp_path) -> Path:
    good = [f"/img/{i}.png" for i in range(8)] + ["/dup/0.png", "/redirect/8.png", "/flaky/9.png",
                                                  "/ratelimited/10.png"]
    rows = [{"url": srv.url(p), "licence": f"cc-by {p}"} for p in good + list(FAULTS)]
    rows.append({"url": "ftp://127.0.0.1/x.png", "licence": ""})
    rows.append({"url": "file:///etc/passwd", "licence": ""})
    rows.append({"url": "http://[not-an-ip/x.png", "licence": ""})
    rows.append({"url": srv.url("/img/3.png"), "licence": "listed twice"})  # duplicate URL: one row
    path = tmp_path / "urls.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_every_valid_image_arrives_once_and_every_fault_has_its_reason(tmp_path, images):
    with LoopbackServer(images, slow_delay=2.0) as srv:
        url_list = _fault_list(srv, tmp_path)
        manifest, stats = crawl_urls(tmp_path / "raw", url_list, FAST)
        requests_seen = dict(srv.requests)
        times, headers = dict(srv.times), list(srv.headers)
        # A rerun asks the server nothing for what is done; transient failures are tried again.
        manifest2, stats2 = crawl_urls(tmp_path / "raw", url_list, FAST)
        again = {k: v - requests_seen.get(k, 0) for k, v in srv.requests.items() if v != requests_seen.get(k, 0)}
    by_path = {u.split(str(srv.port), 1)[-1]: row for u, row in zip(manifest.url, manifest.to_dict("records"))}
    assert len(manifest) == 12 + len(FAULTS) + 3

    # Valid images: ok, stored once under their content hash, byte-identical to what was served.
    on_disk = sorted(p.name for p in (tmp_path / "raw/images").iterdir())
    assert on_disk == sorted({_stored_name(images[i]) for i in range(11)})
    for i in range(11):
        assert (tmp_path / "raw/images" / _stored_name(images[i])).read_bytes() == images[i]
    for path in [f"/img/{i}.png" for i in range(8)] + ["/redirect/8.png", "/flaky/9.png", "/ratelimited/10.png"]:
        assert by_path[path]["status"] == "ok", (path, by_path[path])
    assert by_path["/dup/0.png"]["file"] == by_path["/img/0.png"]["file"]  # same bytes, one file
    # the served bytes are JPEG (real faces from ../shared/data) or PNG (the synthetic fallback when
    # that folder is absent); the file is named by its magic bytes, not by the URL's ".png"
    jpeg = images[0][:3] == b"\xff\xd8\xff"
    assert by_path["/img/0.png"]["content_type"] == ("image/jpeg" if jpeg else "image/png")
    assert by_path["/img/0.png"]["file"].endswith(".jpg" if jpeg else ".png")

    # Retries: two 500s then success; 429 honoured its Retry-After of 1 s.
    assert by_path["/flaky/9.png"]["attempts"] == 3 and by_path["/flaky/9.png"]["errors"] == "http_500;http_500"
    assert by_path["/ratelimited/10.png"]["errors"] == "http_429"
    gap = times["/ratelimited/10.png"][1] - times["/ratelimited/10.png"][0]
    assert gap >= 0.95, gap

    # Faults: each recorded with its reason; transient ones were retried, permanent ones not.
    for path, reason in FAULTS.items():
        assert (by_path[path]["status"], by_path[path]["reason"]) == ("failed", reason), path
    assert by_path["/always500.png"]["attempts"] == 3 and requests_seen["/always500.png"] == 3
    assert by_path["/slow.png"]["attempts"] == 3
    assert by_path["/missing.png"]["attempts"] == 1 and requests_seen["/missing.png"] == 1
    assert by_path["/page.png"]["attempts"] == 1
    assert "/private/11.png" not in requests_seen  # robots.txt honoured: never even asked
    assert requests_seen["/robots.txt"] == 1  # fetched once, shared by the workers
    for bad in ("ftp://127.0.0.1/x.png", "file:///etc/passwd", "http://[not-an-ip/x.png"):
        assert by_path[bad]["reason"] == "bad_url" and by_path[bad]["attempts"] == 1

    # Nothing half-written; the CSV's extra columns are carried; the User-Agent is ours.
    assert not list((tmp_path / "raw").rglob("*.tmp"))
    assert by_path["/img/2.png"]["licence"] == "cc-by /img/2.png"
    assert headers and all(h.get("User-Agent", "").startswith("animecolor/") for _, h in headers)
    assert stats["ok"] == 12 and stats["unique_files"] == 11 and stats["failures"]["too_large"] == 2

    assert stats2["generated"] == 0 and stats2["skipped"] == 12 + len(FAULTS) + 3 - 3
    assert again == {"/robots.txt": 1, "/always500.png": 3, "/slow.png": 3, "/truncated.png": 3}, again
    assert sorted(p.name for p in (tmp_path / "raw/images").iterdir()) == on_disk
    pd.testing.assert_frame_equal(manifest.drop(columns=["seconds"]), manifest2.drop(columns=["seconds"]))


def test_rate_limit_spaces_requests_to_one_host(tmp_path, images):
    cfg = DownloadConfig(workers=4, rate_limit=5.0, timeout=2, retries=0)
    with LoopbackServer(images) as srv:
        list_path = tmp_path / "urls.txt"
        list_path.write_text("# six faces\n" + "\n".join(srv.url(f"/img/{i}.png") for i in range(6)) + "\n\n")
        manifest, _ = crawl_urls(tmp_path / "raw", list_path, cfg)
        stamps = sorted(t for path, ts in srv.times.items() for t in ts)  # robots.txt included
    assert (manifest.status == "ok").all() and len(stamps) == 7
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    # 5 requests/s: 0.2 s apart as they leave (test_rate_limiter_spaces_what_actually_leaves); on
    # arrival one gap may shrink if a busy machine stalls one request between leaving and arriving
    assert stamps[-1] - stamps[0] >= 1.1 and sum(g < 0.18 for g in gaps) <= 1, gaps


class _FakeClock:
    """time.monotonic/time.sleep for the limiter; sleeps can overshoot, as on a busy machine."""

    def __init__(self, overshoot: dict[int, float]):
        self.now, self.sleeps, self.overshoot = 100.0, 0, overshoot

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.overshoot.get(self.sleeps, 0.0)
        self.sleeps += 1


def test_rate_limiter_spaces_what_actually_leaves(monkeypatch):
    from pipeline.data import download
    clock = _FakeClock({0: 0.5})  # the first sleep wakes 0.5 s late
    monkeypatch.setattr(download, "time", clock)
    limiter = download.HostRateLimiter(5.0)
    left, other = [], []
    for _ in range(4):
        limiter.wait("a.example")
        left.append(clock.now)
    limiter.wait("b.example")  # another host does not queue behind a.example
    other.append(clock.now)
    gaps = [round(b - a, 6) for a, b in zip(left, left[1:])]
    assert gaps == [0.7, 0.2, 0.2]  # the late one pushes the rest back: no burst behind it
    assert other == left[-1:]
    limiter.min_interval["a.example"] = 1.0  # robots.txt Crawl-delay
    limiter.wait("a.example")
    assert round(clock.now - left[-1], 6) == 1.0
    assert download.HostRateLimiter(0).interval == 0.0


def test_robots_crawl_delay_slows_that_host_down(tmp_path, images):
    robots = "User-agent: *\nCrawl-delay: 1\nDisallow: /private/\n"
    with LoopbackServer(images, robots=robots) as srv:
        (tmp_path / "u.txt").write_text("\n".join(srv.url(f"/img/{i}.png") for i in range(3)))
        manifest, _ = crawl_urls(tmp_path / "raw", tmp_path / "u.txt", DownloadConfig(workers=3, rate_limit=0))
        stamps = sorted(t for path, ts in srv.times.items() if path.startswith("/img/") for t in ts)
    assert (manifest.status == "ok").all()
    assert stamps[-1] - stamps[0] >= 1.9, stamps  # 1 s apart despite 3 workers and no cap


def test_missing_robots_allows_unreachable_robots_disallows(tmp_path, images):
    with LoopbackServer(images, robots=None) as srv:  # robots.txt is a 404: everything allowed
        (tmp_path / "p.txt").write_text(srv.url("/private/3.png"))
        manifest, _ = crawl_urls(tmp_path / "p", tmp_path / "p.txt", FAST)
    assert manifest.status[0] == "ok"
    huge = "User-agent: *\nDisallow: /private/\n" + "# padding\n" * 60_000  # 600 KB: the first 500 KiB count
    with LoopbackServer(images, robots=huge) as srv:
        (tmp_path / "q.txt").write_text(srv.url("/img/3.png") + "\n" + srv.url("/private/4.png"))
        manifest, _ = crawl_urls(tmp_path / "q", tmp_path / "q.txt", FAST)
    assert list(manifest.status) == ["ok", "failed"] and manifest.reason[1] == "robots_disallowed"
    cfg = DownloadConfig(workers=1, rate_limit=0, timeout=0.5, retries=1, backoff=0.01)
    (tmp_path / "u.txt").write_text("http://127.0.0.1:9/x.png\n")  # discard port: nothing listens
    manifest, _ = crawl_urls(tmp_path / "a", tmp_path / "u.txt", cfg)
    assert manifest.reason[0] == "robots_unreachable"  # RFC 9309: unreachable robots.txt = disallow
    no_robots = cfg.model_copy(update={"respect_robots": False})
    manifest, _ = crawl_urls(tmp_path / "b", tmp_path / "u.txt", no_robots)
    assert manifest.reason[0] == "connection_error" and manifest.attempts[0] == 2


def test_booru_source_keeps_tags_caches_pages_and_feeds_clean(tmp_path, images, monkeypatch):
    monkeypatch.setenv("ANIMECOLOR_BOORU_LOGIN", "alice")
    monkeypatch.setenv("ANIMECOLOR_BOORU_API_KEY", "s3cret")
    srv = LoopbackServer(images)
    srv.posts = booru_posts(srv.url, 6, images)
    with srv:
        manifest, stats = crawl_booru(tmp_path / "raw", srv.url("/"), "1girl", pages=10, limit=4, cfg=FAST,
                                      max_images=1000, auth=booru_auth())  # the stage reads the environment
        api_calls = srv.requests["/posts.json"]
        auth = {path: h.get("Authorization") for path, h in srv.headers}
        # A rerun works from the cached listing and the downloaded files: it asks the server only
        # for robots.txt and the URL that failed transiently (500), nothing else.
        before = dict(srv.requests)
        manifest2, stats2 = crawl_booru(tmp_path / "raw", srv.url("/"), "1girl", pages=10, limit=4, cfg=FAST,
                                        max_images=1000)
        new = {k: v - before.get(k, 0) for k, v in srv.requests.items() if v != before.get(k, 0)}
    assert new == {"/robots.txt": 1, "/always500.png": 3}, new
    # 6 faces + always500 + html + no file_url + wrong md5; the relative duplicate of post 1000 is one URL
    assert api_calls == 3 and len(manifest) == 10  # pages of 4, 4, 3 posts
    assert list(manifest.post_id[:6]) == [str(1000 + i) for i in range(6)]
    ok = manifest[manifest.status == "ok"]
    assert len(ok) == 6 and set(ok.tags) == {f"1girl solo face_{i}" for i in range(6)}
    assert ok.source_url.iloc[2] == "https://example.org/art/2" and ok.rating.iloc[1] == "g"
    reasons = dict(zip(manifest.post_id, manifest.reason))
    assert reasons["2000"] == "http_500" and reasons["2001"] == "not_image" and reasons["2002"] == "no_file_url"
    assert reasons["2004"] == "checksum_mismatch"  # the MD5 the post publishes is checked
    assert not list((tmp_path / "raw/images").glob(f"{_stored_name(images[-1])}"))
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert auth["/posts.json"] == expected and auth["/img/0.png"] is None  # the key goes to the API only
    assert "s3cret" not in (tmp_path / "raw/manifest.csv").read_text()
    assert len(list((tmp_path / "raw/posts").glob("*.json"))) == 3
    pd.testing.assert_frame_equal(manifest.drop(columns=["seconds", "attempts", "errors"]),
                                  manifest2.drop(columns=["seconds", "attempts", "errors"]))

    faces, _ = clean_dataset(tmp_path / "raw", tmp_path / "faces", CleanConfig(min_size=16), 32)
    kept = faces[faces.status == "kept"]
    assert len(kept) + (faces.status == "rejected").sum() == 6  # failed downloads never reach clean
    assert kept.tags.str.startswith("1girl solo").all()  # tags ride along to the face dataset


def test_booru_api_errors_are_clear(tmp_path, images, monkeypatch):
    monkeypatch.setenv("ANIMECOLOR_BOORU_LOGIN", "alice")
    monkeypatch.delenv("ANIMECOLOR_BOORU_API_KEY", raising=False)
    with LoopbackServer(images) as srv:
        with pytest.raises(AnimecolorError, match="ANIMECOLOR_BOORU_API_KEY"):
            crawl_booru(tmp_path / "a", srv.url("/"), "x", 1, 5, FAST, 10, auth=booru_auth())
        monkeypatch.delenv("ANIMECOLOR_BOORU_LOGIN")
        with pytest.raises(AnimecolorError, match="no posts"):
            crawl_booru(tmp_path / "b", srv.url("/"), "no_such_tag", 1, 5, FAST, 10)
        with pytest.raises(AnimecolorError, match="http_404"):
            crawl_booru(tmp_path / "c", srv.url("/nothing/"), "x", 1, 5, FAST, 10)


def test_url_list_errors(tmp_path):
    with pytest.raises(AnimecolorError, match="no such file"):
        read_url_list(tmp_path / "missing.txt")
    (tmp_path / "a.csv").write_text("link,tags\nhttp://x/1.png,a\n")
    with pytest.raises(AnimecolorError, match="needs a 'url' column"):
        read_url_list(tmp_path / "a.csv")
    (tmp_path / "b.txt").write_text("# only a comment\n\n")
    with pytest.raises(AnimecolorError, match="no URLs"):
        read_url_list(tmp_path / "b.txt")
    (tmp_path / "c.csv").write_text("url,status,file\nhttp://x/1.png,new,../../etc/passwd\n")
    table = read_url_list(tmp_path / "c.csv")  # clashing columns are renamed, never trusted
    assert list(table.columns) == ["url", "meta_status", "meta_file"]


def test_params_for_network_sources():
    with pytest.raises(ParamsError, match="needs crawl.urls"):
        validate_section("crawl", {"source": "urls"})
    with pytest.raises(ParamsError, match="booru_url must start with http"):
        validate_section("crawl", {"source": "booru", "booru_url": "danbooru.donmai.us"})
    with pytest.raises(ParamsError, match="crawl.download.workers"):
        validate_section("crawl", {"download": {"workers": 0}})
    cfg = validate_section("crawl", {"source": "urls", "urls": "u.txt", "download": {"rate_limit": 1}})
    assert cfg.download.rate_limit == 1.0
    assert cfg.download.agent.startswith("animecolor/")


def _crawl_cmd(params: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "from stages.cli import app; app()", "crawl", "--params", str(params),
            "--out", str(out), "--metrics", str(out.parent / f"{out.name}.json"),
            "--sheet", str(out.parent / f"{out.name}.png")]


@pytest.mark.slow
def test_kill_9_mid_crawl_then_rerun_equals_an_uninterrupted_crawl(tmp_path, images, write_params):
    with LoopbackServer(images, slow_image_delay=0.1) as srv:
        urls = [srv.url(f"/slowimg/{i % 12}.png?copy={i}") for i in range(36)]  # 36 URLs, 12 distinct images
        (tmp_path / "urls.txt").write_text("\n".join(urls))
        params = write_params({"crawl.source": "urls", "crawl.urls": str(tmp_path / "urls.txt"),
                               "crawl.download": {"workers": 2, "rate_limit": 0, "timeout": 5, "retries": 1}})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(_crawl_cmd(params, tmp_path / "resumed"), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = tmp_path / "resumed" / "journal.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.is_file() and journal.read_text().count("\n") >= 10:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = journal.read_text().count("\n")
        assert 10 <= done_before < 36, done_before  # killed mid-way
        result = subprocess.run(_crawl_cmd(params, tmp_path / "resumed"), cwd=ROOT, env=env, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        uninterrupted = CliRunner().invoke(app, ["crawl", "--params", str(params), "--out",
                                                 str(tmp_path / "straight"), "--metrics", str(tmp_path / "m.json"),
                                                 "--sheet", str(tmp_path / "s.png")])
        assert uninterrupted.exit_code == 0, uninterrupted.output

    a = pd.read_csv(tmp_path / "straight/manifest.csv").drop(columns=["seconds"])
    b = pd.read_csv(tmp_path / "resumed/manifest.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    files_a = sorted(p.relative_to(tmp_path / "straight") for p in (tmp_path / "straight/images").iterdir())
    files_b = sorted(p.relative_to(tmp_path / "resumed") for p in (tmp_path / "resumed/images").iterdir())
    assert files_a == files_b and len(files_a) == 12  # no duplicates, no temp files
    for rel in files_a:
        assert (tmp_path / "straight" / rel).read_bytes() == (tmp_path / "resumed" / rel).read_bytes()
    entries = [json.loads(x) for x in (tmp_path / "resumed/journal.jsonl").read_text().splitlines() if x.strip()]
    assert len({e["url"] for e in entries}) == 36 and len(entries) < 36 + 3  # done work was not redone
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_images"] == 36 and metrics["unique_files"] == 12 and metrics["failed"] == 0
