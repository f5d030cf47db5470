"""Text + reference: the prompt language, captions from three sources, caption training, the text
path of the network, two-scale guidance, export and `colorize --prompt`."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from pipeline.data.dataset import (CaptionConfig, PairDataset, blank_region, caption_text, recolour_region,
                                   to_tensor)
from pipeline.data.labels import NO_REGION, REGION_IDS
from pipeline.data.prompt import (COLOURS, HEX, SLOTS, animeface_caption, booru_caption, encode, named,
                                  parse_prompt, synthetic_caption)
from pipeline.errors import AnimecolorError
from pipeline.model.conditioning import guided
from pipeline.model.defaults import SAMPLING
from pipeline.model.unet import UNet, UNetConfig

DANBOORU_HAIR = ("aqua", "black", "blonde", "blue", "light blue", "dark blue", "brown", "light brown", "green",
                 "dark green", "light green", "grey", "orange", "pink", "purple", "light purple", "red", "white",
                 "silver")
DANBOORU_EYES = ("blue", "red", "brown", "green", "purple", "yellow", "pink", "black", "aqua", "orange", "grey",
                 "white")


# -- the prompt language --------------------------------------------------------------------------
@pytest.mark.parametrize("word", DANBOORU_HAIR)
def test_every_danbooru_hair_colour_as_a_tag(word):
    prompt = parse_prompt(f"{word.replace(' ', '_')}_hair")
    assert prompt.slots["hair"].name == word and prompt.slots["hair"].rgb == COLOURS[word]


@pytest.mark.parametrize("word", DANBOORU_EYES)
def test_every_danbooru_eye_colour_sets_both_irises(word):
    prompt = parse_prompt(f"{word} eyes")
    assert prompt.slots["iris_left"] == prompt.slots["iris_right"] and prompt.slots["iris_left"].name == word


@pytest.mark.parametrize("text, expected", [
    ("Pink_Hair, BLUE eyes", {"hair": "pink", "iris_left": "blue", "iris_right": "blue"}),
    ("hair #ff66aa, #fff skin", {"hair": (255, 102, 170), "skin": (255, 255, 255)}),
    ("left eye red, right eye #0000ff", {"iris_left": "red", "iris_right": (0, 0, 255)}),
    ("heterochromia, red_eyes, blue_eyes", {"iris_left": "red", "iris_right": "blue"}),
    ("red left eye; blue right eye", {"iris_left": "red", "iris_right": "blue"}),
    ("pale skin, white shirt, light blue background", {"skin": "pale", "clothes": "white",
                                                       "background": "light blue"}),
    ("dark_skin, gray hair, black dress", {"skin": "dark", "hair": "grey", "clothes": "black"}),  # aliases, garments
    ("tan", {"skin": "tan"}),
    ("pink_hair blue_eyes", {"hair": "pink", "iris_left": "blue", "iris_right": "blue"}),  # a tag string
    ("hair: pink. light-blue eyes!", None),  # punctuation; checked below
    ("pink hair and blue eyes", {"hair": "pink", "iris_left": "blue", "iris_right": "blue"}),
    ("", {}),
])
def test_prompts_parse_to_slots(text, expected):
    if expected is None:
        with pytest.raises(AnimecolorError, match="two parts in one phrase"):  # one phrase without a comma
            parse_prompt(text)
        assert {s: c.name for s, c in parse_prompt("hair: pink, light-blue eyes!").slots.items()} == {
            "hair": "pink", "iris_left": "light blue", "iris_right": "light blue"}
        return
    prompt = parse_prompt(text)
    got = {s: (c.name or c.rgb) for s, c in prompt.slots.items()}
    assert got == expected


@pytest.mark.parametrize("text, message", [
    ("pnk hair", r"unknown colour 'pnk' \(close: pink\)"),
    ("pink hat", r"unknown part \(close: hair"),
    ("hair", "no colour given"),
    ("pink", "pink what\\? say the part"),
    ("smile", "a colour needs a part, or this is an unknown word"),
    ("pink hair, blue hair", "hair is given two colours"),
    ("red eyes, blue eyes", "add 'heterochromia'"),
    ("heterochromia, red eyes", "needs two different eye colours"),
    ("#12 hair", "not a hex colour"),
    ("blonde", "blonde what\\? say the part"),
    ("dark hair", "'dark' is a skin tone"),
    ("pink hair blue eyes", "two parts in one phrase"),
])
def test_bad_prompts_are_one_clear_line(text, message):
    with pytest.raises(AnimecolorError, match=message) as info:
        parse_prompt(text)
    assert "\n" not in str(info.value)


def test_encoding_rows_ids_and_the_null_prompt():
    text = encode(parse_prompt("pink hair, left eye #00ff00"))
    assert text.shape == (len(SLOTS), 4) and text.dtype == np.float32
    assert text[0, 0] == 2 + list(COLOURS).index("pink") and text[1, 0] == HEX
    assert abs(text[1, 1] - 0.8774) < 1e-3  # L of pure green is 87.7
    assert not text[2:].any()  # unspecified slots are the zero (null) rows
    assert not encode(parse_prompt("")).any()


def test_named_quantises_hex_in_cielab():
    prompt = named(parse_prompt("hair #f0a0c0, skin #e0b090, left eye #3366dd, right eye #3366dd"))
    assert prompt.slots["hair"].name == "pink" and prompt.slots["skin"].name == "tan"
    assert prompt.slots["iris_left"].name == "blue"


# -- captions -------------------------------------------------------------------------------------
def test_synthetic_caption_is_exact():
    colours = {"hair": "#112233", "iris_left": "#445566", "iris_right": "#778899", "skin": "#ffeedd",
               "clothes": "#123456", "background": "#abcdef"}
    prompt = parse_prompt(synthetic_caption(colours))
    assert {s: "#{:02x}{:02x}{:02x}".format(*c.rgb) for s, c in prompt.slots.items()} == colours


@pytest.mark.parametrize("tags, caption", [
    ("1girl blonde_hair blue_eyes smile school_uniform", "blonde hair, blue eyes"),
    # Danbooru sorts a post's tags: the tag string cannot say which eye is which, so nothing is said of them
    ("blue_eyes heterochromia pink_hair red_eyes", "pink hair"),
    ("heterochromia pink_hair red_eyes", "pink hair"),
    ("multicolored_hair blue_hair pink_hair green_eyes", "green eyes"),  # two hair colours: said nothing of hair
    ("gradient_hair pink_hair green_eyes", "green eyes"),  # one colour tag, but the hair is not one colour
    ("red_eyes blue_eyes", ""),  # two eye colours without heterochromia: ambiguous
    ("1boy solo", ""),
])
def test_booru_caption_from_colour_tags(tags, caption):
    assert booru_caption(tags) == caption


def test_animeface_caption_quantises_each_eye():
    caption = animeface_caption((240, 212, 125), (60, 100, 215), (200, 40, 50), (250, 226, 210))
    assert caption == "blonde hair, left eye blue, right eye red, pale skin"
    assert parse_prompt(caption)


def test_clean_records_caption_and_source(tiny_data):
    faces, pairs = tiny_data
    manifest = pd.read_csv(faces / "manifest.csv", dtype=str, keep_default_na=False)
    kept = manifest[manifest.status == "kept"]
    assert (kept.caption_source == "synthetic").all()
    row = kept.iloc[0]
    assert parse_prompt(row.caption).slots["hair"].rgb == tuple(int(row.color_hair[i:i + 2], 16) for i in (1, 3, 5))
    items = pd.read_csv(pairs / "train" / "items.csv", dtype=str, keep_default_na=False)
    assert items.caption.str.startswith("hair #").all()


def test_with_captions_prefers_synthetic_then_booru_then_animeface():
    from pipeline.data.clean import with_captions

    table = pd.DataFrame([
        {"status": "kept", "color_hair": "#102030", "tags": "pink_hair", "animeface_caption": "red hair"},
        {"status": "kept", "tags": "pink_hair smile", "animeface_caption": "red hair"},
        {"status": "kept", "tags": "smile", "animeface_caption": "red hair, blue eyes, pale skin"},
        {"status": "kept"},
        {"status": "rejected", "tags": "pink_hair"},
    ])
    out = with_captions(table)
    assert out.caption_source.tolist() == ["synthetic", "booru", "animeface", "none", ""]
    assert out.caption.tolist() == ["hair #102030", "pink hair", "red hair, blue eyes, pale skin", "", ""]


def test_animeface_captions_real_faces_at_full_resolution():
    from pathlib import Path

    from pipeline.data.clean import detect_faces
    from pipeline.data.imageio import read_rgb

    files = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces-256").glob("*.jpg"))[:20]
    if not files:
        pytest.skip("no real faces in ../shared/data")
    captions = [f[5] for path in files for f in detect_faces(read_rgb(path), 0.3)]
    if not captions:
        pytest.skip("animeface found no face (Pillow >= 12?)")
    for caption in captions:
        prompt = parse_prompt(caption)
        assert {"hair", "iris_left", "iris_right", "skin"} <= set(prompt.slots)


# -- caption training -----------------------------------------------------------------------------
def test_caption_text_drops_and_names_slots():
    caption = "hair #f0a0c0, left eye #3366dd, right eye #3366dd, skin #fae0cc"
    rng = np.random.default_rng(0)
    none = caption_text(caption, rng, CaptionConfig(p_slot=1.0, p_named=0.0))
    assert not none.any()
    kept = caption_text(caption, rng, CaptionConfig(p_slot=1.0, p_named=0.0), keep="hair")
    assert kept[0, 0] == HEX and not kept[1:].any()
    words = caption_text(caption, rng, CaptionConfig(p_slot=0.0, p_named=1.0))
    assert words[0, 0] == 2 + list(COLOURS).index("pink") and (words[:4, 0] >= 2).all()
    drops = [(caption_text(caption, np.random.default_rng(i), CaptionConfig(p_slot=0.3))[:4, 0] == 0).mean()
             for i in range(300)]
    assert 0.25 < np.mean(drops) < 0.35


def test_blank_region_sets_the_null_value_and_grows_one_pixel():
    reference = torch.full((3, 8, 8), 0.5)
    label = np.zeros((8, 8), np.uint8)
    label[2:4, 2:4] = REGION_IDS["hair"]
    out = blank_region(reference, label, "hair")
    assert (out[:, 1:5, 1:5] == 0).all() and (out[:, 6:, 6:] == 0.5).all() and (reference == 0.5).all()


def test_dataset_masks_a_captioned_region_and_keeps_its_text(tiny_data):
    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train", with_labels=True)
    masked = PairDataset(faces, pairs, "train", with_labels=True,
                         captions=CaptionConfig(p_empty=0.0, p_mask=1.0, p_recolour=0.0, p_slot=1.0, p_named=0.0))
    changed = 0
    for i in range(6):
        a, b = plain[(i, 7)], masked[(i, 7)]
        torch.testing.assert_close(a["sketch"], b["sketch"])  # the text draws come after the others
        torch.testing.assert_close(a["target"], b["target"])
        said = [SLOTS[k] for k in np.flatnonzero(b["text"][:, 0].numpy())]
        assert len(said) == 1  # p_slot = 1: only the masked slot's text is kept
        region = a["reference_label"] == REGION_IDS[said[0]]
        assert (b["reference"][:, region] == 0).all()  # blanked to the null value
        assert (b["reference_label"][region] == NO_REGION).all()  # and no longer that region's (attention, colour term)
        changed += int(not torch.equal(a["reference"], b["reference"]))
    assert changed == 6


def test_recolour_keeps_shading_and_other_pixels():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(3, 8, 8, generator=g) * 0.2
    label = np.zeros((8, 8), np.uint8)
    label[2:5, 2:5] = REGION_IDS["iris_left"]
    out = recolour_region(reference, label, "iris_left", np.array([0.5, -0.5, 0.0]))
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[1:6, 1:6] = True  # the region grown by one pixel
    torch.testing.assert_close(out[:, inside].mean(1), torch.tensor([0.5, -0.5, 0.0]))
    torch.testing.assert_close(out[:, inside] - out[:, inside].mean(1, keepdim=True),
                               reference[:, inside] - reference[:, inside].mean(1, keepdim=True))
    assert torch.equal(out[:, ~inside], reference[:, ~inside])


def test_dataset_recolours_a_region_keeps_its_true_text_and_empty_prompts_alter_nothing(tiny_data):
    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train", with_labels=True)
    recoloured = PairDataset(faces, pairs, "train", with_labels=True,
                             captions=CaptionConfig(p_empty=0.0, p_mask=0.0, p_recolour=1.0, p_slot=1.0, p_named=0.0))
    for i in range(4):
        a, b = plain[(i, 3)], recoloured[(i, 3)]
        said = [SLOTS[k] for k in np.flatnonzero(b["text"][:, 0].numpy())]
        assert len(said) == 1 and b["text"][SLOTS.index(said[0]), 0] == HEX  # the true colour, as its hex code
        region = torch.from_numpy(a["reference_label"].numpy() == REGION_IDS[said[0]])
        assert not torch.allclose(a["reference"][:, region], b["reference"][:, region])
        assert (b["reference_label"][region] == NO_REGION).all()
    hair_only = PairDataset(faces, pairs, "train", with_labels=True,
                            captions=CaptionConfig(p_empty=0.0, p_mask=0.0, p_recolour=1.0, p_slot=1.0,
                                                   recolour_slots=("hair",)))
    for i in range(4):
        said = [SLOTS[k] for k in np.flatnonzero(hair_only[(i, 3)]["text"][:, 0].numpy())]
        assert said == ["hair"]  # the only slot it may recolour
    empty = PairDataset(faces, pairs, "train", with_labels=True,
                        captions=CaptionConfig(p_empty=1.0, p_mask=1.0, p_recolour=1.0))
    for i in range(4):
        a, b = plain[(i, 3)], empty[(i, 3)]
        assert not b["text"].any() and torch.equal(a["reference"], b["reference"])
    rate = np.mean([not PairDataset(faces, pairs, "train", captions=CaptionConfig(p_empty=0.25))[(0, k)]["text"].any()
                    for k in range(200)])
    assert 0.17 < rate < 0.33


@pytest.fixture(scope="module")
def eye_pairs(tmp_path_factory):
    """(faces, pairs) folders of 8 one-colour-eyed synthetic faces at 64 px (both irises survive the warp)."""
    from pipeline.data.clean import CleanConfig, clean_dataset
    from pipeline.data.crawl import crawl_synthetic
    from pipeline.data.pairs import build_pairs
    from pipeline.data.tps import TPSConfig
    from pipeline.data.xdog import XDoGConfig

    root = tmp_path_factory.mktemp("eye_pairs")
    crawl_synthetic(root / "raw", 8, 64, seed=0, heterochromia_p=0.0)
    clean_dataset(root / "raw", root / "faces", CleanConfig(test_fraction=0.2), 64)
    build_pairs(root / "faces", root / "pairs", seed=0, xdog=XDoGConfig(), tps=TPSConfig())
    return root / "faces", root / "pairs"


def test_dataset_recolours_both_eyes_each_its_own_way_and_keeps_their_text(eye_pairs):
    faces, pairs = eye_pairs
    plain = PairDataset(faces, pairs, "train", with_labels=True)
    eyes = PairDataset(faces, pairs, "train", with_labels=True,
                       captions=CaptionConfig(p_empty=0.0, p_mask=0.0, p_recolour=0.0, p_recolour_eyes=1.0,
                                              p_slot=1.0, p_named=0.0, recolour_slots=("hair",)))
    seen = 0
    for i in range(4):
        a, b = plain[(i, 5)], eyes[(i, 5)]
        label = a["reference_label"].numpy()
        present = [s for s in ("iris_left", "iris_right") if (label == REGION_IDS[s]).any()]
        said = [SLOTS[k] for k in np.flatnonzero(b["text"][:, 0].numpy())]
        assert said == present  # p_slot 1: only the recoloured eyes are said (recolour_slots does not limit them)
        means = []
        for slot in present:
            region = torch.from_numpy(label == REGION_IDS[slot])
            assert not torch.allclose(a["reference"][:, region], b["reference"][:, region])
            assert (b["reference_label"][region] == NO_REGION).all()
            means.append(b["reference"][:, region].mean(1))
        if len(means) == 2:
            assert (means[0] - means[1]).abs().max() > 0.05  # each eye its own colour
            seen += 1
        outside = torch.from_numpy(~np.isin(label, [REGION_IDS[s] for s in present]))
        grown = torch.from_numpy(b["reference_label"].numpy() != NO_REGION) & outside
        assert torch.equal(a["reference"][:, grown], b["reference"][:, grown])
    assert seen >= 2



def test_dataset_repaints_the_targets_eyes_in_eye_words_and_says_them(eye_pairs):
    from pipeline.data.prompt import EYE_WORDS, slot_words

    assert slot_words("iris_left") == EYE_WORDS and "pale" in slot_words("skin")
    assert slot_words("iris_right", {"white": COLOURS["white"], "pink": COLOURS["pink"]}) == ("pink", "white")
    faces, pairs = eye_pairs
    plain = PairDataset(faces, pairs, "train", with_labels=True)
    off = PairDataset(faces, pairs, "train", with_labels=True,
                      captions=CaptionConfig(p_empty=0.0, p_mask=0.0, p_slot=1.0, p_named=1.0))
    repaint = PairDataset(faces, pairs, "train", with_labels=True,
                          captions=CaptionConfig(p_empty=0.0, p_mask=0.0, p_slot=1.0, p_named=1.0, p_repaint=1.0))
    words = list(COLOURS)
    pairs_seen = set()
    for i in range(6):
        a, b = plain[(i, 3)], repaint[(i, 3)]
        assert torch.equal(off[(i, 3)]["target"], a["target"])  # off: the target is untouched
        label, ref_label = a["label"].numpy(), a["reference_label"].numpy()
        said = {SLOTS[k]: words[int(b["text"][k, 0]) - 2] for k in np.flatnonzero(b["text"][:, 0].numpy())}
        present = [s for s in ("iris_left", "iris_right") if (label == REGION_IDS[s]).any()]
        assert list(said) == present  # p_slot 1: only the repainted eyes are said, as words (p_named 1)
        for slot in present:
            region = torch.from_numpy(label == REGION_IDS[slot])
            assert said[slot] in EYE_WORDS
            colour = torch.tensor(COLOURS[said[slot]], dtype=torch.float32) / 127.5 - 1
            pixels = b["target"][:, region]
            # shading kept: every pixel is the word's colour scaled by one factor per pixel
            cos = torch.nn.functional.cosine_similarity((pixels + 1).T, (colour + 1)[None], dim=1)
            assert cos.min() > 0.99
            assert (b["reference_label"][torch.from_numpy(ref_label == REGION_IDS[slot])] == NO_REGION).all()
        outside = torch.from_numpy(~np.isin(label, [REGION_IDS[s] for s in present]))
        assert torch.equal(a["target"][:, outside], b["target"][:, outside])
        assert torch.equal(a["reference"], b["reference"])  # the reference keeps its own eyes
        if len(present) == 2:
            pairs_seen.add((said["iris_left"], said["iris_right"]))
    assert any(left != right for left, right in pairs_seen)  # two words: heterochromia in words


def test_dataset_weights_the_regions_only_the_prompt_gives(eye_pairs):
    faces, pairs = eye_pairs
    kwargs = dict(p_empty=0.0, p_mask=0.0, p_slot=1.0, p_named=1.0, p_repaint=1.0)
    plain = PairDataset(faces, pairs, "train", with_labels=True, captions=CaptionConfig(**kwargs))
    weighted = PairDataset(faces, pairs, "train", with_labels=True, captions=CaptionConfig(altered_weight=20, **kwargs))
    assert "weight" not in plain[(0, 3)]  # 1: uniform, no weights carried
    for i in range(4):
        a, b = plain[(i, 3)], weighted[(i, 3)]
        assert torch.equal(a["target"], b["target"]) and torch.equal(a["text"], b["text"])  # same stream
        label = a["label"].numpy()
        said = [SLOTS[k] for k in np.flatnonzero(a["text"][:, 0].numpy())]  # the repainted eyes
        region = torch.from_numpy(np.isin(label, [REGION_IDS[s] for s in said]))
        assert b["weight"].shape == (1, *label.shape) and region.any() == bool(said)
        assert (b["weight"][0][region] == 20).all() and (b["weight"][0][~region] == 1).all()
    with pytest.raises(ValueError):
        CaptionConfig(altered_weight=0.5)

# -- the network and guidance ---------------------------------------------------------------------
def _text_model(seed=0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1, 2), heads=2, reference_attention=(8,),
                           reference_tokens=8, text=True)).eval()


def test_text_model_config_and_zero_init():
    model = _text_model()
    assert model.config.vocabulary == tuple(COLOURS)
    with pytest.raises(ValueError, match="text needs reference_attention"):
        UNetConfig(text=True)
    x, t = torch.randn(2, 7, 16, 16), torch.tensor([3, 500])
    text = torch.from_numpy(np.stack([encode(parse_prompt("pink hair"))] * 2))
    with torch.no_grad():
        # at initialisation every cross-attention and the pooled path are zero: the prompt changes nothing yet
        torch.testing.assert_close(model(x, t, text), model(x, t))
        torch.testing.assert_close(model(x, t), model(x, t, torch.zeros_like(text)))  # None = the null prompt
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(model(x, t, text), model(x, t))


def test_plain_model_refuses_a_prompt():
    model = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1, 2), heads=2))
    with pytest.raises(AnimecolorError, match="trained without text"):
        model(torch.randn(1, 7, 16, 16), torch.tensor([1]), torch.zeros(1, len(SLOTS), 4))


class _Recorder(torch.nn.Module):
    """A linear stand-in whose output depends on x, reference and text; records batch sizes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, text=None):
        self.calls.append(x.shape[0])
        bias = 0 if text is None else text.sum((1, 2)).view(-1, 1, 1, 1)
        return x[:, :3] * 0.5 + x[:, 4:7] + x[:, 3:4] + bias


def test_two_scale_guidance_formula_and_exact_special_cases():
    g = torch.Generator().manual_seed(0)
    x, sketch, ref = (torch.randn(2, c, 4, 4, generator=g) for c in (3, 1, 3))
    text = torch.randn(2, len(SLOTS), 4, generator=g)
    t = torch.tensor([5, 5])
    model = _Recorder()
    e = lambda r, p: model(torch.cat([x, sketch, r], 1), t, p)  # noqa: E731
    u, e_r, e_rt = e(torch.zeros_like(ref), torch.zeros_like(text)), e(ref, torch.zeros_like(text)), e(ref, text)
    model.calls.clear()
    torch.testing.assert_close(guided(model, sketch, ref, 2.0, text, 3.0)(x, t), u + 2 * (e_r - u) + 3 * (e_rt - e_r))
    assert model.calls == [6]  # three conditions, one batched forward
    model.calls.clear()
    assert torch.equal(guided(model, sketch, ref, 1.0, text, 1.0)(x, t), e_rt)  # exactly the plain model
    assert model.calls == [2]
    assert torch.equal(guided(model, sketch, ref, 1.0, None)(x, t), model(torch.cat([x, sketch, ref], 1), t))
    # text scale 0: the reference-only guidance, bit for bit
    assert torch.equal(guided(model, sketch, ref, 2.0, text, 0.0)(x, t), guided(model, sketch, ref, 2.0)(x, t))
    torch.testing.assert_close(guided(model, sketch, ref, 1.0, text, 2.0)(x, t), e_r + 2 * (e_rt - e_r))


# -- export and the CLI ---------------------------------------------------------------------------
def test_export_carries_the_vocabulary_and_colorize_follows_a_prompt(tiny_pretrained, model_file, tmp_path):
    from pipeline.colorize import load_model, model_vocabulary
    from pipeline.data.imageio import read_rgb, write_png
    from stages.cli import app

    model, _, info = load_model(model_file)
    assert model.config.text and list(info["vocabulary"]) == list(COLOURS)
    assert model_vocabulary(model, info)["pink"] == COLOURS["pink"]
    sketch = tmp_path / "drawing.png"
    lines = np.full((56, 34), 255, np.uint8)
    lines[14:42, 17] = 0
    write_png(sketch, lines)
    runner = CliRunner()
    out = tmp_path / "pink.png"
    result = runner.invoke(app, ["colorize", str(sketch), "--prompt", "pink hair, heterochromia, red eyes, blue eyes",
                                 "--text-guidance", "2", "--model", str(model_file), "-o", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert read_rgb(out).shape == (56, 34, 3)
    plain = tmp_path / "plain.png"
    reference = tmp_path / "ref.png"
    write_png(reference, np.full((32, 32, 3), (250, 150, 190), np.uint8))
    for args, path in ((["-r", str(reference)], plain), (["-r", str(reference), "-p", "aqua hair"], out)):
        result = runner.invoke(app, ["colorize", str(sketch), *args, "--model", str(model_file), "-o", str(path),
                                     "--steps", "2"])
        assert result.exit_code == 0, result.output
    from PIL import Image
    used = json.loads(Image.open(out).text["animecolor"])  # the prompt's default guidance: s_text 1
    assert used["prompt"] == "aqua hair" and used["text_guidance"] == SAMPLING.text_guidance == 1.0
    result = runner.invoke(app, ["colorize", str(sketch), "-p", "aqua hat", "--model", str(model_file), "-o", str(out)])
    assert result.exit_code != 0 and "unknown part" in result.output


def test_an_older_smaller_vocabulary_keeps_its_own_ids():
    """A model trained with fewer words encodes prompts in its own embedding order, never past it."""
    from pipeline.data.prompt import vocabulary_colours

    words = vocabulary_colours(("blue", "pink"))
    text = caption_text("hair #f0a0c0, left eye #3366dd, right eye #3366dd", np.random.default_rng(0),
                        CaptionConfig(p_slot=0.0, p_named=1.0), colours=words)
    assert text[0, 0] == 2 + 1 and text[1, 0] == 2 + 0  # pink is word 1 of this model, blue word 0
    with pytest.raises(AnimecolorError, match="unknown colour 'red'"):
        parse_prompt("red hair", words)
    with pytest.raises(AnimecolorError, match="does not know: mauve"):
        vocabulary_colours(("blue", "mauve"))


def test_painted_asks_the_named_colour_in_the_faces_own_shading():
    """The text benchmark's expected colour of a named region (`painted`): a true synthetic face
    repainted with its own caption gives back its own region means; the flat caption colour does
    not (the irises' gradient and rim), and repainting with another colour moves the region to it."""
    from pipeline.data.synthetic import render_face, sample_face
    from pipeline.evaluation import metrics as M
    from pipeline.evaluation.text_bench import _labs, _region_lab, painted

    rng = np.random.default_rng(3)
    specs = [sample_face(rng) for _ in range(6)]
    faces = [render_face(spec, 64) for spec in specs]
    images = torch.stack([to_tensor(img) for img, _ in faces])
    labels = np.stack([label for _, label in faces])
    captions = [parse_prompt(synthetic_caption({k[6:]: v for k, v in spec.attributes().items()
                                                if k.startswith("color_")})) for spec in specs]
    for region, own_floor in (("hair", 1.0), ("iris_left", 6.0), ("iris_right", 6.0)):
        truth = _region_lab(images, labels, region, 1)
        own = [c.slots[region] for c in captions]
        assert np.nanmean(M.delta_e(painted(images, labels, region, own, own, 1), truth)) < own_floor
        if region != "hair":
            assert np.nanmean(M.delta_e(_labs(own), truth)) > 12  # the flat swatch misses the true iris
        pink = [parse_prompt("pink hair").slots["hair"]] * len(own)
        to_pink = np.nanmean(M.delta_e(painted(images, labels, region, own, pink, 1), _labs(pink)))
        assert to_pink < np.nanmean(M.delta_e(truth, _labs(pink))) - 10
        assert np.isnan(painted(images, labels, region, [None] * len(own), own, 1)).all()
