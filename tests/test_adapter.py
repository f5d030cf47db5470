"""The prompt adapter (stage `text`): the empty prompt is the reference-only model exactly, only
the adapter trains, the stage resumes and passes through, the exported model takes prompts."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.data.dataset import PairDataset
from pipeline.data.prompt import SLOTS
from pipeline.data.tps import TPSConfig
from pipeline.errors import AnimecolorError
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.model.conditioning import model_input
from pipeline.model.diffusion import DiffusionConfig
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.adapter import adapter_model, is_adapter_parameter
from stages.text import text
from tests.helpers import JOINT_TEXT, stage_paths, tiny_pretrain


@pytest.fixture(scope="module")
def joint_pretrained(tiny_data, tmp_path_factory):
    """The tiny pretrain run of the joint-text network (`pretrain.unet.text: true`), which needs no adapter."""
    return tiny_pretrain(tmp_path_factory.mktemp("joint"), tiny_data, JOINT_TEXT)


def _inputs(tiny_data, n=3):
    faces, pairs = tiny_data
    dataset = PairDataset(faces, pairs, "train", tps=TPSConfig())
    items = [dataset[(i, i)] for i in range(n)]
    batch = {k: torch.stack([s[k] for s in items]) for k in ("target", "sketch", "reference")}
    x = model_input(torch.randn_like(batch["target"]), batch["sketch"], batch["reference"])
    return x, torch.tensor([10, 400, 900])[:n]


def test_the_empty_prompt_is_the_reference_only_model_exactly(tiny_pretrained, tiny_data):
    init = load_checkpoint(tiny_pretrained / "pretrain.pt")
    base, _ = model_from_checkpoint(init)
    model, _ = adapter_model(init)
    model.eval()
    x, t = _inputs(tiny_data)
    said = torch.zeros(3, len(SLOTS), 4)
    said[1, 0] = torch.tensor([3.0, 0.6, 0.2, -0.1])  # sample 1 says its hair
    with torch.no_grad():
        plain = base(x, t)
        assert torch.equal(model(x, t), plain)  # a fresh adapter
        for name, p in model.named_parameters():  # a trained adapter: still nothing for the empty prompt
            if is_adapter_parameter(name):
                p.normal_(0, 0.5)
        assert torch.equal(model(x, t), plain)
        assert torch.equal(model(x, t, torch.zeros_like(said)), plain)
        out = model(x, t, said)
    assert torch.equal(out[[0, 2]], plain[[0, 2]])  # the samples that say nothing, in the same batch
    assert (out[1] - plain[1]).abs().max() > 1e-5  # the one that says its hair: changed


def test_prompt_attention_at_full_resolution_is_adapter_only_exact_when_empty_and_recorded(tiny_pretrained,
                                                                                          tiny_data):
    from pipeline.model.reference import PromptAttention, recorded_attention

    init = load_checkpoint(tiny_pretrained / "pretrain.pt")
    base, _ = model_from_checkpoint(init)
    side = base.config.image_size  # the full-resolution decoder: no reference attention there
    model, _ = adapter_model(init, (side,))
    model.eval()
    layers = dict(model.prompt_attention.items())
    assert layers and all(isinstance(m, PromptAttention) for m in layers.values())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(is_adapter_parameter(n) for n in trained) and any(n.startswith("prompt_attention.") for n in trained)
    x, t = _inputs(tiny_data)
    said = torch.zeros(3, len(SLOTS), 4)
    said[1, 1] = torch.tensor([3.0, 0.6, 0.2, -0.1])  # sample 1 says its left eye
    with torch.no_grad():
        for p in model.prompt_attention.parameters():
            p.normal_(0, 0.5)
        plain = base(x, t)
        assert torch.equal(model(x, t), plain)  # nothing said: exactly the base, whatever its weights
        with recorded_attention(model, text=True) as records:
            out = model(x, t, said)
    assert torch.equal(out[[0, 2]], plain[[0, 2]]) and (out[1] - plain[1]).abs().max() > 1e-5
    full = [r for r in records if r[0].shape[1] == side * side]  # every position of the full-resolution map
    assert len(full) == len(layers) and all(r[0].shape == (3, side * side, len(SLOTS)) for r in full)
    torch.testing.assert_close(full[0][0].exp().sum(-1), torch.ones(3, side * side))
    config = UNetConfig.from_dict(init["unet"]).to_dict()
    with pytest.raises(ValueError, match="prompt_attention is the prompt adapter's"):
        UNetConfig.from_dict({**config, "prompt_attention": (side,)})
    with pytest.raises(ValueError, match="prompt_attention \\[5\\]: feature-map sides"):
        UNetConfig.from_dict({**config, "text": True, "text_attention": "adapter", "prompt_attention": (5,)})


def _saying(n: int, slot: int) -> torch.Tensor:
    """Encoded prompts of n samples where only sample 1 says a colour, for the slot with index `slot`."""
    said = torch.zeros(n, len(SLOTS), 4)
    said[1, slot] = torch.tensor([3.0, 0.6, 0.2, -0.1])
    return said


def _train_at_random(model, skip: tuple[str, ...] = ()) -> None:
    """Move every adapter weight (but those under `skip`) as training might: nothing said must still add nothing."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_adapter_parameter(name) and not name.startswith(skip):
                p.add_(torch.randn_like(p) * 0.5)


def _trained_and_exact(model, base, x, t) -> torch.Tensor:
    """The adapter, its weights moved at random (`_train_at_random`), in eval mode: asserts that the
    empty prompt gives `base`'s output exactly, and returns that output."""
    model.eval()
    _train_at_random(model)
    with torch.no_grad():
        plain = base(x, t)
        assert torch.equal(model(x, t), plain)
    return plain


def test_decoder_copy_starts_as_the_frozen_decoder_and_the_empty_prompt_never_runs_it(tiny_pretrained, tiny_data):
    init = load_checkpoint(tiny_pretrained / "pretrain.pt")
    base, _ = model_from_checkpoint(init)
    plain_adapter, _ = adapter_model(init)
    model, _ = adapter_model(init, prompt_decoder=True)
    assert model.config.prompt_decoder and not plain_adapter.config.prompt_decoder
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(is_adapter_parameter(n) for n in trained)
    assert any(n.startswith("prompt_up.") for n in trained) and any(n.startswith("prompt_out.") for n in trained)
    assert {n for n in trained if not n.startswith(("prompt_up.", "prompt_out."))} == {
        n for n, p in plain_adapter.named_parameters() if p.requires_grad}
    model.eval(), plain_adapter.eval()
    x, t = _inputs(tiny_data)
    said = _saying(3, 1)  # sample 1 says its left eye
    _train_at_random(model, skip=("prompt_up.", "prompt_out."))  # the copy keeps the frozen decoder's weights
    with torch.no_grad():
        for name, p in model.prompt_up.named_parameters():
            if ".extra_kv." in name or name.endswith("extra_gate"):
                p.copy_(model.get_parameter(f"up.{name}"))
        plain_adapter.load_state_dict({k: v for k, v in model.state_dict().items()
                                       if not k.startswith(("prompt_up.", "prompt_out."))})
        # the copy is the frozen decoder: the blend out + share * (copy - out) changes nothing
        assert torch.equal(model(x, t, said), plain_adapter(x, t, said))
        for p in [*model.prompt_up.parameters(), *model.prompt_out.parameters()]:  # the copy trained away
            p.add_(torch.randn_like(p) * 0.5)
        plain = base(x, t)
        assert torch.equal(model(x, t), plain)
        assert torch.equal(model(x, t, torch.zeros_like(said)), plain)
        out = model(x, t, said)
    assert torch.equal(out[[0, 2]], plain[[0, 2]])  # the samples that say nothing, in the same batch
    assert (out[1] - plain_adapter(x, t, said)[1]).abs().max() > 1e-5  # the copy paints where a word is said
    config = UNetConfig.from_dict(init["unet"]).to_dict()
    with pytest.raises(ValueError, match="prompt_decoder is the prompt adapter's"):
        UNetConfig.from_dict({**config, "prompt_decoder": True})


def test_a_copy_of_the_full_resolution_blocks_only_reads_the_frozen_decoder_and_its_share(tiny_pretrained,
                                                                                         tiny_data):
    init = load_checkpoint(tiny_pretrained / "pretrain.pt")
    base, _ = model_from_checkpoint(init)
    model, _ = adapter_model(init, prompt_decoder=True, prompt_decoder_levels=1)  # the full-size blocks
    whole, _ = adapter_model(init, prompt_decoder=True)
    assert 0 < len(model.prompt_up) < len(whole.prompt_up) == len(model.up)
    assert model.copy_start == len(model.up) - len(model.prompt_up)
    for i, step in enumerate(model.prompt_up):  # the last blocks, copied
        frozen = model.up[model.copy_start + i].state_dict()
        assert all(torch.equal(v, frozen[k]) for k, v in step.state_dict().items())
    x, t = _inputs(tiny_data)
    said = _saying(3, 0)
    plain = _trained_and_exact(model, base, x, t)
    with torch.no_grad():
        out = model(x, t, said)
    assert torch.equal(out[[0, 2]], plain[[0, 2]]) and (out[1] - plain[1]).abs().max() > 1e-5
    config = UNetConfig.from_dict(model.config.to_dict()).to_dict()
    with pytest.raises(ValueError, match="prompt_decoder_levels needs prompt_decoder"):
        UNetConfig.from_dict({**config, "prompt_decoder": False})
    too_many = len(config["channel_mults"]) + 1
    with pytest.raises(ValueError, match=f"prompt_decoder_levels {too_many}: the decoder has {too_many - 1} levels"):
        UNetConfig.from_dict({**config, "prompt_decoder_levels": too_many})


def test_a_copy_without_attention_blends_by_the_frozen_decoders_share():
    config = UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), heads=2, reference_attention=(16,))
    torch.manual_seed(0)
    plain = UNet(config)
    with torch.no_grad():
        for p in plain.parameters():  # a trained-looking base (zero-initialised heads included)
            p.add_(torch.randn_like(p) * 0.1)
    init = {"unet": config.to_dict(), "ema": plain.state_dict(), "diffusion": DiffusionConfig().model_dump()}
    model, _ = adapter_model(init, prompt_decoder=True, prompt_decoder_levels=1)
    assert not any(".extra_kv." in n for n, _ in model.prompt_up.named_parameters())  # no attention at 32 px
    x, t = torch.randn(2, 7, 32, 32), torch.tensor([100, 700])
    said = _saying(2, 0)
    reference_only = _trained_and_exact(model, plain, x, t)
    with torch.no_grad():
        out = model(x, t, said)
        model.prompt_up = None  # the same adapter without its copy
        without = model(x, t, said)
    assert torch.equal(out[0], reference_only[0]) and (out[1] - without[1]).abs().max() > 1e-5


def test_only_the_adapter_requires_grad_and_it_needs_reference_attention():
    config = UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), heads=2, reference_attention=(16,))
    init = {"unet": config.to_dict(), "ema": UNet(config).state_dict(), "diffusion": DiffusionConfig().model_dump()}
    model, _ = adapter_model(init)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(is_adapter_parameter(n) for n in trained)
    assert any(".extra_kv." in n for n in trained) and any(n.startswith("text_encoder.") for n in trained)
    assert model.config.text and model.config.text_attention == "adapter"
    plain = {"unet": {**config.to_dict(), "reference_attention": ()}, "diffusion": DiffusionConfig().model_dump()}
    with pytest.raises(AnimecolorError, match="reference attention"):
        adapter_model({**plain, "ema": UNet(UNetConfig.from_dict(plain["unet"])).state_dict()})
    texted = UNetConfig.from_dict({**config.to_dict(), "text": True})
    with pytest.raises(AnimecolorError, match="already has a prompt path"):
        adapter_model({"unet": texted.to_dict(), "ema": UNet(texted).state_dict(),
                       "diffusion": DiffusionConfig().model_dump()})


@pytest.mark.slow
def test_text_stage_trains_only_the_adapter_resumes_and_exports(tiny_pretrained, tiny_data, tmp_path):
    from pipeline.colorize import load_model

    data = yaml.safe_load((tiny_pretrained / "params.yaml").read_text())
    data["text"]["prompt_attention"] = [data["base"]["image_size"]]  # with its own full-resolution attention
    data["text"]["prompt_decoder"], data["text"]["decoder_lr"] = True, 2e-4  # ... and its own decoder
    params, init_path = tmp_path / "params.yaml", tiny_pretrained / "pretrain.pt"
    params.write_text(yaml.safe_dump(data))
    partial = text(params, init_path, *tiny_data, **stage_paths(tmp_path, "tx"), stop_at=2)
    assert partial["steps"] == 2 and not (tmp_path / "tx.pt").exists()
    metrics = text(params, init_path, *tiny_data, **stage_paths(tmp_path, "tx"))
    assert metrics["resumed_from"] == 2 and metrics["steps"] == 4 and metrics["passthrough"] is False
    assert json.loads((tmp_path / "tx.json").read_text())["steps"] == 4 and (tmp_path / "tx.png").is_file()
    before, after = load_checkpoint(init_path), load_checkpoint(tmp_path / "tx.pt")
    assert after["unet"]["text_attention"] == "adapter" and after["meta"]["stage"] == "text"
    for key in ("model", "ema"):
        base = {k: v for k, v in after[key].items() if not is_adapter_parameter(k)}
        assert base.keys() == before["ema"].keys()
        assert all(torch.equal(v, before["ema"][k]) for k, v in base.items())  # the base never moved
    assert any(after["ema"][k].abs().sum() > 0 for k in after["ema"] if ".extra_kv." in k)
    assert any(not torch.equal(after["model"][k], after["model"][k.replace("prompt_", "", 1)])
               for k in after["model"] if k.startswith("prompt_out."))  # the decoder copy trained
    out = tmp_path / "tx.safetensors"
    from stages.cli import app

    result = CliRunner().invoke(app, ["export", str(tmp_path / "tx.pt"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    model, _, info = load_model(out)
    assert model.config.text_attention == "adapter" and info["vocabulary"] and model.prompt_attention
    assert model.config.prompt_decoder and model.prompt_up is not None
    trained = load_checkpoint(tmp_path / "tx.pt")["ema"]
    assert all(torch.equal(v.float(), trained[k].float()) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_text_stage_passes_through_without_the_adapter_or_with_a_text_model(tiny_pretrained, joint_pretrained,
                                                                            tiny_data, tmp_path):
    data = yaml.safe_load((tiny_pretrained / "params.yaml").read_text())
    data["text"]["adapter"] = False
    off = tmp_path / "off.yaml"
    off.write_text(yaml.safe_dump(data))
    for params, init_path in ((off, tiny_pretrained / "pretrain.pt"),
                              (joint_pretrained / "params.yaml", joint_pretrained / "pretrain.pt")):
        metrics = text(params, init_path, *tiny_data, **stage_paths(tmp_path, "pt"))
        assert metrics == {"steps": 0, "passthrough": True} and (tmp_path / "pt.png").is_file()
        a, b = load_checkpoint(init_path), load_checkpoint(tmp_path / "pt.pt")
        assert a["unet"] == b["unet"] and all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_slot_attention_loss_is_low_on_the_own_slot_and_log_slots_when_uniform():
    from pipeline.model.attention import fourier_grid
    from pipeline.training.correspondence import slot_attention_loss

    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, :2] = 5  # top half: region 5 (slot 1); bottom: region 0 (slot 0)
    pos = fourier_grid(4, 4, torch.device("cpu"))
    own = torch.where(pos[:, 1] < 0.5, 1, 0)
    right = torch.full((1, 16, 3), -30.0)
    right[0, torch.arange(16), own] = 0.0
    regions = (0, 5, 7)  # slot 2's region is nowhere: not counted
    assert slot_attention_loss([(right.log_softmax(-1), pos, 4)], label, regions) < 1e-6
    uniform = torch.zeros(1, 16, 3).log_softmax(-1)
    torch.testing.assert_close(slot_attention_loss([(uniform, pos, 4)], label, regions), torch.tensor(torch.log(torch.tensor(3.0)).item()))
    wrong = torch.full((1, 16, 3), -30.0)
    wrong[0, torch.arange(16), 1 - own] = 0.0
    assert slot_attention_loss([(wrong.log_softmax(-1), pos, 4)], label, regions) > 20
