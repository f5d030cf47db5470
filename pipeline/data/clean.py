"""The `clean` stage's library side: raw images -> aligned, de-duplicated face dataset.

Per raw image, in order (the first failing check is the rejection reason):
  decode_error  the file does not decode (or exceeds the pixel limit)
  too_small     shorter side below `min_size`
  monochrome    too few coloured pixels (manga pages, sketches, grayscale scans)
  duplicate     the same bytes (SHA-256) as an earlier image
  near_duplicate  perceptual hash within `phash_threshold` bits of a kept image *and* a
                tiny colour thumbnail within `thumb_tolerance` (phash alone ignores colour,
                and many distinct anime faces share a luminance layout)
  no_face       face detection on, nothing above `min_likelihood`

Kept images are cropped (detected face box grown by `margin`, square; or the centred square
when detection is off), resized with area interpolation, and split train/test by their
SHA-256, so adding images never moves old ones between splits. Label maps (synthetic
source) get the identical crop with nearest-neighbour resizing.

Output: <out>/<split>/images/<name>.png, <out>/<split>/labels/<name>.png, manifest.csv
(one row per kept face and per rejected image), state.json.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from pipeline.config import Config
from pipeline.data.imageio import WHITE, colour_fraction, decode_image, flatten_alpha, read_label, write_json, write_png
from pipeline.data.labels import NO_REGION, REGION_IDS
from pipeline.data.manifest import zoom_rows
from pipeline.data.prompt import SLOTS, animeface_caption, booru_caption, synthetic_caption
from pipeline.errors import AnimecolorError

REASONS = ("decode_error", "too_small", "monochrome", "duplicate", "near_duplicate", "no_face")


class CleanConfig(Config):
    """Verification, de-duplication, face crops and the split (params `clean`)."""

    face_detect: Literal["none", "animeface"] = Field("none", description="none: already-aligned faces "
                                                                          "(synthetic); animeface: detect and crop")
    min_likelihood: float = Field(0.5, ge=0.0, le=1.0, description="animeface detections below this are ignored")
    margin: float = Field(0.5, ge=0.0, le=3.0, description="grow the face box by this fraction of its side "
                                                           "before cropping")
    keep: Literal["largest", "all"] = Field("largest", description="largest | all faces per image")
    min_size: int = Field(32, ge=8, description="reject images whose shorter side is smaller (px)")
    min_colour_fraction: float = Field(0.05, ge=0.0, le=1.0, description="reject if fewer pixels than this have "
                                                                         "chroma >= 24 (manga pages)")
    phash_threshold: int = Field(4, ge=0, le=64, description="near-duplicate: pHash Hamming distance <= this ...")
    thumb_tolerance: float = Field(12.0, ge=0.0, le=255.0, description="... and 16x16 colour thumbnails within "
                                                                       "this mean |diff| (0-255)")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of images in the test split (by content "
                                                                  "hash: stable)")
    eye_labels: bool = Field(False, description="iris label maps from animeface's eye "
                                                "boxes for unlabelled training faces")
    zoom_crops: int = Field(0, ge=0, le=16, description="extra training crops per training face, each a "
                                                       "random part of its square; 0: off")
    zoom_min: float = Field(0.35, gt=0.0, le=1.0, description="a zoom crop's side, as a fraction of the "
                                                              "face square's: lower end")
    zoom_max: float = Field(0.6, gt=0.0, le=1.0, description="a zoom crop's side: upper end")

    @model_validator(mode="after")
    def _zoom_range(self):
        if self.zoom_min > self.zoom_max:
            raise ValueError(f"zoom_min {self.zoom_min} is above zoom_max {self.zoom_max}")
        return self

    def state(self) -> dict:
        """The config as the resume state records it (eye_labels and the zoom crops only when on:
        earlier runs still resume)."""
        state = {k: v for k, v in self.to_dict().items() if k != "eye_labels" or v}
        if not self.zoom_crops:
            for key in ("zoom_crops", "zoom_min", "zoom_max"):
                state.pop(key)
        return state


def decode(data: bytes) -> np.ndarray | None:
    """Bytes -> uint8 RGB over white paper (the one decoder, `imageio.decode_image`); None if unusable."""
    try:
        return flatten_alpha(decode_image(data))
    except AnimecolorError:
        return None


def phash(rgb: np.ndarray) -> int:
    """64-bit perceptual hash (imagehash's DCT pHash)."""
    import imagehash
    from PIL import Image

    return int(str(imagehash.phash(Image.fromarray(rgb))), 16)


def hamming_distances(hashes: list[int], h: int) -> np.ndarray:
    """Bits that differ between each 64-bit hash and `h` (NumPy 1 and 2: no np.bitwise_count)."""
    x = np.asarray(hashes, np.uint64) ^ np.uint64(h)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def detect_faces(rgb: np.ndarray, min_likelihood: float) -> list[tuple[int, int, int, int, float, str]]:
    """Anime faces via the `animeface` package: [(x, y, w, h, likelihood, caption)], largest first.
    The caption is animeface's hair, eye and skin colours quantised to the prompt vocabulary
    (`prompt.animeface_caption`), measured here at the image's full resolution."""
    import animeface
    from PIL import Image

    faces = []
    for f in animeface.detect(Image.fromarray(rgb)):
        if f.likelihood < min_likelihood:
            continue
        eyes = sorted([f.left_eye, f.right_eye], key=lambda e: e.pos.x)  # image-left first
        caption = animeface_caption(_rgb(f.hair.color), _rgb(eyes[0].color), _rgb(eyes[1].color),
                                    _rgb(f.skin.color))
        faces.append((f.face.pos.x, f.face.pos.y, f.face.pos.width, f.face.pos.height, float(f.likelihood), caption))
    return sorted(faces, key=lambda f: -f[2] * f[3])


def eye_label_map(face: np.ndarray, min_likelihood: float) -> np.ndarray:
    """uint8 label map (H, W) of a face crop: the image-left and image-right irises (`labels.py`)
    as ellipses inside animeface's two eye boxes (70 % of the box's width, 90 % of its height:
    the iris, not the lashes' corners), every other pixel `NO_REGION`. The crop is framed and
    upscaled as the benchmark's detection does it (`detect.detect_framed`). No face at
    `min_likelihood`: all `NO_REGION`."""
    from pipeline.data.detect import detect_framed

    label = np.full(face.shape[:2], NO_REGION, np.uint8)
    found, scale, pad = detect_framed(np.ascontiguousarray(face))
    if found is None or found.likelihood < min_likelihood:
        return label
    eyes = sorted((e.pos for e in (found.left_eye, found.right_eye)), key=lambda p: p.x)  # image-left first
    for region, box in zip(("iris_left", "iris_right"), eyes):
        centre = ((box.x + box.width / 2) / scale - pad, (box.y + box.height / 2) / scale - pad)
        axes = (max(0.35 * box.width / scale, 0.5), max(0.45 * box.height / scale, 0.5))
        cv2.ellipse(label, (round(centre[0] * 16), round(centre[1] * 16)), (round(axes[0] * 16), round(axes[1] * 16)),
                    0, 0, 360, REGION_IDS[region], -1, shift=4)
    return label


def _rgb(colour) -> tuple[int, int, int]:
    """An animeface Color as (r, g, b)."""
    return colour.r, colour.g, colour.b


def square_box(box, margin: float, shape) -> tuple[int, int, int]:
    """Square (x0, y0, side) around `box` grown by `margin`; may extend past the image."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + margin)))
    cx, cy = x + w / 2, y + h / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_square(img: np.ndarray, x0: int, y0: int, side: int, fill) -> np.ndarray:
    """Crop a square that may extend past the image; the outside is filled with `fill` (a 2-D image
    takes a number: a colour fills it with 0)."""
    H, W = img.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    if pad:
        value = fill if img.ndim == 3 or np.isscalar(fill) else 0
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=value)
    return img[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]


def resize(img: np.ndarray, size: int, label: bool = False) -> np.ndarray:
    if label:
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST)
    shrink = img.shape[0] >= size
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def split_of(sha256: str, test_fraction: float) -> str:
    """Deterministic split from the content hash (stable when images are added)."""
    return "test" if int(sha256[:8], 16) / 2**32 < test_fraction else "train"


def raw_images(raw_manifest: str | Path) -> pd.DataFrame:
    """The raw manifest's image rows: failed downloads dropped, one row per distinct file
    (two URLs that served the same bytes share a content-named file; the first row wins)."""
    source = pd.read_csv(raw_manifest, dtype=str, keep_default_na=False)
    if "status" in source.columns:
        source = source[source["status"] == "ok"]
    return source.drop_duplicates("file").reset_index(drop=True)


def clean_dataset(raw_dir: str | Path, out_dir: str | Path, cfg: CleanConfig, image_size: int,
                  progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Clean every image listed in `raw_dir/manifest.csv` into `out_dir` (faces `image_size` px square).

    Resumable: each decision is appended to `out_dir/progress.jsonl` as it is made; a rerun
    with the same config skips the images already decided.
    """
    raw, out = Path(raw_dir), Path(out_dir)
    raw_manifest = raw / "manifest.csv"
    if not raw_manifest.is_file():
        raise AnimecolorError(f"{raw_manifest}: not found (run `animecolor crawl` first)")
    source = raw_images(raw_manifest)
    # The raw manifest's hash too: a resumed run must be deciding about the very same images.
    state = {"config": cfg.state(), "image_size": image_size, "raw_manifest": hashlib.sha256(raw_manifest.read_bytes()).hexdigest(),
             "version": 1}
    log_path = out / "progress.jsonl"
    done: list[dict] = []
    if out.exists():
        same = (out / "state.json").is_file() and json.loads((out / "state.json").read_text()) == json.loads(
            json.dumps(state))
        if same and log_path.is_file():
            for line in log_path.read_text().splitlines():
                try:
                    done.append(json.loads(line))
                except json.JSONDecodeError:  # the last line of a killed run
                    break
            if done:  # the last image's rows may be cut short (a face and its zoom crops): decide it again
                last = done[-1]["raw_file"]
                done = [r for r in done if r["raw_file"] != last]
            log_path.write_text("".join(json.dumps(r) + "\n" for r in done))
        else:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "state.json", state)

    start = time.perf_counter()
    seen_sha: set[str] = set()
    hashes: list[int] = []
    thumbs: list[np.ndarray] = []
    decided = {r["raw_file"] for r in done}
    for r in done:
        seen_sha.add(r["sha256"])
        if r["status"] == "kept" and r.get("phash") is not None and r["face"] == 0:
            hashes.append(int(r["phash"], 16))
            thumbs.append(np.asarray(r["thumb"], np.float32).reshape(16, 16, 3))
    rows = list(done)
    with open(log_path, "a") as log:
        for _, item in source.iterrows():
            if item["file"] in decided:
                if progress:
                    progress(1)
                continue
            new = _clean_one(raw, item, cfg, image_size, out, seen_sha, hashes, thumbs)
            log.write("".join(json.dumps(r) + "\n" for r in new))  # one image's rows in one write
            log.flush()
            rows.extend(new)
            if progress:
                progress(1)
    manifest = pd.DataFrame(rows).drop(columns=["thumb"], errors="ignore")
    # Carry the raw manifest's columns (identity, tags, synthetic colours...) along.
    extra = source.drop(columns=["label"], errors="ignore").rename(columns={"file": "raw_file"})
    manifest = manifest.merge(extra, on="raw_file", how="left", suffixes=("", "_raw"))
    manifest = with_captions(manifest)
    manifest.to_csv(out / "manifest.csv", index=False)
    log_path.unlink()
    return manifest, {"seconds": time.perf_counter() - start, "resumed": len(decided)}


def with_captions(manifest: pd.DataFrame) -> pd.DataFrame:
    """`caption` (a prompt, `data/prompt.py`) and `caption_source` for every kept face, from what the
    data says itself, best first: synthetic (the spec's exact colours), booru (the post's colour
    tags), animeface (its colour estimates at full resolution); "" / "none" when nothing does, and
    for zoom crops (a crop shows a part)."""
    manifest = manifest.copy()
    captions, sources = [], []
    crops = zoom_rows(manifest)
    for crop, (_, row) in zip(crops, manifest.astype(object).where(manifest.notna(), "").iterrows()):
        colours = {slot: row.get(f"color_{slot}", "") for slot in SLOTS}
        made = [("synthetic", synthetic_caption(colours)), ("booru", booru_caption(str(row.get("tags", "")))),
                ("animeface", str(row.get("animeface_caption", "")))]
        source, caption = next(((s, c) for s, c in made if c), ("none", ""))
        kept = row.get("status") == "kept" and not crop
        captions.append(caption if kept else "")
        sources.append(source if kept else "")
    manifest["caption"], manifest["caption_source"] = captions, sources
    return manifest


def _clean_one(raw: Path, item, cfg: CleanConfig, image_size: int, out: Path, seen_sha, hashes, thumbs) -> list[dict]:
    path = raw / item["file"]
    base = {"raw_file": item["file"]}
    try:
        data = path.read_bytes()
    except OSError:
        return [{**base, "status": "rejected", "reason": "decode_error", "sha256": "", "face": 0}]
    sha = hashlib.sha256(data).hexdigest()
    base["sha256"] = sha

    def reject(reason):
        return [{**base, "status": "rejected", "reason": reason, "face": 0}]

    rgb = decode(data)
    if rgb is None:
        return reject("decode_error")
    if min(rgb.shape[:2]) < cfg.min_size:
        return reject("too_small")
    if colour_fraction(rgb) < cfg.min_colour_fraction:
        return reject("monochrome")
    if sha in seen_sha:
        return reject("duplicate")
    seen_sha.add(sha)
    h = phash(rgb)
    thumb = thumbnail(rgb)
    if hashes:
        dist = hamming_distances(hashes, h)
        for j in np.flatnonzero(dist <= cfg.phash_threshold):
            if np.abs(thumbs[j] - thumb).mean() <= cfg.thumb_tolerance:
                return reject("near_duplicate")

    if cfg.face_detect == "animeface":
        faces = detect_faces(rgb, cfg.min_likelihood)
        if not faces:
            return reject("no_face")
        if cfg.keep == "largest":
            faces = faces[:1]
        boxes = [(square_box(f[:4], cfg.margin, rgb.shape), f[4], f[5]) for f in faces]
    else:
        H, W = rgb.shape[:2]
        side = min(H, W)
        boxes = [(((W - side) // 2, (H - side) // 2, side), None, "")]
    label = read_label(raw / item["label"]) if item.get("label") else None

    split = split_of(sha, cfg.test_fraction)
    rows = []
    for i, ((x0, y0, side), likelihood, caption) in enumerate(boxes):
        name = f"{sha[:16]}" + (f"_{i}" if i else "")
        square = crop_square(rgb, x0, y0, side, WHITE)
        face = resize(square, image_size)
        row = {**base, "status": "kept", "reason": "", "face": i, "split": split,
               "file": f"{split}/images/{name}.png", "box": f"{x0},{y0},{side}",
               "likelihood": likelihood, "phash": f"{h:016x}", "thumb": thumb.round(1).ravel().tolist(),
               "animeface_caption": caption}
        square_label = crop_square(label, x0, y0, side, 0) if label is not None else None
        lab = resize(square_label, image_size, label=True) if label is not None else None
        if lab is None and cfg.eye_labels and split == "train":
            lab = eye_label_map(face, cfg.min_likelihood)
            row["eye_labels"] = bool((lab != NO_REGION).any())
            square_label = cv2.resize(lab, (side, side), interpolation=cv2.INTER_NEAREST)  # for the zoom crops
        if lab is not None:
            write_png(out / split / "labels" / f"{name}.png", lab)
            row["label"] = f"{split}/labels/{name}.png"
        write_png(out / split / "images" / f"{name}.png", face)
        rows.append(row)
        if split == "train" and cfg.zoom_crops:
            rows += _zoom_crops(square, square_label, (x0, y0), cfg, image_size, out, name,
                                {**base, "status": "kept", "reason": "", "face": i, "split": split,
                                 "animeface_caption": ""})
    hashes.append(h)
    thumbs.append(thumb)
    return rows


def _zoom_crops(square: np.ndarray, label: np.ndarray | None, corner, cfg: CleanConfig, image_size: int,
                out: Path, name: str, base: dict) -> list[dict]:
    """`cfg.zoom_crops` random squares inside a face's square (`square`, at the raw picture's
    resolution, its corner at `corner` in the picture), each a training image of its own.

    A figure coloured in tiles (`colorize --tiles`) shows the model parts of a body at a face's
    scale; these teach it parts of pictures, not whole faces. Drawn from the image's own hash, so
    a rerun makes the same crops; the face square's label map (`label`, the same size: the iris
    maps of `eye_labels` included) is cropped with it, no caption (a crop shows a part)."""
    side = square.shape[0]
    rng = np.random.default_rng([int(base["sha256"][:12], 16), base["face"]])
    rows = []
    for j in range(cfg.zoom_crops):
        s = min(side, max(1, int(round(side * rng.uniform(cfg.zoom_min, cfg.zoom_max)))))
        dx, dy = int(rng.integers(0, side - s + 1)), int(rng.integers(0, side - s + 1))
        crop_name = f"{name}_z{j}"
        row = {**base, "file": f"train/images/{crop_name}.png", "box": f"{corner[0] + dx},{corner[1] + dy},{s}",
               "likelihood": None, "zoom": j + 1}
        if label is not None:
            write_png(out / "train" / "labels" / f"{crop_name}.png",
                      resize(label[dy:dy + s, dx:dx + s], image_size, label=True))
            row["label"] = f"train/labels/{crop_name}.png"
        write_png(out / "train" / "images" / f"{crop_name}.png", resize(square[dy:dy + s, dx:dx + s], image_size))
        rows.append(row)
    return rows
