"""The headline: thirteen numbers of one model (the shipped one), picked from the full benchmark metrics.

`metrics/evaluate.json` nests every candidate, setting and region (about 150 numbers); the
headline is what `dvc metrics show` and `dvc exp show` print by default, so a run or an ablation
is read at a glance. A number the benchmark did not produce (no text model, no heterochromatic
reference) is left out rather than written as null.
"""

from __future__ import annotations

from typing import Any

# headline key -> paths into the model's entry of the benchmark metrics (several: their mean)
HEADLINE: dict[str, tuple[tuple[str, ...], ...]] = {
    "self_psnr": (("self_ref", "psnr"),),
    "self_lpips": (("self_ref", "lpips"),),
    "rand_psnr": (("random_ref", "psnr"),),
    "rand_lpips": (("random_ref", "lpips"),),
    "hair_de": (("random_ref", "de_hair"),),  # CIEDE2000 of the region's median colour, random reference
    "iris_de": (("random_ref", "de_iris_left"), ("random_ref", "de_iris_right")),
    "skin_de": (("random_ref", "de_skin"),),
    "hetero": (("random_ref", "heterochromia_success"),),
    "text_hetero": (("text", "hetero_text", "success"),),
    "text_follow": (("text", "counterfactual", "follow_rate"),),
    "full_psnr": (("full_self_ref", "psnr"),),  # the full-size benchmark (fullsize.py): colorize's path at 256 px
    "full_lpips": (("full_self_ref", "lpips"),),
    "full_chroma": (("full_self_ref", "chroma_ratio"),),
}


def _lookup(entry: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = entry
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def headline_metrics(metrics: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """The headline of `model` (default: the last model scored, i.e. not a baseline) in `metrics`,
    the dict `run_benchmark` returns (candidate -> setting -> metric). Returns {key: value} in HEADLINE's order."""
    from pipeline.evaluation.evaluate import BASELINES

    models = [name for name in metrics if name not in BASELINES and not name.startswith("_")]
    if model is None:
        if not models:
            raise ValueError("the benchmark scored no model, only baselines")
        model = models[-1]
    if model not in models:
        raise ValueError(f"no model {model!r} in the benchmark (it scored {', '.join(models) or 'none'})")
    out: dict[str, Any] = {}
    for key, paths in HEADLINE.items():
        values = [_lookup(metrics[model], path) for path in paths]
        if all(v is not None for v in values):
            out[key] = round(sum(values) / len(values), 4)
    return out
