"""`animecolor recipe`: run a recipe from `recipes/` as a DVC experiment, on your own folder of faces.

A recipe is a params overlay: the keys it changes from `params.yaml`, nothing else; a top-level
`extends: OTHER` takes recipes/OTHER.yaml's keys first. The command
merges it (and `--folder`, `--set`) over the workspace's params, validates the result as every
stage would, and runs `dvc exp run -n NAME -S key=value ...` with exactly the keys that differ,
printing that command first. `--dry-run` only prints it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import typer
import yaml

from pipeline.errors import AnimecolorError, ParamsError, shown
from stages.common import console, read_params_file, user_errors

RECIPES = Path("recipes")
# recipes folded into another: the old name says where it went instead of "no such recipe"
RETIRED = {"real-art-pencil": "real-art-pencil is real-art since 2026-12-07 (its soft sketches are real-art's): "
                              "animecolor recipe real-art --folder ..."}
_PLAIN = re.compile(r"[A-Za-z0-9_./~+-]+")  # a string Hydra's override grammar reads as itself


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are values."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def merge(base: dict, overlay: dict, where: str = "", strict: bool = True) -> dict:
    """`overlay` over `base` (a copy); with `strict`, a key the base does not have is an error (a
    typo would otherwise run the default silently)."""
    out = dict(base)
    for key, value in overlay.items():
        if strict and key not in base:
            raise ParamsError(f"{where}{key}: not a params key")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merge(base[key], value, f"{where}{key}.", strict)
        else:
            out[key] = value
    return out


def override_value(value) -> str:
    """A YAML value as a Hydra override value (what `dvc exp run -S key=value` parses)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("null", "true", "false") and not _is_number(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_recipe(recipe: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The recipe's overlay, with the recipe it `extends` (same folder) merged under it."""
    if recipe.resolve() in seen:
        raise AnimecolorError(f"{recipe}: extends itself (through {' -> '.join(p.stem for p in seen)})")
    overlay = dict(read_params_file(recipe, extra=("extends",)) or {})
    parent = overlay.pop("extends", None)
    if parent is None:
        return overlay
    path = recipe.parent / f"{parent}.yaml"
    if not isinstance(parent, str) or not path.is_file():
        raise AnimecolorError(f"{recipe}: extends {shown(str(parent))}, which is not a recipe in {recipe.parent}")
    return merge(read_recipe(path, (*seen, recipe.resolve())), overlay, strict=False)  # params.yaml checks the keys


def recipe_overrides(recipe: Path, params: Path, folder: Path | None, sets: list[str]) -> list[str]:
    """The `-S key=value` strings that turn `params` into the recipe (after `--folder` and `--set`),
    validated as the stages validate them."""
    from stages.params import SECTIONS, check_across, validate_section

    current = read_params_file(params) or {}
    merged = merge(current, read_recipe(recipe))
    if folder is not None:
        if not folder.is_dir():
            raise AnimecolorError(f"--folder {folder}: no such folder")
        merged = merge(merged, {"crawl": {"source": "folder", "folder": str(folder.resolve())}})
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AnimecolorError(f"--set {shown(item)}: expected KEY=VALUE, e.g. pretrain.loop.train_steps=2000")
        tree: dict = {}
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
        merged = merge(merged, tree)
    check_across({section: validate_section(section, merged[section]) for section in SECTIONS if section in merged})
    before, after = flatten(current), flatten(merged)
    return [f"{key}={override_value(value)}" for key, value in after.items() if before.get(key) != value]


@user_errors
def main(name: str = typer.Argument(..., help="Recipe name: recipes/NAME.yaml (e.g. real-art)."),
         folder: Path = typer.Option(None, "--folder", "-f", help="Your folder of face images (searched "
                                                                   "recursively); sets crawl.source=folder."),
         set_: list[str] = typer.Option([], "--set", "-S", help="KEY=VALUE on top of the recipe (repeatable)."),
         params: Path = typer.Option(Path("params.yaml"), help="The workspace's params file."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Print the dvc command, do not run it.")) -> None:
    """Train a recipe (recipes/NAME.yaml) as a DVC experiment: `dvc exp run -n NAME -S ...`."""
    recipe = RECIPES / f"{name}.yaml"
    if name in RETIRED:
        raise AnimecolorError(f"recipe {name}: {RETIRED[name]}")
    if not recipe.is_file():
        known = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise AnimecolorError(f"recipe {shown(name)}: no {recipe} (known: {', '.join(known) or 'none'})")
    overrides = recipe_overrides(recipe, params, folder, set_)
    command = ["dvc", "exp", "run", "-n", name]
    for item in overrides:
        command += ["-S", item]
    console.print(shlex.join(command), highlight=False, soft_wrap=True)
    if dry_run:
        return
    if shutil.which("dvc") is None:
        raise AnimecolorError("dvc is not installed here (pip install dvc)")
    result = subprocess.run(command, check=False)
    if result.returncode:
        raise typer.Exit(result.returncode)
