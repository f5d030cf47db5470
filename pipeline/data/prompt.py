"""Colour prompts: the language that says what the reference lacks, and its encoding for the network.

A prompt is comma-separated phrases, in the Danbooru tag style anime users already write
(spaces or underscores alike, any case):

    pink_hair, blue eyes             a colour word and a part
    hair #ff66aa, #fff skin          a hex code (6 or 3 digits) before or after the part
    left eye red, right eye blue     one iris (left/right as you look at the picture)
    heterochromia, red eyes, blue eyes   two eye colours: the first is the left iris

Parts (slots): hair, left iris, right iris, skin, clothes, background; "eyes" sets both irises,
garment words (shirt, dress, uniform, ...) mean clothes. Colours: `COLOURS` (Danbooru's hair
and eye colours and a few skin tones) or a hex code. An unknown word, a part given two colours
or a malformed phrase is one `AnimecolorError` line that lists the close known words; nothing
is silently ignored. An empty prompt says nothing (every slot unspecified).

Encoding (`encode`): one row per slot, (SLOTS, 4) float32 = [value id, L / 100, a / 128, b / 128]
with value id 0 = unspecified (the row is all zero: the null text, as the null reference is
zero), 1 = a hex code, 2 + i = named colour i of the vocabulary. The network embeds the id and
the Lab value (so a hex code and a name both carry their exact colour).

Captions for training are prompts too (`synthetic_caption`, `booru_caption`, `animeface_caption`),
so one parser reads the user's words and the data's.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

import numpy as np
from skimage.color import rgb2lab

from pipeline.errors import AnimecolorError, shown

SLOTS = ("hair", "iris_left", "iris_right", "skin", "clothes", "background")
SLOT_NAMES = {"hair": "hair", "iris_left": "left eye", "iris_right": "right eye", "skin": "skin",
              "clothes": "clothes", "background": "background"}

# Named colours (RGB): Danbooru's hair colours and eye colours, plus skin tones. Order is the
# embedding index (append only: a trained model stores the list it was trained with).
COLOURS: dict[str, tuple[int, int, int]] = {
    "aqua": (60, 205, 205), "black": (35, 32, 42), "blonde": (245, 214, 120), "blue": (60, 100, 215),
    "light blue": (150, 200, 245), "dark blue": (35, 45, 120), "brown": (120, 75, 45),
    "light brown": (180, 128, 82), "green": (60, 170, 90), "dark green": (30, 90, 50),
    "light green": (150, 220, 140), "grey": (135, 135, 148), "orange": (238, 140, 50),
    "pink": (245, 160, 195), "purple": (140, 75, 195), "light purple": (195, 160, 232), "red": (200, 40, 50),
    "white": (242, 240, 246), "silver": (200, 202, 216), "yellow": (235, 200, 60),
    "pale": (255, 232, 216), "fair": (250, 218, 195), "tan": (222, 175, 140), "dark": (150, 100, 75),
}
ALIASES = {"gray": "grey", "blond": "blonde", "cyan": "aqua", "teal": "aqua", "violet": "purple",
           "golden": "yellow", "gold": "yellow", "light grey": "silver", "light gray": "silver",
           "tanned": "tan", "lavender": "light purple"}
SKIN_TONES = ("pale", "fair", "tan", "dark")
# The words a part of a face is said in: Danbooru's eye colours, its hair colours, the skin tones;
# any non-skin word for the rest (`slot_words`).
EYE_WORDS = ("blue", "red", "brown", "green", "purple", "yellow", "pink", "black", "aqua", "orange", "grey", "white")
HAIR_WORDS = tuple(n for n in COLOURS if n not in SKIN_TONES and n != "yellow")


def slot_words(slot: str, colours: dict[str, tuple[int, int, int]] | None = None) -> tuple[str, ...]:
    """The words of `colours` (default: the vocabulary) that `slot` is said in."""
    colours = COLOURS if colours is None else colours
    words = {"iris_left": EYE_WORDS, "iris_right": EYE_WORDS, "hair": HAIR_WORDS, "skin": SKIN_TONES}.get(
        slot, tuple(n for n in COLOURS if n not in SKIN_TONES))
    return tuple(w for w in words if w in colours)

PARTS = {"hair": ("hair",), "eyes": ("iris_left", "iris_right"), "eye": ("iris_left", "iris_right"),
         "iris": ("iris_left", "iris_right"), "irises": ("iris_left", "iris_right"),
         "left eye": ("iris_left",), "left iris": ("iris_left",), "right eye": ("iris_right",),
         "right iris": ("iris_right",), "skin": ("skin",), "background": ("background",),
         **{g: ("clothes",) for g in ("clothes", "clothing", "outfit", "shirt", "dress", "uniform", "jacket",
                                      "sweater", "hoodie", "coat", "kimono", "serafuku", "top", "blouse")}}
FLAGS = ("heterochromia",)

UNSPECIFIED, HEX = 0, 1  # value ids before the named colours
_HEX = re.compile(r"#([0-9a-f]{6}|[0-9a-f]{3})")


def lab_of(rgb) -> np.ndarray:
    """sRGB (..., 3) 0-255 -> CIELAB (..., 3), D65 (the benchmark's colour space)."""
    arr = np.asarray(rgb, dtype=np.float64) / 255.0
    return rgb2lab(arr.reshape(-1, 1, 3), channel_axis=-1).reshape(arr.shape)


@dataclass(frozen=True)
class Colour:
    rgb: tuple[int, int, int]
    name: str | None = None  # a vocabulary word, or None for a hex code

    def __str__(self) -> str:
        return self.name or hex_code(self.rgb)


def hex_code(rgb) -> str:
    """(r, g, b) -> '#rrggbb'."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


@dataclass
class Prompt:
    """slot -> colour for the slots the prompt names (the others are unspecified)."""

    slots: dict[str, Colour] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.slots)

    def __str__(self) -> str:
        return ", ".join(f"{SLOT_NAMES[s]} {c}" for s, c in self.slots.items())


def hex_rgb(code: str) -> tuple[int, int, int]:
    """'#rrggbb' or '#rgb' (the '#' optional) -> (r, g, b)."""
    code = code.lstrip("#")
    if len(code) == 3:
        code = "".join(c * 2 for c in code)
    return tuple(int(code[i:i + 2], 16) for i in (0, 2, 4))


def _colour(words: str, colours: dict[str, tuple[int, int, int]], phrase: str, part: str) -> Colour:
    if _HEX.fullmatch(words):
        return Colour(hex_rgb(words))
    name = ALIASES.get(words, words)
    if name in SKIN_TONES and PARTS[part] != ("skin",):
        raise AnimecolorError(f"prompt {shown(phrase)}: {shown(name)} is a skin tone (for {part} say e.g. 'black' or "
                              "'dark blue')")
    if name in colours:
        return Colour(tuple(colours[name]), name)
    if any(p in words.split() for p in PARTS):
        raise AnimecolorError(f"prompt {shown(phrase)}: two parts in one phrase (separate phrases with commas, "
                              "e.g. 'pink hair, blue eyes')")
    if words.startswith("#"):
        raise AnimecolorError(f"prompt {shown(phrase)}: {shown(words)} is not a hex colour (#rrggbb or #rgb)")
    known = list(colours) + list(ALIASES)
    close = difflib.get_close_matches(words, known, n=4, cutoff=0.6)
    hint = f"close: {', '.join(close)}" if close else f"known: {', '.join(colours)}, or #rrggbb"
    raise AnimecolorError(f"prompt {shown(phrase)}: unknown colour {shown(words)} ({hint})")


def _split(phrase: str) -> tuple[str, str]:
    """'pink hair' / 'hair pink' / 'left eye #f00' -> (colour words, part words)."""
    for part in sorted(PARTS, key=len, reverse=True):  # longest first: "left eye" before "eye"
        if phrase.endswith(" " + part):
            return phrase[: -len(part) - 1].strip(), part
        if phrase.startswith(part + " "):
            return phrase[len(part) + 1:].strip(), part
    words = phrase.split()
    tail, head = words[-1], words[0]
    close = difflib.get_close_matches(tail, list(PARTS), n=3, cutoff=0.5) or \
        difflib.get_close_matches(head, list(PARTS), n=3, cutoff=0.5)
    if len(words) == 1:
        if ALIASES.get(phrase, phrase) in COLOURS or _HEX.fullmatch(phrase):
            raise AnimecolorError(f"prompt {shown(phrase)}: {phrase} what? say the part, e.g. '{phrase} hair'")
        hint = f"close: {', '.join(close)}" if close else "say which part, e.g. 'pink hair'"
        raise AnimecolorError(f"prompt {shown(phrase)}: a colour needs a part, or this is an unknown word ({hint})")
    hint = f"close: {', '.join(close)}" if close else f"known: {', '.join(dict.fromkeys(PARTS))}"
    raise AnimecolorError(f"prompt {shown(phrase)}: unknown part ({hint})")


MAX_PROMPT_CHARS = 1000  # a dozen parts with long names fit in a few hundred


def parse_prompt(text: str, colours: dict[str, tuple[int, int, int]] | None = None) -> Prompt:
    """The prompt language (module docstring) -> Prompt; one clear error for anything it cannot read."""
    colours = COLOURS if colours is None else colours
    if len(text or "") > MAX_PROMPT_CHARS:
        raise AnimecolorError(f"prompt {shown(text)}: longer than {MAX_PROMPT_CHARS} characters "
                              "(one colour per part is all a prompt can say)")
    slots: dict[str, Colour] = {}
    eyes: list[Colour] = []  # "X eyes" phrases, in order (two of them with heterochromia)
    hetero = False
    for raw in _phrases(text or ""):
        phrase = " ".join(re.sub(r"[_:\-]", " ", raw).strip(" .!").lower().split())
        if not phrase:
            continue
        if phrase in FLAGS:
            hetero = True
            continue
        if phrase in PARTS:
            raise AnimecolorError(f"prompt {shown(phrase)}: no colour given (e.g. 'pink {phrase}')")
        if ALIASES.get(phrase, phrase) == "tan":  # Danbooru's `tan` tag is the skin tone
            phrase = "tan skin"
        words, part = _split(phrase)
        colour = _colour(words, colours, phrase, part)
        if PARTS[part] == ("iris_left", "iris_right"):
            eyes.append(colour)
            continue
        for slot in PARTS[part]:
            if slot in slots and slots[slot] != colour:
                raise AnimecolorError(f"prompt: {SLOT_NAMES[slot]} is given two colours ({slots[slot]}, {colour})")
            slots[slot] = colour
    if len(eyes) > 2 or (len(eyes) == 2 and not hetero and eyes[0] != eyes[1]):
        raise AnimecolorError(f"prompt: {len(eyes)} eye colours ({', '.join(map(str, eyes))}); for two different "
                              "eyes add 'heterochromia' (the first is the left iris) or say 'left eye X, right eye Y'")
    if eyes:
        for slot, colour in zip(("iris_left", "iris_right"), (eyes[0], eyes[-1])):
            if slot in slots and slots[slot] != colour:
                raise AnimecolorError(f"prompt: {SLOT_NAMES[slot]} is given two colours ({slots[slot]}, {colour})")
            slots[slot] = colour
    if hetero and slots.get("iris_left") == slots.get("iris_right"):
        raise AnimecolorError("prompt: 'heterochromia' needs two different eye colours "
                              "(e.g. 'heterochromia, red eyes, blue eyes' or 'left eye red, right eye blue')")
    return Prompt({s: slots[s] for s in SLOTS if s in slots})


def _phrases(text: str) -> list[str]:
    """Phrases split at commas, semicolons, new lines and ' and '; a Danbooru tag string
    ('pink_hair blue_eyes', every word joined by underscores) is split at spaces too."""
    out = []
    for chunk in re.split(r"[,;\n]|\band\b", text):
        words = chunk.split()
        out += words if len(words) > 1 and all("_" in w or w.lower() in FLAGS for w in words) else [chunk]
    return out


def nearest_name(rgb, colours: dict[str, tuple[int, int, int]] | None = None,
                 names: tuple[str, ...] | None = None) -> str:
    """The vocabulary word closest to `rgb` in CIELAB (among `names`; default: every non-skin word)."""
    colours = COLOURS if colours is None else colours
    names = names or tuple(n for n in colours if n not in SKIN_TONES)
    table = _lab_table(tuple((n, tuple(colours[n])) for n in names))
    return names[int(np.argmin(((table - lab_of(rgb)) ** 2).sum(-1)))]


@functools.lru_cache(maxsize=8)
def _lab_table(named: tuple) -> np.ndarray:
    return lab_of([rgb for _, rgb in named])


def named(prompt: Prompt, slots=None, colours: dict[str, tuple[int, int, int]] | None = None) -> Prompt:
    """The prompt with the hex colours of `slots` (default: all) replaced by their nearest colour word
    (skin among the skin tones): what a person would have said of an exact colour."""
    colours = COLOURS if colours is None else colours
    out = {}
    for slot, colour in prompt.slots.items():
        if colour.name is None and (slots is None or slot in slots):
            name = nearest_name(colour.rgb, colours, SKIN_TONES if slot == "skin" else None)
            colour = Colour(tuple(colours[name]), name)
        out[slot] = colour
    return Prompt(out)


def vocabulary_colours(names) -> dict[str, tuple[int, int, int]]:
    """A model's word list (`UNetConfig.vocabulary`, in embedding order) -> word: colour, from this
    vocabulary; a word this code does not know is one clear error."""
    missing = [n for n in names if n not in COLOURS]
    if missing:
        raise AnimecolorError(f"model vocabulary has words this animecolor does not know: {', '.join(missing)}")
    return {name: COLOURS[name] for name in names}


def encode(prompt: Prompt, colours: dict[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Prompt -> (len(SLOTS), 4) float32 [value id, L/100, a/128, b/128]; unspecified rows are zero."""
    names = list(COLOURS if colours is None else colours)
    out = np.zeros((len(SLOTS), 4), np.float32)
    for i, slot in enumerate(SLOTS):
        colour = prompt.slots.get(slot)
        if colour is None:
            continue
        lab = lab_of(colour.rgb)
        out[i] = (HEX if colour.name is None else 2 + names.index(colour.name), lab[0] / 100, lab[1] / 128,
                  lab[2] / 128)
    return out


# -- captions: training prompts made from the data itself, without human labelling ----------------

def synthetic_caption(colours: dict[str, str]) -> str:
    """Exact per-region colours of a synthetic face (its spec's `color_<region>` hex codes)."""
    return ", ".join(f"{SLOT_NAMES[s]} {colours[s]}" for s in SLOTS if colours.get(s))


MIXED_HAIR_TAGS = ("multicolored_hair", "gradient_hair", "streaked_hair", "two-tone_hair", "split-color_hair",
                   "colored_inner_hair", "rainbow_hair")


def booru_caption(tags: str) -> str:
    """The colour tags of a booru post ('blonde_hair blue_eyes smile' -> 'blonde hair, blue eyes'),
    in the prompt language. Left out, rather than said wrongly: tags that name no colour; a slot
    named twice; hair tagged as multicoloured; the eyes of a heterochromatic character (Danbooru's
    tag string is sorted alphabetically, so it cannot say which eye is which)."""
    words = tags.split()
    per_slot: dict[str, list[str]] = {}
    for tag in words:
        try:
            prompt = parse_prompt(tag.replace("_", " "))
        except AnimecolorError:
            continue
        for slot in prompt.slots:
            per_slot.setdefault(slot, []).append(tag.replace("_", " "))
    eyes = list(dict.fromkeys(per_slot.pop("iris_left", []) + per_slot.pop("iris_right", [])))
    if any(t in MIXED_HAIR_TAGS for t in words):
        per_slot.pop("hair", None)
    kept = [p[0] for p in per_slot.values() if len(p) == 1]
    if len(eyes) == 1 and "heterochromia" not in words:
        kept.append(eyes[0])
    caption = ", ".join(kept)
    try:
        parse_prompt(caption)
    except AnimecolorError:  # contradictory tags: say nothing rather than something wrong
        return ""
    return caption


def animeface_caption(hair, left_eye, right_eye, skin) -> str:
    """`animeface`'s colour estimates (RGB, image-left eye first) quantised to the vocabulary in CIELAB."""
    left, right = nearest_name(left_eye), nearest_name(right_eye)
    eyes = f"{left} eyes" if left == right else f"left eye {left}, right eye {right}"
    return f"{nearest_name(hair)} hair, {eyes}, {nearest_name(skin, names=SKIN_TONES)} skin"

