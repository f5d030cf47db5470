"""`animecolor recipe`: a recipe overlay becomes the exact `dvc exp run -S` list, validated first."""

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.errors import AnimecolorError, ParamsError
from stages.cli import app
from stages.recipe import flatten, override_value, read_recipe, recipe_overrides
from tests.helpers import ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_against_the_shipped_params(recipe, tmp_path):
    overrides = recipe_overrides(recipe, ROOT / "params.yaml", tmp_path, [])
    keys = {item.split("=", 1)[0] for item in overrides}
    wanted = flatten(read_recipe(recipe))
    params = flatten(yaml.safe_load((ROOT / "params.yaml").read_text()))
    # every key the recipe gives a new value is in the command; a key it repeats unchanged is not
    assert {k for k, v in wanted.items() if params[k] != v} <= keys
    assert not {k for k, v in wanted.items() if params[k] == v} & keys
    assert f"crawl.folder={tmp_path.resolve()}" in overrides and "crawl.source=folder" in overrides


def test_real_art_recipe_is_the_regression_recipe(tmp_path):
    overrides = recipe_overrides(ROOT / "recipes" / "real-art.yaml", ROOT / "params.yaml", tmp_path, [])
    assert "pretrain.diffusion.objective=regression" in overrides
    assert "finetune.reconstruction.lpips_weight=1" in overrides
    assert "pretrain.condition_dropout.p_uncond=0" in overrides  # sampled at guidance 1: no reference dropout
    # the irises' colour term: params.yaml's 0.3 applies to the iris-only maps of clean.eye_labels
    assert not any(key.startswith("finetune.reconstruction.colour_weight=") for key in overrides)


def test_real_art_pose_is_real_art_with_the_training_warp(tmp_path):
    real_art = set(recipe_overrides(ROOT / "recipes" / "real-art.yaml", ROOT / "params.yaml", tmp_path, []))
    pose = set(recipe_overrides(ROOT / "recipes" / "real-art-pose.yaml", ROOT / "params.yaml", tmp_path, []))
    assert pose - real_art == {"pretrain.reference_warp.flip_p=0.5", "pretrain.reference_warp.rotate_deg=15",
                               "pretrain.reference_warp.scale_min=0.8", "pretrain.reference_warp.scale_max=1.2",
                               "pretrain.reference_warp.moves_p=0.5"}
    assert real_art <= pose  # the soft sketches included


def test_real_art_trains_on_soft_sketches_and_the_pencil_recipe_is_gone(tmp_path):
    assert "pretrain.lines.soft_p=0.3" in recipe_overrides(ROOT / "recipes" / "real-art.yaml", ROOT / "params.yaml",
                                                           tmp_path, [])
    assert not (ROOT / "recipes" / "real-art-pencil.yaml").exists()  # its old name: the bad-input cases below


def test_extends_chains_and_the_child_wins(tmp_path):
    (tmp_path / "a.yaml").write_text("pretrain: {loop: {train_steps: 11, batch_size: 6}}\n")
    (tmp_path / "b.yaml").write_text("extends: a\npretrain: {loop: {train_steps: 22}}\n")
    (tmp_path / "c.yaml").write_text("extends: b\nfinetune: {subset: 7}\n")
    overrides = recipe_overrides(tmp_path / "c.yaml", ROOT / "params.yaml", None, [])
    assert {"pretrain.loop.train_steps=22", "pretrain.loop.batch_size=6", "finetune.subset=7"} <= set(overrides)
    assert not any(item.startswith("extends") for item in overrides)


@pytest.mark.parametrize("text, message", [
    ("extends: nope\n", "extends 'nope', which is not a recipe in"),
    ("extends: [a]\n", "which is not a recipe in"),
    ("extends: self\n", "extends itself"),
])
def test_a_bad_extends_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "self.yaml").write_text(text)
    with pytest.raises(AnimecolorError, match=message.replace("[", r"\[")):
        recipe_overrides(tmp_path / "self.yaml", ROOT / "params.yaml", None, [])


def test_a_bad_extends_on_the_command_line_is_one_line_exit_2(tmp_path, monkeypatch):
    """`animecolor recipe NAME` with a recipe that extends a missing one: one line, exit 2, no dvc."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("extends: gone\npretrain: {loop: {train_steps: 5}}\n")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    result = CliRunner().invoke(app, ["recipe", "mine", "--dry-run"], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and not calls
    assert len(result.output.strip().splitlines()) == 1 and "extends 'gone'" in result.output
    assert "Traceback" not in result.output


def test_dry_run_prints_the_dvc_command_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    result = CliRunner().invoke(app, ["recipe", "real-art", "--folder", str(tmp_path), "--dry-run",
                                      "--set", "pretrain.loop.train_steps=10"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    command = shlex.split(result.output.strip())
    assert command[:5] == ["dvc", "exp", "run", "-n", "real-art"]
    assert "pretrain.loop.train_steps=10" in command and not calls


def test_run_calls_dvc_with_the_printed_command(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command) or Done())
    result = CliRunner().invoke(app, ["recipe", "real-art", "--folder", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert calls and calls[0] == shlex.split(result.output.strip())


@pytest.mark.parametrize("args, message", [
    (["recipe", "nope"], "no recipes/nope.yaml (known: full, paper, real-art, real-art-pose)"),
    (["recipe", "real-art-pencil", "--folder", "."], "real-art-pencil is real-art since 2026-12-07"),  # folded
    (["recipe", "real-art"], "crawl.folder"),  # a folder source without a folder
    (["recipe", "real-art", "--folder", "/no/such/folder"], "--folder /no/such/folder: no such folder"),
    (["recipe", "real-art", "--folder", ".", "--set", "pretrain.loop.train_stepz=3"], "train_stepz: not a params key"),
    (["recipe", "real-art", "--folder", ".", "--set", "pretrain.loop.train_steps=-3"], "train_steps"),
    (["recipe", "real-art", "--folder", ".", "--set", "novalue"], "expected KEY=VALUE"),
    (["recipe", "real-art", "--folder", ".", "--set", "pretrain.reference_warp.scale_min=1.5"],
     "pretrain.reference_warp over pairs.tps"),  # above pairs.tps.scale_max: caught before any stage runs
])
def test_bad_recipe_input_is_one_line_exit_2(args, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("dvc must not run"))
    result = CliRunner().invoke(app, [*args, "--dry-run"], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("value, text", [
    (None, "null"), (True, "true"), (3, "3"), (1e-05, "1e-05"), ([1, 2, 2], "[1,2,2]"),
    ("/data/faces", "/data/faces"), ("/my faces/it's", "'/my faces/it\\'s'"), ("null", "'null'"), ("12", "'12'"),
])
def test_override_values_read_back_as_the_same_value(value, text):
    assert override_value(value) == text


def test_a_recipe_key_that_params_does_not_have_is_an_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("pretrain:\n  loop:\n    train_stepz: 5\n")
    with pytest.raises(ParamsError, match="pretrain.loop.train_stepz: not a params key"):
        recipe_overrides(recipe, ROOT / "params.yaml", None, [])


def test_a_missing_folder_is_refused_before_dvc(tmp_path):
    with pytest.raises(AnimecolorError, match="no such folder"):
        recipe_overrides(ROOT / "recipes" / "real-art.yaml", ROOT / "params.yaml", tmp_path / "gone", [])
