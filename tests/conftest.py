import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def set_key(params: dict, dotted: str, value) -> None:
    """params["a"]["b"]["c"] = value for "a.b.c" (missing levels are created)."""
    *parents, name = dotted.split(".")
    for part in parents:
        params = params.setdefault(part, {})
    params[name] = value


@pytest.fixture
def write_params(tmp_path):
    """Write a params.yaml in tmp_path from the project defaults plus overrides."""

    def _write(overrides: dict | None = None, path: Path | None = None) -> Path:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        for key, value in (overrides or {}).items():
            set_key(params, key, value)
        path = path or tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

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
    from pipeline.data.clean import CleanConfig, clean_dataset
    from pipeline.data.crawl import crawl_synthetic
    from pipeline.data.pairs import build_pairs
    from pipeline.data.tps import TPSConfig
    from pipeline.data.xdog import XDoGConfig

    root = tmp_path_factory.mktemp("tiny")
    crawl_synthetic(root / "raw", 40, 32, seed=0, heterochromia_p=0.2)
    clean_dataset(root / "raw", root / "faces", CleanConfig(test_fraction=0.2), 32)
    build_pairs(root / "faces", root / "pairs", seed=0, xdog=XDoGConfig(sigma=(0.4,)), tps=TPSConfig())
    return root / "faces", root / "pairs"


TINY_PRETRAIN = {  # a model that trains in seconds on CPU
    "base.image_size": 32, "pretrain.unet.channels": 8, "pretrain.unet.channel_mults": [1, 2],
    "pretrain.unet.res_blocks": 1, "pretrain.unet.heads": 2, "pretrain.loop.train_steps": 6,
    "pretrain.loop.batch_size": 4, "pretrain.loop.checkpoint_every": 2, "pretrain.loop.log_every": 2,
    "pretrain.loop.num_workers": 0, "pretrain.samples.sample_steps": 2, "pretrain.samples.count": 2,
    "pretrain.loop.warmup_steps": 2,
    "pretrain.unet.text": True,  # the fixtures exercise the prompt path (off in the shipped params)
}
TINY_FINETUNE = {
    "finetune.subset": 8, "finetune.loop.batch_size": 4, "finetune.reconstruction.unroll_steps": 2,
    "finetune.samples.sample_steps": 2, "finetune.samples.count": 2, "finetune.loop.num_workers": 0,
    "finetune.loop.checkpoint_every": 1, "finetune.loop.log_every": 1,
}

TINY_TEXT = {  # the prompt adapter's stage, as small
    "text.loop.train_steps": 4, "text.loop.batch_size": 4, "text.loop.warmup_steps": 1, "text.loop.num_workers": 0,
    "text.loop.checkpoint_every": 2, "text.loop.log_every": 2, "text.samples.sample_steps": 2, "text.samples.count": 2,
}


def stage_paths(folder: Path, name: str) -> dict:
    """Output paths for calling a training stage function into `folder`."""
    return dict(model_path=folder / f"{name}.pt", state_path=folder / f"{name}-state.pt",
                metrics_path=folder / f"{name}.json", sheet_path=folder / f"{name}.png",
                live_dir=folder / "dvclive" / name)


@pytest.fixture(scope="session")
def tiny_pretrained(tiny_data, tmp_path_factory):
    """A 6-step tiny pretrain run: folder with params.yaml (tiny finetune settings too) and pretrain.pt."""
    from stages.pretrain import pretrain

    root = tmp_path_factory.mktemp("pretrained")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in {**TINY_PRETRAIN, **TINY_FINETUNE, **TINY_TEXT}.items():
        set_key(params, key, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    faces, pairs = tiny_data
    pretrain(root / "params.yaml", faces, pairs, **stage_paths(root, "pretrain"))
    return root


@pytest.fixture(scope="session")
def model_file(tiny_pretrained, tmp_path_factory):
    """The tiny pretrained model exported by `animecolor export` (a .safetensors model file)."""
    from typer.testing import CliRunner

    from stages.cli import app

    path = tmp_path_factory.mktemp("export") / "tiny.safetensors"
    result = CliRunner().invoke(app, ["export", str(tiny_pretrained / "pretrain.pt"), "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path
