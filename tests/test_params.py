import pytest
from typer.testing import CliRunner

from pipeline.config import validate_section
from pipeline.errors import ParamsError
from stages.cli import app
from stages.common import load_params


def test_defaults_in_params_yaml_are_valid():
    from conftest import ROOT

    p = load_params(ROOT / "params.yaml", "base", "crawl")
    assert p["base"].image_size >= 16 and p["crawl"].source == "synthetic"


@pytest.mark.parametrize(
    "section, data, fragment",
    [
        ("crawl", {"n_imgs": 5}, "crawl.n_imgs: unknown key"),
        ("crawl", {"n_images": "100"}, "crawl.n_images: Input should be a valid integer"),
        ("crawl", {"n_images": 0}, "crawl.n_images: Input should be greater than or equal to 1"),
        ("crawl", {"heterochromia_p": 1.5}, "crawl.heterochromia_p: Input should be less than or equal to 1"),
        ("crawl", {"source": "ftp"}, "crawl.source: Input should be 'synthetic'"),
        ("base", {"image_size": 64.5}, "base.image_size: Input should be a valid integer"),
        ("base", {"device": "tpu"}, "base.device:"),
        ("base", ["seed"], "base: must be a mapping"),
        ("nope", {}, "nope: unknown params section"),
    ],
)
def test_bad_values_name_the_key(section, data, fragment):
    with pytest.raises(ParamsError) as info:
        validate_section(section, data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_float_param_accepts_an_int():
    assert validate_section("crawl", {"heterochromia_p": 1}).heterochromia_p == 1.0


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("base: {seed: 0}\ncrawl: {n_images: -3}\n", "crawl.n_images"),
        ("base: {seed: 0, colour: red}\n", "base.colour: unknown key"),
        ("base: [unclosed\n", "not valid YAML"),
    ],
)
def test_cli_bad_params_one_line_no_traceback(tmp_path, text, fragment):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    result = CliRunner().invoke(app, ["crawl", "--params", str(params), "--out", str(tmp_path / "raw")])
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "raw").exists()


def test_cli_missing_params_file(tmp_path):
    result = CliRunner().invoke(app, ["crawl", "--params", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2 and "params file not found" in result.output


def test_cross_key_check_names_the_section():
    with pytest.raises(ParamsError, match=r"pairs: scale_min must be <= scale_max \(1.5 > 1.0\)"):
        validate_section("pairs", {"scale_min": 1.5})


def test_paper_recipe_is_valid_and_is_the_paper():
    import yaml

    from pipeline.config import validate_section
    from tests.conftest import ROOT

    data = yaml.safe_load((ROOT / "recipes" / "paper.yaml").read_text())
    sections = {name: validate_section(name, value) for name, value in data.items()}
    pre = sections["pretrain"]
    assert sections["base"].image_size == 256 and pre.epochs == 300 and pre.batch_size == 32 and pre.lr == 1e-5
    assert (pre.schedule, pre.beta_start, pre.beta_end, pre.prediction) == ("linear", 1e-6, 1e-2, "eps")
    assert pre.unet_config(256) == __import__("pipeline.model.unet", fromlist=["UNetConfig"]).UNetConfig.paper(256)
    assert sections["finetune"].batch_size == 4 and sections["finetune"].unroll_steps == 10
