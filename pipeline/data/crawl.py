"""The `crawl` stage's library side: fill a raw-data folder and its manifest.

Layout of the output folder (`data/raw/` in the pipeline):
    images/<name>.png     colour images
    labels/<name>.png     region label maps (synthetic source only; ids in regions.json)
    manifest.csv          one row per image: file, label, source, seed, attributes
    regions.json          region id -> name
    state.json            the generation settings, so a rerun can resume safely
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.imageio import _atomic_bytes, write_json, write_png
from pipeline.data.synthetic import REGIONS, face_seed, render_face, sample_face
from pipeline.errors import AnimecolorError


def crawl_synthetic(out_dir: str | Path, n_images: int, size: int, seed: int,
                    heterochromia_p: float,
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
    state_file = out / "state.json"
    if out.exists() and (not state_file.exists() or json.loads(state_file.read_text()) != state):
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for leftover in out.rglob(".*.tmp"):  # half-written files of a killed run
        leftover.unlink()
    write_json(state_file, state)
    write_json(out / "regions.json", {str(k): v for k, v in REGIONS.items()})

    rows, generated, skipped = [], 0, 0
    start = time.perf_counter()
    for index in range(n_images):
        s = face_seed(seed, index)
        spec = sample_face(np.random.default_rng(s), heterochromia_p, seed=s)
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


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


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
    state_file = out / "state.json"
    if out.exists() and (not state_file.exists() or json.loads(state_file.read_text()) != state):
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for leftover in out.rglob(".*.tmp"):
        leftover.unlink()
    write_json(state_file, state)
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
                _atomic_bytes(out / name, data)
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
