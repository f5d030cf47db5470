"""Metric identities, colour metrics against synthetic ground truth, FID paths, the evaluate stage."""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.transforms.functional as TF

from pipeline.data.dataset import to_tensor
from pipeline.data.labels import COLOUR_REGIONS
from pipeline.data.synthetic import REGION_IDS, generate_face
from pipeline.evaluation import metrics as M
from pipeline.evaluation.evaluate import HETEROCHROMIA_GRID, EvalConfig, flat_fill, run_benchmark
from pipeline.evaluation.features import INCEPTION_FILE, inception_extractor
from pipeline.model.diffusion import Diffusion
from pipeline.model.perceptual import VGGLPIPS, _NumpyOnly, lpips_weights_path
from pipeline.model.unet import UNet, UNetConfig
from tests.helpers import make_faces


@pytest.fixture(scope="module")
def lpips():
    return VGGLPIPS()


@pytest.fixture(scope="module")
def faces():
    out = [generate_face(0, i, 64, 0.5) for i in range(4)]
    images = torch.stack([to_tensor(rgb) for _, rgb, _ in out])
    labels = np.stack([label for _, _, label in out])
    return images, labels


def test_identities(faces, lpips):
    x = (faces[0] + 1) / 2
    assert torch.isinf(M.psnr(x, x)).all()
    torch.testing.assert_close(M.ms_ssim(x, x), torch.ones(4))
    assert torch.all(lpips(faces[0], faces[0]) == 0)
    feats = np.random.default_rng(0).normal(size=(300, 16))
    assert M.frechet_distance(feats, feats) == pytest.approx(0, abs=1e-6)
    other = np.random.default_rng(1).normal(size=(300, 16))  # same distribution, other samples
    assert abs(M.kid(feats, other)) < 0.02 < M.kid(feats, other + 0.5)
    assert M.frechet_distance(feats, feats + 1.0) == pytest.approx(16.0, rel=1e-3)  # |mu1 - mu2|^2


def test_metrics_order_degradations(faces, lpips):
    x = faces[0]
    blurs = [TF.gaussian_blur(x, 2 * k + 1, float(k)) for k in (1, 2, 4)]
    d = [lpips(x, b).mean().item() for b in blurs]
    p = [M.psnr((b + 1) / 2, (x + 1) / 2).mean().item() for b in blurs]
    s = [M.ms_ssim((b + 1) / 2, (x + 1) / 2).mean().item() for b in blurs]
    assert d[0] < d[1] < d[2] and p[0] > p[1] > p[2] and s[0] > s[1] > s[2]
    with torch.no_grad():  # the targets' trunk run once, reused per candidate: the same distances
        taps = lpips.taps(x)
        assert all(torch.equal(lpips.distance_to(b, taps), lpips(b, x)) for b in blurs)


def test_ms_ssim_scales_fit_small_images():
    assert M.ms_ssim_setup(256) == (11, M.MS_SSIM_BETAS)
    kernel, betas = M.ms_ssim_setup(64)
    assert kernel == 7 and len(betas) == 4 and sum(betas) == pytest.approx(1)
    x = torch.rand(2, 3, 32, 32)
    assert M.ms_ssim(x, x.flip(-1)).shape == (2,)


def test_lpips_loader_refuses_anything_but_arrays():
    assert lpips_weights_path().is_file()
    evil = pickle.dumps(print)  # a global that is not a numpy array constructor
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _NumpyOnly(io.BytesIO(evil)).load()


def test_region_colour_errors_against_ground_truth(faces):
    images, labels = faces
    x = (images + 1) / 2
    same = M.region_colour_errors(x, labels, x, labels, COLOUR_REGIONS)
    for name, err in same.items():
        assert np.nanmax(err) < 1e-6, name
    recoloured = x.clone()
    hair = torch.from_numpy(labels == REGION_IDS["hair"])
    recoloured.permute(0, 2, 3, 1)[hair] = torch.tensor([0.0, 0.8, 0.0])  # paint all hair green
    errors = M.region_colour_errors(recoloured, labels, x, labels, COLOUR_REGIONS)
    assert np.nanmin(errors["hair"]) > 20 and np.nanmax(errors["skin"]) < 1e-6
    rate, n = M.heterochromia_success(np.array([1.0, 30.0, 2.0]), np.array([2.0, 1.0, 1.0]), np.array([40.0, 40.0, 2.0]))
    assert (rate, n) == (0.5, 2)


def test_flat_fill_baseline():
    sketch = torch.ones(1, 1, 4, 4)
    sketch[..., 0, 0] = -1  # one line pixel
    ref = torch.zeros(1, 3, 4, 4)
    out = flat_fill(sketch, ref)
    assert out[0, :, 1, 1].tolist() == [0.0, 0.0, 0.0] and out[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]


class _Layers(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)  # (B, 192)
        return pooled.repeat(1, 11)[:, :2048]


class _StandIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _tiny_model():
    torch.manual_seed(0)
    return UNet(UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2)), Diffusion()


@pytest.fixture(scope="module")
def hetero_data(tmp_path_factory):
    """12 synthetic faces at 32 px, every one with two different irises: (faces_dir, pairs_dir)."""
    return make_faces(tmp_path_factory.mktemp("hetero"), 12, 32, heterochromia_p=1.0, test_fraction=0.5)


@pytest.mark.slow
def test_benchmark_with_and_without_inception(hetero_data, tmp_path):
    faces_dir, pairs_dir = hetero_data
    stand_in = tmp_path / "weights" / "my-inception.pt"
    stand_in.parent.mkdir()
    torch.jit.script(_StandIn()).save(str(stand_in))
    cfg = EvalConfig(sample_steps=2, limit=4, inception_path=str(stand_in))
    metrics, table, grids = run_benchmark({"m": _tiny_model()}, faces_dir, pairs_dir, tmp_path / "out", cfg,
                                          torch.device("cpu"), stand_in)
    assert set(metrics) == {"_notes", "m", "reference_copy", "flat_fill"}
    assert set(metrics["reference_copy"]) == {"self_ref"} and set(metrics["m"]) == {"self_ref", "random_ref"}
    row = metrics["m"]["self_ref"]
    assert isinstance(row["fid"], float) and row["fid"] >= 0 and row["images"] == 4 and row["seconds_per_image"] > 0
    assert {"psnr", "ms_ssim", "lpips", "fd_vgg16", "kid_vgg16", "de_hair", "de_iris_left"} <= set(row)
    assert len(table) == 4 * (2 + 1 + 2) and (tmp_path / "out" / "m" / "random_ref").is_dir()
    assert metrics["_notes"]["fid"].startswith("standard")
    assert metrics["_notes"]["machine"].endswith("threads")  # the timings name the CPU they ran on
    # references with two different irises get their own grid: the rows heterochromia_success counts
    assert any(metrics["m"][s]["heterochromia_n"] for s in ("self_ref", "random_ref"))  # the check below runs
    for setting in ("self_ref", "random_ref"):
        n = metrics["m"][setting]["heterochromia_n"]
        hetero = grids.get(f"{setting}{HETEROCHROMIA_GRID}")
        assert (hetero is None) == (n == 0)
        if hetero is not None:
            assert hetero["reference"].shape[0] == n and set(hetero) == set(grids[setting])
            for ref in hetero["reference"]:
                assert any(torch.equal(ref, other) for other in grids[setting]["reference"])
    # the same run without Inception weights: fid null with the reason, everything else identical
    # (deterministic given the seed). A 2048-d FID costs a matrix square root per candidate,
    # so only one run here uses the stand-in. animeface on: its colour errors and detection
    # rates (on the outputs and on the true pictures) join every candidate's row.
    missing, _, _ = run_benchmark({"m": _tiny_model()}, faces_dir, pairs_dir, tmp_path / "out2",
                                  EvalConfig(sample_steps=2, limit=4, animeface="on"), torch.device("cpu"),
                                  tmp_path / "absent.pt")
    assert missing["m"]["self_ref"]["fid"] is None and "not found" in missing["_notes"]["fid"]
    for setting, row in missing["m"].items():
        assert 0 <= row["af_detected"] <= 1 and 0 <= row["af_detected_target"] <= 1
        assert row["af_detected_target"] == missing["flat_fill"][setting]["af_detected_target"]
        skip = {"seconds_per_image", "fid"}
        assert {k: v for k, v in row.items() if k not in skip and not k.startswith("af_")} == \
            {k: v for k, v in metrics["m"][setting].items() if k not in skip}


def test_default_inception_file_is_where_clean_fid_keeps_it():
    """The stage's default mirrors clean-fid's own rule (cleanfid.features.feature_extractor)."""
    import inspect

    import cleanfid.features

    from stages.evaluate import clean_fid_inception_file

    source = inspect.getsource(cleanfid.features.feature_extractor)
    assert 'path = "./" if platform.system() == "Windows" else "/tmp"' in source
    assert "InceptionV3W(path" in source
    assert clean_fid_inception_file() == Path("/tmp") / INCEPTION_FILE


def test_inception_extractor_reports_bad_files(tmp_path):
    fn, reason = inception_extractor(tmp_path / "missing.pt", torch.device("cpu"))
    assert fn is None and "not found" in reason
    bad = tmp_path / INCEPTION_FILE
    bad.write_bytes(b"junk")
    fn, reason = inception_extractor(bad, torch.device("cpu"))
    assert fn is None and "not a usable" in reason


def _real_faces(n: int) -> torch.Tensor:
    """The first n 256 px faces of ../shared/data as (n, 3, H, W) in [0, 1]; skips without them."""
    from PIL import Image

    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces-256"
    files = sorted(real.glob("*.jpg"))[:n] if real.is_dir() else []
    if not files:
        pytest.skip("../shared/data not present")
    return torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1).float() / 255
                        for f in files])


def test_animeface_attribute_colours_on_real_faces():
    from pipeline.evaluation.features import animeface_attributes

    images = _real_faces(6)
    attrs = animeface_attributes(images)
    found = ~np.isnan(attrs[:, 0, 0])
    assert found.sum() >= 4 and np.all((attrs[found] >= 0) & (attrs[found] <= 1))
    same = M.attribute_errors(attrs, attrs, ("hair", "eye_left", "eye_right"))
    assert np.nanmax(same["hair"]) < 1e-6
    recoloured = images.clone()
    recoloured[:, 1:] *= 0.3  # drain green and blue: hair/eye colours must move
    moved = M.attribute_errors(animeface_attributes(recoloured), attrs, ("hair", "eye_left", "eye_right"))
    assert np.nanmean(moved["hair"]) > 10


def test_animeface_attributes_skip_a_stalled_image_and_go_on():
    """A detector call that does not answer in time counts as "no face" (with a warning) and the
    child process is restarted for the rest: with timeout 0 every image after the first of each
    child is given up, the others are found as in a normal run."""
    from pipeline.evaluation.features import animeface_attributes

    images = _real_faces(4)
    alone = np.concatenate([animeface_attributes(images[[i]]) for i in (0, 2)])
    with pytest.warns(UserWarning, match=r"no answer within 0 s .* images \[1, 3\]"):
        hurried = animeface_attributes(images, timeout=0.0)
    assert np.isnan(hurried[[1, 3]]).all()
    np.testing.assert_array_equal(hurried[[0, 2]], alone)


def test_iris_gap_uses_the_captions_exact_colours_and_measures_without_them():
    """A reference with one iris colour is not heterochromatic however the shading falls; without
    a caption that codes both irises the gap is measured from the label map."""
    from pipeline.evaluation.evaluate import reference_iris_gap

    labels = torch.zeros(2, 8, 8, dtype=torch.int64)
    labels[:, 2:6, 1:3], labels[:, 2:6, 5:7] = 4, 5  # iris_left, iris_right
    reference = torch.zeros(2, 3, 8, 8)  # mid grey...
    reference[:, 0, :, 5:7] = 0.8  # ...but the right iris reddish: a measured gap
    table = pd.DataFrame({"reference_caption": ["hair #102030, left eye #3479d7, right eye #3479d7", ""]})
    gap = reference_iris_gap(reference, labels, table, erode=0)
    assert gap[0] == 0.0  # the spec says one colour
    assert gap[1] > M.HETEROCHROMIA_GAP  # measured
    table = pd.DataFrame({"reference_caption": ["left eye #ff0000, right eye #0000ff", "red eyes"]})
    gap = reference_iris_gap(reference, labels, table, erode=0)
    assert gap[0] > 50 and gap[1] > M.HETEROCHROMIA_GAP  # "red eyes" names no exact colours: measured


# ----------------------------------------------------------------------- sampling precision (auto)
def test_sampling_precision_is_probed_on_native_bf16_cpus_and_cached(hetero_data, tmp_path, monkeypatch):
    """evaluate.precision auto on a CPU with native bf16 times one guided denoising step of the
    shipped (last) model on the first benchmark batch in both precisions, keeps the faster and
    caches it per machine; without native bf16 it is fp32 untimed; a set value stays."""
    import pipeline.evaluation.evaluate as ev

    faces_dir, pairs_dir = hetero_data
    models = {"first": _tiny_model(), "shipped": _tiny_model()}
    cache = tmp_path / "probe.json"
    cpu = torch.device("cpu")
    monkeypatch.setattr(ev, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(ev, "probe_precision", lambda *a: pytest.fail("no probe without native bf16"))
    assert ev.sampling_precision(models, faces_dir, pairs_dir, EvalConfig(), cpu, cache) == \
        ("fp32", "auto: this CPU has no native bf16")
    monkeypatch.setattr(ev, "cpu_has_bf16", lambda: True)
    assert ev.sampling_precision(models, faces_dir, pairs_dir, EvalConfig(precision="fp32"), cpu, cache) == \
        ("fp32", "evaluate.precision fp32 (set)")
    monkeypatch.undo()
    monkeypatch.setattr(ev, "cpu_has_bf16", lambda: True)
    seen, other = [], []
    models["shipped"][0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    models["first"][0].register_forward_hook(lambda m, args, out: other.append(1))
    choice, why = ev.sampling_precision(models, faces_dir, pairs_dir, EvalConfig(guidance=2.0), cpu, cache)
    assert choice in ("fp32", "bf16") and why.startswith("probe: fp32 ") and "bf16" in why
    # 1 warm-up + 2 timed steps per precision, each one batched guided forward (conditional + unconditional)
    assert len(seen) == 6 and seen[0][0] == 2 * 8 and not other
    stored = json.loads(cache.read_text())
    (key, entry), = stored.items()
    assert "sampling | unet " in key and "| batch (8, 1, 32, 32) | guidance 2.0" in key and entry["choice"] == choice
    seen.clear()
    again, why_again = ev.sampling_precision(models, faces_dir, pairs_dir, EvalConfig(guidance=2.0), cpu, cache)
    assert again == choice and why_again.startswith("probe (cached in") and not seen  # not timed again


def test_benchmark_notes_say_why_it_sampled_in_its_precision(hetero_data, tmp_path):
    faces_dir, pairs_dir = hetero_data
    metrics, _, _ = run_benchmark({"m": _tiny_model()}, faces_dir, pairs_dir, tmp_path / "out",
                                  EvalConfig(sample_steps=1, limit=2, precision="fp32"), torch.device("cpu"),
                                  tmp_path / "absent.pt", precision_reason="probe: fp32 1.000 s, bf16 2.000 s a step")
    assert metrics["_notes"]["precision"] == "sampling in fp32 (probe: fp32 1.000 s, bf16 2.000 s a step)"


def test_position_copy_diagnostic_scores_every_move_of_the_reference(model_file, tiny_data):
    """scripts/diagnostics/position_copy.py on the shipped kind of model file and the pairs stage's
    benchmark: six self-reference PSNRs, each against the unmoved pair's."""
    import re
    import subprocess
    import sys

    faces, pairs = tiny_data
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "scripts/diagnostics/position_copy.py"), "--model", str(model_file),
                           "--faces", str(faces), "--pairs", str(pairs), "--steps", "2"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^  (.+?)\s+(-?\d+\.\d\d)  \(([+-]\d+\.\d\d)\)$", done.stdout, re.M)
    assert [name for name, _, _ in rows] == ["as given", "drawing and reference mirrored", "reference mirrored",
                                             "reference shifted 10 %", "reference turned 15 deg",
                                             "reference scaled 0.85"]
    base = float(rows[0][1])
    assert rows[0][2] == "+0.00" and 5 < base < 60
    for _, value, delta in rows[1:]:
        assert abs(float(value) - base - float(delta)) < 0.011
    assert len({value for _, value, _ in rows}) > 1  # a moved reference changes the picture
    missing = subprocess.run([sys.executable, str(root / "scripts/diagnostics/position_copy.py"), "--model",
                              str(faces / "absent.safetensors"), "--faces", str(faces), "--pairs", str(pairs)],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [f"position_copy: {faces / 'absent.safetensors'}: model file not found "
                                                   "(train with `dvc repro`, or `animecolor export`)"]
