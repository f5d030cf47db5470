"""The training loop: optimizer, LR warm-up, gradient clipping, EMA, precision, DDP, checkpoints.

One loop serves both phases. What is minimised is a pluggable *objective*
(model, batch, generator) -> (loss, extras): `denoising_objective` for pretraining,
`finetune.reconstruction_objective` for fine-tuning; the loop never knows which.

Resuming is exact: the data order of every epoch and the augmentation of every sample are
functions of (seed, epoch, index), and each step's noise, timesteps and condition dropout come
from a generator seeded by (seed, rank, step). A run killed at step k and resumed from its last
checkpoint therefore replays the same batches and noise as one that never stopped.
"""

from __future__ import annotations

import copy
import math
import resource
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.config import Config, fingerprint
from pipeline.data.labels import COLOUR_REGIONS, REGION_IDS
from pipeline.data.prompt import SLOTS
from pipeline.device import (Compile, Precision, autocast, compiled, compiles, configure_numerics, cpu_has_bf16,
                             machine_description, probe_precision)
from pipeline.errors import AnimecolorError
from pipeline.model.checkpoint import load_checkpoint, save_checkpoint
from pipeline.model.conditioning import ConditionDropout, conditioned, drop_conditions
from pipeline.model.diffusion import Diffusion
from pipeline.model.reference import recorded_attention
from pipeline.model.unet import UNet, count_parameters
from pipeline.rng import step_seed
from pipeline.training.correspondence import CorrespondenceConfig, region_correspondence_loss
from pipeline.training.distributed import Dist

Batch = dict[str, torch.Tensor]
Objective = Callable[[nn.Module, Batch, torch.Generator], tuple[torch.Tensor, dict]]


class LoopConfig(Config):
    """The optimisation loop (params `pretrain.loop`; `finetune.loop` has its own defaults)."""

    train_steps: int = Field(700, ge=1, description="optimizer steps (when epochs is null)")
    epochs: float | None = Field(None, gt=0, description="when set: ceil(epochs * images / "
                                                         "batch_size) steps (paper: 300)")
    batch_size: int = Field(16, ge=1, description="images per step and process")
    lr: float = Field(5e-4, gt=0, le=1.0, description="peak learning rate")
    optimizer: Literal["adam", "adamw"] = Field("adamw", description="adam | adamw")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay (adamw)")
    warmup_steps: int = Field(50, ge=0, description="linear LR warm-up")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="after warm-up")
    grad_clip: float = Field(1.0, ge=0, description="max global gradient norm; 0: off")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the weights (used for sampling and evaluation)")
    ema_warmup: bool = Field(True, description="EMA decay min(ema_decay, (1+n)/(10+n)): usable from the first steps")
    precision: Precision = Field("auto", description="auto (native bf16: the faster by a timed probe; else fp32) "
                                                     "| fp32 | bf16")
    channels_last: bool = Field(False, description="NHWC memory format")
    compile: Compile = Field("auto", description="torch.compile the network: auto (CUDA only) | true | false")
    compile_mode: Literal["default", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode: default | max-autotune-no-cudagraphs")
    checkpoint_every: int = Field(100, ge=1, description="optimizer steps between resume checkpoints")
    log_every: int = Field(10, ge=1, description="optimizer steps between dvclive log points")
    num_workers: int = Field(1, ge=0, le=64, description="DataLoader worker processes")

    @field_validator("compile", mode="before")
    @classmethod
    def _auto_or_bool(cls, value: Any) -> Any:
        if value != "auto" and not isinstance(value, bool):  # 1 and 0 would pass the Literal
            raise ValueError(f"should be auto, true or false (got {value!r})")
        return value

    def total_steps(self, n_images: int) -> int:
        """Optimizer steps of the run: by epochs when set, else train_steps."""
        if self.epochs is None:
            return self.train_steps
        return math.ceil(self.epochs * n_images / self.batch_size)


class EMA:
    """Exponential moving average of a model's weights (used for sampling and evaluation)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_p = [p for p in self.model.parameters()]
        cur_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.updates += 1


class EpochBatches(Sampler):
    """Batches of (index, augmentation seed) for one epoch, sharded over DDP ranks, from batch `skip`."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, dist: Dist, skip: int = 0):
        self.n, self.bs, self.seed, self.epoch, self.dist, self.skip = n, batch_size, seed, epoch, dist, skip

    @staticmethod
    def per_epoch(n: int, batch_size: int, world_size: int) -> int:
        return n // (batch_size * world_size)  # the last partial batch is dropped

    def __len__(self) -> int:
        return max(0, self.per_epoch(self.n, self.bs, self.dist.world_size) - self.skip)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(step_seed(self.seed, self.epoch))
        perm = torch.randperm(self.n, generator=g).tolist()
        span = self.bs * self.dist.world_size
        for b in range(self.skip, self.per_epoch(self.n, self.bs, self.dist.world_size)):
            start = b * span + self.dist.rank * self.bs
            yield [(i, step_seed(self.seed, self.epoch, i)) for i in perm[start:start + self.bs]]


class RunBatches(Sampler):
    """EpochBatches of `epoch`, then of every next epoch, without end (from batch `skip` of the
    first): the whole run's batches through one DataLoader, whose workers start once instead of
    once per epoch and prefetch across epoch ends (what persistent_workers would give, and more)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, dist: Dist, skip: int = 0):
        if EpochBatches.per_epoch(n, batch_size, dist.world_size) < 1:
            raise ValueError(f"{n} images make no batch of {batch_size} x {dist.world_size} processes")
        self.n, self.bs, self.seed, self.epoch, self.dist, self.skip = n, batch_size, seed, epoch, dist, skip

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = self.epoch, self.skip
        while True:
            yield from EpochBatches(self.n, self.bs, self.seed, epoch, self.dist, skip)
            epoch, skip = epoch + 1, 0


# the supervised correspondence: the regions whose colour the reference supplies (the benchmark's and the background)
SUPERVISED_REGIONS = (REGION_IDS["background"], *COLOUR_REGIONS.values())


def said_regions(text: torch.Tensor) -> torch.Tensor:
    """Encoded prompts (B, slots, 4) -> (B, slots) int64: the label-map region each slot's token
    speaks for, -1 where the slot is unspecified (`region_correspondence_loss`'s text_regions)."""
    regions = torch.tensor([REGION_IDS[slot] for slot in SLOTS], device=text.device)
    return torch.where(text[..., 0] > 0, regions, -1)


def noised_batch(diffusion: Diffusion, batch: Batch, dropout: ConditionDropout, generator: torch.Generator):
    """(x0, t, eps, sketch, reference) of a denoising step: uniform t, Gaussian eps, the conditions
    after classifier-free dropout, all drawn from `generator` (exact resume)."""
    x0 = batch["target"]
    b, device = x0.shape[0], x0.device
    t = torch.randint(0, diffusion.T, (b,), generator=generator).to(device, non_blocking=True)
    eps = torch.randn(x0.shape, generator=generator).to(device, x0.dtype, non_blocking=True)
    sketch, reference = drop_conditions(batch["sketch"], batch["reference"], dropout, generator)
    return x0, t, eps, sketch, reference


def denoising_objective(diffusion: Diffusion, dropout: ConditionDropout,
                        correspondence: CorrespondenceConfig = CorrespondenceConfig(),
                        clustered: bool = False) -> Objective:
    """Pretraining: uniform t, Gaussian eps, condition dropout for classifier-free guidance (the
    reference, the sketch and, when the batch has an encoded prompt, the prompt). With a
    correspondence weight, the reference attention is also supervised by the label maps of
    batches that carry `label` and `reference_label` (`region_correspondence_loss`; a prompt's slot
    tokens, where they share the reference's softmax, count as their slot's region). `clustered`:
    the label maps are colour clusters (`PairDataset.drop_label_uses`), every one of them
    supervised, and no slot names one."""
    regions = tuple(range(correspondence.colour_regions)) if clustered else SUPERVISED_REGIONS

    def objective(model: nn.Module, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        x0, t, eps, sketch, reference = noised_batch(diffusion, batch, dropout, generator)
        text = batch.get("text")  # an encoded prompt (text models), already dropped at p_empty by the dataset
        supervise = correspondence.weight > 0 and "label" in batch and "reference_label" in batch
        with recorded_attention(model, correspondence.heads) if supervise else nullcontext() as records:
            loss = diffusion.loss(conditioned(model, sketch, reference, text), x0, t, eps, batch.get("weight"))
        if not supervise:
            return loss, {}
        keep = reference.flatten(1).abs().amax(1) > 0  # a dropped reference is the null (all-zero) one
        aux = region_correspondence_loss(records, batch["label"], batch["reference_label"], keep, regions,
                                         None if text is None or clustered else said_regions(text))
        return loss + correspondence.weight * aux, {"loss_correspondence": aux.detach()}

    return objective


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Trainer:
    """Owns the model under training, its EMA copy, optimizer, scheduler and checkpoints."""

    def __init__(self, model: UNet, diffusion: Diffusion, dataset: Dataset, objective: Objective, cfg: LoopConfig,
                 device: torch.device, dist: Dist = Dist(), state_path: str | Path | None = None,
                 run_id: str = "", meta: dict | None = None, seed: int = 0, group_lr: dict[str, float] | None = None,
                 probe_cache: Path | None = None):
        """group_lr: parameter-name prefix -> peak learning rate of those parameters (the rest: cfg.lr).
        probe_cache: where `probe_precision` keeps this machine's answers (None: time every run)."""
        if len(dataset) < cfg.batch_size * dist.world_size:
            raise AnimecolorError(f"dataset has {len(dataset)} images, fewer than one batch "
                                  f"({cfg.batch_size} x {dist.world_size} processes)")
        configure_numerics()
        self.cfg, self.device, self.dist, self.diffusion, self.seed = cfg, device, dist, diffusion, seed
        self.total_steps = cfg.total_steps(len(dataset))
        self.dataset, self.objective, self.meta = dataset, objective, meta or {}
        self.state_path = Path(state_path) if state_path else None
        self.run_id, self.probe_cache = run_id, probe_cache
        self.model = model.to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        # a frozen part (requires_grad False: the prompt adapter's base) is neither optimised nor clipped
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.trained = [p for _, p in named]
        groups = [{"params": [p for n, p in named if not n.startswith(tuple(group_lr or ()))], "lr": cfg.lr}]
        groups += [{"params": [p for n, p in named if n.startswith(prefix)], "lr": lr}
                   for prefix, lr in (group_lr or {}).items()]
        self.optimizer = opt_cls([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step, self.resumed_from = 0, None
        # the whole run's loss curve and timing, carried through resumes (for honest summaries)
        self.history = {"losses": [], "timed_images": 0, "timed_seconds": 0.0, "seconds": 0.0}
        self.steps_per_epoch = EpochBatches.per_epoch(len(dataset), cfg.batch_size, dist.world_size)
        net: nn.Module = self.model
        if dist.world_size > 1:
            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.compiled = compiles(cfg.compile, device)
        self.net = compiled(net, cfg.compile, device, cfg.compile_mode)
        self.precision, self.precision_reason = self._fixed_precision()  # None: timed at the first batch (`run`)

    def _fixed_precision(self) -> tuple[str | None, str]:
        """The precision when no probe is needed, with why; (None, "") when `precision: auto` on a
        single-process CPU with native bf16, where `probe_precision` times both."""
        if self.cfg.precision != "auto":
            return self.cfg.precision, f"precision: {self.cfg.precision} (set)"
        if self.device.type == "cuda":
            return "bf16", "auto: bf16 on CUDA"
        if not cpu_has_bf16():
            return "fp32", "auto: this CPU has no native bf16"
        if self.dist.world_size > 1:  # every process must take the same choice: no per-process timing
            return "bf16", "auto: native bf16 (several processes: not probed)"
        return None, ""

    def _probe(self, batch: Batch) -> tuple[str, str]:
        """`probe_precision` on a copy of the network (the run's weights, optimizer and RNG stay
        untouched) with the run's first batch and its objective."""
        probe_net = copy.deepcopy(self.model).train()

        def step(precision: str) -> None:
            probe_net.zero_grad(set_to_none=True)
            with autocast(self.device, precision):
                loss, _ = self.objective(probe_net, batch, torch.Generator().manual_seed(0))
            loss.backward()

        shape = (f"{getattr(self.objective, '__qualname__', 'objective')} | unet {fingerprint(self.model.config.to_dict())}"
                 f" | batch {tuple(batch['target'].shape)}")
        return probe_precision(step, shape, self.probe_cache)

    def _lr_factor(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        if self.cfg.lr_schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        return warm

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "unet": self.model.config.to_dict(), "diffusion": self.diffusion.config.to_dict(),
            "model": self.model.state_dict(), "ema": self.ema.model.state_dict(), "ema_updates": self.ema.updates,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "run_id": self.run_id, "loop": self.cfg.to_dict(), "meta": self.meta,
            "rng": {"torch": torch.get_rng_state()}, "history": self.history,
            "precision": self.precision, "precision_reason": self.precision_reason,
        }

    def save(self, path: str | Path | None = None) -> None:
        if self.dist.main and (path or self.state_path):
            save_checkpoint(path or self.state_path, self.state())

    def try_resume(self) -> bool:
        """Load `state_path` if it holds this run (same run_id); returns whether it did."""
        if not self.state_path or not self.state_path.is_file():
            return False
        data = load_checkpoint(self.state_path, self.device)
        if data.get("run_id") != self.run_id or "history" not in data:
            return False  # another run, or an older checkpoint format whose summary could not be honest
        self.model.load_state_dict(data["model"])
        self.ema.model.load_state_dict(data["ema"])
        self.ema.updates = int(data["ema_updates"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.step = self.resumed_from = int(data["step"])
        self.history = data.get("history", self.history)
        if self.cfg.precision == "auto" and data.get("precision") in ("fp32", "bf16"):
            self.precision = data["precision"]  # a resumed run keeps the choice it started with
            self.precision_reason = data.get("precision_reason", "") + " (resumed)"
        return True

    def init_from(self, data: dict) -> None:
        """Start from another run's weights (fine-tuning): model and EMA both take its EMA weights."""
        self.model.load_state_dict(data["ema"])
        self.ema.model.load_state_dict(data["ema"])

    # -- the loop -----------------------------------------------------------------------------
    def _batches(self) -> Iterator[Batch]:
        """The run's batches from self.step on; pinned on CUDA, so the copies to the GPU are asynchronous."""
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        sampler = RunBatches(len(self.dataset), self.cfg.batch_size, self.seed, epoch, self.dist, skip)
        return iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.cfg.num_workers,
                               pin_memory=self.device.type == "cuda"))

    def _to_device(self, batch: Batch) -> Batch:
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        return {k: v.to(self.device, non_blocking=True).contiguous(memory_format=fmt) if v.ndim == 4
                else v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def run(self, log: Callable[[int, dict], None] | None = None, progress: Callable[[int], None] | None = None,
            sample: Callable[[nn.Module, int], None] | None = None, sample_every: int = 0,
            stop_at: int | None = None) -> dict:
        """Train from self.step to total_steps (or `stop_at`); returns summary figures.
        `sample(ema_model, step)` is called every `sample_every` steps (0: never).

        The step itself never waits for the GPU: losses stay on the device and are copied to the
        host together at the first step, at log and checkpoint points and at the end (`flush`),
        which is also where the timing is read."""
        cfg, end = self.cfg, min(self.total_steps, stop_at or self.total_steps)
        self.model.train()
        hist = self.history
        losses: list[float] = hist["losses"]
        pending: list[torch.Tensor] = []  # losses of finished steps, still on the device
        images, t_start, t_first = 0, time.perf_counter(), None
        base_images, base_timed, base_seconds = hist["timed_images"], hist["timed_seconds"], hist["seconds"]
        base_warmup = hist.get("warmup_seconds", 0.0)

        def flush() -> None:  # one device -> host copy (so one wait for the GPU) for all pending losses
            if pending:
                losses.extend(torch.stack(pending).tolist())
                pending.clear()

        def account() -> None:  # fold this session's timing into the run's totals
            now = time.perf_counter()
            hist["seconds"] = base_seconds + now - t_start
            hist["timed_images"] = base_images + images
            hist["timed_seconds"] = base_timed + (now - t_first if t_first else 0.0)
            # the run's peak over all its sessions (a rerun that only reloads a finished run adds nothing)
            hist["peak_memory_mb"] = max(hist.get("peak_memory_mb", 0.0), peak_memory_mb(self.device))
        batches = self._batches()
        try:
            while self.step < end:
                batch = self._to_device(next(batches))
                if self.precision is None:  # timed inside the first step's warm-up
                    self.precision, self.precision_reason = self._probe(batch)
                seed = step_seed(self.seed, self.dist.rank, self.step)
                generator = torch.Generator().manual_seed(seed)
                torch.manual_seed(seed)  # dropout: same masks after a resume
                with autocast(self.device, self.precision):
                    loss, extras = self.objective(self.net, batch, generator)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trained, cfg.grad_clip or float("inf"))
                self.optimizer.step()
                self.scheduler.step()
                self.ema.update(self.model)
                self.step += 1
                pending.append(loss.detach())
                if t_first is None:  # the first step pays for warm-up (workers, allocator, compile): not timed
                    flush()
                    t_first = time.perf_counter()
                    hist["warmup_seconds"] = base_warmup + t_first - t_start
                else:
                    images += batch["target"].shape[0] * self.dist.world_size
                if progress:
                    progress(1)
                at_log, at_checkpoint = self.step % cfg.log_every == 0, self.step % cfg.checkpoint_every == 0
                if at_log or at_checkpoint or self.step == end:
                    flush()
                account()
                if log and self.dist.main and (at_log or self.step == end):
                    rate = hist["timed_images"] / hist["timed_seconds"] if hist["timed_seconds"] else 0.0
                    log(self.step, {"loss": sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:]),
                                    "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                                    "images_per_s": rate, **extras})
                if at_checkpoint or self.step == end:
                    self.save()
                if sample and self.dist.main and sample_every and self.step % sample_every == 0:
                    sample(self.ema.model, self.step)
        except KeyboardInterrupt:
            flush()
            self.save()  # keep everything up to the last finished step
            raise
        rate = hist["timed_images"] / hist["timed_seconds"] if hist["timed_seconds"] else 0.0
        return {"steps": self.step, "losses": list(losses), "seconds": hist["seconds"], "images_per_s": rate,
                "peak_memory_mb": hist.get("peak_memory_mb", peak_memory_mb(self.device)),
                "warmup_seconds": hist.get("warmup_seconds", 0.0), "compiled": self.compiled,
                "precision": self.precision or self._fixed_precision()[0] or "bf16",
                "precision_reason": self.precision_reason, "machine": machine_description(self.device)}


def run_summary(result: dict, model: nn.Module, tail: int = 50) -> dict:
    """The figures a training stage reports: mean loss of the last `tail` steps, speed, size, memory."""
    losses = result["losses"]
    return {
        "final_loss": round(sum(losses[-tail:]) / len(losses[-tail:]), 5) if losses else None,
        "steps": result["steps"],
        "images_per_s": round(result["images_per_s"], 2),
        "seconds": round(result["seconds"], 1),
        "parameters": count_parameters(model),
        "peak_memory_mb": round(result["peak_memory_mb"], 1),
        "warmup_seconds": round(result["warmup_seconds"], 1),
        "compiled": result["compiled"],
        "precision": result["precision"],
        "precision_reason": result.get("precision_reason", ""),
        "machine": result["machine"],
    }
