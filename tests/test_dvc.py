"""End to end: the DAG under `dvc repro` in a temporary git repository, at a tiny size."""

import json
import subprocess

import pytest
import yaml

pytestmark = pytest.mark.slow


def _dvc(repo, *args):
    result = subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_dvc_repro_then_up_to_date_then_experiment(project_copy):
    repo = project_copy
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["crawl"]["n_images"] = 16
    params["base"]["image_size"] = 32
    params["clean"]["test_fraction"] = 0.3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    _dvc(repo, "repro")
    metrics = json.loads((repo / "metrics/crawl.json").read_text())
    assert metrics["n_images"] == 16
    assert len(list((repo / "data/raw/images").glob("*.png"))) == 16
    clean = json.loads((repo / "metrics/clean.json").read_text())
    assert clean["kept"]["train"] + clean["kept"]["test"] == 16 and clean["kept"]["test"] >= 2
    pairs = json.loads((repo / "metrics/pairs.json").read_text())
    assert pairs["benchmark_pairs"] == {"self_ref": clean["kept"]["test"], "random_ref": clean["kept"]["test"]}
    assert (repo / "data/pairs/test/pairs.csv").is_file() and (repo / "reports/pairs_samples.png").is_file()
    assert (repo / "reports/crawl_samples.png").stat().st_size > 0
    assert "up to date" in _dvc(repo, "repro")

    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "baseline")
    _dvc(repo, "exp", "run", "-S", "crawl.n_images=12")
    diff = _dvc(repo, "metrics", "diff", "--json")
    changes = json.loads(diff)["metrics/crawl.json"]
    assert changes["n_images"] == {"old": 16, "new": 12, "diff": -4}
    assert "kept.train" in json.loads(diff)["metrics/clean.json"] or "kept.test" in json.loads(diff)["metrics/clean.json"]
