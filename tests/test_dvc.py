"""End to end: the DAG under `dvc repro` in a temporary git repository, at a tiny size."""

import json
import re
import subprocess

import pytest
import yaml

from pipeline.data.prompt import EYE_WORDS
from pipeline.evaluation.headline import headline_metrics
from tests.helpers import TINY_FINETUNE, TINY_PRETRAIN, TINY_TEXT, set_key

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
    params["crawl"]["heterochromia_p"] = 1.0  # every test reference has two irises: both settings draw that grid
    params["clean"]["test_fraction"] = 0.3
    for key, value in {**TINY_PRETRAIN, **TINY_FINETUNE, **TINY_TEXT, "finetune.subset": 4, "finetune.loop.batch_size": 2,
                       "text.loop.batch_size": 2}.items():
        set_key(params, key, value)
    params["evaluate"].update(sample_steps=2, sheet_size=2, kid_subsets=5)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "project")
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
    diff = _dvc(repo, "metrics", "diff", "--json", "--targets", "metrics/crawl.json", "metrics/clean.json")
    changes = json.loads(diff)["metrics/crawl.json"]
    assert changes["n_images"] == {"old": 16, "new": 12, "diff": -4}
    kept = json.loads((repo / "metrics/clean.json").read_text())["kept"]  # the experiment's, now in the workspace
    assert kept["train"] + kept["test"] == 12
    kept_diff = {k: v for k, v in json.loads(diff)["metrics/clean.json"].items() if k.startswith("kept.")}
    assert kept_diff and all(v["new"] == kept[k[len("kept."):]] for k, v in kept_diff.items())  # as the rerun wrote

    # the rest of the chain ran too: models, exported model, benchmark
    for name in ("pretrain.pt", "finetune.pt", "text.pt", "animecolor.safetensors"):
        assert (repo / "models" / name).is_file()
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert {"pretrain", "finetune", "reference_copy", "flat_fill"} <= set(evaluation)
    # sampling precision: what ran and why (auto: the CPU flag, or the timed probe on native bf16)
    assert re.fullmatch(r"sampling in (fp32|bf16) \((auto: .+|probe.+)\)", evaluation["_notes"]["precision"])
    # the headline is the shipped model's numbers, and all `dvc metrics show` prints
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert headline == headline_metrics(evaluation) and headline["self_psnr"] == evaluation["finetune"]["self_ref"]["psnr"]
    shown = _dvc(repo, "metrics", "show").splitlines()
    assert len(shown) == 2 and shown[1].startswith("metrics/headline.json") and "self_psnr" in shown[0]
    assert (repo / "reports/evaluate_random_ref.png").is_file()
    hetero = sorted(p.name for p in (repo / "reports/evaluate_heterochromia").iterdir())
    assert hetero == ["random_ref.png", "self_ref.png"]
    assert evaluation["finetune"]["random_ref"]["heterochromia_n"] > 0
    assert (repo / "dvclive/pretrain/plots/metrics/train/loss.tsv").is_file()
    # the prompt adapter trained on the reference-only model: the text benchmark ran and drew its grids
    assert json.loads((repo / "metrics/text.json").read_text())["passthrough"] is False
    assert {"text_only", "masked_hair", "masked_eyes", "hetero_text", "counterfactual"} <= set(evaluation["finetune"]["text"])
    hetero_text = evaluation["finetune"]["text"]["hetero_text"]
    assert hetero_text["eye_success_by_word"] and set(hetero_text["eye_success_by_word"]) <= set(EYE_WORDS)
    assert all(0 <= r <= 1 for r in hetero_text["eye_success_by_word"].values())
    assert (repo / "reports/evaluate_text/finetune_prompts.png").is_file()

    # ablations as experiments: both listed, with different metrics
    _dvc(repo, "exp", "run", "-n", "ft0", "-S", "finetune.loop.epochs=0")
    _dvc(repo, "exp", "run", "-n", "ft2", "-S", "finetune.loop.epochs=2")
    shown = _dvc(repo, "exp", "show", "--json")
    assert "ft0" in shown and "ft2" in shown
    table = _dvc(repo, "exp", "show", "--csv", "--only-changed")
    rows = {line.split(",")[0]: line for line in table.splitlines()[1:]}
    assert rows["ft0"] != rows["ft2"]
    assert "self_psnr" in _dvc(repo, "metrics", "diff", "ft0", "ft2")
    assert "finetune.self_ref.psnr" in _dvc(repo, "metrics", "diff", "ft0", "ft2", "--targets", "metrics/evaluate.json")
    plots = _dvc(repo, "plots", "diff", "ft0", "ft2", "--json")
    assert "evaluate_self_ref.png" in plots and "loss" in plots

    # the text ablation is one switch: the reference-only model, no text benchmark
    _dvc(repo, "exp", "run", "-n", "notext", "-S", "text.adapter=false")
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert "text" not in evaluation["finetune"] and "text_only" not in json.dumps(evaluation)
    assert (repo / "reports/evaluate_text/README.txt").is_file()
    assert not list((repo / "reports/evaluate_text").glob("*.png"))
