"""A polite, verifying, resumable image downloader (the `urls` and `booru` crawl sources).

What one URL goes through (`Downloader.fetch`):
  scheme check (http/https only) -> robots.txt of its origin (cached; honours Crawl-delay)
  -> per-host rate limit -> GET, streamed, with (connect, read) timeouts, a total deadline
  and a redirect limit -> status (429 and 5xx retried with exponential backoff and jitter,
  honouring Retry-After) -> content type -> byte limit (Content-Length first, then while
  streaming: stops early) -> magic bytes -> header pixel count (decompression-bomb guard)
  -> full decode -> atomic rename of the temp file to `<sha256[:16]>.<ext>`.

The file name comes from the content hash and the magic bytes, never from the URL, so a
URL cannot choose where a file lands (no path traversal) and one image fetched through two
URLs is stored once.

Failure reasons (the `reason` column of the raw manifest; transient ones are retried):
  bad_url, robots_disallowed, robots_unreachable, redirect_loop, http_<code>, not_image,
  too_large, checksum_mismatch (a published MD5 differs), too_many_pixels, decode_error, timeout*, connection_error*, truncated*
  (* transient; 429 and 5xx are transient http_<code> too).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import tempfile
import threading
import time
import urllib.robotparser
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from PIL import Image
from pydantic import Field

from pipeline.config import Config
from pipeline.data.imageio import MAX_PIXELS
from pipeline.files import publish

USER_AGENT = "animecolor/0.1 (research dataset builder; reference-based anime colorization)"

# magic bytes -> file extension; anything else is `not_image`
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF87a", ".gif"),
          (b"GIF89a", ".gif"), (b"BM", ".bmp"))
TRANSIENT = {"timeout", "connection_error", "truncated"}
_CHUNK = 64 * 1024


class DownloadConfig(Config):
    """The downloader of the `urls` and `booru` crawl sources (params `crawl.download`)."""

    workers: int = Field(4, ge=1, le=64, description="concurrent downloads")
    rate_limit: float = Field(2.0, ge=0.0, description="requests per second per host (robots.txt "
                                                       "may lower it); 0: unlimited")
    timeout: float = Field(20.0, gt=0.0, description="seconds to connect, and between received bytes")
    deadline: float = Field(120.0, gt=0.0, description="seconds for one whole response (slow-drip servers)")
    retries: int = Field(3, ge=0, le=20, description="extra tries after a timeout, dropped connection, 429 or 5xx")
    backoff: float = Field(1.0, ge=0.0, description="first retry waits about this long, doubling (with jitter); "
                                                    "Retry-After wins")
    max_backoff: float = Field(60.0, ge=0.0, description="cap on any single wait, Retry-After included")
    max_bytes: int = Field(20_000_000, ge=1024, description="larger files are refused (checked while streaming)")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="decompression-bomb guard, read from the header "
                                                          "before decoding")
    max_redirects: int = Field(5, ge=0, le=30, description="redirects followed per request")
    user_agent: str = Field("", max_length=300, description='"": animecolor\'s own (names the project)')
    respect_robots: bool = Field(True, description="honour robots.txt (unreachable robots.txt: disallowed)")

    @property
    def agent(self) -> str:
        """The User-Agent actually sent."""
        return self.user_agent or USER_AGENT

    def fingerprint(self) -> str:
        """What decides a failure's reason: a failed URL is retried when this changes."""
        values = {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels, "max_redirects": self.max_redirects,
                  "user_agent": self.agent, "respect_robots": self.respect_robots}
        return hashlib.sha256(repr(values).encode()).hexdigest()[:12]


@dataclass
class Outcome:
    """What happened to one URL: the final status plus every attempt's result."""

    url: str
    status: str = "failed"        # ok | failed
    reason: str = ""              # failure reason (see module docstring); "" when ok
    file: str = ""                # images/<sha16>.<ext> when ok
    sha256: str = ""
    http_status: int | None = None
    content_type: str = ""
    bytes: int = 0
    width: int | None = None
    height: int | None = None
    attempts: list[str] = field(default_factory=list)  # "ok" or the reason, per try
    seconds: float = 0.0

    def row(self) -> dict:
        d = asdict(self)
        d["errors"] = ";".join(a for a in self.attempts if a != "ok")
        d["attempts"] = len(self.attempts)
        return d


class DownloadFailure(Exception):
    def __init__(self, reason: str, http_status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.http_status, self.retry_after = reason, http_status, retry_after

    @property
    def transient(self) -> bool:
        return is_transient(self.reason)


def is_transient(reason: str) -> bool:
    """Worth another try: timeouts, dropped or cut connections, 429 and 5xx answers."""
    return reason in TRANSIENT or reason == "http_429" or reason.startswith("http_5")


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def sniff_extension(head: bytes) -> str | None:
    for magic, ext in _MAGIC:
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None


class HostRateLimiter:
    """At most `rate` requests per second per host, shared by all worker threads.

    Requests to one host leave one at a time, each at least `interval` after the previous one
    actually left: a thread that wakes late pushes the later ones back rather than letting them
    go out in a burst behind it.
    """

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.min_interval: dict[str, float] = {}  # per-host override (robots.txt Crawl-delay)
        self._last: dict[str, float] = {}
        self._hosts: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> None:
        if self.interval <= 0 and self.min_interval.get(host, 0.0) <= 0:
            return
        with self._lock:
            host_lock = self._hosts.setdefault(host, threading.Lock())
        with host_lock:  # other hosts go on; this host's requests queue here
            interval = max(self.interval, self.min_interval.get(host, 0.0))  # a Crawl-delay read meanwhile counts
            last = self._last.get(host)
            while last is not None and (left := last + interval - time.monotonic()) > 0:
                time.sleep(left)
            self._last[host] = time.monotonic()


class Downloader:
    """Thread-safe: one `requests.Session` per thread, shared robots cache and rate limiter."""

    def __init__(self, cfg: DownloadConfig, images_dir: str | Path):
        self.cfg = cfg
        self.images = Path(images_dir)
        self.images.mkdir(parents=True, exist_ok=True)
        self.limiter = HostRateLimiter(cfg.rate_limit)
        self._local = threading.local()
        self._robots: dict[str, urllib.robotparser.RobotFileParser | str] = {}
        self._robots_lock = threading.Lock()

    # -- HTTP plumbing -------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = self.cfg.agent
            s.max_redirects = self.cfg.max_redirects
            self._local.session = s
        return s

    def _get(self, url: str, **kwargs) -> requests.Response:
        """One rate-limited streamed GET; network errors become `DownloadFailure`s."""
        self.limiter.wait(urlsplit(url).netloc)
        try:
            return self.session.get(url, stream=True, timeout=(self.cfg.timeout, self.cfg.timeout), **kwargs)
        except requests.TooManyRedirects:
            raise DownloadFailure("redirect_loop") from None
        except requests.Timeout:
            raise DownloadFailure("timeout") from None
        except requests.ConnectionError:
            raise DownloadFailure("connection_error") from None
        except (requests.RequestException, ValueError, UnicodeError):  # invalid or malformed URL, bad headers
            raise DownloadFailure("bad_url") from None

    def _check_status(self, resp: requests.Response) -> None:
        if resp.status_code != 200:
            resp.close()
            raise DownloadFailure(f"http_{resp.status_code}", resp.status_code,
                                  retry_after_seconds(resp.headers.get("Retry-After")))

    def _read(self, resp: requests.Response, sink, limit: int | None) -> int:
        """Stream the body into `sink`; enforces the byte limit and the total deadline."""
        start, n = time.monotonic(), 0
        try:
            for chunk in resp.iter_content(_CHUNK):
                n += len(chunk)
                if limit is not None and n > limit:
                    raise DownloadFailure("too_large", resp.status_code)
                if time.monotonic() - start > self.cfg.deadline:
                    raise DownloadFailure("timeout", resp.status_code)
                sink(chunk)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise DownloadFailure("truncated", resp.status_code) from None
        except requests.exceptions.ConnectionError as exc:  # read timeouts surface here mid-body
            reason = "timeout" if "timed out" in str(exc).lower() else "truncated"
            raise DownloadFailure(reason, resp.status_code) from None
        except requests.RequestException:
            raise DownloadFailure("truncated", resp.status_code) from None
        finally:
            resp.close()
        return n

    def _with_retries(self, attempts: list[str], once):
        """Call `once()` until it succeeds, fails permanently or runs out of retries."""
        for attempt in range(self.cfg.retries + 1):
            try:
                result = once()
                attempts.append("ok")
                return result
            except DownloadFailure as failure:
                attempts.append(failure.reason)
                if not failure.transient or attempt == self.cfg.retries:
                    raise
                delay = min(self.cfg.max_backoff, self.cfg.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                if failure.retry_after is not None:
                    delay = min(self.cfg.max_backoff, max(failure.retry_after, 0.0))
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- robots.txt ----------------------------------------------------------------------
    def _robots_for(self, scheme: str, netloc: str):
        origin = f"{scheme}://{netloc}"
        with self._robots_lock:  # one fetch per origin, even with many threads
            if origin in self._robots:
                return self._robots[origin]
            parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
            chunks: list[bytes] = []
            try:
                resp = self._get(origin + "/robots.txt")
                status = resp.status_code
                if status == 200:
                    try:  # through _read: a cut connection is a failure, never a crash
                        self._read(resp, chunks.append, 500 * 1024)
                    except DownloadFailure as failure:
                        if failure.reason != "too_large":
                            raise
                        # RFC 9309 2.5: parse at least the first 500 KiB; the rest may be ignored
                resp.close()
            except DownloadFailure:
                status = None
            body = b"".join(chunks).decode("utf-8", "replace")
            if status == 200:
                parser.parse(body.splitlines())
                delay = parser.crawl_delay(self.cfg.agent)
                if delay:
                    self.limiter.min_interval[netloc] = float(delay)
                result = parser
            elif status is not None and 400 <= status < 500:
                parser.allow_all = True  # no robots.txt: everything allowed (RFC 9309 2.3.1.3)
                result = parser
            else:
                result = "unreachable"  # 5xx or network error: assume complete disallow (RFC 9309 2.3.1.4)
            self._robots[origin] = result
            return result

    def _check_robots(self, url: str) -> None:
        if not self.cfg.respect_robots:
            return
        parts = urlsplit(url)
        robots = self._robots_for(parts.scheme, parts.netloc)
        if robots == "unreachable":
            raise DownloadFailure("robots_unreachable")
        if not robots.can_fetch(self.cfg.agent, url):
            raise DownloadFailure("robots_disallowed")

    # -- public --------------------------------------------------------------------------
    def get_json(self, url: str, params: dict | None = None, auth=None):
        """GET a JSON document (booru API pages) with the same politeness and retries."""
        attempts: list[str] = []
        self._check_url(url)
        self._check_robots(url)

        def once():
            resp = self._get(url, params=params, auth=auth)
            self._check_status(resp)
            chunks: list[bytes] = []
            self._read(resp, chunks.append, self.cfg.max_bytes)
            try:
                return json.loads(b"".join(chunks))
            except ValueError:
                raise DownloadFailure("not_json") from None

        return self._with_retries(attempts, once)

    @staticmethod
    def _check_url(url: str) -> None:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. "http://[not-an-ip"
            ok = False
        if not ok:
            raise DownloadFailure("bad_url")

    def fetch(self, url: str, md5: str | None = None) -> Outcome:
        """Download one image; never raises for a bad URL or server -- see `Outcome.reason`.

        `md5`: the checksum the source publishes for the file (booru posts), verified if given."""
        out = Outcome(url=url)
        start = time.monotonic()
        try:
            self._check_url(url)
            self._check_robots(url)
            self._with_retries(out.attempts, lambda: self._fetch_once(url, out, md5))
            out.status, out.reason = "ok", ""
        except DownloadFailure as failure:
            out.status, out.reason = "failed", failure.reason
            out.http_status = failure.http_status or out.http_status
            if not out.attempts:
                out.attempts.append(failure.reason)
        out.seconds = round(time.monotonic() - start, 3)
        return out

    def _fetch_once(self, url: str, out: Outcome, md5: str | None = None) -> None:
        resp = self._get(url)
        out.http_status = resp.status_code
        self._check_status(resp)
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        out.content_type = ctype
        if ctype and not (ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")):
            resp.close()
            raise DownloadFailure("not_image", resp.status_code)
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.cfg.max_bytes:
            resp.close()
            raise DownloadFailure("too_large", resp.status_code)
        fd, tmp_name = tempfile.mkstemp(dir=self.images, prefix=".download.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            digest, check = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as f:
                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    check.update(chunk)
                    f.write(chunk)

                n = self._read(resp, sink, self.cfg.max_bytes)
            with open(tmp, "rb") as f:
                ext = sniff_extension(f.read(16))
            if ext is None:
                raise DownloadFailure("not_image", resp.status_code)
            if md5 and check.hexdigest() != md5.lower():
                raise DownloadFailure("checksum_mismatch", resp.status_code)
            out.width, out.height = self._verify_image(tmp)
            sha = digest.hexdigest()
            name = f"{sha[:16]}{ext}"
            publish(tmp, self.images / name)  # atomic: the file is whole or absent
            out.file, out.sha256, out.bytes = f"images/{name}", sha, n
        finally:
            tmp.unlink(missing_ok=True)

    def _verify_image(self, path: Path) -> tuple[int, int]:
        """Header pixel count first (no decoding), then a full decode of the first frame."""
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > self.cfg.max_pixels:
                    raise DownloadFailure("too_many_pixels", 200)
                im.load()
        except Image.DecompressionBombError:
            raise DownloadFailure("too_many_pixels", 200) from None
        except DownloadFailure:
            raise
        except Exception:  # PIL raises many types for corrupt or truncated files
            raise DownloadFailure("decode_error", 200) from None
        return w, h
