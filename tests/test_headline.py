"""pipeline/evaluation/headline.py: the numbers `dvc metrics show` prints, picked from the benchmark."""

import json
from pathlib import Path

import pytest
import yaml

from pipeline.evaluation.headline import HEADLINE, headline_metrics

ROOT = Path(__file__).resolve().parents[1]


def _entry(psnr: float, iris_left: float, iris_right: float, text: bool = True) -> dict:
    row = {"psnr": psnr, "lpips": 0.1, "de_hair": 4.0, "de_skin": 2.0, "de_iris_left": iris_left,
           "de_iris_right": iris_right, "heterochromia_success": 0.5}
    entry = {"self_ref": dict(row), "random_ref": dict(row, psnr=psnr - 10),
             "full_self_ref": {"psnr": psnr - 5, "lpips": 0.3, "chroma_ratio": 0.9}}
    if text:
        entry["text"] = {"hetero_text": {"success": 0.75}, "counterfactual": {"follow_rate": 0.9}}
    return entry


def test_headline_is_the_last_model_not_a_baseline():
    metrics = {"_notes": {"fid": "absent"}, "pretrain": _entry(20.0, 12.0, 14.0, text=False),
               "finetune": _entry(25.0, 10.0, 11.0), "reference_copy": {"self_ref": {"psnr": 9.0}},
               "flat_fill": _entry(1.0, 1.0, 1.0)}
    head = headline_metrics(metrics)
    assert list(head) == list(HEADLINE)  # every number, in the declared order
    assert head["self_psnr"] == 25.0 and head["rand_psnr"] == 15.0
    assert head["iris_de"] == 10.5  # the mean of the two irises
    assert head["text_hetero"] == 0.75 and head["text_follow"] == 0.9
    # a model without the text benchmark: those numbers are left out, not null
    pre = headline_metrics(metrics, "pretrain")
    assert pre["self_psnr"] == 20.0 and pre["iris_de"] == 13.0 and "text_hetero" not in pre
    assert None not in pre.values()


def test_headline_refuses_a_missing_model():
    with pytest.raises(ValueError, match="no model 'x'"):
        headline_metrics({"finetune": _entry(1, 1, 1)}, "x")
    with pytest.raises(ValueError, match="only baselines"):
        headline_metrics({"flat_fill": _entry(1, 1, 1)})


def test_committed_headline_matches_the_committed_benchmark():
    """metrics/headline.json is what the evaluate stage derives from metrics/evaluate.json."""
    full = json.loads((ROOT / "metrics" / "evaluate.json").read_text())
    assert json.loads((ROOT / "metrics" / "headline.json").read_text()) == headline_metrics(full)
    assert 8 <= len(headline_metrics(full)) <= 13  # one screen of `dvc metrics show`


def test_dvc_declares_only_the_headline_as_metrics():
    """`dvc metrics show` and `dvc exp show` stay one screen wide: the full files are plain outputs."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert list(dvc)[0] == "metrics" and dvc["metrics"] == ["metrics/headline.json"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for s in dvc["stages"].values() for o in s.get("outs", [])]
    assert "metrics/headline.json" in outs and "metrics/evaluate.json" in outs
    assert not any("metrics" in stage for stage in dvc["stages"].values())
