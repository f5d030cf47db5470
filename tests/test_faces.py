"""The face pass (`pipeline/faces.py`): a larger drawing's faces, and its figure in face-sized tiles,
coloured again at the scale the model was trained on and blended into the whole picture."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import pipeline.colorize as C
from pipeline.chroma import FIRM_DARK, RIM_MARGIN, lab_pixels
from pipeline.colorize import LINES, ColorizeOptions, colorize_layers, load_model
from pipeline.data.imageio import flatten_alpha, read_user_image
from pipeline.faces import Mosaic, Square, confidence, drawing_faces, resize_square, tile_count, tiles
from pipeline.hints import paper_background, sealed_regions

SPRITE = Path("/usr/share/games/renpy/the_question/game/images/sylvie green normal.png")
REFERENCE = Path("/usr/share/games/renpy/the_question/game/images/sylvie blue smile.png")


def test_blend_replaces_the_square_inside_and_nothing_outside():
    colour = np.zeros((100, 120, 3), np.uint8)
    square = Square(20, 30, 40)
    out = square.blend(colour, np.full((40, 40, 3), 200, np.uint8))
    assert out[50, 40].tolist() == [200] * 3  # the middle: the face pass's colour
    assert 0 < out[31, 40, 0] < 200  # near the square's edge: feathered
    outside = np.ones(colour.shape[:2], bool)
    outside[30:70, 20:60] = False
    assert not out[outside].any()


def test_squares_past_the_picture_edge_blend_and_accumulate_their_inside_part():
    colour = np.zeros((50, 50, 3), np.uint8)
    square = Square(-10, 30, 40)  # left and bottom edges outside
    out = square.blend(colour, np.full((40, 40, 3), 90, np.uint8))
    assert out[45, 5].tolist() == [90] * 3 and not out[:30].any()
    mosaic = Mosaic((50, 50, 3))
    mosaic.add(square, np.full((40, 40, 3), 90.0))
    covered = mosaic.cover[..., 0] > 0
    assert covered[30:, :30].all() and not covered[:30].any()
    np.testing.assert_allclose(mosaic.total[covered] / mosaic.norm[covered], 90.0)
    mosaic.add(Square(60, 60, 10), np.ones((10, 10, 3)))  # wholly outside: nothing, no error


def test_overlapping_tiles_trust_the_one_that_commits_to_a_colour():
    """Two tiles over the same pixels, one painting blue and one near-white paper: the mean leans
    to the blue by `confidence`; how far the tiles cover the picture does not depend on it."""
    blue, white = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 245, np.uint8)
    blue[:] = (60, 110, 220)
    assert confidence(blue, 40).shape == (40, 40) and confidence(blue, 40).min() > 10 * confidence(white, 40).max()
    square = Square(0, 0, 40)
    plain, firm = Mosaic((40, 40, 3)), Mosaic((40, 40, 3))
    for image in (blue, white):
        plain.add(square, resize_square(image, 40).astype(np.float64))
        firm.add(square, resize_square(image, 40).astype(np.float64), confidence(image, 40))
    picture = np.full((40, 40, 3), 255, np.uint8)
    middle = (20, 20)
    assert plain.over(picture)[middle].tolist() == [152, 178, 232]  # the plain mean: a pale wash
    assert np.abs(firm.over(picture)[middle].astype(int) - blue[0, 0]).max() <= 3
    np.testing.assert_array_equal(plain.cover, firm.cover)


def _covers(grid: list[Square], shape) -> bool:
    """Every pixel of a picture of `shape` lies under some square of `grid`."""
    covered = np.zeros(shape, bool)
    for t in grid:
        covered[max(t.y0, 0):t.y0 + t.side, max(t.x0, 0):t.x0 + t.side] = True
    return bool(covered.all())


def test_tiles_cover_the_picture_through_the_face_and_map_onto_the_reference():
    face, shape = Square(37, 52, 30), (200, 130)
    grid = tiles(face, shape)
    assert face in grid and {t.side for t in grid} == {30}
    assert tile_count(face, shape) == len(grid)
    assert _covers(grid, shape)
    ref_face = Square(100, 10, 60)
    assert face.mapped(face, ref_face) == ref_face
    assert Square(52, 67, 30).mapped(face, ref_face) == Square(130, 40, 60)  # half a side right and down


@pytest.mark.parametrize("face_side, scale, side", [(60, 0.7, 42), (60, 1.5, 90), (30, 0.7, 24)])  # 21: MIN_SIDE
def test_tile_scale_sets_the_side_and_the_grid_still_runs_through_the_face(face_side, scale, side):
    face, shape = Square(37, 52, face_side), (400, 260)
    grid = tiles(face, shape, scale)
    assert {t.side for t in grid} == {side} and tile_count(face, shape, scale) == len(grid)
    assert Square(face.x0, face.y0, side) in grid  # a tile shares the face's top left corner
    steps = {b.x0 - a.x0 for a, b in zip(grid, grid[1:]) if b.y0 == a.y0}
    assert steps == {side // 2}  # half-overlapping
    assert _covers(grid, shape)
    assert len(tiles(face, shape, 0.7)) > len(tiles(face, shape)) > len(tiles(face, shape, 1.5))


@pytest.fixture(scope="module")
def sprite():
    if not SPRITE.is_file() or not REFERENCE.is_file():
        pytest.skip("apt-get install renpy-thequestion (done by .ci/run)")
    rgba = read_user_image(SPRITE)
    lines = LINES.sketch(flatten_alpha(rgba), 0.5)
    return np.dstack([lines] * 3 + [rgba[..., 3]]), read_user_image(REFERENCE)


def test_a_figure_gets_its_face_coloured_again_and_keeps_its_alpha(model_file, sprite):
    drawing, reference = sprite
    model, diffusion, info = load_model(model_file)
    faces = drawing_faces(flatten_alpha(drawing))
    assert len(faces) == 1 and faces[0].side < 0.5 * max(drawing.shape[:2])

    def run(**kw):  # the model's own chroma: the match to the reference's is global (test_chroma.py)
        opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines", match_chroma=0.0, **kw)
        (colored,), notice = colorize_layers(model, diffusion, drawing, reference, opts, [opts.seed], info=info)
        return colored, notice

    whole, notice = run(faces=False, even_regions=0.0)  # coloured whole, a picture is evened at its own scale
    assert notice is None
    face_only, notice = run(faces=True, tiles=False, match_lightness=0.0, even_regions=0.0)
    assert notice.startswith("1 face coloured again at face scale, from the reference's face")
    f = faces[0]
    inside = np.zeros(drawing.shape[:2], bool)
    inside[max(f.y0, 0):f.y0 + f.side, max(f.x0, 0):f.x0 + f.side] = True
    assert np.array_equal(face_only.colour[~inside], whole.colour[~inside])
    assert not np.array_equal(face_only.colour[inside], whole.colour[inside])
    lit, _ = run(faces=True, tiles=False, even_regions=0.0)  # the figure outside its face: the reference's lightness
    assert np.array_equal(lit.colour[inside], face_only.colour[inside])
    assert not np.array_equal(lit.colour[~inside], face_only.colour[~inside])
    # `--even-regions`: the figure outside its face evened out inside its line-enclosed regions, the face kept
    evened, _ = run(faces=True, tiles=False, match_lightness=0.0)
    core = np.zeros(drawing.shape[:2], bool)  # the face square less its feather (`Square.weight`)
    part = f.inside(core.shape)
    core[part[0], part[1]] = f.weight()[part[2], part[3], 0] == 1
    assert np.array_equal(evened.colour[core], face_only.colour[core])
    opaque = drawing[..., 3] > 0
    seal = round(C.CLOSE_GAPS * f.side)  # its areas found with the outline's gaps sealed
    labels = np.where(~inside & opaque, sealed_regions(evened.lines, seal), 0)
    same = (labels[1:] == labels[:-1]) & (labels[1:] > 0)  # vertical neighbours inside one region
    roughness = lambda c: np.abs(np.diff(c.astype(int), axis=0)).sum(-1)[same].mean()  # noqa: E731
    assert roughness(evened.colour) < 0.5 * roughness(face_only.colour)
    beside = (sealed_regions(evened.lines, seal) == 0) & ~inside  # within the seal of a line: as painted,
    moved = beside & (evened.colour != face_only.colour).any(-1)  # but a pale halo takes its area's colour
    assert moved.sum() < 0.5 * beside.sum()
    assert (lab_pixels(face_only.colour[moved])[:, 0] > lab_pixels(evened.colour[moved])[:, 0] + RIM_MARGIN - 0.5).all()
    tiled, notice = run()
    assert "face-sized tiles" in notice
    assert not np.array_equal(tiled.colour[~inside], whole.colour[~inside])
    for colored in (whole, face_only, tiled):
        assert np.array_equal(colored.alpha, drawing[..., 3]) and colored.image().shape == drawing.shape
    # the reference's lightness (`--match-lightness`) goes onto the figure, not onto its face
    own, matched = run(match_lightness=0.0)[0], run(match_lightness=1.0)[0]
    assert np.array_equal(own.colour[core], matched.colour[core])
    assert np.abs(own.colour[~inside & opaque].astype(int) - matched.colour[~inside & opaque]).mean() > 1


def test_an_opaque_figures_paper_stays_white_under_the_lightness_match(model_file, sprite):
    """A drawing on opaque paper (no alpha): the figure takes the reference's lightness and is
    evened out, the paper around it is not (it was greyed with it). The figure is told from the
    paper with its outline's gaps sealed and the frame's bottom edge as a line (its skirt, cut off
    there, was taken for paper)."""
    drawing, reference = sprite
    paper = np.dstack([flatten_alpha(drawing), np.full(drawing.shape[:2], 255, np.uint8)])
    model, diffusion, info = load_model(model_file)
    outs = []
    for lightness, even in ((0.0, 0.0), (1.0, 1.0)):  # nor does the evening out of the figure's regions
        opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines", match_chroma=0.0, match_lightness=lightness,
                               even_regions=even, keep_paper=False)
        (colored,), _ = colorize_layers(model, diffusion, paper, reference, opts, [3], info=info)
        assert colored.alpha is None
        outs.append(colored.colour.astype(int))
    around = drawing[..., 3] == 0  # the sprite's transparent background, white paper here
    side = drawing_faces(flatten_alpha(drawing))[0].side  # the paper reaching the edge, the outline's gaps
    background = paper_background(colored.lines, close=round(C.CLOSE_GAPS * side), bottom=False)  # sealed
    assert background[around].mean() > 0.95 and np.array_equal(outs[0][background], outs[1][background])
    assert (~background)[~around].mean() > 0.95  # the figure, cut off by the frame's bottom, is not paper
    recovered = paper_background(colored.lines) & ~background & ~around  # paper to the mask before 2026-12-06
    assert recovered.mean() > 0.2 and (outs[0] != outs[1]).any(-1)[recovered].mean() > 0.5  # now matched, evened
    # the saturation match keeps to the figure: the paper's colours do not move with it
    opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines", match_chroma=1.0, match_lightness=0.0, even_regions=0.0,
                           keep_paper=False)
    (saturated,), _ = colorize_layers(model, diffusion, paper, reference, opts, [3], info=info)
    assert np.array_equal(saturated.colour.astype(int)[background], outs[0][background])
    assert np.abs(saturated.colour.astype(int)[~around] - outs[0][~around]).mean() > 1
    assert (outs[0] != outs[1]).any(-1)[around].mean() < 0.01  # pixels in gaps the lines enclose or seal
    assert np.abs(outs[0][~around] - outs[1][~around]).mean() > 1


def test_an_opaque_figures_paper_is_kept_as_drawn(model_file, sprite, monkeypatch):
    """A figure on opaque cream paper, read as drawn (`--no-auto-levels`): the background areas the
    model left near the paper come back as the drawing was read (`--keep-paper`, the default): white in the colour layer, so the
    picture's paper is the line layer's grey, or that grey without the lines over it; the figure
    and anything a few px past the paper do not move; `--paint-paper` keeps the model's colours
    there; two variations are both said; a hint on the paper still colours it; a sprite with
    alpha is left to its alpha. (The tiny test model paints
    the paper any colour: the tint is widened so that every background area counts, and the
    figure beside an area is not consulted, then it is, then the tint is narrowed so that none
    counts; which areas count is `test_plain_paper_keeps_the_paper_...` and
    `test_plain_paper_leaves_a_pale_area_...`.)"""
    from dataclasses import replace

    import pipeline.hints
    from skimage.color import deltaE_ciede2000, rgb2lab

    from pipeline.hints import Hint, binarize_lines, hint_masks, paper_tone, plain_paper

    monkeypatch.setattr(pipeline.hints, "PAPER_TINT", 500.0)
    reach = C.PAPER_REACH
    monkeypatch.setattr(C, "PAPER_REACH", 0.0)

    drawing, reference = sprite
    cream = np.array([250, 245, 230])
    rgb = np.round(flatten_alpha(drawing) * (cream / 255)).astype(np.uint8)  # the lines on cream paper
    paper = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    model, diffusion, info = load_model(model_file)
    opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines", auto_levels=False)  # the cream read as drawn
    (levelled,), _ = colorize_layers(model, diffusion, paper, reference, replace(opts, auto_levels=True), [3], info=info)
    assert np.median(levelled.lines) == 255  # by default (`scan.py`) the cream is levelled to white
    (kept,), said = colorize_layers(model, diffusion, paper, reference, opts, [3], info=info)
    (painted,), said_painted = colorize_layers(model, diffusion, paper, reference, replace(opts, keep_paper=False),
                                               [3], info=info)
    side = drawing_faces(flatten_alpha(drawing))[0].side
    background = paper_background(kept.lines, close=round(C.PAPER_SEAL * side), bottom=False)
    white = np.full(3, 255.0)  # the colour layer's paper: the lines, multiplied over it, are the paper
    chosen = plain_paper(background, painted.colour, white)
    core = cv2.erode((drawing[..., 3] >= 128).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # off the alpha rim
    assert chosen.mean() > 0.2 and chosen[core].mean() < 0.002
    assert (kept.colour[chosen] == 255).all() and (painted.colour[chosen] != 255).any(-1).mean() > 0.5
    grey = np.dstack([kept.lines] * 3)  # the cream paper as the drawing was read: its line layer
    assert np.array_equal(kept.image()[chosen], grey[chosen]) and abs(np.median(grey[chosen]) - 245) <= 2
    far = cv2.dilate(chosen.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(kept.colour[far], painted.colour[far])
    assert f"the paper around the figure kept as drawn ({chosen.mean():.0%} of the picture)" in said
    assert "paper" not in said_painted
    (unlined,), _ = colorize_layers(model, diffusion, paper, reference, replace(opts, keep_lines=False), [3], info=info)
    tone = paper_tone(grey, background)  # without the lines over it, the colour layer's paper is that grey
    assert np.abs(tone - 245).max() <= 2 and (unlined.colour[plain_paper(background, painted.colour, tone)] == tone).all()
    (varied, _), said_two = colorize_layers(model, diffusion, paper, reference, opts, [3, 4], info=info)
    assert np.array_equal(varied.colour, kept.colour) and "kept as drawn in 2 of 2 variations" in said_two
    corner = Hint(2, 2, (200, 30, 30), "2,2,#c81e1e")  # a hint on the paper colours it in the picture
    (hinted,), _ = colorize_layers(model, diffusion, paper, reference, replace(opts, hints=(corner,)), [3], info=info)
    region = hint_masks((corner,), kept.lines)[0]
    lab = lambda rgb: rgb2lab(np.asarray(rgb, np.float64).reshape(-1, 1, 3) / 255)[:, 0]  # noqa: E731
    assert deltaE_ciede2000(np.median(lab(hinted.image()[region]), 0), lab((200, 30, 30))[0]) <= 1
    (sprite_out,), sprite_said = colorize_layers(model, diffusion, drawing, reference, opts, [3], info=info)
    assert "paper" not in sprite_said and sprite_out.alpha is not None
    monkeypatch.setattr(C, "PAPER_REACH", reach)  # each area told from the figure beside it, as colorize does
    figure = ~background & (binarize_lines(kept.lines) == 255)
    by_figure = plain_paper(background, painted.colour, white, figure=figure, reach=round(reach * side))
    assert by_figure.sum() < chosen.sum()  # the tiny model paints the paper like the figure: fewer areas
    (told,), said_told = colorize_layers(model, diffusion, paper, reference, opts, [3], info=info)
    assert (told.colour[by_figure] == 255).all()
    taken_out = chosen & ~by_figure & ~(cv2.dilate(by_figure.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    assert taken_out.any() and np.array_equal(told.colour[taken_out], painted.colour[taken_out])
    assert np.array_equal(told.colour[~by_figure & far], painted.colour[~by_figure & far])
    monkeypatch.setattr(pipeline.hints, "PAPER_TINT", 0.0)  # no area near enough: the model's colours stay
    (untinted,), said_untinted = colorize_layers(model, diffusion, paper, reference, opts, [3], info=info)
    assert np.array_equal(untinted.colour, painted.colour) and "paper" not in said_untinted


def test_an_opaque_references_paper_is_left_out_of_the_match(model_file, sprite, monkeypatch):
    """A reference without transparency (a JPEG of the character on white): where the drawing's figure
    alone is matched (a sprite, or a figure off its paper), the reference's saturation and lightness
    come from its figure alone, off the white paper around it (sealed as the drawing's); before a
    coloured wall, from all of it; with its alpha kept, from its opaque pixels; a drawing without a
    figure mask, from the whole reference."""
    drawing, reference = sprite
    opaque_reference = np.dstack([flatten_alpha(reference), np.full(reference.shape[:2], 255, np.uint8)])
    model, diffusion, info = load_model(model_file)
    seen = []
    real_chroma, real_lightness = C.match_chroma, C.match_lightness
    monkeypatch.setattr(C, "match_chroma", lambda *a, **k: seen.append(("chroma", a[4])) or real_chroma(*a, **k))
    monkeypatch.setattr(C, "match_lightness", lambda *a, **k: seen.append(("lightness", a[4])) or real_lightness(*a, **k))
    opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines")
    colorize_layers(model, diffusion, drawing, opaque_reference, opts, [3], info=info)
    (_, chroma_mask), (_, lightness_mask) = sorted(seen)
    truth = reference[..., 3] >= 128  # the reference sprite's own figure
    assert chroma_mask.shape == truth.shape and truth[chroma_mask].mean() > 0.97 and chroma_mask[truth].mean() > 0.95
    assert not (lightness_mask & ~chroma_mask).any() and lightness_mask[truth].mean() > 0.5  # its lines left out too
    seen.clear()  # the same character before a blue wall: the wall is no paper, the whole picture counts
    walled = np.dstack([flatten_alpha(reference, (40, 90, 200)), np.full(reference.shape[:2], 255, np.uint8)])
    colorize_layers(model, diffusion, drawing, walled, opts, [3], info=info)
    assert dict(seen)["chroma"].mean() > 0.97
    monkeypatch.setattr(C, "MIN_FIGURE", 1.01)  # as if its paper ran into its figure
    seen.clear()
    colorize_layers(model, diffusion, drawing, opaque_reference, opts, [3], info=info)
    assert dict(seen)["chroma"] is None  # its saturation counts whole; its lightness still leaves out the paper
    assert (dict(seen)["lightness"] & ~truth).mean() < 0.02 and dict(seen)["lightness"][truth].mean() > 0.2
    seen.clear()
    colorize_layers(model, diffusion, drawing, reference, opts, [3], info=info)  # alpha kept: its opaque pixels
    assert dict(seen)["chroma"] is None
    seen.clear()
    crop = np.dstack([flatten_alpha(drawing)[:200, 100:300], np.full((200, 200), 255, np.uint8)])  # no face, no alpha
    colorize_layers(model, diffusion, crop, opaque_reference, opts, [3], info=info)
    assert seen == [("chroma", None)]


def test_a_face_picture_gets_no_face_pass(model_file, sprite):
    """A face crop's one pass is at face scale already: the face pass's options change nothing
    (`--even-regions` evens it at its own scale: test_hints.py)."""
    drawing, reference = sprite
    face = drawing_faces(flatten_alpha(drawing))[0]
    crop = cv2.resize(face.crop(flatten_alpha(drawing)), (128, 128), interpolation=cv2.INTER_AREA)
    assert drawing_faces(crop) == []
    model, diffusion, info = load_model(model_file)
    rgba = np.dstack([crop, np.full((128, 128), 255, np.uint8)])
    outs = []
    for faces, lightness in ((True, 0.5), (False, 0.5), (True, 1.0)):  # nor the figure's lightness
        opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines", faces=faces, match_lightness=lightness)
        (colored,), notice = colorize_layers(model, diffusion, rgba, reference, opts, [3], info=info)
        assert notice is None
        outs.append(colored.image())
    assert all(np.array_equal(outs[0], out) for out in outs[1:])


def test_too_many_tiles_fall_back_to_the_faces_and_progress_counts_steps(model_file, sprite, monkeypatch):
    drawing, reference = sprite
    model, diffusion, info = load_model(model_file)
    monkeypatch.setattr(C, "MAX_TILES", 3)
    monkeypatch.setattr(C, "MAX_BATCH", 1)  # the whole picture and its face in two chunks: progress still per step
    steps = []
    opts = ColorizeOptions(sample_steps=3, seed=1, mode="lines")
    (_,), notice = colorize_layers(model, diffusion, drawing, reference, opts, [1], step_progress=steps.append,
                                   info=info)
    assert notice.startswith("1 face coloured again") and "(at most 3)" in notice
    assert steps == [1, 1, 1]


def test_each_seed_of_a_batch_is_its_own_single_run(model_file, sprite, monkeypatch):
    """Variations with the face pass and tiles: picture k of a batch equals a run with seed k alone,
    also when the views are sampled in several chunks."""
    drawing, reference = sprite
    model, diffusion, info = load_model(model_file)
    opts = ColorizeOptions(sample_steps=2, mode="lines")
    monkeypatch.setattr(C, "MAX_BATCH", 16)
    both, notice = colorize_layers(model, diffusion, drawing, reference, opts, [4, 9], info=info)
    assert "face-sized tiles" in notice
    for seed, colored in zip((4, 9), both):
        (alone,), _ = colorize_layers(model, diffusion, drawing, reference, opts, [seed], info=info)
        assert np.array_equal(alone.image(), colored.image())
    assert not np.array_equal(both[0].colour, both[1].colour)


def _views(monkeypatch, drawing_square, reference_square, reference, tiles=True, tile_scale=1.0, align=True):
    """`_face_views` on a blank 300 x 200 drawing with one line box, the detections given."""
    rgb = np.full((300, 200, 3), 255, np.uint8)
    cv2.rectangle(rgb, (20, 20), (180, 280), (0, 0, 0), 2)
    monkeypatch.setattr(C, "drawing_faces", lambda image: [drawing_square])
    monkeypatch.setattr(C, "largest_face_square", lambda image: reference_square)
    lines = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([rgb, np.full((300, 200), 255, np.uint8)])
    return C._face_views(rgba, reference, lines, 32,
                         ColorizeOptions(mode="lines", tiles=tiles, tile_scale=tile_scale, align=align), False)[:2]


def test_a_face_picture_is_told_by_its_largest_face(monkeypatch):
    """`face_picture`: a face whose square is more than half the drawing's longer side; not a small
    face in a figure, not a drawing with none found."""
    import pipeline.faces as F

    rgb = np.full((400, 300, 3), 255, np.uint8)
    for found, portrait in (([(50, 60, 200, 200, 0.9, "")], True), ([(100, 40, 60, 60, 0.9, "")], False), ([], False)):
        monkeypatch.setattr(F, "detect_faces", lambda image, likelihood: found)  # noqa: B023
        assert F.face_picture(rgb) is portrait


def test_a_face_missed_at_the_drawings_size_is_sought_at_half_then_enlarged(monkeypatch):
    """`detected`: animeface reads the picture at its own size first; only when it finds nothing
    there, at half, then at 1.5x capped at `DETECT_LONGEST`; a find's box comes back in the
    picture's own pixels."""
    import pipeline.faces as F

    seen = []

    def fake(image, likelihood, at=None):
        seen.append(image.shape[:2])
        return [(10, 20, 30, 40, 0.9, "")] if image.shape[0] == at else []

    rgb = np.full((400, 300, 3), 255, np.uint8)
    monkeypatch.setattr(F, "detect_faces", lambda image, likelihood: fake(image, likelihood, 400))
    assert F.detected(rgb) == [(10, 20, 30, 40, 0.9, "")] and seen == [(400, 300)]  # found at its own size
    seen.clear()
    monkeypatch.setattr(F, "detect_faces", lambda image, likelihood: fake(image, likelihood, 200))
    assert F.detected(rgb) == [(20, 40, 60, 80, 0.9, "")] and seen == [(400, 300), (200, 150)]
    seen.clear()
    monkeypatch.setattr(F, "detect_faces", lambda image, likelihood: fake(image, likelihood, 600))
    assert F.detected(rgb) == [(10 / 1.5, 20 / 1.5, 20, 40 / 1.5, 0.9, "")] and seen[-1] == (600, 450)
    assert F.largest_face_square(rgb) == F.face_square((10 / 1.5, 20 / 1.5, 20, 40 / 1.5), rgb.shape)
    seen.clear()
    monkeypatch.setattr(F, "detect_faces", lambda image, likelihood: fake(image, likelihood, -1))
    assert F.detected(np.full((1200, 900, 3), 255, np.uint8)) == []
    assert seen == [(1200, 900), (600, 450), (1536, 1152)]  # enlarged to at most DETECT_LONGEST
    seen.clear()
    assert F.detected(np.full((2000, 900, 3), 255, np.uint8)) == [] and seen == [(2000, 900), (1000, 450)]


def test_lucys_face_is_found_in_her_lines_at_half_size():
    """Lucy (renpy-demo) with her glasses: animeface finds no face in her XDoG lines at the
    sprite's size, but at half; the square found lies over her face (the colour picture's)."""
    path = Path("/usr/share/games/renpy/demo/game/images/lucy happy.png")
    if not path.is_file():
        pytest.skip("apt-get install renpy-demo (done by .ci/run)")
    from pipeline.data.clean import detect_faces
    from pipeline.faces import MIN_LIKELIHOOD, largest_face_square

    rgb = flatten_alpha(read_user_image(path))
    lines = np.dstack([LINES.sketch(rgb, 0.5)] * 3)
    assert detect_faces(lines, MIN_LIKELIHOOD) == []
    (found,) = drawing_faces(lines)
    face = largest_face_square(rgb)
    across = min(found.x0 + found.side, face.x0 + face.side) - max(found.x0, face.x0)
    down = min(found.y0 + found.side, face.y0 + face.side) - max(found.y0, face.y0)
    inter = max(0, across) * max(0, down)
    assert inter / face.side ** 2 > 0.6 and 0.8 < found.side / face.side < 1.6


def test_a_soft_drawings_face_and_tiles_are_redrawn_by_xdog_too(monkeypatch):
    """`redrawn` (`relined`: a pencil drawing): every view's model-size sketch is the training XDoG
    of its shrunk crop of the line layer, as the whole drawing's is; otherwise the shrunk crop."""
    lines = np.full((300, 200), 255, np.uint8)
    cv2.rectangle(lines, (20, 20), (180, 280), 170, 3)  # grey pencil strokes
    cv2.circle(lines, (90, 70), 20, 150, 2)
    face = Square(60, 40, 60)
    monkeypatch.setattr(C, "drawing_faces", lambda image: [face])
    monkeypatch.setattr(C, "largest_face_square", lambda image: face)
    rgba = np.dstack([lines] * 3 + [np.full((300, 200), 255, np.uint8)])
    reference = np.full((300, 200, 4), 255, np.uint8)
    for redrawn in (False, True):
        views = C._face_views(rgba, reference, lines, 32, ColorizeOptions(mode="lines", align=False), False,
                              redrawn)[0]
        assert len(views) > 2 and not views[-1].tile
        for v in views:
            shrunk = cv2.resize(v.square.crop(lines, 255), (32, 32), interpolation=cv2.INTER_AREA)
            assert np.array_equal(v.sketch, LINES.sketch(shrunk, 0.5) if redrawn else shrunk)
    assert (views[-1].sketch < 128).any()  # the grey circle, drawn hard


def test_tiles_without_a_reference_face_or_with_a_prompt_only(monkeypatch):
    face = Square(60, 40, 60)
    reference = np.full((300, 200, 4), 255, np.uint8)
    views, notice = _views(monkeypatch, face, None, reference)
    assert [v.tile for v in views] == [False] and notice.endswith("no tiles: they need the reference's face")
    assert views[0].reference.shape == (32, 32, 3)  # the whole reference stands in for its face
    views, notice = _views(monkeypatch, face, None, None)  # a prompt alone: tiles with no reference
    tiled = [v for v in views if v.tile]
    assert tiled and all(v.reference is None for v in views) and f"in {len(tiled)} face-sized tiles" in notice
    assert all(np.any(v.sketch < 200) for v in tiled)  # blank paper is left to the whole picture
    views, notice = _views(monkeypatch, face, None, None, tiles=False)
    assert len(views) == 1 and "tiles" not in notice


def test_tile_scale_shrinks_the_tiles_and_their_parts_of_the_reference(monkeypatch):
    """`--tile-scale 0.5` on a 100 px face: 50 px tiles on the drawing, each with a part of the
    reference scaled alike (the reference's face is 150 px: 75 px parts), and the notice says so. The
    reference placed by the face squares alone (`align=False`): the ramp's dark end reads as ink,
    which laying the lines would move onto the drawing's box."""
    face, ref_face = Square(10, 10, 100), Square(30, 60, 150)  # the face's corner tile holds the box's corner
    ramp = np.tile(np.arange(200, dtype=np.uint8), (300, 1))  # every column its own grey: a crop's place shows
    reference = np.dstack([ramp] * 3 + [np.full((300, 200), 255, np.uint8)])
    views, notice = _views(monkeypatch, face, ref_face, reference, tile_scale=0.5, align=False)
    tiled = [v for v in views if v.tile]
    assert {v.square.side for v in tiled} == {50} and f"in {len(tiled)} 0.5x-face-sized tiles" in notice
    at_face = next(v for v in tiled if (v.square.x0, v.square.y0) == (face.x0, face.y0))
    part = Square(face.x0, face.y0, 50).mapped(face, ref_face)
    assert part == Square(30, 60, 75)
    np.testing.assert_array_equal(at_face.reference, C.letterbox(part.crop(reference[..., :3]), 32)[0])
    whole, _ = _views(monkeypatch, face, ref_face, reference, align=False)
    assert len(tiled) > len([v for v in whole if v.tile]) > 0
    assert [v.square for v in views if not v.tile] == [face]  # the face pass keeps the face's own square
    monkeypatch.setattr(C, "MAX_TILES", len(tiles(face, (300, 200))))  # the default fits, 0.5 does not
    views, notice = _views(monkeypatch, face, ref_face, reference, tile_scale=0.5, align=False)
    assert not any(v.tile for v in views) and notice.endswith("at tile scale 0.5; a larger --tile-scale takes fewer)")
    views, notice = _views(monkeypatch, face, ref_face, reference, align=False)
    assert any(v.tile for v in views) and "face-sized tiles" in notice


def test_with_align_each_tiles_part_is_sought_by_its_lines_and_the_notice_counts_the_moved(monkeypatch):
    """With `--align` every tile's part of the reference goes through `local_source` (from where the
    laid faces put it); a moved part that still lies on the reference is the tile's reference crop,
    and the notice counts the tiles moved; one moved off the reference keeps the faces' part; without
    `--align` the faces' placement stands and nothing is sought."""
    face, ref_face = Square(60, 40, 60), Square(60, 40, 60)
    ramp = np.tile(np.arange(200, dtype=np.uint8), (300, 1))  # every column its own grey: a crop's place shows
    reference = np.dstack([ramp] * 3 + [np.full((300, 200), 255, np.uint8)])
    monkeypatch.setattr(C, "register", lambda lines, ref_lines, f, rf: (rf, False, 0.0))  # laid where the faces say
    sought = []

    def spy(lines, reference_lines, tile, source):
        sought.append((tile, source))
        return Square(source.x0 + 40, source.y0, source.side), 0.5  # 40 px right, on the reference or not

    monkeypatch.setattr(C, "local_source", spy)
    views, notice = _views(monkeypatch, face, ref_face, reference)
    tiled = [v for v in views if v.tile]
    assert len(sought) >= len(tiled) > 0 and all(source == t.mapped(face, ref_face) for t, source in sought)
    kept = [v for v in tiled if Square(v.square.x0 + 40, v.square.y0, v.square.side).coverage((300, 200))
            >= C.MIN_REFERENCE_COVERAGE]
    assert kept and f", {len(kept)} placed by their lines" in notice
    view = kept[0]
    moved = Square(view.square.x0 + 40, view.square.y0, view.square.side)
    np.testing.assert_array_equal(view.reference, C.letterbox(moved.crop(reference[..., :3]), 32)[0])
    off = [v for v in tiled if v not in kept]  # moved off the reference's right edge: the faces' part stays
    assert off and all(np.array_equal(v.reference, C.letterbox(v.square.crop(reference[..., :3]), 32)[0]) for v in off)
    sought.clear()
    views, notice = _views(monkeypatch, face, ref_face, reference, align=False)
    assert not sought and "placed by their lines" not in notice


def test_tiles_past_the_picture_edge_see_paper_there_not_ink(monkeypatch):
    """A tile or face square that reaches past the drawing's edge shows the model white paper
    outside the picture (the lines were once padded with 0: a black band the model coloured)."""
    views, _ = _views(monkeypatch, Square(60, 40, 60), None, None)
    corner = [v for v in views if v.tile and v.square.x0 < 0 and v.square.y0 < 0]
    assert corner
    for view in corner:
        outside = round(-view.square.x0 * 32 / view.square.side) - 1  # columns left of the picture
        assert outside >= 1 and view.sketch[:, :outside].min() > 200, view.sketch[:, :outside].min()


def test_tiles_whose_part_of_the_reference_is_outside_it_are_left_out(monkeypatch):
    face = Square(60, 20, 60)
    reference = np.full((100, 200, 4), 255, np.uint8)  # a bust: the figure's lower half maps below it
    views, _ = _views(monkeypatch, face, Square(60, 0, 60), reference)
    tiled = [v.square for v in views if v.tile]
    assert tiled and max(t.y0 for t in tiled) < 100
    bust = Square(60, 0, 60)
    assert all(t.mapped(face, bust).coverage((100, 200)) >= C.MIN_REFERENCE_COVERAGE for t in tiled)


def test_face_paper_diagnostic_scores_the_three_ways_and_refuses_bad_input(model_file, tmp_path):
    """scripts/diagnostics/face_paper.py: each face coloured with the paper painted, kept by its tint
    alone and kept as colorize keeps it, each scored, the sheet drawn; bad numbers or an empty folder
    are one line, exit 2, nothing written."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [tuple(int(v) for v in rng.integers(60, 200, 3)) for _ in range(2)]
    run = _face_diagnostic("face_paper.py", model_file, tmp_path, 64, colours)
    done = run("--json", str(tmp_path / "out.json"), "--sheet", str(tmp_path / "sheet.png"), "--rows", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["faces"] == 2 and [r["face"] for r in out["rows"]] == ["a.png", "b.jpg"]
    assert set(out["mean"]) == {"painted", "tint_alone", "beside"}
    assert all(0 <= r[w]["kept"] <= 1 and np.isfinite(r[w]["psnr"]) for r in out["rows"] for w in out["mean"])
    assert all(r["painted"]["kept"] == 0 for r in out["rows"])
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (4 * 256, 256)
    _refuses_bad_input(run, tmp_path, "face_paper")


def test_whole_figures_diagnostic_scores_each_pass_against_the_truth(model_file, sprite, tmp_path):
    """scripts/diagnostics/whole_figures.py: every pass scored on the same pairs, the upscaled truth
    beside them; a missing model is one line, exit 2."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    script = str(root / "scripts/diagnostics/whole_figures.py")
    done = subprocess.run([sys.executable, script, "--model", str(model_file), "--steps", "2", "--limit", "1",
                           "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert len(result["pairs"]) == 5
    means = result["mean"]
    assert set(means) == {"whole", "face_pass", "tiles", "tiles_chroma", "upscaled_truth"}
    assert means["tiles_chroma"]["chroma_ratio"] != means["tiles"]["chroma_ratio"]
    assert means["whole"]["face_passes"] == 0 and means["tiles"]["face_passes"] == 1
    assert means["upscaled_truth"]["psnr"] > means["whole"]["psnr"] > 3
    assert all(0 <= m["lpips"] < 1 and m["chroma_ratio"] > 0 for m in means.values())
    assert means["tiles"]["psnr"] != means["whole"]["psnr"]
    assert 0 <= means["tiles"]["background_off_white"] <= 1 and not result["paper"]
    paper = subprocess.run([sys.executable, script, "--model", str(model_file), "--steps", "1", "--limit", "1", "--paper",
                            "--opaque-reference", "--json", str(tmp_path / "paper.json")],
                           capture_output=True, text=True, timeout=600, cwd=root)
    assert paper.returncode == 0 and "drawings on white paper" in paper.stdout, paper.stderr[-2000:]
    assert "references opaque on white" in paper.stdout and not result["opaque_reference"]
    on_paper = json.loads((tmp_path / "paper.json").read_text())
    assert on_paper["paper"] and on_paper["keep_paper"] and on_paper["opaque_reference"]
    assert on_paper["mean"]["tiles"]["face_passes"] == 1
    assert on_paper["mean"]["whole"]["face_passes"] == 0  # the paper's notice is not a face pass
    assert 0 < on_paper["mean"]["whole"]["background_off_white"] <= 1  # measured: the lines' bleed and the paint
    scan = subprocess.run([sys.executable, script, "--model", str(model_file), "--steps", "1", "--limit", "1", "--scan",
                           "--json", str(tmp_path / "scan.json")], capture_output=True, text=True, timeout=600, cwd=root)
    assert scan.returncode == 0 and "drawings as photos of scans" in scan.stdout, scan.stderr[-2000:]
    photographed = json.loads((tmp_path / "scan.json").read_text())
    assert photographed["scan"] and photographed["paper"] and not result["scan"] and not on_paper["scan"]
    drawn = subprocess.run([sys.executable, script, "--model", str(model_file), "--steps", "1", "--limit", "1",
                            "--pencil", "--reline", "on", "--firm-dark", "0", "--json", str(tmp_path / "pencil.json")],
                           capture_output=True, text=True, timeout=600, cwd=root)
    assert drawn.returncode == 0 and "pencil drawings, reline on" in drawn.stdout, drawn.stderr[-2000:]
    pencilled = json.loads((tmp_path / "pencil.json").read_text())
    assert pencilled["pencil"] and pencilled["reline"] == "on" and not result["pencil"] and result["reline"] == "auto"
    assert pencilled["firm_dark"] == 0 and result["firm_dark"] == FIRM_DARK > 0 and "firm below L* 0" in drawn.stdout
    assert pencilled["mean"]["upscaled_truth"]["psnr"] != result["mean"]["upscaled_truth"]["psnr"]  # other lines
    unknown = subprocess.run([sys.executable, script, "--model", str(model_file), "--reline", "always"],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == ["whole_figures: reline 'always': expected auto, on, off"]
    missing = subprocess.run([sys.executable, script, "--model", str(tmp_path / "absent.safetensors")],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [f"whole_figures: {tmp_path / 'absent.safetensors'}: model file "
                                                   "not found (train with `dvc repro`, or `animecolor export`)"]
    bad = subprocess.run([sys.executable, script, "--model", str(model_file), "--tile-scale", "3"],
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == ["whole_figures: tile scale 3.0: must be a number from 0.5 to 2.0"]
    dark = subprocess.run([sys.executable, script, "--model", str(model_file), "--match-lightness", "nan"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert dark.returncode == 2 and dark.stdout == ""
    assert dark.stderr.strip().splitlines() == ["whole_figures: match lightness nan: must be a number from 0 to 1"]
    even = subprocess.run([sys.executable, script, "--model", str(model_file), "--even-regions", "-1"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert even.returncode == 2 and even.stdout == ""
    assert even.stderr.strip().splitlines() == ["whole_figures: even regions -1.0: must be a number from 0 to 2"]
    unpapered = subprocess.run([sys.executable, script, "--model", str(model_file), "--paint-paper"],
                               capture_output=True, text=True, timeout=300, cwd=root)
    assert unpapered.returncode == 2 and "--paint-paper needs --paper" in unpapered.stderr.splitlines()[-1]
    darkest = subprocess.run([sys.executable, script, "--model", str(model_file), "--firm-dark", "120"],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert darkest.returncode == 2 and "--firm-dark 120: an L* from 0 to 100" in darkest.stderr.splitlines()[-1]
    for flag, value, line in (("--warp-reference", "0.9", "--warp-reference 0.9: a number from 0 to 0.5"),
                              ("--paper-reach", "nan", "--paper-reach nan: a number from 0 to 1"),
                              ("--local-reach", "-1", "--local-reach -1: a number from 0 to 2")):
        refused = subprocess.run([sys.executable, script, "--model", str(model_file), flag, value],
                                 capture_output=True, text=True, timeout=300, cwd=root)
        assert refused.returncode == 2 and line in refused.stderr.splitlines()[-1] and "Traceback" not in refused.stderr
    bent = subprocess.run([sys.executable, script, "--model", str(model_file), "--steps", "1", "--limit", "1",
                           "--warp-reference", "0.2", "--local-reach", "0", "--json", str(tmp_path / "bent.json")],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert bent.returncode == 0 and "references warped 0.2" in bent.stdout, bent.stderr[-2000:]
    warped = json.loads((tmp_path / "bent.json").read_text())
    assert (warped["warp_reference"], warped["local_reach"]) == (0.2, 0.0) and result["warp_reference"] == 0


def test_cli_colours_a_figure_with_the_face_pass_and_records_it(model_file, sprite, tmp_path):
    """`animecolor colorize`: the face pass is on by default and says so in one note; `--no-faces`
    turns it off; each PNG stores which ran; the sprite keeps its alpha."""
    from PIL import Image
    from typer.testing import CliRunner

    from stages.cli import app

    drawing, reference = sprite
    Image.fromarray(drawing).save(tmp_path / "figure.png")
    Image.fromarray(reference).save(tmp_path / "reference.png")
    runner = CliRunner()
    outputs = {}
    for flags in ([], ["--no-tiles"], ["--no-faces"],
                  ["--tile-scale", "0.7", "--match-chroma", "0.3", "--match-lightness", "0.2", "--even-regions", "0.6",
                   "--no-align", "--paint-paper"]):
        out = tmp_path / f"out{''.join(flags)}.png"
        result = runner.invoke(app, ["colorize", str(tmp_path / "figure.png"), "-r", str(tmp_path / "reference.png"),
                                     "--model", str(model_file), "-o", str(out), "--steps", "2", *flags])
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())
        assert ("1 face coloured again at face scale" in said) == (flags != ["--no-faces"])
        assert ("face-sized tiles" in said) == (flags == [] or "--tile-scale" in flags)
        assert ("0.7x-face-sized tiles" in said) == ("--tile-scale" in flags)
        image = Image.open(out)
        params = json.loads(image.text["animecolor"])
        assert (params["faces"], params["tiles"]) == (flags != ["--no-faces"], flags != ["--no-tiles"])
        scaled = "--tile-scale" in flags  # each number reaches its own knob
        assert ((params["tile_scale"], params["match_chroma"], params["match_lightness"], params["even_regions"])
                == ((0.7, 0.3, 0.2, 0.6) if scaled else (1.0, 0.5, 0.5, 0.3)))
        assert params["align"] is not scaled and params["keep_paper"] is not scaled
        assert image.mode == "RGBA" and np.array_equal(np.asarray(image)[..., 3], drawing[..., 3])
        outputs[tuple(flags)] = np.asarray(image)
    assert len({a.tobytes() for a in outputs.values()}) == 4


def test_the_app_colours_a_figure_with_the_face_pass_unless_it_is_unticked(model_file, sprite, tmp_path):
    from PIL import Image

    from pipeline.app import Colorizer, PageInputs, request

    drawing, reference = sprite
    Image.fromarray(drawing).save(tmp_path / "figure.png")
    Image.fromarray(reference).save(tmp_path / "reference.png")
    colorizer = Colorizer(model_file, "cpu", tmp_path / "results")
    calls = []
    figure, ref = str(tmp_path / "figure.png"), str(tmp_path / "reference.png")
    on = request(colorizer, 1, PageInputs("upload", figure, reference=ref, steps=2),
                 progress=lambda d, t: calls.append((d, t)))
    assert "1 face coloured again at face scale" in on.status and "face-sized tiles" in on.status
    assert calls == [(0, 2), (1, 2), (2, 2)]  # the views' chunks still move the bar once per DDIM step
    off = request(colorizer, 1, PageInputs("upload", figure, reference=ref, steps=2, face_pass=False))
    assert "face" not in off.status
    with Image.open(on.paths[0]) as a, Image.open(off.paths[0]) as b:
        assert a.mode == "RGBA" and not np.array_equal(np.asarray(a), np.asarray(b))
        faces = [json.loads(image.text["animecolor"])["faces"] for image in (a, b)]
        assert faces == [True, False]


def _figure_lines(seed: int = 3) -> np.ndarray:
    """A 360 x 240 line drawing (255 paper) of a lopsided figure: a head, a body and scattered loops."""
    rng = np.random.default_rng(seed)
    lines = np.full((360, 240), 255, np.uint8)
    cv2.circle(lines, (120, 80), 38, 0, 2)
    cv2.polylines(lines, [np.array([[90, 120], [60, 330], [190, 330], [150, 120]], np.int32)], True, 0, 2)
    cv2.line(lines, (150, 140), (225, 230), 0, 2)  # one arm only
    for _ in range(14):
        centre = (int(rng.integers(30, 210)), int(rng.integers(60, 340)))
        axes = (int(rng.integers(6, 22)), int(rng.integers(4, 14)))
        cv2.ellipse(lines, centre, axes, float(rng.integers(0, 180)), 0, 360, 0, 2)
    return lines


def _laid(lines: np.ndarray, scale: float, shift: tuple[int, int], shape=(420, 300)) -> np.ndarray:
    """`lines` scaled and shifted onto white paper of `shape`: a reference in another framing."""
    matrix = np.float32([[scale, 0, shift[0]], [0, scale, shift[1]]])
    return cv2.warpAffine(lines, matrix, shape[::-1], flags=cv2.INTER_AREA, borderValue=255)


def _close(a: Square, b: Square, px: int = 4) -> bool:
    return abs(a.x0 - b.x0) <= px and abs(a.y0 - b.y0) <= px and abs(a.side - b.side) <= px


def test_register_finds_the_scale_and_shift_the_face_squares_miss():
    """The reference is the drawing 1.2x larger and shifted; its face square as animeface framed it
    in colour is off by 11 px and 17 %: the lines put the square back where the drawing's face is."""
    from pipeline.faces import REGISTER_MARGIN, register

    lines, face = _figure_lines(), Square(80, 40, 80)
    reference = _laid(lines, 1.2, (25, -10))
    truth = Square(121, 38, 96)  # the face square carried by the same scale and shift
    square, mirrored, gain = register(lines, reference, face, Square(110, 50, 80))
    assert _close(square, truth) and not mirrored and gain >= REGISTER_MARGIN, (square, gain)
    # already right: nothing to gain, the face squares' own placement is kept as it is
    assert register(lines, reference, face, truth) == (truth, False, 0.0)
    # a blank reference or drawing: nothing to lay, the face squares' placement
    blank = np.full_like(reference, 255)
    assert register(lines, blank, face, Square(110, 50, 80)) == (Square(110, 50, 80), False, 0.0)
    assert register(np.full_like(lines, 255), reference, face, truth) == (truth, False, 0.0)


def test_local_source_finds_a_tiles_part_moved_in_another_pose(monkeypatch):
    """A tile of the drawing (the arm and the loops about it) lies in the reference 30 px lower and
    18 px to the left of where the laid faces put it (the arm lowered): its own lines find it there,
    at the same scale, with a gain of at least `LOCAL_MARGIN`. Where it already lies, a near-blank
    tile, a place beyond the reach, and `LOCAL_REACH` 0 keep the faces' placement with no gain."""
    import pipeline.faces
    from pipeline.faces import LOCAL_MARGIN, local_source

    lines = _figure_lines()
    tile = Square(140, 150, 80)
    part = tile.crop(lines, 255)
    reference = np.full((420, 300), 255, np.uint8)
    reference[180:260, 122:202] = part  # the part 30 px down and 18 px left of (140, 150)
    moved, gain = local_source(lines, reference, tile, tile)
    assert _close(moved, Square(122, 180, 80), 3) and gain >= LOCAL_MARGIN, (moved, gain)
    placed = np.full_like(reference, 255)
    placed[150:230, 140:220] = part  # already there
    assert local_source(lines, placed, tile, tile) == (tile, 0.0)
    blank = Square(0, 0, 30)  # a corner of paper: nothing to place it by
    assert local_source(lines, reference, blank, Square(5, 5, 30)) == (Square(5, 5, 30), 0.0)
    far = np.full_like(reference, 255)
    far[330:410, 210:290] = part  # 180 px down: past one tile side
    assert local_source(lines, far, tile, tile) == (tile, 0.0)
    monkeypatch.setattr(pipeline.faces, "LOCAL_REACH", 0.0)
    assert local_source(lines, reference, tile, tile) == (tile, 0.0)


def test_register_mirrors_a_reference_that_faces_the_other_way():
    """The reference above flipped left to right (the character facing the other way): laid back
    mirrored, with the square in the mirrored reference's frame (where the drawing's face is)."""
    from pipeline.faces import register

    lines, face = _figure_lines(), Square(80, 40, 80)
    flipped = np.ascontiguousarray(_laid(lines, 1.2, (25, -10))[:, ::-1])
    off = Square(300 - 110 - 80, 50, 80)  # the off square in the flipped picture
    square, mirrored, _ = register(lines, flipped, face, off)
    assert mirrored and _close(square, Square(121, 38, 96)), square


def test_the_face_and_tiles_take_the_reference_laid_on_the_drawing(monkeypatch):
    """colorize's face view gets the reference's crop at the laid square, the tiles their parts by it,
    and the notice says so; `align=False` keeps the face squares' own placement (before 2026-12-06).
    Mirrored, a second face keeps the reference's own face square, carried into the mirrored frame."""
    from pipeline.faces import register

    lines, face, off = _figure_lines(), Square(80, 40, 80), Square(104, 52, 80)  # off centre
    reference = np.dstack([_laid(lines, 1.2, (25, -10))] * 3 + [np.full((420, 300), 255, np.uint8)])
    drawing = np.dstack([lines] * 3 + [np.full(lines.shape, 255, np.uint8)])
    monkeypatch.setattr(C, "drawing_faces", lambda image: [face])
    monkeypatch.setattr(C, "largest_face_square", lambda image: off)
    crop = lambda square, ref=reference: C.letterbox(square.crop(ref[..., :3]), 32)[0].astype(int)  # noqa: E731
    laid_square = register(lines, LINES.sketch(reference[..., :3], 0.5), face, off)[0]
    assert _close(laid_square, Square(121, 38, 96))
    for align in (True, False):
        views, notice, mirrored, _ = C._face_views(drawing, reference, lines, 32,
                                                ColorizeOptions(mode="lines", align=align), False)
        assert not mirrored
        (face_view,) = [v for v in views if not v.tile]
        laid = abs(face_view.reference - crop(Square(121, 38, 96))).mean()
        as_framed = abs(face_view.reference - crop(off)).mean()
        if align:
            assert laid < 0.3 * as_framed and "laid on the drawing's lines (correlation +" in notice, notice
        else:
            assert as_framed == 0 and "laid" not in notice
        tiled = [v for v in views if v.tile]
        assert tiled and all(np.array_equal(v.reference, crop(v.square.mapped(face, laid_square if align else off)))
                             for v in tiled)
    second = Square(20, 250, 60)
    monkeypatch.setattr(C, "drawing_faces", lambda image: [face, second])
    flipped = np.ascontiguousarray(reference[:, ::-1])
    monkeypatch.setattr(C, "largest_face_square", lambda image: Square(300 - 104 - 80, 52, 80))  # `off`, flipped
    views, notice, mirrored, _ = C._face_views(drawing, flipped, lines, 32, ColorizeOptions(mode="lines"), False)
    assert mirrored and "laid on the drawing's lines mirrored" in notice
    first, other = [v for v in views if not v.tile]
    laid, as_framed = (abs(first.reference - crop(square)).mean() for square in (Square(121, 38, 96), off))
    assert laid < 0.3 * as_framed
    assert np.array_equal(other.reference, crop(off)) and other.square == second  # the reference turned back

def test_a_mirrored_reference_is_turned_for_the_whole_picture_too(model_file, monkeypatch):
    """When `register` mirrors the reference, the whole-picture pass gets it mirrored as well (one
    placement for every pass); without a mirror it gets the reference as given."""
    lines = _figure_lines()
    drawing = np.dstack([lines] * 3 + [np.full(lines.shape, 255, np.uint8)])
    reference = np.dstack([_laid(lines, 1.2, (25, -10))] * 3 + [np.full((420, 300), 255, np.uint8)])
    reference[:40, :60, :3] = (200, 30, 30)  # a red corner: which way round the whole pass saw it
    model, diffusion, info = load_model(model_file)
    monkeypatch.setattr(C, "drawing_faces", lambda image: [Square(80, 40, 80)])
    monkeypatch.setattr(C, "largest_face_square", lambda image: Square(110, 50, 80))
    seen = []
    prepare = C.prepare_reference
    monkeypatch.setattr(C, "prepare_reference", lambda rgba, size: seen.append(rgba) or prepare(rgba, size))
    for mirrored in (True, False):
        monkeypatch.setattr(C, "register", lambda *a, m=mirrored: (Square(121, 38, 96), m, 0.1))
        seen.clear()
        _, notice = colorize_layers(model, diffusion, drawing, reference, ColorizeOptions(sample_steps=1, mode="lines"),
                                    [0], info=info)
        assert ("laid on the drawing's lines mirrored" in notice) == mirrored
        assert np.array_equal(seen[0], reference[:, ::-1] if mirrored else reference)


def test_register_finds_a_small_face_in_a_large_reference():
    """A 2000 x 1500 reference holding the figure at 0.35x (a 28 px face square): the search reads
    the reference around each window only (the whole picture enlarged 3.5x at every scale took
    1.7 s and 400 MB), and still lays it exactly."""
    from pipeline.faces import register

    lines = _figure_lines()
    reference = _laid(lines, 0.35, (900, 700), shape=(1500, 2000))
    square, mirrored, gain = register(lines, reference, Square(80, 40, 80), Square(935, 722, 24))
    assert _close(square, Square(928, 714, 28), px=2) and not mirrored and gain > 0.1, square
    with pytest.raises(ValueError, match="grey"):
        register(np.dstack([lines] * 3), reference, Square(80, 40, 80), Square(935, 722, 24))


def test_a_laid_face_square_that_falls_off_the_reference_is_not_taken(monkeypatch):
    """The lines would lay the face square half off the reference's top left (a bust cropped at the
    face): its crop would be half white paper, so the face squares' own placement stays."""
    from pipeline.faces import register

    lines, face = _figure_lines(), Square(80, 40, 80)
    reference = np.dstack([_laid(lines, 1.0, (-100, -60), shape=(300, 240))] * 3
                          + [np.full((300, 240), 255, np.uint8)])
    own = Square(0, 0, 70)
    laid = register(lines, LINES.sketch(reference[..., :3], 0.5), face, own)[0]
    assert _close(laid, Square(-20, -20, 80)) and laid.coverage(reference.shape) < C.MIN_REFERENCE_COVERAGE
    monkeypatch.setattr(C, "drawing_faces", lambda image: [face])
    monkeypatch.setattr(C, "largest_face_square", lambda image: own)
    drawing = np.dstack([lines] * 3 + [np.full(lines.shape, 255, np.uint8)])
    views, notice, mirrored, _ = C._face_views(drawing, reference, lines, 32, ColorizeOptions(mode="lines", tiles=False),
                                               False)
    assert not mirrored and "laid" not in notice
    assert np.array_equal(views[0].reference, C.letterbox(own.crop(reference[..., :3]), 32)[0])


def test_face_evened_diagnostic_scores_both_ways_and_refuses_bad_input(model_file, tmp_path):
    """scripts/diagnostics/face_evened.py: each face coloured as painted and evened at its own scale
    (128 px, four times the tiny model's 32: evened, so the two differ), each scored, the sheet
    drawn at full resolution; bad numbers or an empty folder are one line, exit 2, nothing written."""
    from PIL import Image

    run = _face_diagnostic("face_evened.py", model_file, tmp_path, 128, [(200, 80, 60), (60, 90, 200)])
    done = run("--json", str(tmp_path / "out.json"), "--sheet", str(tmp_path / "sheet.png"), "--rows", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["faces"] == 2 and [r["face"] for r in out["rows"]] == ["a.png", "b.jpg"]
    assert set(out["mean"]) == {"painted", "evened"} and 0 <= out["gained"] <= 2 and out["rim_margin"] == RIM_MARGIN
    assert all(np.isfinite(r[w][k]) for r in out["rows"] for w in out["mean"] for k in ("psnr", "lpips", "chroma_ratio"))
    assert any(r["painted"]["psnr"] != r["evened"]["psnr"] for r in out["rows"])
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (3 * 64, 64)  # the middle half of 128 px: truth, painted, evened
    _refuses_bad_input(run, tmp_path, "face_evened")
    bad = run("--rim-margin", "nan", "--json", str(tmp_path / "rim.json"))
    assert bad.returncode == 2 and "--rim-margin nan" in bad.stderr and not (tmp_path / "rim.json").exists()


def _face_diagnostic(script: str, model_file, tmp_path, size: int, colours):
    """A folder of two face-like pictures (a.png, b.jpg: a disc of each colour, outlined, on pale
    paper) and a runner of scripts/diagnostics/SCRIPT on them at `size` px, 1 step."""
    import subprocess
    import sys

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    faces = tmp_path / "faces"
    faces.mkdir()
    for name, colour in zip(("a.png", "b.jpg"), colours):
        picture = np.full((96, 96, 3), 230, np.uint8)
        cv2.circle(picture, (48, 52), 30, colour, -1)
        cv2.circle(picture, (48, 52), 30, (0, 0, 0), 2)
        Image.fromarray(picture).save(faces / name)
    return lambda *extra: subprocess.run([sys.executable, str(root / "scripts/diagnostics" / script), "--model",
                                          str(model_file), "--folder", str(faces), "--steps", "1", "--size", str(size),
                                          *extra], capture_output=True, text=True, timeout=600, cwd=root)


def _refuses_bad_input(run, tmp_path, name: str) -> None:
    """No faces asked for, an empty folder, a sheet in a missing folder: one line `NAME: ...`, exit
    2, no JSON written."""
    (tmp_path / "empty").mkdir()
    for extra in (("--limit", "0"), ("--folder", str(tmp_path / "empty")),
                  ("--sheet", str(tmp_path / "absent" / "sheet.png"))):
        bad = run(*extra, "--json", str(tmp_path / "bad.json"))
        assert bad.returncode == 2 and bad.stderr.startswith(f"{name}: ") and len(bad.stderr.splitlines()) == 1
        assert not (tmp_path / "bad.json").exists()


@pytest.mark.slow  # two Python start-ups and the torch import
def test_rim_halo_figure_draws_each_pair_three_ways_and_refuses_a_bad_model(model_file, tmp_path):
    """scripts/figures/rim_halo.py (the close-ups in real-art.md): each sprite pair's crop as painted
    beside the lines, now, and the truth, side by side and enlarged; a missing model is one line."""
    import subprocess
    import sys

    from PIL import Image

    if not SPRITE.is_file() or not Path("/usr/share/games/renpy/demo/game/images/eileen happy.png").is_file():
        pytest.skip("apt-get install renpy-thequestion renpy-demo (done by .ci/run)")
    script = Path(__file__).resolve().parents[1] / "scripts" / "figures" / "rim_halo.py"
    out = tmp_path / "rim.png"
    done = subprocess.run([sys.executable, str(script), "--model", str(model_file), "--steps", "1", "--zoom", "1",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(out) as sheet:  # two rows of three 260 x 220 crops, 4 px apart
        assert sheet.size == (3 * 260 + 2 * 4, 2 * (220 + 4))
        rows = np.asarray(sheet.convert("RGB")).astype(int)
    truth = rows[:220, 2 * 264:]  # Eileen's jacket: dark blue in the truth, not white paper
    assert truth.mean() < 200
    bad = subprocess.run([sys.executable, str(script), "--model", str(tmp_path / "none.safetensors"), "--out",
                          str(tmp_path / "bad.png")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and not (tmp_path / "bad.png").exists()
