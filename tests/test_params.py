import math
import subprocess
import sys

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from pipeline.errors import ParamsError
from stages.cli import app
from stages.common import load_params
from pipeline.config import config_rows
from stages.params import NOT_PARAMS, SECTIONS, SHIPPED, params_markdown, params_yaml, validate_section
from tests.helpers import ROOT


def test_defaults_in_params_yaml_are_valid():
    p = load_params(ROOT / "params.yaml", *SECTIONS)
    assert p["base"].image_size >= 16 and p["crawl"].source == "synthetic"


def _leaves(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _schema_leaves(model: BaseModel, prefix: str = ""):
    for name in type(model).model_fields:
        value, key = getattr(model, name), f"{prefix}{name}"
        if key in NOT_PARAMS:
            continue
        if isinstance(value, BaseModel):
            yield from _schema_leaves(value, f"{key}.")
        else:
            yield key, list(value) if isinstance(value, tuple) else value


# Deliberate differences between params.yaml and the schema defaults, each with its reason.
DELIBERATE = SHIPPED


def test_params_yaml_lists_every_key_with_the_schema_default():
    """Drift is impossible: every section, every key, and each value equals the one declared default."""
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(shipped) == list(SECTIONS)
    for section, cls in SECTIONS.items():
        schema = dict(_schema_leaves(cls(), f"{section}."))
        listed = dict(_leaves(shipped[section], f"{section}."))
        assert set(listed) == set(schema), (set(listed) ^ set(schema))
        for key, default in schema.items():
            if key in DELIBERATE:
                assert listed[key] == DELIBERATE[key][0] and DELIBERATE[key][1], key
                continue
            value = listed[key]
            same = math.isclose(value, default) if isinstance(default, float) else value == default
            assert same, f"{key}: params.yaml {value!r} != schema default {default!r}"


def test_params_yaml_and_docs_params_md_are_generated_from_the_schema():
    hint = "run: python scripts/figures/params_table.py; python scripts/figures/params_table.py --yaml > params.yaml"
    assert (ROOT / "params.yaml").read_text() == params_yaml(), hint
    assert (ROOT / "docs" / "params.md").read_text() == params_markdown(), hint


def test_params_yaml_comments_are_one_short_line():
    long = [line for line in (ROOT / "params.yaml").read_text().splitlines() if len(line) > 100]
    assert not long, long


@pytest.mark.slow  # a Python start-up; the same check in-process is the test above
def test_the_script_checks_both_files():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "scripts/figures/params_table.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# Leaf names that several config classes declare, each its own knob (the meaning differs, or each
# stage has its own): anything else declared twice is the same knob in two places.
OWN_KNOB_PER_CLASS = {
    "seed": "base: everything random; evaluate: the sampling noise",
    "sheet_size": "each stage's own report grid",
    "p": "XDoG's sharpening; recolour's probability",
    "heads": "the network's attention heads; the correspondence's supervised heads",
    "weight": "each supervision's own loss weight",
    "p_uncond": "each objective's own reference dropout",
    "batch_size": "training steps; evaluation batches",
    "precision": "training; evaluation",
    "sample_steps": "samples grid; evaluation",
    "guidance": "samples grid; unrolled fine-tuning; evaluation",
    "eta": "unrolled fine-tuning; evaluation",
    **{key: "pairs.tps: the benchmark's reference warp (and training's); pretrain.reference_warp and "
            "finetune.reference_warp: training's own"
       for key in ("flip_p", "rotate_deg", "scale_min", "scale_max", "moves_p")},
}


def _owner(cls: type[BaseModel], name: str) -> type[BaseModel]:
    """The first class in the MRO that declares `name` (a subclass overriding a default is the same knob)."""
    return next(c for c in reversed(cls.__mro__) if name in getattr(c, "__annotations__", {}))


def _knobs():
    """(dotted key, declaring class, the config class that holds it) of every leaf of every section."""
    for section, cls in SECTIONS.items():
        holders = {section: cls}
        for key, _, _, nested in config_rows(cls, section, NOT_PARAMS):
            parent, name = key.rsplit(".", 1)
            holder = holders[parent]
            if nested:
                holders[key] = holder.model_fields[name].annotation
            else:
                yield key, _owner(holder, name), holder


def test_each_knob_is_declared_once():
    """A knob grep: a leaf name is declared by one config class, which may be composed into several
    sections only under the same name (`loop.lr`, `samples.count`): the same knob in two places,
    like the prompt adapter's once in pretrain.unet and in text, fails here."""
    owners, places = {}, {}
    for key, owner, _ in _knobs():
        name = key.rsplit(".", 1)[1]
        owners.setdefault(name, set()).add(owner.__qualname__)
        places.setdefault((owner, name), set()).add(".".join(key.split(".")[1:]))
    twice = {name: sorted(classes) for name, classes in owners.items() if len(classes) > 1}
    assert set(twice) == set(OWN_KNOB_PER_CLASS), {k: v for k, v in twice.items() if k not in OWN_KNOB_PER_CLASS}
    for (owner, name), keys in places.items():
        assert len(keys) == 1, f"{owner.__qualname__}.{name} is a params key in several places: {sorted(keys)}"
    adapter = [key for key, _, _ in _knobs() if key.rsplit(".", 1)[1].startswith("prompt_")]
    assert adapter == ["text.prompt_attention", "text.prompt_decoder", "text.prompt_decoder_levels"]


@pytest.mark.parametrize(
    "section, data, fragment",
    [
        ("crawl", {"n_imgs": 5}, "crawl.n_imgs: unknown key"),
        ("crawl", {"n_images": "100"}, "crawl.n_images: Input should be a valid integer"),
        ("crawl", {"n_images": 0}, "crawl.n_images: Input should be greater than or equal to 1"),
        ("crawl", {"heterochromia_p": 1.5}, "crawl.heterochromia_p: Input should be less than or equal to 1"),
        ("crawl", {"source": "ftp"}, "crawl.source: Input should be 'synthetic'"),
        ("crawl", {"download": {"workerz": 2}}, "crawl.download.workerz: unknown key (did you mean workers? "
                                                "allowed: workers, rate_limit"),
        ("base", {"image_size": 64.5}, "base.image_size: Input should be a valid integer"),
        ("base", {"device": "tpu"}, "base.device:"),
        ("base", ["seed"], "base: must be a mapping"),
        ("base", None, "base: section is missing or empty"),
        ("pretrain", {"loop": {"lr": float("inf")}}, "pretrain.loop.lr: Input should be a finite number"),
        ("pretrain", {"unet": {"channel_mults": [1, "2"]}}, "pretrain.unet.channel_mults.1: Input should be a valid"),
        ("pretrain", {"unet": {"image_size": 128}}, "unet.image_size is not a parameter (it follows base.image_size)"),
        ("pretrain", {"unet": {"channels": 30, "heads": 8}}, "attention: the bottleneck's 60 channels do not split"),
        ("pretrain", {"correspondence": {"weight": -0.1}}, "pretrain.correspondence.weight: Input should be greater"),
        ("pretrain", {"correspondence": {"weight": 0.1}, "unet": {"reference_attention": [], "text": False}},
         "correspondence.weight supervises the reference attention: set unet.reference_attention"),
        ("pretrain", {"correspondence": {"target": "region"}}, "pretrain.correspondence: target was removed"),
        ("pretrain", {"unet": {"prompt_decoder": True}}, "unet.prompt_decoder is not a parameter (the text stage "
                                                         "sets it: use text.prompt_decoder)"),
        ("pretrain", {"correspondence": {"heads": "two"}}, "pretrain.correspondence.heads: Input should be 'all'"),
        ("pretrain", {"correspondence": {"colour_regions": -1}}, "pretrain.correspondence.colour_regions: Input should be greater"),
        ("pretrain", {"diffusion": {"objective": "gan"}}, "pretrain.diffusion.objective: Input should be 'diffusion'"),
        ("pretrain", {"diffusion": {"objective": "regression", "min_snr_gamma": 5}},
         "min_snr_gamma weights noise levels; the regression objective has one"),
        ("pretrain", {"recolour": {"p": 1.5}}, "pretrain.recolour.p: Input should be less than or equal to 1"),
        ("pretrain", {"recolour": {"regions": ["hair", "hat"]}}, "unknown region 'hat' (known: background, hair"),
        ("pretrain", {"captions": {"recolour_slots": ["hair", "eyes"]}}, "unknown slot 'eyes' (known: hair, iris_left"),
        ("pretrain", {"recolour": {"p": 0.5}, "unet": {"text": True, "reference_attention": [16]}},
         "recolour.p changes colours that the captions name: it needs unet.text false"),
        ("finetune", {"reconstruction": {"p_random": 0.5}}, "p_random: samples with another face's reference are scored"),
        ("finetune", {"reconstruction": {"colour_weight": -1}}, "finetune.reconstruction.colour_weight: Input should be"),
        ("finetune", {"reconstruction": {"swd_weight": -1}}, "finetune.reconstruction.swd_weight: Input should be"),
        ("text", {"loop": {"train_steps": 0}}, "text.loop.train_steps: Input should be greater than or equal to 1"),
        ("text", {"captions": {"p_recolour": 2}}, "text.captions.p_recolour: Input should be less than or equal to 1"),
        ("text", {"captions": {"recolour_slots": ["hat"]}}, "unknown slot 'hat'"),
        ("text", {"captions": {"p_recolour_eyes": 1.5}}, "text.captions.p_recolour_eyes: Input should be less than"),
        ("text", {"captions": {"p_repaint": -1}}, "text.captions.p_repaint: Input should be greater than or equal to 0"),
        ("text", {"captions": {"altered_weight": 0}}, "text.captions.altered_weight: Input should be greater than or equal to 1"),
        ("crawl", {"achromatic_eyes_p": 2}, "crawl.achromatic_eyes_p: Input should be less than or equal to 1"),
        ("pretrain", {"diffusion": {"eye_weight": 0.5}}, "pretrain.diffusion.eye_weight: Input should be greater than or equal to 1"),
        ("pretrain", {"diffusion": {"eye_weight": "eyes"}}, "pretrain.diffusion.eye_weight: Input should be a valid number"),
        ("pretrain", {"augment": {"flip_p": 1.5}}, "pretrain.augment.flip_p: Input should be less than or equal to 1"),
        ("pretrain", {"lines": {"soft_p": 1.5}}, "pretrain.lines.soft_p: Input should be less than or equal to 1"),
        ("pretrain", {"lines": {"soft_p": "pencil"}}, "pretrain.lines.soft_p: Input should be a valid number"),
        ("pretrain", {"augment": {"flip_p": 0.5}, "unet": {"text": True, "reference_attention": [16]}}, "augment.flip_p mirrors the eyes"),
        ("clean", {"eye_labels": "sometimes"}, "clean.eye_labels: Input should be a valid boolean"),
        ("clean", {"zoom_crops": -1}, "clean.zoom_crops: Input should be greater than or equal to 0"),
        ("clean", {"zoom_crops": 2, "zoom_min": 0.8, "zoom_max": 0.5}, "zoom_min 0.8 is above zoom_max 0.5"),
        ("clean", {"zoom_max": 1.5}, "clean.zoom_max: Input should be less than or equal to 1"),
        ("text", {"captions": {"repaint_slots": ["eyes"]}}, "unknown slot 'eyes'"),
        ("text", {"prompt_attention": "full"}, "text.prompt_attention: Input should be a valid tuple"),
        ("text", {"adapter": "maybe"}, "text.adapter: Input should be a valid boolean"),
        ("text", {"prompt_decoder": "copy"}, "text.prompt_decoder: Input should be a valid boolean"),
        ("text", {"decoder_lr": 0}, "text.decoder_lr: Input should be greater than 0"),
        ("text", {"prompt_decoder_levels": -1}, "text.prompt_decoder_levels: Input should be greater than or equal to 0"),
        ("text", {"prompt_decoder_levels": 1, "prompt_decoder": False}, "text: prompt_decoder_levels needs prompt_decoder"),
        ("text", {"condition_dropout": {"p_uncond": -0.1}}, "text.condition_dropout.p_uncond: Input should be"),
        ("evaluate", {"full_size": {"moved_ref": "sometimes"}}, "evaluate.full_size.moved_ref: Input should be a valid boolean"),
        ("nope", {}, "nope: unknown params section"),
    ],
)
def test_bad_values_name_the_key(section, data, fragment):
    with pytest.raises(ParamsError) as info:
        validate_section(section, data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "section, old, new",
    [
        ("pretrain", "steps", "pretrain.loop.train_steps"),
        ("pretrain", "channels", "pretrain.unet.channels"),
        ("pretrain", "p_uncond", "pretrain.condition_dropout.p_uncond"),
        ("pretrain", "sample_size", "pretrain.samples.count"),
        ("pretrain", "line_blur_p", "pretrain.lines.blur_p"),
        ("finetune", "unroll_steps", "finetune.reconstruction.unroll_steps"),
        ("finetune", "grad_checkpoint", "finetune.reconstruction.grad_checkpoint"),
        ("finetune", "epochs", "finetune.loop.epochs"),
        ("evaluate", "steps", "evaluate.sample_steps"),
        ("pairs", "tps_scheme", "pairs.tps.scheme"),
        ("pairs", "sigma", "pairs.xdog.sigma"),
    ],
)
def test_old_key_names_name_the_new_key(section, old, new):
    with pytest.raises(ParamsError, match=f"{section}: {old} was renamed: use {new}"):
        validate_section(section, {old: 1})


def test_image_size_must_fit_the_network():
    pre = validate_section("pretrain", {"unet": {"channel_mults": [1, 2, 2, 2]}})
    assert pre.unet_config(64).image_size == 64
    # the section is checked again with base.image_size: reference attention at 16 px needs a 16 px level
    tiny = validate_section("pretrain", {"unet": {"channel_mults": [1, 2], "reference_attention": [16]}})
    assert tiny.unet_config(32).reference_attention == (16,)
    with pytest.raises(ParamsError, match=r"reference_attention \[16\]: feature-map sides are \[64, 32\]"):
        tiny.unet_config(64)
    with pytest.raises(ParamsError, match=r"pretrain.unet \(with base\): image_size 36 is not divisible by 2\*\*3"):
        pre.unet_config(36)


def test_float_param_accepts_an_int():
    assert validate_section("crawl", {"heterochromia_p": 1}).heterochromia_p == 1.0


_BILLION_LAUGHS = ('a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
                   + "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
                   + "base: {seed: *i}\ncrawl: {}\n")  # 9**9 strings once expanded


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("base: {seed: 0}\ncrawl: {n_images: -3}\n", "crawl.n_images"),
        ("base: {seed: 0, colour: red}\ncrawl: {}\n", "base.colour: unknown key"),
        ("base: [unclosed\n", "not valid YAML"),
        ("base: {seed: 0}\ncrawll: {n_images: 3}\n", "crawll: unknown params section (did you mean crawl?"),
        ("base: {seed: 0}\n", "crawl: section is missing"),
        ("base: {seed: 0}\ncrawl: null\n", "crawl: section is missing or empty"),
        ("", "empty"),
        ("base:\n  seed: 0\n  seed: 7\ncrawl: {}\n", "base.seed: given twice (lines 2 and 3)"),
        ("base: {seed: 0}\ncrawl: {}\nbase: {seed: 7}\n", "base: given twice (lines 1 and 3)"),
        ("crawl: {n_images: 3, n_images: 4}\nbase: {}\n", "crawl.n_images: given twice (lines 1 and 1)"),
        (_BILLION_LAUGHS, "YAML anchors and aliases (&name, *name) are not allowed in params"),
        ("base: {seed: &s 3}\ncrawl: {seed: *s}\n", "line 1: YAML anchors and aliases"),
        ("base: " + "[" * 900 + "]" * 900 + "\ncrawl: {}\n", "nested more than 32 deep"),
        ("base: " + "[" * 900 + "\n", "nested more than 32 deep"),
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


@pytest.mark.parametrize("text", ["base: {seed: '" + "x" * 100_000 + "'}\ncrawl: {}\n",
                                  "base: {" + "k" * 100_000 + ": 1}\ncrawl: {}\n",
                                  "x" * 100_000 + ": {}\nbase: {}\n",
                                  "base: {}\ncrawl: {}\n# " + "x" * 1_100_000 + "\n"])
def test_cli_bad_params_name_a_huge_value_without_pasting_it(tmp_path, text):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    result = CliRunner().invoke(app, ["crawl", "--params", str(params), "--out", str(tmp_path / "raw")])
    assert result.exit_code == 2 and len(result.output) < 400, result.output[:400]
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_cli_missing_params_file(tmp_path):
    result = CliRunner().invoke(app, ["crawl", "--params", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2 and "params file not found" in result.output


def test_cross_key_check_names_the_section():
    with pytest.raises(ParamsError, match=r"pairs.tps: scale_min must be <= scale_max \(1.5 > 1.0\)"):
        validate_section("pairs", {"tps": {"scale_min": 1.5}})


def test_paper_recipe_is_valid_and_is_the_paper():
    from pipeline.model.unet import UNetConfig

    data = yaml.safe_load((ROOT / "recipes" / "paper.yaml").read_text())
    assert list(data) == list(SECTIONS)  # every section, so `dvc exp run` with it needs nothing else
    sections = {name: validate_section(name, value) for name, value in data.items()}
    pre = sections["pretrain"]
    loop, diffusion = pre.loop, pre.diffusion
    assert sections["base"].image_size == 256 and loop.epochs == 300 and loop.batch_size == 32 and loop.lr == 1e-5
    assert (diffusion.schedule, diffusion.beta_start, diffusion.beta_end, diffusion.prediction) == \
        ("linear", 1e-6, 1e-2, "eps")
    assert pre.unet_config(256) == UNetConfig.paper(256)
    assert sections["finetune"].loop.batch_size == 4 and sections["finetune"].reconstruction.unroll_steps == 10
    assert sections["text"].adapter is False  # no prompts in the paper: the fine-tuned model passes through


def test_reading_params_leaves_the_slow_imports_to_the_stages_that_score():
    """Every stage reads its params through stages.params; torchvision, torchmetrics and clean-fid
    (seconds to import on a slow CPU) load only when a metric or the VGG is used."""
    slow = ("torchvision", "torchmetrics", "cleanfid")
    code = ("import sys; import stages.params, stages.training, pipeline.colorize, pipeline.training.finetune; "
            f"print(' '.join(m for m in {slow!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []
