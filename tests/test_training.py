"""The training loop: learning, exact resume, interrupts, DDP, and the `pretrain` stage."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pipeline.data.dataset import PairDataset
from pipeline.data.tps import TPSConfig
from pipeline.errors import AnimecolorError
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from pipeline.model.conditioning import ConditionDropout
from pipeline.model.diffusion import Diffusion
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.distributed import Dist
from pipeline.device import machine_description
from pipeline.training.loop import EMA, EpochBatches, LoopConfig, RunBatches, Trainer, denoising_objective, run_summary
from tests.helpers import TINY_PRETRAIN

CFG = UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2)


def _trainer(tiny_data, state_path=None, steps=8, **loop):
    faces, pairs = tiny_data
    torch.manual_seed(0)
    ds = PairDataset(faces, pairs, "train", tps=TPSConfig())
    diffusion = Diffusion()
    cfg = LoopConfig(train_steps=steps, batch_size=4, lr=1e-3, warmup_steps=2, checkpoint_every=2, num_workers=0,
                     **loop)
    objective = denoising_objective(diffusion, ConditionDropout(p_uncond=0.1))
    return Trainer(UNet(CFG), diffusion, ds, objective, cfg, torch.device("cpu"),
                   state_path=state_path, run_id="test")


@pytest.mark.slow  # 150 training steps of a 32 px U-Net: ~5 s on 2 cores
def test_overfits_a_fixed_batch(tiny_data):
    faces, pairs = tiny_data
    base = PairDataset(faces, pairs, "train", tps=TPSConfig(scheme="none"))
    fixed = [base[(i, 0)] for i in range(4)]

    class Fixed(torch.utils.data.Dataset):  # four fixed triples, no fresh distortion
        def __len__(self):
            return 4

        def __getitem__(self, key):
            return fixed[key[0]]

    ds = Fixed()
    diffusion = Diffusion()
    torch.manual_seed(0)
    cfg = LoopConfig(train_steps=150, batch_size=4, lr=3e-3, warmup_steps=5, num_workers=0)
    objective = denoising_objective(diffusion, ConditionDropout(p_uncond=0.0))
    trainer = Trainer(UNet(CFG), diffusion, ds, objective, cfg, torch.device("cpu"))
    losses = trainer.run()["losses"]
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.5 * first, (first, last)


def test_parameter_groups_get_their_own_learning_rate(tiny_data):
    faces, pairs = tiny_data
    ds = PairDataset(faces, pairs, "train", tps=TPSConfig())
    cfg = LoopConfig(train_steps=2, batch_size=4, lr=1e-3, warmup_steps=0, num_workers=0)
    model = UNet(CFG)
    objective = denoising_objective(Diffusion(), ConditionDropout())
    trainer = Trainer(model, Diffusion(), ds, objective, cfg, torch.device("cpu"), group_lr={"out.": 2e-5})
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 2e-5]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.model.out.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    before = [p.detach().clone() for p in trainer.model.out.parameters()]
    trainer.run()
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-3, 2e-5]  # constant schedule, no warm-up
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.out.parameters()))


def test_epoch_batches_shard_without_overlap_and_skip():
    full = list(EpochBatches(20, 3, seed=1, epoch=0, dist=Dist()))
    assert len(full) == 6 and len({i for b in full for i, _ in b}) == 18
    assert list(EpochBatches(20, 3, 1, 0, Dist(), skip=4)) == full[4:]
    assert list(EpochBatches(20, 3, 1, 1, Dist()))[0] != full[0]  # a new order each epoch
    ranks = [list(EpochBatches(20, 3, 1, 0, Dist(r, 2))) for r in (0, 1)]
    seen = [i for r in ranks for b in r for i, _ in b]
    assert len(ranks[0]) == len(ranks[1]) == 3 and len(seen) == len(set(seen)) == 18


def test_ema_warmup_and_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.9)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.model.weight.item() == pytest.approx(0.9)  # decay 0.1 at n = 0
    for _ in range(200):
        ema.update(model)
    assert ema.current_decay() == 0.9 and ema.model.weight.item() == pytest.approx(1.0, abs=1e-6)


def test_resume_continues_the_same_run(tiny_data, tmp_path):
    reference = _trainer(tiny_data)
    full = reference.run()["losses"]
    first = _trainer(tiny_data, tmp_path / "state.pt")
    part = first.run(stop_at=4)["losses"]
    second = _trainer(tiny_data, tmp_path / "state.pt")
    assert second.try_resume() and second.step == 4
    result = second.run()
    assert part == pytest.approx(full[:4], rel=1e-5)
    assert result["losses"] == pytest.approx(full, rel=1e-5)  # the whole curve, carried through the resume
    assert result["images_per_s"] > 0 and result["peak_memory_mb"] > 0
    rerun = _trainer(tiny_data, tmp_path / "state.pt")
    assert rerun.try_resume() and rerun.step == 8
    again = rerun.run()  # a finished run reloaded: the summary is the run's, not this process's
    assert again["losses"] == result["losses"] and again["peak_memory_mb"] == result["peak_memory_mb"]
    assert again["seconds"] == result["seconds"]
    for a, b in zip(reference.ema.model.state_dict().values(), second.ema.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    other = _trainer(tiny_data, tmp_path / "state.pt")
    other.run_id = "another run"
    assert not other.try_resume()  # settings changed: start fresh, never mix runs
    old_format = load_checkpoint(tmp_path / "state.pt")
    del old_format["history"]  # written before the loss history was kept: its summary would be empty
    save_checkpoint(tmp_path / "state.pt", old_format)
    assert not _trainer(tiny_data, tmp_path / "state.pt").try_resume()


def test_checkpoint_round_trip_and_bad_files(tiny_data, tmp_path):
    trainer = _trainer(tiny_data, tmp_path / "s.pt", steps=2)
    trainer.run()
    data = load_checkpoint(tmp_path / "s.pt")
    model, diffusion = model_from_checkpoint(data)
    assert model.config == CFG and diffusion.config == trainer.diffusion.config
    x, t = torch.randn(1, 7, 32, 32), torch.tensor([10])
    torch.testing.assert_close(model(x, t), trainer.ema.model(x, t))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AnimecolorError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(AnimecolorError, match="not an animecolor"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "v.pt", {"x": 1})
    raw = torch.load(tmp_path / "v.pt", weights_only=True)
    raw["version"] = 99
    torch.save(raw, tmp_path / "v.pt")
    with pytest.raises(AnimecolorError, match="version 99"):
        load_checkpoint(tmp_path / "v.pt")
    with pytest.raises(AnimecolorError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_losses_stay_one_float_per_step_between_log_points(tiny_data, tmp_path):
    """Losses are copied from the device only at log and checkpoint points; the history is unchanged by that."""
    trainer = _trainer(tiny_data, tmp_path / "state.pt", steps=7, log_every=3)
    trainer.cfg = trainer.cfg.model_copy(update={"checkpoint_every": 100})
    logged = []
    result = trainer.run(log=lambda step, metrics: logged.append((step, metrics)))
    losses = result["losses"]
    assert len(losses) == 7 and all(type(loss) is float for loss in losses)
    assert [step for step, _ in logged] == [3, 6, 7]
    assert logged[1][1]["loss"] == pytest.approx(sum(losses[3:6]) / 3)
    assert load_checkpoint(tmp_path / "state.pt")["history"]["losses"] == losses  # saved at the end only
    summary = run_summary(result, trainer.model, tail=5)
    assert summary["final_loss"] == round(sum(losses[-5:]) / 5, 5) and summary["steps"] == 7
    assert summary["compiled"] is False and summary["warmup_seconds"] == round(result["warmup_seconds"], 1)
    # every reported speed names what it ran on
    assert summary["machine"] == machine_description(torch.device("cpu")) and "threads" in summary["machine"]
    assert 0 < result["warmup_seconds"] <= result["seconds"]


def test_interrupt_saves_the_last_step(tiny_data, tmp_path):
    trainer = _trainer(tiny_data, tmp_path / "state.pt")

    def log(step, metrics):
        if step == 3:
            raise KeyboardInterrupt

    trainer.cfg = trainer.cfg.model_copy(update={"log_every": 1, "checkpoint_every": 100})
    with pytest.raises(KeyboardInterrupt):
        trainer.run(log=log)
    assert load_checkpoint(tmp_path / "state.pt")["step"] == 3


def test_run_batches_chain_the_epochs():
    run = iter(RunBatches(20, 3, seed=1, epoch=2, dist=Dist(), skip=4))
    expected = list(EpochBatches(20, 3, 1, 2, Dist(), skip=4)) + list(EpochBatches(20, 3, 1, 3, Dist()))
    assert [next(run) for _ in expected] == expected
    with pytest.raises(ValueError, match="no batch"):
        RunBatches(5, 3, 1, 0, Dist(0, 2))


# ---------------------------------------------------------------- the stage
def _stage_args(tmp_path, tiny_data, params):
    faces, pairs = tiny_data
    return ["--params", str(params), "--faces", str(faces), "--pairs", str(pairs), "--model", str(tmp_path / "m.pt"),
            "--state", str(tmp_path / "state.pt"), "--metrics", str(tmp_path / "m.json"),
            "--sheet", str(tmp_path / "sheet.png")]


@pytest.mark.slow
def test_pretrain_stage_kill_9_resumes_to_the_same_model(tiny_data, tmp_path, write_params):
    params = write_params({**TINY_PRETRAIN, "pretrain.loop.train_steps": 40, "pretrain.loop.checkpoint_every": 5})
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir(), run_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "stages.cli", "pretrain"]
    subprocess.run(cmd + _stage_args(ref_dir, tiny_data, params), check=True, capture_output=True, env=env,
                   cwd=ref_dir)
    proc = subprocess.Popen(cmd + _stage_args(run_dir, tiny_data, params), env=env, cwd=run_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "state.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "m.pt").exists()
    done = subprocess.run(cmd + _stage_args(run_dir, tiny_data, params), capture_output=True, text=True, env=env,
                          cwd=run_dir)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run_dir / "m.json").read_text())
    assert metrics["resumed_from"] and metrics["resumed_from"] % 5 == 0 and metrics["steps"] == 40
    a, b = load_checkpoint(ref_dir / "m.pt"), load_checkpoint(run_dir / "m.pt")
    for key in a["ema"]:
        torch.testing.assert_close(a["ema"][key], b["ema"][key], rtol=1e-4, atol=1e-5)
    assert (run_dir / "sheet.png").is_file() and (run_dir / "dvclive" / "pretrain" / "plots").is_dir()


@pytest.mark.slow
def test_pretrain_under_torchrun_with_gloo(tiny_data, tmp_path, write_params):
    params = write_params({**TINY_PRETRAIN, "pretrain.loop.train_steps": 3, "base.device": "cpu"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", "--no-python", "animecolor",
                          "pretrain", *_stage_args(tmp_path, tiny_data, params)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 3 and metrics["images_seen"] == 3 * 4 * 2


def test_pretrain_stage_errors(tmp_path, write_params):
    from typer.testing import CliRunner

    from stages.cli import app

    params = write_params({**TINY_PRETRAIN})
    result = CliRunner().invoke(app, ["pretrain", "--params", str(params), "--faces", str(tmp_path / "nope"),
                                      "--pairs", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "run `animecolor pairs` first" in result.output
    bad = write_params({"pretrain.diffusion.schedule": "linear", "pretrain.diffusion.beta_start": 0.1,
                        "pretrain.diffusion.beta_end": 0.01})
    result = CliRunner().invoke(app, ["pretrain", "--params", str(bad)])
    assert result.exit_code == 2 and "beta_start must be < beta_end" in result.output


def test_run_id_changes_with_the_library_code(tmp_path, monkeypatch):
    """A finished run's checkpoint is not "resumed" by a dvc repro that reruns the stage after a code change."""
    import pipeline
    from stages.training import source_digest

    before = source_digest()
    fake = tmp_path / "pipeline"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    monkeypatch.setattr(pipeline, "__file__", str(fake / "__init__.py"))
    assert source_digest() != before
    (fake / "x.py").write_text("a = 1\n")
    assert source_digest() != before
