"""The `crawl` stage's library side: fill a raw-data folder and its manifest.

Sources: `synthetic` (procedural faces), `folder` (your own images), `urls` (a list of image
URLs) and `booru` (a Danbooru-compatible JSON API); the last two download through
`pipeline/data/download.py`.

Layout of the output folder (`data/raw/` in the pipeline):
    images/<name>         images (synthetic: <index>.png; others: <sha256[:16]>.<ext>)
    labels/<name>.png     region label maps (synthetic source only; ids in regions.json)
    manifest.csv          one row per image (network sources: per URL, with status and reason)
    journal.jsonl         network sources: one line per finished URL, appended as it finishes
    posts/                booru source: the API's pages, cached, so a resumed crawl lists the same posts
    regions.json          region id -> name (synthetic)
    state.json            the settings, so a rerun can resume safely
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from pipeline.config import Config
from pipeline.data.download import DownloadConfig, Downloader, DownloadFailure, Outcome, is_transient
from pipeline.data.imageio import IMAGE_SUFFIXES, write_json, write_png
from pipeline.data.synthetic import REGIONS, face_seed, render_face, sample_face
from pipeline.errors import AnimecolorError
from pipeline.files import write_bytes_atomic


class CrawlConfig(Config):
    """Where the raw images come from (params `crawl`)."""

    source: Literal["synthetic", "folder", "urls", "booru"] = Field(
        "synthetic", description="synthetic: procedural faces, no download | folder | urls | booru (see README)")
    folder: str | None = Field(None, description="source folder: your images, searched recursively")
    urls: str | None = Field(None, description="source urls: a .txt (one URL a line) or .csv (a `url` column)")
    booru_url: str | None = Field(None, description="source booru: a Danbooru-compatible "
                                                    "site (ANIMECOLOR_BOORU_LOGIN/_API_KEY)")
    tags: str = Field("", description='booru tag query, e.g. "1girl solo"')
    pages: int = Field(10, ge=1, le=100_000, description="booru: at most this many API pages ...")
    page_limit: int = Field(100, ge=1, le=1000, description="... of this many posts each")
    n_images: int = Field(2000, ge=1, le=10_000_000, description="faces to generate (other sources: at most this "
                                                                 "many images)")
    heterochromia_p: float = Field(0.1, ge=0.0, le=1.0, description="synthetic: share of faces "
                                                                    "whose two irises differ")
    achromatic_eyes_p: float = Field(0.0, ge=0.0, le=1.0, description="synthetic: share of faces with black, "
                                                                      "grey or white irises; 0: none")
    download: DownloadConfig = Field(default_factory=DownloadConfig, description="the downloader of the urls and "
                                                                                 "booru sources")

    @model_validator(mode="after")
    def _source_keys(self):
        need = {"folder": ("folder", "a path to your images"), "urls": ("urls", "a .txt or .csv file of image URLs"),
                "booru": ("booru_url", "the site's base URL")}
        if self.source in need:
            key, what = need[self.source]
            if not getattr(self, key):
                raise ValueError(f"source {self.source} needs crawl.{key} ({what})")
        if self.source == "booru" and not self.booru_url.startswith(("http://", "https://")):
            raise ValueError(f"crawl.booru_url must start with http:// or https:// (got {self.booru_url!r})")
        return self


def _prepare_out_dir(out: Path, state: dict, folders: tuple[str, ...] = ("images",)) -> None:
    """Keep `out` for a resume if it was made with the same `state`, else start it empty.

    Either way the half-written temp files of a killed run are removed and `state.json` written."""
    state_file = out / "state.json"
    if out.exists() and (not state_file.exists() or json.loads(state_file.read_text()) != state):
        shutil.rmtree(out)
    for folder in folders:
        (out / folder).mkdir(parents=True, exist_ok=True)
    for leftover in out.rglob(".*.tmp"):
        leftover.unlink()
    write_json(state_file, state)


def crawl_synthetic(out_dir: str | Path, n_images: int, size: int, seed: int,
                    heterochromia_p: float, achromatic_eyes_p: float = 0.0,
                    progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Generate `n_images` procedural faces into `out_dir`.

    Resumable: images already on disk from an interrupted run with the same settings are
    kept (each face depends only on (seed, index), so the result equals an uninterrupted
    run). Different settings start from an empty folder.

    Returns the manifest and stats {"generated", "skipped", "seconds"}.
    """
    out = Path(out_dir)
    state = {"source": "synthetic", "seed": seed, "image_size": size, "heterochromia_p": heterochromia_p,
             "version": 1}
    if achromatic_eyes_p > 0:  # absent at 0, so earlier crawls still resume
        state["achromatic_eyes_p"] = achromatic_eyes_p
    _prepare_out_dir(out, state, ("images", "labels"))
    write_json(out / "regions.json", {str(k): v for k, v in REGIONS.items()})

    rows, generated, skipped = [], 0, 0
    start = time.perf_counter()
    for index in range(n_images):
        s = face_seed(seed, index)
        spec = sample_face(np.random.default_rng(s), heterochromia_p, seed=s, achromatic_eyes_p=achromatic_eyes_p)
        name = f"{index:06d}.png"
        image_path, label_path = out / "images" / name, out / "labels" / name
        if image_path.exists() and label_path.exists():
            skipped += 1
        else:
            rgb, label = render_face(spec, size)
            write_png(label_path, label)
            write_png(image_path, rgb)  # written last: its presence marks the pair complete
            generated += 1
        rows.append({"file": f"images/{name}", "label": f"labels/{name}", "source": "synthetic",
                     "index": index, "identity": f"syn{index:06d}", **spec.attributes()})
        if progress:
            progress(1)
    # Images past n_images from an earlier, larger run are not part of this dataset.
    for folder in ("images", "labels"):
        for stale in (out / folder).glob("*.png"):
            if not stale.stem.isdigit() or int(stale.stem) >= n_images:
                stale.unlink()
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest, {"generated": generated, "skipped": skipped, "seconds": time.perf_counter() - start}


def crawl_folder(out_dir: str | Path, folder: str | Path, max_images: int | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Ingest a folder of the user's own images (recursively) into `out_dir`.

    Files are copied under content-hash names (exact duplicates collapse into one) with their
    original relative path in the manifest; nothing is decoded here -- `clean` judges the images.
    Resumable: files already copied are skipped. `max_images` caps the count (sorted by path).
    """
    src, out = Path(folder), Path(out_dir)
    if not src.is_dir():
        raise AnimecolorError(f"crawl.folder {src}: no such folder")
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise AnimecolorError(f"crawl.folder {src}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    files = files[:max_images] if max_images else files
    state = {"source": "folder", "folder": str(src.resolve()), "max_images": max_images, "version": 1}
    _prepare_out_dir(out, state)
    rows, seen, copied, skipped = [], set(), 0, 0
    start = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()[:16]
        if sha not in seen:
            seen.add(sha)
            name = f"images/{sha}{path.suffix.lower()}"
            if (out / name).exists():
                skipped += 1
            else:
                write_bytes_atomic(out / name, data)
                copied += 1
            rows.append({"file": name, "label": "", "source": "folder", "origin": str(path.relative_to(src)),
                         "identity": sha})
        if progress:
            progress(1)
    keep = {r["file"] for r in rows}
    for stale in (out / "images").iterdir():
        if f"images/{stale.name}" not in keep:
            stale.unlink()
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest, {"generated": copied, "skipped": skipped, "duplicates": len(files) - len(rows),
                      "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------
# Network sources: a URL list and a Danbooru-compatible API (pipeline/data/download.py)

_OUTCOME_COLUMNS = ("file", "label", "source", "status", "reason", "url", "http_status", "content_type", "bytes",
                    "width", "height", "attempts", "errors", "sha256", "identity", "seconds")


def read_url_list(path: str | Path) -> pd.DataFrame:
    """A `.txt` (one URL per line, `#` comments) or `.csv` (a `url` column; other columns are
    carried into the manifest, e.g. tags or licence). Duplicate URLs keep their first row."""
    path = Path(path)
    if not path.is_file():
        raise AnimecolorError(f"crawl.urls {path}: no such file")
    if path.suffix.lower() == ".csv":
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise AnimecolorError(f"crawl.urls {path}: not a readable CSV ({exc.__class__.__name__})") from None
        if "url" not in table.columns:
            raise AnimecolorError(f"crawl.urls {path}: needs a 'url' column (has: {', '.join(table.columns)})")
    else:
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            raise AnimecolorError(f"crawl.urls {path}: not a text file") from None
        urls = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        table = pd.DataFrame({"url": pd.Series(urls, dtype=str)})
    table["url"] = table["url"].str.strip()
    table = table[table["url"] != ""].drop_duplicates("url").reset_index(drop=True)
    if table.empty:
        raise AnimecolorError(f"crawl.urls {path}: no URLs")
    # Columns that would clash with the downloader's own are kept under a `meta_` name.
    return table.rename(columns={c: f"meta_{c}" for c in table.columns if c in _OUTCOME_COLUMNS and c != "url"})


def _post_row(post: dict, base_url: str) -> dict:
    url = post.get("file_url") or post.get("large_file_url") or ""
    md5 = str(post.get("md5") or "")
    return {"url": urljoin(base_url, url) if url else "", "post_id": str(post.get("id", "")),
            "tags": post.get("tag_string", post.get("tags", "")), "rating": post.get("rating", ""),
            "source_url": post.get("source", ""),
            # the post's MD5 is the original file's: checked only when that file is what we fetch
            "md5": md5 if post.get("file_url") and re.fullmatch(r"[0-9a-fA-F]{32}", md5) else ""}


def list_booru_posts(downloader: Downloader, base_url: str, tags: str, pages: int, limit: int, max_posts: int,
                     cache_dir: Path, auth=None) -> pd.DataFrame:
    """Page through `<base_url>/posts.json?tags=..&page=..&limit=..` (Danbooru's API).

    Each page is cached under `cache_dir` (named by a hash of the query), so a resumed crawl
    works on exactly the listing it started with and asks the API nothing twice.
    """
    query = hashlib.sha256(repr((base_url, tags, limit)).encode()).hexdigest()[:12]
    endpoint = base_url.rstrip("/") + "/posts.json"
    rows: list[dict] = []
    for page in range(1, pages + 1):
        cache = cache_dir / f"{query}-{page:04d}.json"
        if cache.is_file():
            posts = json.loads(cache.read_text())
        else:
            try:
                posts = downloader.get_json(endpoint, params={"tags": tags, "page": page, "limit": limit}, auth=auth)
            except DownloadFailure as failure:
                hint = (" (check ANIMECOLOR_BOORU_LOGIN / ANIMECOLOR_BOORU_API_KEY)"
                        if failure.reason in ("http_401", "http_403") else "")
                raise AnimecolorError(f"booru API {endpoint} page {page}: {failure.reason}{hint}; "
                                      "rerun to resume") from None
            if not isinstance(posts, list) or not all(isinstance(p, dict) for p in posts):
                raise AnimecolorError(f"booru API {endpoint} page {page}: expected a JSON list of posts")
            write_json(cache, posts)
        rows.extend(_post_row(p, base_url) for p in posts)
        if len(rows) >= max_posts or len(posts) < limit:
            break
    if not rows:
        raise AnimecolorError(f"booru API {endpoint}: no posts for tags {tags!r}")
    table = pd.DataFrame(rows[:max_posts])
    # Posts without a file URL (deleted, or hidden without an account) stay in the manifest.
    with_url = table[table.url != ""].drop_duplicates("url")
    return pd.concat([with_url, table[table.url == ""]]).sort_index().reset_index(drop=True)


def _prepare_network_dir(out: Path) -> None:
    _prepare_out_dir(out, {"source": "network", "version": 1})  # urls and booru share downloads (keyed by URL)


def _read_journal(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run
                continue
            done[entry["url"]] = entry
    return done


def download_all(out_dir: str | Path, items: pd.DataFrame, kind: str, cfg: DownloadConfig,
                 progress: Callable[[str], None] | None = None, total: Callable[[int], None] | None = None,
                 downloader: Downloader | None = None) -> tuple[pd.DataFrame, dict]:
    """Download every `items.url` into `out_dir/images/` with a resumable journal.

    Each finished URL is appended to `journal.jsonl` (one JSON line, flushed) as it completes,
    so after an interruption -- even `kill -9` -- a rerun skips what is done: downloaded
    files that are still on disk, and permanent failures under the same limits. Transient
    failures (timeouts, 429, 5xx) are tried again. The manifest lists every URL in input order
    with its final status, reason and the result of each try.
    """
    out = Path(out_dir)
    _prepare_network_dir(out)
    downloader = downloader or Downloader(cfg, out / "images")
    journal_path = out / "journal.jsonl"
    done = _read_journal(journal_path)
    fingerprint = cfg.fingerprint()
    if total:
        total(len(items))

    def reusable(entry: dict | None) -> bool:
        if entry is None:
            return False
        if entry["status"] == "ok":
            return bool(entry["file"]) and (out / entry["file"]).is_file()
        return not is_transient(entry["reason"]) and entry.get("config") == fingerprint

    results: dict[str, dict] = {}
    todo: list[str] = []
    for url in items["url"]:
        if not url:
            continue
        if reusable(done.get(url)):
            results[url] = done[url]
            if progress:
                progress("skipped")
        else:
            todo.append(url)
    start = time.perf_counter()
    counts = {"ok": 0, "failed": 0}
    pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="download")
    try:
        with open(journal_path, "a") as journal:
            checksums = dict(zip(items["url"], items["md5"])) if "md5" in items else {}
            futures = [pool.submit(downloader.fetch, url, checksums.get(url) or None) for url in todo]
            for future in as_completed(futures):
                entry = {**future.result().row(), "config": fingerprint, "kind": kind}
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
                results[entry["url"]] = entry
                counts[entry["status"]] += 1
                if progress:
                    progress(entry["status"])
    finally:  # Ctrl-C: drop the queued downloads; the journal already has every finished one
        pool.shutdown(wait=False, cancel_futures=True)
    seconds = time.perf_counter() - start

    rows = []
    for _, item in items.iterrows():
        extra = {k: v for k, v in item.items() if k != "url"}
        if not item["url"]:
            entry = Outcome(url="", reason="no_file_url", attempts=["no_file_url"]).row()
            if progress:
                progress("failed")
            counts["failed"] += 1
        else:
            entry = {k: v for k, v in results[item["url"]].items() if k not in ("config", "kind")}
        entry.update(source=kind, label="", identity=entry["sha256"][:16])
        rows.append({**{c: entry.get(c) for c in _OUTCOME_COLUMNS}, **extra})
    manifest = pd.DataFrame(rows, columns=list(_OUTCOME_COLUMNS) + [c for c in items.columns if c != "url"])
    keep = {f for f in manifest.loc[manifest.status == "ok", "file"]}
    for stale in (out / "images").iterdir():  # files of URLs no longer listed
        if f"images/{stale.name}" not in keep:
            stale.unlink()
    manifest.to_csv(out / "manifest.csv", index=False)
    ok = manifest.status == "ok"
    stats = {"generated": counts["ok"], "skipped": len(items) - len(todo) - int((items.url == "").sum()),
             "failed": int((~ok).sum()), "ok": int(ok.sum()), "unique_files": len(keep),
             "failures": manifest.loc[~ok, "reason"].value_counts().sort_index().to_dict(),
             "bytes": int(manifest.loc[ok, "bytes"].sum()), "seconds": seconds}
    return manifest, stats


def crawl_urls(out_dir: str | Path, url_list: str | Path, cfg: DownloadConfig, max_images: int | None = None,
               progress: Callable[[str], None] | None = None,
               total: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Download the images of a URL list (see `read_url_list`); `progress(status)` per URL."""
    items = read_url_list(url_list)
    return download_all(out_dir, items.iloc[:max_images] if max_images else items, "urls", cfg, progress, total)


def crawl_booru(out_dir: str | Path, base_url: str, tags: str, pages: int, limit: int, cfg: DownloadConfig,
                max_images: int, progress: Callable[[str], None] | None = None,
                total: Callable[[int], None] | None = None,
                auth: tuple[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """List a booru query's posts (cached pages), then download their files. `auth` (login, API key)
    is sent as HTTP basic auth to the API only, never to image hosts."""
    out = Path(out_dir)
    _prepare_network_dir(out)  # before listing: the page cache lives inside
    downloader = Downloader(cfg, out / "images")
    items = list_booru_posts(downloader, base_url, tags, pages, limit, max_images, out / "posts", auth)
    return download_all(out, items, "booru", cfg, progress, total, downloader)


def run_crawl(out_dir: str | Path, cfg: CrawlConfig, image_size: int, seed: int,
              progress: Callable | None = None, total: Callable[[int], None] | None = None,
              auth: tuple[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Fill `out_dir` from `cfg.source`. `progress(1)` per image for synthetic/folder, `progress(status)`
    per URL for the network sources (which also call `total(n)` once the count is known)."""
    if cfg.source == "folder":
        return crawl_folder(out_dir, cfg.folder, cfg.n_images, progress=progress)
    if cfg.source == "urls":
        return crawl_urls(out_dir, cfg.urls, cfg.download, cfg.n_images, progress=progress, total=total)
    if cfg.source == "booru":
        return crawl_booru(out_dir, cfg.booru_url, cfg.tags, cfg.pages, cfg.page_limit, cfg.download, cfg.n_images,
                           progress=progress, total=total, auth=auth)
    return crawl_synthetic(out_dir, cfg.n_images, image_size, seed, cfg.heterochromia_p, cfg.achromatic_eyes_p,
                           progress=progress)
