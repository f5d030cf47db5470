"""A real HTTP server on 127.0.0.1 for the downloader's tests and benchmark.

It serves a Danbooru-style API and images (real anime faces from ../shared/data when present,
synthetic faces otherwise), plus routes that misbehave in every way the downloader must
survive. Nothing is mocked: the downloader talks HTTP over a socket to this server.

Routes
  /robots.txt              disallows /private/
  /img/<i>.<ext>           image i (png or jpg bytes, matching content type)
  /slowimg/<i>.png         image i after `slow_image_delay` seconds (kill-and-resume test)
  /dup/<i>.png             the same bytes as /img/<i>.png (one image, two URLs)
  /flaky/<i>.png           500 for the first two requests of each path, then image i
  /always500.png           always 500
  /ratelimited/<i>.png     429 with Retry-After: 1 on the first request, then image i
  /slow.png                waits `slow_delay` seconds before answering (past the client timeout)
  /truncated.png           Content-Length promises more than the body, then the socket closes
  /page.png                an HTML page served as text/html
  /disguised.png           HTML bytes served as image/png (magic bytes do not match)
  /corrupt.png             a PNG signature then garbage (fails the full decode)
  /huge.png                Content-Length beyond any sane limit (refused before reading)
  /huge-chunked.png        an endless chunked body with no Content-Length (stopped while streaming)
  /loop/a, /loop/b         redirect to each other forever
  /redirect/<i>.png        one 302 to /img/<i>.png
  /bomb.png                a tiny PNG declaring 20000x20000 pixels (decompression bomb)
  /missing.png             404
  /private/<i>.png         image i, but robots.txt forbids it (must never be requested)
  /posts.json              ?tags=&page=&limit= : pages of posts whose file_url point at the above
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces-64"


def face_images(n: int, folder: Path = SHARED) -> list[bytes]:
    """n distinct encoded face images: real ones from ../shared/data when present."""
    files = sorted(folder.glob("*"))[:n] if folder.is_dir() else []
    if len(files) == n:
        return [f.read_bytes() for f in files]
    from pipeline.data.synthetic import generate_face

    return [cv2.imencode(".png", cv2.cvtColor(generate_face(7, i, 64, 0.1)[1], cv2.COLOR_RGB2BGR))[1].tobytes()
            for i in range(n)]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit RGB) with one tiny IDAT: a decompression-bomb
    header that costs nothing to write and must be refused before any decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        _png_chunk(b"IEND", b"")


def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit grayscale PNG of side x side zeros: ~50 KB on disk, 400 M pixels decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    idat = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _ctype(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):  # clients hanging up mid-body is the point
        pass


class LoopbackServer:
    """`with LoopbackServer(images) as srv:` ... `srv.url("/img/0.png")`; `srv.requests` counts paths."""

    def __init__(self, images: list[bytes], slow_delay: float = 3.0, slow_image_delay: float = 0.0,
                 posts: list[dict] | None = None, robots: str | None = "User-agent: *\nDisallow: /private/\n"):
        self.images = images
        self.robots = robots
        self.slow_delay = slow_delay
        self.slow_image_delay = slow_image_delay
        self.posts = posts or []
        self.requests: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.headers: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._bomb = bomb_png()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def send_body(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def image(self, i: str):
                try:
                    data = server.images[int(i)]
                except (ValueError, IndexError):
                    return self.send_body(404, b"no such image", "text/plain")
                self.send_body(200, data, _ctype(data))

            def do_GET(self):  # noqa: C901 - one branch per route
                parts = urlsplit(self.path)
                path = parts.path
                with server._lock:
                    server.requests[path] += 1
                    count = server.requests[path]
                    server.times.setdefault(path, []).append(time.monotonic())
                    server.headers.append((path, dict(self.headers)))
                stem = path.rsplit("/", 1)[-1].split(".")[0]
                if path == "/robots.txt" and server.robots is None:
                    return self.send_body(404, b"no robots.txt here", "text/plain")
                if path == "/robots.txt":
                    return self.send_body(200, server.robots.encode(), "text/plain")
                if path.startswith(("/img/", "/dup/", "/private/")):
                    return self.image(stem)
                if path.startswith("/slowimg/"):
                    time.sleep(server.slow_image_delay)
                    return self.image(stem)
                if path.startswith("/flaky/"):
                    if count <= 2:
                        return self.send_body(500, b"oops", "text/plain")
                    return self.image(stem)
                if path == "/always500.png":
                    return self.send_body(500, b"down", "text/plain")
                if path.startswith("/ratelimited/"):
                    if count == 1:
                        return self.send_body(429, b"slow down", "text/plain", {"Retry-After": "1"})
                    return self.image(stem)
                if path.startswith("/redirect/"):
                    return self.send_body(302, b"", "text/plain", {"Location": f"/img/{stem}.png"})
                if path == "/slow.png":
                    time.sleep(server.slow_delay)
                    return self.image("0")
                if path == "/truncated.png":
                    data = server.images[1]
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if path == "/page.png":
                    return self.send_body(200, b"<html><body>not here</body></html>", "text/html; charset=utf-8")
                if path == "/disguised.png":
                    return self.send_body(200, b"<!doctype html><html>login required</html>", "image/png")
                if path == "/corrupt.png":
                    return self.send_body(200, b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 100, "image/png")
                if path == "/huge.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(10**10))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return None
                if path == "/huge-chunked.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    chunk = b"\x89PNG\r\n\x1a\n" + b"\x00" * (256 * 1024)
                    try:
                        for _ in range(400):  # 100 MB if nobody stops reading
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return None
                if path == "/loop/a":
                    return self.send_body(302, b"", "text/plain", {"Location": "/loop/b"})
                if path == "/loop/b":
                    return self.send_body(302, b"", "text/plain", {"Location": "/loop/a"})
                if path == "/bomb.png":
                    return self.send_body(200, server._bomb, "image/png")
                if path == "/posts.json":
                    q = parse_qs(parts.query)
                    page, limit = int(q.get("page", ["1"])[0]), int(q.get("limit", ["20"])[0])
                    tags = q.get("tags", [""])[0].split()
                    posts = [p for p in server.posts if all(t in p["tag_string"].split() for t in tags)]
                    body = json.dumps(posts[(page - 1) * limit : page * limit]).encode()
                    return self.send_body(200, body, "application/json")
                return self.send_body(404, b"not found", "text/plain")

        return Handler


def booru_posts(server_url, n_images: int, images: list[bytes] | None = None) -> list[dict]:
    """Danbooru-shaped posts: n_images good ones, a few faulty ones, one without a file_url.

    With `images`, the good posts carry their file's MD5 (as Danbooru's do) and one more post
    publishes a wrong MD5."""
    md5s = [hashlib.md5(images[i]).hexdigest() if images else "" for i in range(n_images)]
    posts = [{"id": 1000 + i, "file_url": server_url(f"/img/{i}.png"), "tag_string": f"1girl solo face_{i}",
              "rating": "g" if i % 2 else "s", "source": f"https://example.org/art/{i}", "md5": md5s[i]}
             for i in range(n_images)]
    posts += [
        {"id": 2000, "file_url": server_url("/always500.png"), "tag_string": "1girl broken", "rating": "g",
         "source": ""},
        {"id": 2001, "file_url": server_url("/page.png"), "tag_string": "1girl html", "rating": "g", "source": ""},
        {"id": 2002, "tag_string": "1girl deleted", "rating": "q", "source": ""},  # no file_url
        {"id": 2003, "file_url": "/img/0.png", "tag_string": "1girl relative_dup", "rating": "g", "source": ""},
        {"id": 3000, "file_url": server_url("/img/0.png"), "tag_string": "landscape", "rating": "g", "source": ""},
    ]
    if images:
        posts.append({"id": 2004, "file_url": server_url(f"/img/{len(images) - 1}.png"), "md5": "0" * 32,
                      "tag_string": "1girl wrong_md5", "rating": "g", "source": ""})
    return posts


def png_size(data: bytes) -> tuple[int, int]:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return arr.shape[1], arr.shape[0]
