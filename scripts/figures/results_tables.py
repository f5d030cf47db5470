"""Regenerate every results table that comes from a metrics file, in the README and docs/results/.

    python scripts/figures/results_tables.py            # rewrite the tables in place
    python scripts/figures/results_tables.py --check    # exit 1 and name each stale table
    python scripts/figures/results_tables.py --print metrics/evaluate.json   # any evaluate JSON as a table
    python scripts/figures/results_tables.py --list     # the table names, one a line

A generated table sits between two marker comments in a markdown file:

    <!-- generated: NAME -->
    ...
    <!-- /generated -->

NAME is a key of TABLES. Sources: metrics/*.json (the default `dvc repro`), docs/results/full/ (the full study) and
docs/results/<run>/evaluate.json (real-face runs, committed copies of their metrics).
`tests/test_docs.py` runs `--check` and fails when a table no longer matches its file
(`--root DIR` reads and writes DIR's markdown and metrics instead of this repository's).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/results/synthetic.md", "docs/results/real-faces.md", "docs/results/text.md",
        "docs/results/speed.md", "docs/results/real-art.md"]
MARKER = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)

EVAL_KEYS = ["psnr", "ms_ssim", "lpips", "fd_vgg16", "kid_vgg16", "de_hair", "de_skin", "de_iris_left",
             "de_iris_right", "de_clothes", "heterochromia_success", "af_de_hair", "af_de_eye_left",
             "af_de_eye_right", "af_detected", "af_detected_target", "seconds_per_image"]
HEADLINE_KEYS = ["psnr", "lpips", "fd_vgg16", "de_hair", "de_iris_left", "de_iris_right", "de_clothes",
                 "heterochromia_success", "seconds_per_image"]
TEXT_COLUMNS = [("text only: hair", "text_only", "de_hair"), ("iris L", "text_only", "de_iris_left"),
                ("iris R", "text_only", "de_iris_right"), ("clothes", "text_only", "de_clothes"),
                ("masked hair: dE without", "masked_hair", "de_hair_no_text"),
                ("with", "masked_hair", "de_hair_text"), ("ratio", "masked_hair", "ratio_hair"),
                ("masked eyes ratio L", "masked_eyes", "ratio_iris_left"),
                ("R", "masked_eyes", "ratio_iris_right"), ("heterochromia in words", "hetero_text", "success"),
                ("of which two hued words", "hetero_text", "success_chromatic"),
                ("counterfactual follow", "counterfactual", "follow_rate"),
                ("bleeding", "counterfactual", "bleed_de")]
FULL_KEYS = ["psnr", "lpips", "chroma_ratio", "de_hair", "de_skin", "de_iris_left", "de_iris_right", "de_clothes",
             "af_de_hair", "af_de_eye_left", "af_de_eye_right", "af_detected", "seconds_per_image"]
STAGES = ["pretrain", "finetune", "text"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def evaluate_table(metrics: dict, keys: list[str] | None = None, full: bool = False) -> str:
    """One row per candidate x setting of an evaluate JSON; columns: `keys` present in any row.
    `full`: the full-size benchmark's settings only (`full_*`), else the 64 px benchmark's only."""
    rows = [(c, s, r) for c, v in metrics.items() if not c.startswith("_") for s, r in v.items()
            if s != "text" and s.startswith("full_") == full]
    keys = [k for k in (keys or EVAL_KEYS) if any(k in r for _, _, r in rows)]
    return _table(["candidate", "setting", *keys], [[c, s, *(r.get(k) for k in keys)] for c, s, r in rows])


def text_table(metrics: dict, model: str = "finetune") -> str:
    text = metrics.get(model, {}).get("text", {})
    return _table(["model", *(h for h, _, _ in TEXT_COLUMNS)],
                  [[model, *(text.get(s, {}).get(k) for _, s, k in TEXT_COLUMNS)]])


def text_by_word(metrics: dict, model: str = "finetune") -> str:
    words = metrics.get(model, {}).get("text", {}).get("hetero_text", {}).get("eye_success_by_word", {})
    return _table(["eye word", "share of irises within 15 of the word"], [[w, v] for w, v in words.items()])


def stage_table(root: Path, folder: str = "metrics") -> str:
    rows = []
    for stage in STAGES:
        m = _load(root / folder / f"{stage}.json")
        rows.append([stage, m.get("steps"), m.get("seconds"), m.get("images_per_s"), m.get("peak_memory_mb"),
                     m.get("precision"), m.get("parameters")])
    return _table(["stage", "steps", "seconds", "images/s", "peak memory MB", "precision", "parameters"], rows)


def _default(root: Path) -> dict:
    return _load(root / "metrics" / "evaluate.json")


def _committed(root: Path, run: str) -> dict:
    """A run's evaluate metrics, committed under docs/results/RUN/."""
    return _load(root / "docs" / "results" / run / "evaluate.json")


def _full(root: Path) -> dict:
    """The full study (`animecolor recipe full`): its metrics files, copied into docs/results/full/."""
    return _committed(root, "full")


def headline_table(root: Path) -> str:
    """The README's one table: the shipped model of the full study and of the default run, then
    both runs' baselines (each on its own test pairs: 193 and 48)."""
    runs = [("full study (`recipe full`)", _full(root)), ("default (`dvc repro`)", _default(root))]
    rows = [(run, c, s, r) for c in ("finetune", "reference_copy", "flat_fill") for run, metrics in runs
            for s, r in metrics.get(c, {}).items() if s in ("self_ref", "random_ref")]
    keys = [k for k in HEADLINE_KEYS if any(k in r for *_, r in rows)]
    return _table(["run", "candidate", "setting", *keys], [[run, c, s, *(r.get(k) for k in keys)]
                                                           for run, c, s, r in rows])


def _real(run: str) -> Callable[[Path], str]:
    return lambda root: evaluate_table(_committed(root, run))


def whole_figures_table(root: Path, models: dict[str, Path] | None = None) -> str:
    """`scripts/diagnostics/whole_figures.py`'s means, one JSON per model (`models`: name -> file; by
    default every file under docs/results/real-art/whole-figures/, named by the model)."""
    keys = ["psnr", "lpips", "chroma_ratio", "face_psnr", "face_chroma_ratio"]
    if models is None:
        models = {p.stem: p for p in sorted((root / "docs/results/real-art/whole-figures").glob("*.json"))}
    rows = []
    for model, path in models.items():
        for candidate, mean in _load(path)["mean"].items():
            rows.append([model, candidate, *(mean.get(k) for k in keys), mean.get("face_passes")])
    return _table(["model", "candidate", *keys, "drawings given a face pass"], rows)


def _tiles_runs(paths) -> list[tuple[str, str, dict, dict, dict]]:
    """`whole_figures.py` JSONs -> (model, reference layout, run, tiles' means, tiles_chroma's means) each;
    the model is the file name without its -sSCALE / -lLIGHTNESS / -eEVEN / m (mirrored) suffixes."""
    out = []
    for path in paths:
        run = _load(path)
        out.append((re.sub(r"(-[lse]\d[\d.]*)+m?$", "", path.stem), "mirrored" if run["mirror_reference"] else "as given",
                    run, run["mean"]["tiles"], run["mean"]["tiles_chroma"]))
    return out


def tile_scale_table(root: Path) -> str:
    """`whole_figures.py --tile-scale S [--mirror-reference]` runs of one model, under
    docs/results/real-art/whole-figures/tile-scale/ (MODEL-sSCALE[m].json): the tiles' rows."""
    rows = [[model, layout, run["tile_scale"], tiles["psnr"], tiles["lpips"], tiles["chroma_ratio"], tiles["face_psnr"],
             matched["psnr"], matched["lpips"]]
            for model, layout, run, tiles, matched in
            _tiles_runs((root / "docs/results/real-art/whole-figures/tile-scale").glob("*.json"))]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return _table(["model", "reference", "tile scale", "psnr", "lpips", "chroma_ratio", "face_psnr",
                   "with the chroma match: psnr", "lpips"], rows)


def lightness_table(root: Path) -> str:
    """`whole_figures.py [--match-lightness L] [--tile-scale S] [--mirror-reference]` runs under
    docs/results/real-art/whole-figures/lightness/ (the tiles' firm mean, from 2026-12-06), beside the
    same model's runs at tile scale 1 under tile-scale/ (the plain mean, before it): the tiles' rows."""
    folder = root / "docs/results/real-art/whole-figures"
    rows = [[model, layout,
             f"firm (power {run['confidence_power']:g})" if "confidence_power" in run else "plain (before)",
             run.get("match_lightness", 0), run["tile_scale"], tiles["psnr"], tiles["lpips"], tiles["chroma_ratio"],
             tiles["face_psnr"], matched["psnr"], matched["lpips"], matched["chroma_ratio"]]
            for model, layout, run, tiles, matched in
            _tiles_runs([*folder.glob("lightness/*.json"), *folder.glob("tile-scale/*-s1.0*.json")])]
    rows.sort(key=lambda row: (row[0], row[1], row[2] != "plain (before)", row[4], row[3]))
    return _table(["model", "reference", "tiles' mean", "figure's lightness", "tile scale", "psnr", "lpips",
                   "chroma_ratio", "face_psnr", "with the chroma match: psnr", "lpips", "chroma_ratio"], rows)


def even_table(root: Path) -> str:
    """`whole_figures.py [--even-regions E] [--mirror-reference]` runs under
    docs/results/real-art/whole-figures/even/ (MODEL-eEVEN[m].json, the figure's regions evened out, from
    2026-12-06), beside the same model's runs at tile scale 1 under lightness/ (not evened): the tiles' rows."""
    folder = root / "docs/results/real-art/whole-figures"
    rows = [[model, layout, run.get("even_regions", 0), tiles["psnr"], tiles["lpips"], tiles["chroma_ratio"],
             tiles["face_psnr"], matched["psnr"], matched["lpips"], matched["chroma_ratio"]]
            for model, layout, run, tiles, matched in
            _tiles_runs([*folder.glob("even/*.json"),
                         *(p for p in folder.glob("lightness/*.json") if "-s" not in p.stem)])]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return _table(["model", "reference", "regions evened (face sides)", "psnr", "lpips", "chroma_ratio", "face_psnr",
                   "with the chroma match: psnr", "lpips", "chroma_ratio"], rows)


def align_table(root: Path) -> str:
    """`whole_figures.py [--mirror-reference]` runs under docs/results/real-art/whole-figures/align/
    (MODEL-eEVEN[m].json, the reference laid on the drawing by its lines, from 2026-12-06), beside the
    same models' runs under even/ (laid by the face squares alone): the tiles' rows."""
    folder = root / "docs/results/real-art/whole-figures"
    rows = [[model, layout, "lines" if run.get("align") else "face squares", tiles["psnr"], tiles["lpips"],
             tiles["chroma_ratio"], tiles["face_psnr"], matched["psnr"], matched["lpips"], matched["chroma_ratio"]]
            for model, layout, run, tiles, matched in _tiles_runs([*folder.glob("align/*.json"),
                                                                   *folder.glob("even/*.json")])]
    rows.sort(key=lambda row: (row[0], row[1], row[2] == "lines"))
    return _table(["model", "reference", "reference laid by", "psnr", "lpips", "chroma_ratio", "face_psnr",
                   "with the chroma match: psnr", "lpips", "chroma_ratio"], rows)


def detect_table(root: Path) -> str:
    """`whole_figures.py --group lucy` runs under docs/results/real-art/whole-figures/detect/, one per way
    `animecolor` sought the drawing's face (the file's `detect`): each pass's means."""
    keys = ["psnr", "lpips", "chroma_ratio", "face_psnr", "face_chroma_ratio"]
    rows = []
    for path in sorted((root / "docs/results/real-art/whole-figures/detect").glob("*.json")):
        run = _load(path)
        rows += [[run["detect"], candidate, *(mean.get(k) for k in keys),
                  f"{mean['face_passes']} of {len({r['drawing'] for r in run['pairs']})}"]
                 for candidate, mean in run["mean"].items() if candidate != "upscaled_truth"]
    return _table(["face sought", "pass", *keys, "drawings given a face pass"], rows)


def firm_table(root: Path) -> str:
    """`whole_figures.py [--firm-dark D]` runs under docs/results/real-art/whole-figures/firm/ (the file's
    `firm_dark`; none: chroma alone, before 2026-12-07): the default output's (tiles_chroma's) means over
    all pairs, then over each character's (the drawing's name)."""
    keys = ["psnr", "lpips", "chroma_ratio", "face_psnr"]
    rows = []
    for path in sorted((root / "docs/results/real-art/whole-figures/firm").glob("*.json")):
        run = _load(path)
        dark = run.get("firm_dark", 0)
        label = f"chroma + darkness below L* {dark:g}" if dark else "chroma alone (before)"
        mine = [r for r in run["pairs"] if r["candidate"] == "tiles_chroma"]
        groups = {"all": mine}
        for r in mine:
            groups.setdefault(re.sub(r" [a-z]+\.png$", "", r["drawing"]), []).append(r)
        rows += [[label, group, len(chosen), *(sum(r[k] for r in chosen) / len(chosen) for k in keys)]
                 for group, chosen in groups.items()]
    return _table(["firmness", "drawings of", "pairs", *keys], rows)


def paper_table(root: Path) -> str:
    """`whole_figures.py --paper [--paint-paper]` runs under docs/results/real-art/whole-figures/paper/
    (the sprites' lines on white paper without alpha), one row per file: the default output's
    (tiles_chroma's) scores, the paper's share off white, and the tiles' without the chroma match."""
    rows = []
    for path in sorted((root / "docs/results/real-art/whole-figures/paper").glob("*.json")):
        run = _load(path)
        tiles, matched = run["mean"]["tiles"], run["mean"]["tiles_chroma"]
        rows.append([path.stem, "kept as drawn" if run.get("keep_paper") else "painted", matched["psnr"],
                     matched["lpips"], matched["chroma_ratio"], matched["background_off_white"], tiles["psnr"],
                     tiles["lpips"]])
    return _table(["run", "paper", "psnr", "lpips", "chroma_ratio", "background off white",
                   "tiles without the chroma match: psnr", "lpips"], rows)


def face_paper_table(root: Path) -> str:
    """`face_paper.py` runs under docs/results/real-art/face-paper/ (SIZE.json: real face crops at
    that size): per way of treating the paper, the mean scores and the share of the picture kept white."""
    rows = []
    for path in sorted((root / "docs/results/real-art/face-paper").glob("*.json"), key=lambda p: int(p.stem)):
        run = _load(path)
        for way, name in (("painted", "painted (--paint-paper)"), ("tint_alone", "kept by the tint alone (before)"),
                          ("beside", "kept, told from the figure beside it (now)")):
            mean = run["mean"][way]
            rows.append([run["size"], run["faces"], name, mean["psnr"], mean["lpips"], f"{mean['kept']:.1%}",
                         run["differ"] if way == "beside" else ""])
    return _table(["size px", "faces", "paper", "psnr", "lpips", "picture kept white",
                   "faces whose kept paper changed"], rows)


def face_evened_table(root: Path) -> str:
    """`face_evened.py` runs under docs/results/real-art/face-evened/ (SIZE.json: real face crops at
    that size): the mean scores as painted and evened at the picture's own scale."""
    rows = []
    for path in sorted((root / "docs/results/real-art/face-evened").glob("[0-9]*.json"), key=lambda p: int(p.stem)):
        run = _load(path)
        for way, name in (("painted", "as painted (--even-regions 0, before)"), ("evened", "evened (now)")):
            mean = run["mean"][way]
            rows.append([run["size"], run["faces"], name, mean["psnr"], mean["lpips"], mean["chroma_ratio"],
                         run["gained"] if way == "evened" else ""])
    return _table(["size px", "faces", "colours", "psnr", "lpips", "chroma_ratio", "faces whose PSNR rose"], rows)


def face_evened_full_size_table(root: Path) -> str:
    """docs/results/real-art/face-evened/full-size.json: each real-art model's full-size benchmark
    before (its run's evaluate.json) and with a face picture evened at its own scale."""
    run = _load(root / "docs/results/real-art/face-evened/full-size.json")
    keys = ("psnr", "lpips", "chroma_ratio", "af_de_hair", "af_de_eye_left", "af_de_eye_right")
    rows = []
    for name, both in run["runs"].items():
        before = _load(root / both["before"])["finetune"]
        for setting in ("full_self_ref", "full_moved_ref", "full_random_ref"):
            for when, scores in (("before", before[setting]), ("now", both["now"][setting])):
                rows.append([name, setting, when, *(scores[k] for k in keys)])
    rows += [["upscaled_truth", "full_self_ref", "", *(run["upscaled_truth"]["full_self_ref"][k] for k in keys)]]
    return _table(["model", "setting", "", *keys], rows)


def _before_after(root: Path, runs, header: str) -> str:
    """`whole_figures.py` runs under docs/results/real-art/whole-figures/, each row (drawings, (label,
    path) for before and now): the default output's (tiles_chroma's) scores of each."""
    folder = root / "docs/results/real-art/whole-figures"
    rows = []
    for name, ways in runs:
        for when, path in ways:
            mean = _load(folder / path)["mean"]["tiles_chroma"]
            rows.append([name, when, mean["psnr"], mean["lpips"], mean["chroma_ratio"], mean["face_psnr"],
                         mean["background_off_white"]])
    return _table(["drawings", header, "psnr", "lpips", "chroma_ratio", "face_psnr", "background_off_white"], rows)


def sealed_table(root: Path) -> str:
    """The runs under whole-figures/sealed/ (the figure evened in areas found with its outline's gaps
    sealed) beside the same runs before (`_before_after`)."""
    runs = (("real-art, sprites as given", "local/as-given-now.json", "sealed/as-given.json"),
            ("real-art, lines on white paper", "paper/real-art-kept-beside.json", "sealed/paper.json"),
            ("real-art, references bent as in another pose", "local/warped-now.json", "sealed/warped.json"),
            ("real-art-pose, references mirrored", "local/pose-mirrored-now.json", "sealed/pose-mirrored.json"))
    return _before_after(root, [(name, (("before (unsealed)", before), ("sealed (now)", now)))
                                for name, before, now in runs], "areas")


def rim_table(root: Path) -> str:
    """The runs under whole-figures/rim/ (a pale halo beside a line given its area's evened colour,
    `chroma.darken_rim`) beside the same runs before, sealed/ (`--rim-margin 100` reproduces them)."""
    runs = (("real-art, sprites as given", "as-given.json"), ("real-art, lines on white paper", "paper.json"),
            ("real-art-pose, references mirrored", "pose-mirrored.json"))
    return _before_after(root, [(name, (("as painted (before)", f"sealed/{path}"),
                                        ("pale ones darkened (now)", f"rim/{path}"))) for name, path in runs],
                         "halos beside the lines")


def opaque_reference_table(root: Path) -> str:
    """`whole_figures.py --opaque-reference [--paper]` runs under
    docs/results/real-art/whole-figures/opaque-reference/ (DRAWING-CODE.json: the references
    flattened on white, the code before or after their paper was left out of the match): the
    default output's (tiles_chroma's) scores and the tiles' without the chroma match."""
    rows = []
    for path in sorted((root / "docs/results/real-art/whole-figures/opaque-reference").glob("*.json")):
        run = _load(path)
        tiles, matched = run["mean"]["tiles"], run["mean"]["tiles_chroma"]
        rows.append(["lines on white paper" if run["paper"] else "sprite (alpha)", path.stem.rsplit("-", 1)[-1],
                     matched["psnr"], matched["lpips"], matched["chroma_ratio"], tiles["psnr"], tiles["lpips"]])
    return _table(["drawing", "code", "psnr", "lpips", "chroma_ratio", "tiles without the chroma match: psnr",
                   "lpips"], rows)


def _code_table(root: Path, folder: str, first: str = "code") -> str:
    """`whole_figures.py` runs under docs/results/real-art/whole-figures/FOLDER/ (NAME.json, one per
    code or option): the default output's (tiles_chroma's) scores, the paper's, and how many drawings
    got a face pass."""
    rows = []
    for path in sorted((root / "docs/results/real-art/whole-figures" / folder).glob("*.json")):
        run = _load(path)
        mean = run["mean"]["tiles_chroma"]
        rows.append([path.stem, mean["psnr"], mean["lpips"], mean["chroma_ratio"], mean["face_psnr"],
                     mean["background_off_white"], f"{mean['face_passes']} / {len(run['pairs']) // 5}"])
    return _table([first, "psnr", "lpips", "chroma_ratio", "face_psnr", "background_off_white",
                   "drawings given a face pass"], rows)


def scan_table(root: Path) -> str:
    """`whole_figures.py --scan` runs (CODE.json: the drawings as phone photos on cream paper, read by
    the code before or after `--auto-levels` became the default)."""
    return _code_table(root, "scan")


def local_table(root: Path) -> str:
    """`whole_figures.py [--warp-reference 0.2] [--local-reach 0]` runs (LAYOUT-CODE.json: the
    references as given or bent as in another pose, each tile's part of the reference where the
    laid faces put it (before) or sought by its own lines (now))."""
    return _code_table(root, "local", "references - code")


def pencil_table(root: Path) -> str:
    """`whole_figures.py --pencil --reline R` runs (R.json: the drawings as pencil drawings)."""
    return _code_table(root, "pencil", "reline")


PENCIL_RECIPE_RUNS = (  # (model, drawings, how colorize read them, whole_figures.py JSON under whole-figures/)
    ("real-art-rerun", "XDoG lines", "as drawn", "opaque-reference/alpha-now.json"),
    ("real-art-pencil", "XDoG lines", "as drawn", "pencil-recipe/xdog.json"),
    ("real-art-rerun", "pencil", "as drawn", "pencil/off.json"),
    ("real-art-rerun", "pencil", "drawn again (its auto)", "pencil/auto.json"),
    ("real-art-pencil", "pencil", "as drawn (its auto)", "pencil-recipe/pencil-off.json"),
    ("real-art-pencil", "pencil", "drawn again", "pencil-recipe/pencil-drawn-again.json"),
    ("real-art (soft sketches), code of 2026-12-07", "XDoG lines", "as drawn", "pencil-recipe/xdog-firm.json"),
    ("real-art (soft sketches), code of 2026-12-07", "pencil", "as drawn (its auto)", "pencil-recipe/pencil-firm.json"),
    ("real-art-pose (soft sketches), code of 2026-12-07", "XDoG lines", "as drawn", "pencil-recipe/pose-soft.json"),
    ("real-art-pose (soft sketches), code of 2026-12-07", "XDoG lines, reference mirrored", "as drawn",
     "pencil-recipe/pose-soft-mirror.json"),
)


def pencil_recipe_table(root: Path) -> str:
    """The real-art-pencil recipe's model against the real-art rerun on whole sprites (`whole_figures.py`,
    with and without `--pencil`): the default output's (tiles_chroma's) scores and the whole picture's
    pass alone."""
    rows = []
    for model, drawings, read, name in PENCIL_RECIPE_RUNS:
        mean = _load(root / "docs/results/real-art/whole-figures" / name)["mean"]
        out, whole = mean["tiles_chroma"], mean["whole"]
        rows.append([model, drawings, read, out["psnr"], out["lpips"], out["chroma_ratio"], out["face_psnr"],
                     whole["psnr"], whole["lpips"]])
    return _table(["model", "drawings", "read", "psnr", "lpips", "chroma_ratio", "face_psnr",
                   "whole picture's pass: psnr", "lpips"], rows)


def line_styles_table(root: Path) -> str:
    """docs/results/real-art/line-styles/faces.json (the reruns) and soft.json (the recipe's model
    trained on soft sketches too): the full-size benchmark's self reference with the drawings in
    other line styles, each model as drawn (`--reline off`) and with a soft drawing's lines drawn
    again (`--reline auto` as it was measured: for every model), beside the upscaled truth under the
    same lines."""
    runs = [_load(root / "docs/results/real-art/line-styles" / name) for name in ("faces.json", "soft.json")
            if (root / "docs/results/real-art/line-styles" / name).is_file()]
    rows = []
    for style, entry in runs[0]["styles"].items():
        ceiling = entry["scores"]["upscaled_truth"]["off"]
        for run in runs:
            for model, scores in run["styles"].get(style, {}).get("scores", {}).items():
                if model == "upscaled_truth":
                    continue
                off, auto = scores["off"], scores.get("auto")
                rows.append([style, model, off["psnr"], off["lpips"], off["chroma_ratio"],
                             *((auto["psnr"], auto["lpips"], auto["chroma_ratio"]) if auto else ("-",) * 3),
                             ceiling["psnr"], ceiling["lpips"]])
    return _table(["lines", "model", "as drawn: psnr", "lpips", "chroma_ratio", "soft ones drawn again: psnr",
                   "lpips", "chroma_ratio", "upscaled truth: psnr", "lpips"], rows)


def screentone_table(root: Path) -> str:
    """docs/results/real-art/screentone/views.json (`scripts/diagnostics/screentone.py`): manga panels
    of real faces, what `scan.descreened` erases and keeps, and the model's 64 px view's distance from
    the clean lines' view, as drawn and descreened; `angles.json` (other lattice turns), `periods.json` (longer periods) and
    `model.json` (a model coloured them) when there."""
    rows = []
    for name in ("views.json", "angles.json", "periods.json", "model.json"):
        path = root / "docs/results/real-art/screentone" / name
        if not path.is_file():
            continue
        run = _load(path)
        for setting, m in run["settings"].items():
            rows.append([setting, run["faces"], m["tone_erased"], m["tone_erased_min"], m["lines_kept"],
                         m["view_error_as_drawn"], m["view_error_descreened"], m["seconds"],
                         *(m.get(f"psnr_{k}", "-") for k in ("clean", "as_drawn", "descreened")),
                         *(m.get(f"chroma_ratio_{k}", "-") for k in ("as_drawn", "descreened")), run.get("model", "-")])
    return _table(["drawing", "faces", "tone ink erased", "least", "line ink kept", "view off clean: as drawn",
                   "descreened", "seconds", "psnr: clean lines", "as drawn", "descreened", "chroma ratio: as drawn",
                   "descreened", "model"], rows)


TABLES: dict[str, Callable[[Path], str]] = {
    "headline": headline_table,
    "synthetic-full": lambda root: evaluate_table(_full(root)),
    "synthetic-default": lambda root: evaluate_table(_default(root)),
    "text-full": lambda root: text_table(_full(root)),
    "text-default": lambda root: text_table(_default(root)),
    "text-by-word": lambda root: text_by_word(_full(root)),
    "stages-full": lambda root: stage_table(root, "docs/results/full"),
    "stages-default": stage_table,
    "real64-notext": _real("real64-notext"),
    "real64-ra32": _real("real64-ra32"),
    "real64": _real("real64"),
    "full-size-full": lambda root: evaluate_table(_full(root), FULL_KEYS, full=True),
    "full-size-default": lambda root: evaluate_table(_default(root), FULL_KEYS, full=True),
    "real-art": lambda root: evaluate_table(_committed(root, "real-art"), FULL_KEYS, full=True),
    "real-art-compare": lambda root: evaluate_table(_load(root / "docs/results/real-art/compare-evaluate.json"),
                                                    FULL_KEYS, full=True),
    "real-art-64": _real("real-art"),
    **{f"real-art-{name}{suffix}": table
       for name, folder in {"b8": "b8", "warp": "warp", "no-eye": "no-eye-weight", "pose": "pose",
                             "pose-half": "pose-half", "zoom": "zoom", "pencil": "pencil", "pose-soft": "pose-soft",
                             "pose-long": "pose-long",
                             "quarter": "quarter-zen1"}.items()
       for suffix, table in (("", lambda root, f=folder: evaluate_table(_committed(root, f"real-art/{f}"), FULL_KEYS,
                                                                       full=True)),
                             ("-64", _real(f"real-art/{folder}")))},
    "whole-figures": whole_figures_table,
    "real-art-quarter-whole-figures": lambda root: whole_figures_table(
        root, {"real-art-quarter": root / "docs/results/real-art/quarter-zen1/whole-figures.json"}),
    "whole-figures-tile-scale": tile_scale_table,
    "whole-figures-lightness": lightness_table,
    "whole-figures-even": even_table,
    "whole-figures-align": align_table,
    "whole-figures-detect": detect_table,
    "whole-figures-firm": firm_table,
    "whole-figures-paper": paper_table,
    "face-paper": face_paper_table,
    "face-evened": face_evened_table,
    "whole-figures-sealed": sealed_table,
    "whole-figures-rim": rim_table,
    "face-evened-full-size": face_evened_full_size_table,
    "whole-figures-opaque-reference": opaque_reference_table,
    "whole-figures-scan": scan_table,
    "whole-figures-pencil": pencil_table,
    "whole-figures-local": local_table,
    "whole-figures-pencil-recipe": pencil_recipe_table,
    "line-styles": line_styles_table,
    "screentone": screentone_table,
}


def render(text: str, root: Path = ROOT) -> str:
    """`text` with every generated block rewritten from its source; an unknown NAME is a KeyError."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise KeyError(f"unknown generated table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + TABLES[name](root) + match.group(4)
    return MARKER.sub(replace, text)


def stale(root: Path = ROOT) -> list[str]:
    """'FILE: NAME' for every generated table that differs from what its metrics give."""
    out = []
    for rel in DOCS:
        path = root / rel
        if not path.is_file():
            continue
        text = path.read_text()
        fresh = render(text, root)
        if fresh != text:
            new = {m["name"]: m["body"] for m in MARKER.finditer(fresh)}
            out += [f"{rel}: {m['name']}" for m in MARKER.finditer(text) if new.get(m["name"]) != m["body"]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a table is stale; write nothing")
    ap.add_argument("--print", dest="print_path", type=Path, help="print this evaluate JSON as a table")
    ap.add_argument("--list", action="store_true", help="print the table names, one a line")
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository whose docs and metrics to use")
    args = ap.parse_args()
    if args.print_path:
        print(evaluate_table(_load(args.print_path)), end="")
        return 0
    if args.list:
        print("\n".join(TABLES))
        return 0
    if args.check:
        old = stale(args.root)
        for item in old:
            print(f"stale table: {item} (run: python scripts/figures/results_tables.py)", file=sys.stderr)
        return 1 if old else 0
    for rel in DOCS:
        path = args.root / rel
        if path.is_file():
            text = path.read_text()
            fresh = render(text, args.root)
            if fresh != text:
                path.write_text(fresh)
                print(f"rewrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
