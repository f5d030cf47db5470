"""stages/plots.py: `animecolor plots` renders the DAG's curves to PNG and an offline page."""

import subprocess

import pytest
from typer.testing import CliRunner

from stages.cli import app
from stages.plots import render_plots

DVC_YAML = """stages:
  train:
    cmd: python -c "open('loss.tsv','w').write('step\\tloss\\n0\\t1.0\\n1\\t0.5\\n2\\t0.25\\n')"
    outs:
      - loss.tsv:
          cache: false
plots:
  - loss.tsv:
      x: step
      y: loss
  - sheet.png
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    import numpy as np
    from pipeline.data.imageio import write_png

    write_png(tmp_path / "sheet.png", np.full((8, 8, 3), 200, np.uint8))
    subprocess.run(["dvc", "repro", "-q"], cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_curves_become_pngs_on_a_page_without_scripts(repo):
    written = render_plots(repo / "out", [])
    assert [p.name for p in written] == ["loss.tsv.png"]
    png = written[0].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000  # a drawn chart, not an empty canvas
    page = (repo / "out" / "offline.html").read_text()
    assert "<script" not in page and "http" not in page.replace("<!doctype html>", "")
    for src in ("curves/loss.tsv.png",):
        assert f'src="{src}"' in page and (repo / "out" / src).is_file()
    image_srcs = [s.split('"')[0] for s in page.split('src="')[1:]]
    assert len(image_srcs) == 2 and all((repo / "out" / s).is_file() for s in image_srcs)
    assert (repo / "out" / "index.html").is_file()  # dvc's own page is kept beside it


def test_outside_a_dvc_project_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plots", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "dvc root" in lines[0] and "Traceback" not in result.output


def test_a_project_without_plots_is_one_line(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plots"])
    assert result.exit_code == 2 and "no plots to render" in result.output
    assert len(result.output.strip().splitlines()) == 1
