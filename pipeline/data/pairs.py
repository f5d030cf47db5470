"""The `pairs` stage's library side: sketches for every face, fixed benchmark pairs.

Output layout (`data/pairs/`):
    <split>/sketch/<name>.png      XDoG line drawing of every face (uint8, white paper)
    <split>/items.csv              name, image, label (relative to the faces folder), sketch, sigma,
                                   caption (the face's colour prompt from `clean`, maybe "")
    test/self_ref/<name>.png       the face's own colour image, TPS-distorted with a fixed seed
    test/self_ref_label/<name>.png the same distortion applied to its label map (if any)
    test/random_ref/<name>.png     the other test image chosen as this one's random reference
    test/random_ref_label/<name>.png   and its label map (if any)
    test/pairs.csv                 the benchmark: one row per (setting, test image); sketch and
                                   reference paths are relative to the pairs folder, target
                                   paths to the faces folder

Benchmark settings: `self_ref` (reference = own distorted image) and `random_ref`
(reference = another test image: a seeded derangement, different identity where known).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.manifest import zoom_rows
from pipeline.data.imageio import read_label, read_rgb, write_png
from pipeline.data.tps import TPSConfig, apply_warp, random_warp
from pipeline.data.xdog import XDoGConfig
from pipeline.errors import AnimecolorError


def derangement(identities: list[str], rng: np.random.Generator) -> np.ndarray:
    """perm with perm[i] != i and, where possible, identities[perm[i]] != identities[i]."""
    n = len(identities)
    if n < 2:
        raise AnimecolorError(f"random-reference pairs need at least 2 test images (have {n})")
    ids = np.asarray(identities, dtype=object)
    for _ in range(1000):
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any() and not (ids[perm] == ids).any():
            return perm
    # Few identities dominate: settle for "never itself", fixing clashes by swaps.
    perm = rng.permutation(n)
    for i in range(n):
        if perm[i] == i:
            j = (i + 1) % n
            perm[i], perm[j] = perm[j], perm[i]
    return perm


def build_pairs(faces_dir: str | Path, out_dir: str | Path, seed: int, xdog: XDoGConfig,
                tps: TPSConfig, progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Sketch every face in `faces_dir/manifest.csv`; write the fixed test pairs."""
    faces, out = Path(faces_dir), Path(out_dir)
    manifest_path = faces / "manifest.csv"
    if not manifest_path.is_file():
        raise AnimecolorError(f"{manifest_path}: not found (run `animecolor clean` first)")
    manifest = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    kept = manifest[manifest.status == "kept"].reset_index(drop=True)
    for column in ("label", "caption"):  # faces cleaned before captions existed have neither
        if column not in kept:
            kept[column] = ""
    if "identity" not in kept or (kept.identity == "").all():
        kept["identity"] = kept.sha256

    start = time.perf_counter()
    items: dict[str, list[dict]] = {"train": [], "test": []}
    # Per image, independent of processing order; `clean.zoom_crops`' crops draw from their own
    # stream, so the faces' sketches and the benchmark are the same with them or without.
    zoom = zoom_rows(kept)
    stream = np.where(zoom, np.cumsum(zoom) - 1, np.cumsum(~zoom) - 1)
    for i, row in kept.iterrows():
        name = Path(row.file).stem
        rng = np.random.default_rng([seed, 4 if zoom[i] else 1, int(stream[i])])
        rgb = read_rgb(faces / row.file)
        s = xdog.sample_sigma(rng)
        sketch = xdog.sketch(rgb, s)
        write_png(out / row.split / "sketch" / f"{name}.png", sketch)
        items[row.split].append({"name": name, "image": row.file, "label": row.label,
                                 "identity": row.identity, "sketch": f"{row.split}/sketch/{name}.png",
                                 "sigma": s, "caption": row.caption})
        if row.split == "test":
            maps = random_warp(tps, np.random.default_rng([seed, 2, int(stream[i])]), *rgb.shape[:2])
            write_png(out / "test/self_ref" / f"{name}.png", apply_warp(rgb, maps))
            if row.label:
                lab = apply_warp(read_label(faces / row.label), maps, label=True)
                write_png(out / "test/self_ref_label" / f"{name}.png", lab)
        if progress:
            progress(1)
    for split, rows in items.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["name", "image", "label", "identity", "sketch", "sigma", "caption"]).to_csv(
            out / split / "items.csv", index=False)

    test = pd.DataFrame(items["test"])
    perm = derangement(test.identity.tolist(), np.random.default_rng([seed, 3]))
    rows = []
    for i, t in test.iterrows():
        common = {"name": t["name"], "sketch": t.sketch, "target": t.image, "target_label": t.label,
                  "target_caption": t.caption}
        rows.append({**common, "setting": "self_ref", "reference": f"test/self_ref/{t['name']}.png",
                     "reference_label": f"test/self_ref_label/{t['name']}.png" if t.label else "",
                     "reference_identity": t.identity, "reference_caption": t.caption})
        r = test.iloc[perm[i]]
        write_png(out / "test/random_ref" / f"{t['name']}.png", read_rgb(faces / r.image))
        if r.label:
            write_png(out / "test/random_ref_label" / f"{t['name']}.png", read_label(faces / r.label))
        rows.append({**common, "setting": "random_ref", "reference": f"test/random_ref/{t['name']}.png",
                     "reference_label": f"test/random_ref_label/{t['name']}.png" if r.label else "",
                     "reference_identity": r.identity, "reference_name": r["name"],
                     "reference_caption": r.caption})
    pairs = pd.DataFrame(rows)
    pairs.to_csv(out / "test" / "pairs.csv", index=False)
    seconds = time.perf_counter() - start
    return pairs, {"train": len(items["train"]), "test": len(items["test"]), "seconds": seconds}
