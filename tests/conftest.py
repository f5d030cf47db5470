import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT, export, make_faces, params_file, stage_paths, tiny_pretrain


@pytest.fixture(autouse=True, scope="session")
def _probe_cache(tmp_path_factory):
    """The training precision probe's cache (pipeline/device.py) in a folder of the test session,
    not the user's ~/.cache: a test run neither reads nor leaves this machine's choices."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ANIMECOLOR_CACHE", str(tmp_path_factory.mktemp("probe-cache")))
    yield
    mp.undo()


@pytest.fixture
def write_params(tmp_path):
    """Write a params.yaml in tmp_path from the project defaults plus overrides."""

    def _write(overrides: dict | None = None, path: Path | None = None) -> Path:
        return params_file(path or tmp_path / "params.yaml", overrides or {})

    return _write


@pytest.fixture
def project_copy(tmp_path):
    """A fresh git + DVC repository holding the project's pipeline files (for dvc repro)."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", "pipeline", "stages", ".dvcignore", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    run = lambda *cmd: subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "test@example.com")
    run("git", "config", "user.name", "test")
    run("dvc", "init", "-q")
    run("dvc", "config", "core.analytics", "false")
    return repo


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """40 synthetic faces at 32 px through crawl -> clean -> pairs: (faces_dir, pairs_dir)."""
    return make_faces(tmp_path_factory.mktemp("tiny"), 40, 32, heterochromia_p=0.2, test_fraction=0.2)


@pytest.fixture(scope="session")
def tiny_pretrained(tiny_data, tmp_path_factory):
    """A 6-step tiny pretrain of the reference-only network (the shipped design, `pretrain.unet.text:
    false`): folder with params.yaml (the tiny finetune and text settings too) and pretrain.pt."""
    return tiny_pretrain(tmp_path_factory.mktemp("pretrained"), tiny_data)


@pytest.fixture(scope="session")
def tiny_text(tiny_pretrained, tiny_data, tmp_path_factory):
    """The `text` stage (the prompt adapter, 4 steps) on the tiny pretrained model: folder with text.pt."""
    from stages.text import text

    root = tmp_path_factory.mktemp("text")
    metrics = text(tiny_pretrained / "params.yaml", tiny_pretrained / "pretrain.pt", *tiny_data,
                   **stage_paths(root, "text"))
    assert metrics["passthrough"] is False and metrics["steps"] == 4
    return root


@pytest.fixture(scope="session")
def model_file(tiny_text, tmp_path_factory):
    """The tiny adapter model exported by `animecolor export` (a .safetensors model file, as shipped)."""
    return export(tiny_text / "text.pt", tmp_path_factory.mktemp("export") / "tiny.safetensors")
