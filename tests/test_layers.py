"""The package's layers point one way: base -> data -> model -> training | evaluation -> colorize/app -> stages.

Parsed from the source (every `import`, module-level or inside a function), so a wrong-way edge
fails here before it becomes a cycle or a hidden dependency."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = {"pipeline.errors", "pipeline.config", "pipeline.rng", "pipeline.files", "pipeline.report", "pipeline.device"}
PEERS = {"pipeline.training", "pipeline.evaluation"}  # same layer, and must not import each other


def layer(module: str) -> int:
    if module in BASE:
        return 0
    for prefix, rank in (("pipeline.data", 1), ("pipeline.chroma", 1),  # chroma: numpy and skimage only
                         ("pipeline.scan", 1),  # scan: numpy and OpenCV only
                         ("pipeline.model", 2), ("pipeline.training", 3), ("pipeline.evaluation", 3),
                         ("pipeline.colorize", 4), ("pipeline.hints", 4), ("pipeline.faces", 4), ("pipeline.app", 4),
                         ("stages", 5)):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module}: not assigned to a layer (add it to tests/test_layers.py)")


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def modules():
    for path in sorted([*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        yield name, path


def imports(path: Path):
    """(imported module, names imported from it) for every import statement in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]


def wrong_way_edges(name: str, path: Path) -> list[str]:
    problems = []
    for target, names in imports(path):
        if not target.startswith(("pipeline", "stages")) or target == "pipeline":
            continue
        if layer(target) > layer(name):
            problems.append(f"{name} imports higher layer {target}")
        if package(name) in PEERS and package(target) in PEERS and package(name) != package(target):
            problems.append(f"{name} imports its peer {target} (move what they share down)")
        private = [n for n in names if n.startswith("_") and n != "__future__"]
        if private and target != name:
            problems.append(f"{name} imports private {', '.join(private)} from {target}")
    return problems


def test_every_import_points_down():
    problems = [p for name, path in modules() for p in wrong_way_edges(name, path)]
    assert not problems, "\n".join(problems)


def test_the_library_reads_no_environment_and_no_fixed_paths():
    """Environment variables and file-system conventions are the stages' business."""
    problems = []
    for name, path in modules():
        if not name.startswith("pipeline"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                problems.append(f"{name}: reads os.{node.attr}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/tmp"):
                problems.append(f"{name}: hard-codes {node.value!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, bad", [
    ("pipeline.data.xdog", "from pipeline.model.unet import UNet\n"),
    ("pipeline.training.loop", "import pipeline.evaluation.metrics\n"),
    ("pipeline.model.unet", "def f():\n    from stages.common import console\n"),
    ("pipeline.data.crawl", "from pipeline.data.imageio import _private\n"),
])
def test_the_checker_catches_a_wrong_way_import(tmp_path, source, bad):
    """The check itself can fail: each of these added lines is reported."""
    path = tmp_path / "m.py"
    path.write_text(bad)
    assert wrong_way_edges(source, path)


# ---------------------------------------------------------------- dvc.yaml deps
STAGE_MODULES = {"crawl": "stages.crawl", "clean": "stages.clean", "pairs": "stages.pairs",
                 "pretrain": "stages.pretrain", "finetune": "stages.finetune", "text": "stages.text",
                 "evaluate": "stages.evaluate",
                 "export": "stages.colorize"}


def _file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def code_of(module: str) -> set[str]:
    """Repository files `module` runs: its imports, transitively (not through the params schema and the
    CLI, which import every library config; stages/params.py itself is a dep of every stage)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _file(name)
        if path is None or name in ("stages.params", "stages.cli"):
            continue
        for target, names in imports(path):
            if target.startswith(("pipeline", "stages")):
                todo += [target, *(f"{target}.{n}" for n in names if _file(f"{target}.{n}"))]
    files = {_file(n) for n in seen}
    return {str(f.relative_to(ROOT)) for f in files if f is not None and f.name != "__init__.py"}


@pytest.mark.parametrize("stage", list(STAGE_MODULES))
def test_dvc_deps_list_the_code_each_stage_runs(stage):
    import yaml

    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
    missing = sorted(f for f in code_of(STAGE_MODULES[stage]) if not covered(f))
    assert not missing, f"dvc.yaml {stage}: add to deps {missing}"
