import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_params(tmp_path):
    """Write a params.yaml in tmp_path from the project defaults plus overrides."""

    def _write(overrides: dict | None = None, path: Path | None = None) -> Path:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        for key, value in (overrides or {}).items():
            section, name = key.split(".", 1)
            params.setdefault(section, {})[name] = value
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
