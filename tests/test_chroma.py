"""The reference's saturation after the model (`pipeline/chroma.py`, `colorize --match-chroma`)."""

import numpy as np
import pytest
from skimage.color import rgb2lab

from pipeline.chroma import match_chroma


def lab(rgb):
    return rgb2lab(rgb.astype(np.float64) / 255.0)


def chroma(rgb):
    values = lab(rgb)
    return np.hypot(values[..., 1], values[..., 2])


def hue(rgb):
    values = lab(rgb)
    return np.degrees(np.arctan2(values[..., 2], values[..., 1]))


@pytest.fixture
def pale_blue_and_skin():
    """A colour layer as a face model paints a figure: a pale blue dress beside a pale skin tone."""
    layer = np.empty((40, 60, 3), np.uint8)
    layer[:, :30] = (150, 165, 200)
    layer[:, 30:] = (235, 215, 205)
    return layer


@pytest.fixture
def reference():
    """The character's own colours: a strong blue and a skin tone, on a transparent background
    that is bright red (which must not count)."""
    ref = np.zeros((50, 50, 4), np.uint8)
    ref[..., :3] = (255, 0, 0)
    ref[:20, :, :3], ref[:20, :, 3] = (90, 160, 240), 255  # a blue the pale one's lightness can hold in sRGB
    ref[20:40, :, :3], ref[20:40, :, 3] = (240, 205, 185), 255
    return ref


def test_strength_zero_changes_nothing(pale_blue_and_skin, reference):
    out = match_chroma(pale_blue_and_skin, reference, 0.0)
    assert np.array_equal(out, pale_blue_and_skin) and out is not pale_blue_and_skin


def test_full_strength_takes_the_references_chroma_and_keeps_hue_and_lightness(pale_blue_and_skin, reference):
    out = match_chroma(pale_blue_and_skin, reference, 1.0)
    opaque = reference[..., 3] == 255
    # the two colours rank the same way in both pictures, so each takes its counterpart's chroma
    assert chroma(out[:, :30]).mean() == pytest.approx(chroma(reference[:20, :, :3]).mean(), abs=2.0)
    assert chroma(out[:, 30:]).mean() == pytest.approx(chroma(reference[20:40, :, :3]).mean(), abs=2.0)
    assert chroma(out).mean() == pytest.approx(chroma(reference[..., :3][opaque]).mean(), abs=2.0)
    assert np.abs(hue(out) - hue(pale_blue_and_skin)).max() < 2.0
    assert np.abs(lab(out)[..., 0] - lab(pale_blue_and_skin)[..., 0]).max() < 1.5


def test_half_strength_goes_half_way(pale_blue_and_skin, reference):
    before = chroma(pale_blue_and_skin[:, :30]).mean()
    full = chroma(match_chroma(pale_blue_and_skin, reference, 1.0)[:, :30]).mean()
    half = chroma(match_chroma(pale_blue_and_skin, reference, 0.5)[:, :30]).mean()
    assert before < half < full and half == pytest.approx((before + full) / 2, abs=1.0)


def test_only_the_mask_counts_and_changes(pale_blue_and_skin, reference):
    """A sprite's transparent pixels are neither matched nor changed."""
    mask = np.zeros(pale_blue_and_skin.shape[:2], bool)
    mask[:, :30] = True  # the dress alone: it takes the distribution's whole range
    out = match_chroma(pale_blue_and_skin, reference, 1.0, mask)
    assert np.array_equal(out[:, 30:], pale_blue_and_skin[:, 30:])
    assert chroma(out[:, :30]).mean() > chroma(pale_blue_and_skin[:, :30]).mean() + 10


def test_an_opaque_references_paper_does_not_count_when_masked_out(pale_blue_and_skin, reference):
    """The same reference on opaque white paper: all its pixels count and the paper's zero chroma
    pulls the match down; with its figure as `reference_mask` it matches as the transparent one."""
    on_paper = np.concatenate([reference[:40], np.full((60, 50, 4), 255, np.uint8)])  # more paper than figure
    figure = np.zeros(on_paper.shape[:2], bool)
    figure[:40] = True
    sprite = match_chroma(pale_blue_and_skin, reference, 1.0)
    assert chroma(match_chroma(pale_blue_and_skin, on_paper, 1.0)).mean() < chroma(sprite).mean() - 5
    assert np.array_equal(match_chroma(pale_blue_and_skin, on_paper, 1.0, reference_mask=figure), sprite)


def test_a_grey_reference_greys_the_layer(pale_blue_and_skin):
    grey = np.full((20, 20, 3), 128, np.uint8)
    out = match_chroma(pale_blue_and_skin, grey, 1.0)
    assert chroma(out).max() < 1.0


def test_nothing_to_match_changes_nothing(pale_blue_and_skin, reference):
    transparent = reference.copy()
    transparent[..., 3] = 0
    assert np.array_equal(match_chroma(pale_blue_and_skin, transparent, 1.0), pale_blue_and_skin)
    empty = np.zeros(pale_blue_and_skin.shape[:2], bool)
    assert np.array_equal(match_chroma(pale_blue_and_skin, reference, 1.0, empty), pale_blue_and_skin)


def test_a_large_reference_is_read_at_a_stride_with_the_same_result(pale_blue_and_skin, reference, monkeypatch):
    """A huge reference costs what one of REFERENCE_PIXELS does, and its distribution is the same."""
    import pipeline.chroma as C

    big = np.repeat(np.repeat(reference, 20, 0), 20, 1)  # 1,000 x 1,000: 4 times REFERENCE_PIXELS below
    small = match_chroma(pale_blue_and_skin, reference, 1.0)
    monkeypatch.setattr(C, "REFERENCE_PIXELS", 250_000)
    assert len(C._opaque_pixels(big)) <= 250_000
    assert np.abs(match_chroma(pale_blue_and_skin, big, 1.0).astype(int) - small).max() <= 1


def test_lightness_takes_the_references_off_its_lines_and_keeps_the_hue(pale_blue_and_skin, reference):
    """`match_lightness`: the masked pixels' L* goes to the reference's distribution (its pixels off
    its lines only: a line's black is not a colour the layer should take); a*, b* stay."""
    from pipeline.chroma import match_lightness

    inked = reference.copy()
    inked[::4, :, :3] = 0  # every fourth row a black line
    paper = np.ones(inked.shape[:2], bool)
    paper[::4] = False
    mask = np.ones(pale_blue_and_skin.shape[:2], bool)
    out = match_lightness(pale_blue_and_skin, inked, 1.0, mask, paper)
    opaque = reference[..., 3] == 255
    assert lab(out)[..., 0].mean() == pytest.approx(lab(reference[..., :3][opaque])[..., 0].mean(), abs=1.5)
    assert np.abs(hue(out) - hue(pale_blue_and_skin)).max() < 2.0
    with_lines = match_lightness(pale_blue_and_skin, inked, 1.0, mask)  # the lines counted: darker
    assert lab(with_lines)[..., 0].mean() < lab(out)[..., 0].mean() - 5
    half = match_lightness(pale_blue_and_skin, inked, 0.5, mask, paper)
    before, full = lab(pale_blue_and_skin)[..., 0].mean(), lab(out)[..., 0].mean()
    assert lab(half)[..., 0].mean() == pytest.approx((before + full) / 2, abs=1.0)


def test_lightness_changes_only_the_mask_and_nothing_at_strength_zero(pale_blue_and_skin, reference):
    from pipeline.chroma import match_lightness

    mask = np.zeros(pale_blue_and_skin.shape[:2], bool)
    mask[:, :30] = True
    out = match_lightness(pale_blue_and_skin, reference, 1.0, mask)
    assert np.array_equal(out[:, 30:], pale_blue_and_skin[:, 30:]) and not np.array_equal(out, pale_blue_and_skin)
    assert np.array_equal(match_lightness(pale_blue_and_skin, reference, 0.0, mask), pale_blue_and_skin)
    nothing = np.zeros_like(reference)  # a fully transparent reference: nothing to match
    assert np.array_equal(match_lightness(pale_blue_and_skin, nothing, 1.0, mask), pale_blue_and_skin)


def _evened_by_brute_force(colour, labels, sigma):
    """`even_regions` written out on the whole picture, one label at a time (no boxes, no shortcut)."""
    import cv2

    from pipeline.chroma import firmness

    values = lab(colour)
    firm = firmness(values)
    out = values.copy()
    for label in np.unique(labels[labels > 0]):
        inside = (labels == label).astype(np.float64)
        for ch, w in enumerate((firm * inside,) * 3):
            blur = lambda a: cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)  # noqa: E731
            out[..., ch][inside > 0] = (blur(values[..., ch] * w) / np.maximum(blur(w), 1e-12))[inside > 0]
    from pipeline.chroma import rgb8_pixels

    result = colour.copy()
    result[labels > 0] = rgb8_pixels(out[labels > 0])
    return result


def test_even_regions_fills_pale_holes_with_the_regions_colour_and_nothing_crosses_a_line():
    """A jacket the tiles left blotchy (blue with paper-white holes) beside a skin region: the holes
    turn blue, the skin keeps its colour, and the blue does not cross into it."""
    from pipeline.chroma import even_regions

    layer = np.empty((80, 120, 3), np.uint8)
    layer[:, :60] = (60, 90, 200)  # a blue jacket ...
    layer[20:40, 10:30] = layer[50:70, 30:50] = (250, 250, 250)  # ... with paper-white holes
    layer[:, 60:] = (235, 205, 190)  # skin
    labels = np.zeros((80, 120), np.int32)
    labels[:, :58], labels[:, 62:] = 1, 2  # a line between them (label 0: left alone)
    out = even_regions(layer, labels, 30.0)
    holes = np.zeros((80, 120), bool)
    holes[20:40, 10:30] = holes[50:70, 30:50] = True
    assert chroma(out)[holes].mean() > 0.6 * chroma(layer[:1, :1]).item()  # the holes are blue now
    assert np.abs(hue(out)[holes] - hue(layer[:1, :1]).item()).max() < 8
    assert np.abs(out[:, 62:].astype(int) - layer[:, 62:]).max() <= 1  # the skin: evened against itself
    assert np.array_equal(out[:, 58:62], layer[:, 58:62])  # the line's pixels untouched
    assert np.array_equal(even_regions(layer, labels, 0.0), layer)
    assert np.array_equal(even_regions(layer, np.zeros_like(labels), 30.0), layer)


def test_darken_rim_gives_a_pale_halo_beside_a_line_its_areas_evened_colour_and_nothing_else():
    """Beside a line inside a dark blue jacket the model left a pale halo (the pixels the evening
    leaves as painted): within reach of the jacket, a halo pixel paler than the jacket's evened
    colour by more than RIM_MARGIN takes that colour; one paler by less, a darker one, one out of
    reach, one outside the rim mask and the labelled pixels keep theirs; a halo pixel on the skin's
    side of the line takes the skin's colour, its nearest area's, not the jacket's."""
    from pipeline.chroma import RIM_MARGIN, darken_rim

    layer = np.empty((20, 40, 3), np.uint8)
    layer[:, :20], layer[:, 20:] = (40, 60, 140), (230, 200, 185)  # jacket | skin
    labels = np.zeros((20, 40), np.int32)
    labels[:, :16], labels[:, 24:] = 1, 2  # the line at 19-20, its seal 16-23 unlabelled
    rim = labels == 0
    rim[:, 19:21] = False  # the line's own pixels
    layer[:, 16:19] = (200, 210, 235)  # the pale halo on the jacket's side ...
    layer[5, 16] = (48, 68, 148)  # ... one pixel paler than the jacket by less than the margin
    layer[6, 16] = (10, 20, 60)  # ... one darker
    layer[:, 21:24] = (250, 250, 250)  # on the skin's side: paler than the skin
    evened = layer.copy()  # as `even_regions` leaves it: its areas flat already, the rest as painted
    assert lab(layer[5:6, 16])[0, 0] - lab(layer[:1, 0])[0, 0] < RIM_MARGIN < lab(layer[:1, 16])[0, 0] - lab(
        layer[:1, 0])[0, 0]
    out = darken_rim(layer, evened, labels, rim, reach=4)
    halo = np.zeros((20, 40), bool)
    halo[:, 16:19] = True
    halo[5:7, 16] = False
    assert (out[halo] == layer[0, 0]).all()  # the jacket's colour
    assert (out[:, 21:24] == layer[0, 39]).all()  # the skin's, from its own side
    assert np.array_equal(out[5:7, 16], evened[5:7, 16])  # kept: not paler by the margin, or darker
    assert np.array_equal(out[labels > 0], evened[labels > 0])
    assert np.array_equal(out[:, 19:21], evened[:, 19:21])  # the line, not in the rim mask
    assert np.array_equal(darken_rim(layer, evened, labels, rim, reach=0.5), evened)  # out of reach
    assert np.array_equal(darken_rim(layer, evened, np.zeros_like(labels), rim, reach=4), evened)


def test_even_regions_weighs_a_dark_colour_as_firmly_as_a_strong_one():
    """Hair the model painted half dark grey and half a muted brown (its stripes finer than the
    Gaussian): evened, it is a mix of the two, not the brown alone, as when only chroma counted;
    and a tile painting black outweighs one leaving paper white, as a coloured one does."""
    from pipeline.chroma import even_regions
    from pipeline.faces import confidence

    dark, brown = (50, 47, 46), (140, 105, 80)  # L* 20 and 47, C* 2 and 22
    layer = np.full((80, 80, 3), dark, np.uint8)
    layer[:, ::2] = brown
    lightness = lab(even_regions(layer, np.ones((80, 80), np.int32), 20.0))[30:50, 30:50, 0].mean()
    assert abs(lightness - (19.7 + 47.3) / 2) < 8  # chroma alone: 46.8, the brown
    black, white = np.full((32, 32, 3), (22, 20, 26), np.uint8), np.full((32, 32, 3), 245, np.uint8)
    assert confidence(black, 40).min() > 10 * confidence(white, 40).max()


def test_even_regions_keeps_shading_larger_than_its_sigma():
    """A skirt shaded from dark to light over 200 px keeps its shading at a sigma of 8 px."""
    from pipeline.chroma import even_regions

    ramp = np.linspace(90, 230, 200)
    layer = np.stack([ramp * 0.6, ramp * 0.4, ramp * 0.3], -1)[None].repeat(30, 0).round().astype(np.uint8)
    out = even_regions(layer, np.ones((30, 200), np.int32), 8.0)
    lightness = lab(out)[15, :, 0]
    assert lightness[-20] - lightness[20] > 0.8 * (lab(layer)[15, -20, 0] - lab(layer)[15, 20, 0])


def test_even_regions_equals_the_whole_picture_blur_per_label():
    """The boxes and the narrow-label mean give the same as blurring the whole picture per label."""
    from pipeline.chroma import even_regions

    rng = np.random.default_rng(4)
    layer = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    labels = np.zeros((70, 90), np.int32)
    labels[5:60, 3:40], labels[10:65, 45:88], labels[2:5, 50:53] = 1, 2, 3  # 3: far narrower than sigma
    labels[30:35, 10:20] = 0  # a hole in label 1
    out, brute = even_regions(layer, labels, 9.0), _evened_by_brute_force(layer, labels, 9.0)
    assert np.abs(out[labels < 3].astype(int) - brute[labels < 3]).max() <= 1
    small = labels == 3  # the mean, which a 3 px box at sigma 9 all but is
    assert np.abs(out[small].astype(int) - brute[small]).max() <= 2
    assert np.array_equal(out[labels == 0], layer[labels == 0])


def test_even_regions_wide_gaussians_are_blurred_small_at_the_same_result():
    """A sigma of 40 px is blurred on a copy shrunk to about 8 px (`chroma._blur`): within 3 levels
    of the full-size blur per label, a sigma-1000 blur still runs, and a strip narrower than the
    shrink factor is blurred at full size."""
    import cv2

    from pipeline.chroma import _blur, even_regions

    rng = np.random.default_rng(5)
    blotches = cv2.GaussianBlur(rng.normal(128, 60, (160, 200, 3)), (0, 0), 6)
    layer = np.clip(blotches + rng.normal(0, 20, blotches.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((160, 200), np.int32)
    labels[10:150, 5:120], labels[20:140, 125:195] = 1, 2
    out, brute = even_regions(layer, labels, 40.0), _evened_by_brute_force(layer, labels, 40.0)
    assert np.abs(out.astype(int) - brute).max() <= 3 and np.abs(out.astype(int) - brute).mean() < 0.5
    assert even_regions(layer, labels, 1000.0).shape == layer.shape
    strip = rng.normal(0, 1, (3, 90))
    assert np.allclose(_blur(strip, 40.0), cv2.GaussianBlur(strip, (0, 0), 40.0, borderType=cv2.BORDER_CONSTANT))
