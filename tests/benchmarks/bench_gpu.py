"""Benchmark for issue 17: training and sampling speed, today's path and the new one side by side.

    python tests/benchmarks/bench_gpu.py --out $OUT/h200.md           # the device run: < 8 min on an H100/H200
    python tests/benchmarks/bench_gpu.py --quick --out /tmp/quick.md  # CPU: tiny stand-in networks, proves it runs

Every section is a job in its own process with its own time limit, in this order of priority:

    train-eager     paper network (UNetConfig.paper(256)), batch 32: eager fp32, eager bf16 (today:
                    autocast's fp32 GroupNorm), + cudnn.benchmark, + bf16 GroupNorm; the small
                    CPU-profile network (UNetConfig(), 64 px, batch 128) likewise; top-10 CUDA
                    kernels of today's step and of the eager new path
    train-compiled  torch.compile (default mode) with bf16 GroupNorm and cudnn.benchmark: the new
                    default on CUDA; its top-10 kernels
    sample          10 DDIM steps, guidance 2 (batched CFG), batch 16 and batch 1: eager today,
                    eager new, compiled
    small-compiled  the small network compiled
    train-autotune  compile mode max-autotune-no-cudagraphs (the longest build)
    trainer         Trainer.run itself (EMA, clipping, AdamW, DataLoader; compile false, then auto)
    sample-graphs   compile mode reduce-overhead (CUDA graphs), batch 1 and 16 (CUDA only)

Peak memory is that of the timed steps (after warm-up), except in the trainer rows (the whole run).

A job that runs past its limit is stopped; the rows it printed are kept. A job that would start
with less than MIN_START seconds of the budget left is skipped, and the output says so. The
markdown is rewritten to --out after every job, so a run stopped from outside keeps what it had.
Warm-up (compile, cudnn autotuning, the first steps) is timed apart from the throughput.
`--jobs` reruns a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench_train import (norm_in_bf16, sample_latency, sync, time_steps,  # noqa: E402
                         train_step)
from pipeline.device import configure_numerics  # noqa: E402
from pipeline.model.conditioning import ConditionDropout  # noqa: E402
from pipeline.model.diffusion import Diffusion  # noqa: E402
from pipeline.model.unet import UNet, UNetConfig  # noqa: E402
from pipeline.training.loop import LoopConfig, Trainer, denoising_objective  # noqa: E402

BUDGET_S = 420  # the whole run: with start-up and bench_gpu.sh's CUDA test, under the 8 minutes allowed
MIN_START = 30  # a job is not started with less left than this
JOBS = {  # name: time limit (s), in order of priority: the goals first, then the extra levers
    "train-eager": 120, "train-compiled": 210, "sample": 150, "small-compiled": 90, "train-autotune": 240,
    "trainer": 100, "sample-graphs": 120,
}
TODAY = "eager bf16 (today)"  # the baseline of each table's "vs today"
NEW = ", bf16 GroupNorm, cudnn.benchmark"


@dataclass(frozen=True)
class Setup:
    """Sizes and iteration counts: the real ones, or tiny stand-ins for `--quick` on CPU."""

    paper: UNetConfig
    paper_batch: int
    small: UNetConfig
    small_batch: int
    sample_batches: tuple[int, ...]
    sample_steps: int
    iters: dict  # timed steps per network: fewer for the slow paper step
    warmup: int
    profile_steps: int
    trainer_steps: int
    quick: bool

    @classmethod
    def make(cls, quick: bool) -> Setup:
        if not quick:
            return cls(UNetConfig.paper(256), 32, UNetConfig(), 128, (16, 1), 10, {"paper": 8, "small": 20}, 3, 3,
                       30, False)
        tiny = UNetConfig(image_size=16, channels=8, channel_mults=(1,), res_blocks=1, heads=2)
        return cls(tiny, 2, tiny, 2, (2, 1), 2, {"paper": 2, "small": 2}, 1, 1, 4, True)

    def titles(self) -> dict[str, tuple[str, list[str]]]:
        """table key -> (heading, columns)."""
        stand_in = " (--quick: a tiny stand-in network)" if self.quick else ""
        size = self.paper.image_size
        train_cols = ["variant", "img/s", "vs today", "warm-up s", "peak MB", "first loss"]
        return {
            "train": (f"Pretraining step, paper network {size} px, batch {self.paper_batch}{stand_in}", train_cols),
            "small": ((f"Pretraining step, small network (UNetConfig()) {self.small.image_size} px, "
                       f"batch {self.small_batch}{stand_in}"), train_cols),
            "sample": ((f"Sampling, paper network {size} px, {self.sample_steps} DDIM steps, guidance 2, "
                        f"batched CFG{stand_in}"), ["variant", "batch", "s/image", "vs today", "warm-up s", "peak MB"]),
            "trainer": ((f"Trainer.run (EMA, clipping, AdamW, DataLoader), paper network, batch {self.paper_batch}, "
                         f"{self.trainer_steps} steps{stand_in}"),
                        ["variant", "img/s", "warm-up s", "peak MB", "compiled", "final loss"]),
        }


# ------------------------------------------------------------------------------- the jobs
def emit(**row) -> None:
    """One result line for the parent process."""
    print("ROW " + json.dumps(row), flush=True)


def attempt(label: str, device, fn: Callable[..., None], *args) -> None:
    """fn(*args), one variant; a failure (out of memory, a compile error) becomes a note, not the end of the job."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next variant
        emit(note=f"{label}: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
    if device.type == "cuda":
        torch.cuda.empty_cache()


def top_kernels(step: Callable[[int], torch.Tensor], device, steps: int, top: int = 10) -> tuple[list, float]:
    """The `top` kernels by device time over `steps` steps (CPU: operators by self CPU time):
    rows (name, ms per step, % of all, calls per step), and the total ms per step."""
    cuda = device.type == "cuda"
    step(10_000)  # outside the trace: a first call may still build or autotune
    sync(device)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for i in range(steps):
            step(10_001 + i)
        sync(device)
    events = prof.key_averages()
    if cuda:
        events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        spent = [e.self_device_time_total for e in events]
    else:
        spent = [e.self_cpu_time_total for e in events]
    total = sum(spent) or 1.0
    ranked = sorted(zip(spent, events), key=lambda pair: pair[0], reverse=True)[:top]
    return [(e.key, us / 1000 / steps, 100 * us / total, e.count / steps) for us, e in ranked], total / 1000 / steps


def train_variant(s: Setup, table: str, label: str, device, precision: str, benchmark: bool, bf16_norm: bool,
                  compile_mode: str | None = None, profile_as: str | None = None) -> None:
    cfg, n = (s.paper, s.paper_batch) if table == "train" else (s.small, s.small_batch)
    torch.backends.cudnn.benchmark = benchmark
    with norm_in_bf16(bf16_norm):
        step = train_step(cfg, n, device, precision, compile_mode=compile_mode)
        t = time_steps(step, n, device, iters=s.iters["paper" if table == "train" else "small"], warmup=s.warmup)
        emit(table=table, group="", speed=t.images_per_s,
             cells={"variant": label, "img/s": f"{t.images_per_s:.1f}", "warm-up s": f"{t.warmup_s:.1f}",
                    "peak MB": f"{t.peak_mb:.0f}", "first loss": f"{t.first_loss:.5f}"})
        if profile_as:
            rows, total = top_kernels(step, device, s.profile_steps)
            emit(profile=profile_as, rows=rows, total_ms=total,
                 kind="CUDA kernels" if device.type == "cuda" else "CPU operators")


EAGER = [  # label, precision, cudnn.benchmark, bf16 GroupNorm
    ("eager fp32", "fp32", False, False),
    (TODAY, "bf16", False, False),
    ("eager bf16, cudnn.benchmark", "bf16", True, False),
    (f"eager bf16{NEW}", "bf16", True, True),
]


def job_train_eager(s: Setup, device) -> None:
    for table in ("train", "small"):
        for label, precision, benchmark, bf16_norm in EAGER:
            profile_as = f"{label}, paper network" if table == "train" and label in (TODAY, EAGER[-1][0]) else None
            attempt(label, device, train_variant, s, table, label, device, precision, benchmark, bf16_norm, None,
                    profile_as)


def job_train_compiled(s: Setup, device, mode: str = "default", table: str = "train") -> None:
    label = f"compiled {mode}{NEW}"
    profile_as = f"{label}, paper network" if table == "train" else None
    attempt(label, device, train_variant, s, table, label, device, "bf16", True, True, mode, profile_as)


def sample_variant(s: Setup, label: str, n: int, device, benchmark: bool, bf16_norm: bool,
                   compile_mode: str | None) -> None:
    torch.backends.cudnn.benchmark = benchmark
    with norm_in_bf16(bf16_norm):
        t = sample_latency(s.paper, n, s.sample_steps, device, batched=True, precision="bf16",
                           compile_mode=compile_mode, repeats=2 if n > 1 else 5)
    emit(table="sample", group=str(n), speed=1 / t.s_per_image,
         cells={"variant": label, "batch": str(n), "s/image": f"{t.s_per_image:.4f}", "warm-up s": f"{t.warmup_s:.1f}",
                "peak MB": f"{t.peak_mb:.0f}"})


def job_sample(s: Setup, device) -> None:
    for n in s.sample_batches:
        for label, benchmark, bf16_norm in ((TODAY, False, False), (f"eager bf16{NEW}", True, True)):
            attempt(label, device, sample_variant, s, label, n, device, benchmark, bf16_norm, None)
    for n in s.sample_batches:
        label = f"compiled default{NEW}"
        attempt(label, device, sample_variant, s, label, n, device, True, True, "default")


def job_sample_graphs(s: Setup, device) -> None:
    if device.type != "cuda":
        emit(note="skipped (CUDA graphs need CUDA)")
        return
    for n in sorted(s.sample_batches):
        label = f"compiled reduce-overhead (CUDA graphs){NEW}"
        attempt(label, device, sample_variant, s, label, n, device, True, True, "reduce-overhead")


class RandomTriples(torch.utils.data.Dataset):
    """Fixed random (target, sketch, reference) triples: Trainer.run without image decoding."""

    def __init__(self, n: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.data = {k: torch.rand(n, c, size, size, generator=g).mul(2).sub(1)
                     for k, c in (("target", 3), ("sketch", 1), ("reference", 3))}

    def __len__(self) -> int:
        return self.data["target"].shape[0]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return {k: v[key[0]] for k, v in self.data.items()}


def job_trainer(s: Setup, device) -> None:
    def run(setting, label: str) -> None:
        torch.manual_seed(0)
        diffusion = Diffusion()
        loop = LoopConfig(train_steps=s.trainer_steps, batch_size=s.paper_batch, warmup_steps=0, log_every=10,
                          checkpoint_every=10**6, compile=setting)
        trainer = Trainer(UNet(s.paper), diffusion, RandomTriples(2 * s.paper_batch, s.paper.image_size),
                          denoising_objective(diffusion, ConditionDropout(p_uncond=0.1)), loop, device)
        r = trainer.run()
        emit(table="trainer", group="", speed=r["images_per_s"],
             cells={"variant": label, "img/s": f"{r['images_per_s']:.1f}", "warm-up s": f"{r['warmup_seconds']:.1f}",
                    "peak MB": f"{r['peak_memory_mb']:.0f}", "compiled": str(r["compiled"]).lower(),
                    "final loss": f"{sum(r['losses'][-10:]) / len(r['losses'][-10:]):.5f}"})

    for setting in (False, "auto"):
        label = f"Trainer.run, compile {str(setting).lower()}"
        attempt(label, device, run, setting, label)


RUNNERS = {
    "train-eager": job_train_eager,
    "train-compiled": job_train_compiled,
    "sample": job_sample,
    "small-compiled": lambda s, device: job_train_compiled(s, device, table="small"),
    "train-autotune": lambda s, device: job_train_compiled(s, device, mode="max-autotune-no-cudagraphs"),
    "trainer": job_trainer,
    "sample-graphs": job_sample_graphs,
}


def run_job(name: str, s: Setup, device) -> None:
    configure_numerics()  # TF32 matmuls as in training; each variant sets cudnn.benchmark itself
    name_of = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    emit(info=f"{name_of}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    RUNNERS[name](s, device)


# ------------------------------------------------------------------------------ the parent
def run_child(name: str, args, limit: float) -> tuple[list[dict], str]:
    """Run one job in a fresh process (its own CUDA context and memory peak); stop it at `limit` s."""
    cmd = [sys.executable, __file__, "--job", name, "--device", args.device] + (["--quick"] if args.quick else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    start = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=limit)
        status = "done" if proc.returncode == 0 else f"exited {proc.returncode}: {_last_line(err)}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its compile workers (its own process group)
        out, err = proc.communicate()
        status = f"stopped at its {limit:.0f} s limit (rows printed before are kept)"
    rows = [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]
    return rows, f"{status}, {time.perf_counter() - start:.0f} s"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _cell(text: str) -> str:
    return text.replace("|", "/")


def goals(rows: list[dict]) -> list[str]:
    """Issue 17's targets against the best new-path row of each table (not today's, not fp32)."""
    def best(table: str, group: str = "") -> dict | None:
        new = [r for r in rows if r.get("table") == table and r["group"] == group
               and r["cells"]["variant"] not in (TODAY, "eager fp32")]
        return max(new, key=lambda r: r["speed"], default=None)

    lines = []
    for table, group, column, goal in (("train", "", "img/s", ">= 200 img/s (stretch 250), peak <= 20 GB"),
                                       ("sample", "16", "s/image", "<= 0.035 s/image at batch 16"),
                                       ("sample", "1", "s/image", "batch-1 latency: a figure"),
                                       ("small", "", "img/s", ">= 5,000 img/s")):
        r = best(table, group)
        if r:
            memory = f", peak {r['cells']['peak MB']} MB" if table == "train" else ""
            lines.append(f"{table}{' batch ' + group if group else ''}: goal {goal}; best new path "
                         f"{r['cells'][column]} {column}{memory} ({r['cells']['variant']})")
    return lines


def render(s: Setup, rows: list[dict], notes: list[str], header: list[str]) -> str:
    out = list(header)
    infos = [r["info"] for r in rows if "info" in r]
    out += [f"Device: {infos[0]}." if infos else "Device: (no job reported one)."]
    for key, (title, columns) in s.titles().items():
        table = [r for r in rows if r.get("table") == key]
        if not table:
            continue
        base = {r["group"]: r["speed"] for r in table if r["cells"]["variant"] == TODAY}
        out += ["", f"## {title}", "", "| " + " | ".join(columns) + " |",
                "|" + "|".join("---" if c == "variant" else "---:" for c in columns) + "|"]
        for r in table:
            cells = dict(r["cells"])
            if r["group"] in base and r["speed"]:
                cells["vs today"] = f"x{r['speed'] / base[r['group']]:.2f}"
            out.append("| " + " | ".join(_cell(cells.get(c, "")) for c in columns) + " |")
    for r in rows:
        if "profile" in r:
            kind = r["kind"]
            out += ["", f"## Top {len(r['rows'])} {kind} per training step: {r['profile']}", "",
                    f"All {kind}: {r['total_ms']:.2f} ms per step.", "",
                    "| kernel | ms/step | % | calls/step |", "|---|---:|---:|---:|"]
            out += [f"| `{_cell(name[:100])}` | {ms:.2f} | {pct:.1f} | {calls:g} |" for name, ms, pct, calls in r["rows"]]
    out += ["", "## Against the goals of issue 17", ""] + [f"- {g}" for g in goals(rows) or ["no results yet"]]
    out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument("--quick", action="store_true", help="tiny stand-in networks and iterations (CPU check)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of: " + ", ".join(JOBS))
    ap.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job in this process
    args = ap.parse_args()
    s = Setup.make(args.quick)
    if args.job:
        run_job(args.job, s, torch.device(args.device))
        return
    start = time.perf_counter()
    unknown = set(args.jobs.split(",")) - set(JOBS)
    if unknown:
        ap.error(f"unknown jobs {sorted(unknown)} (choose from {', '.join(JOBS)})")
    header = [f"# bench_gpu.py {time.strftime('%Y-%m-%d %H:%M')}", "",
              (f"Command: `python tests/benchmarks/bench_gpu.py {' '.join(sys.argv[1:])}`; "
               f"budget {args.budget:.0f} s. Compiled and 'new' rows: bf16 autocast, bf16 GroupNorm, "
               f"cudnn.benchmark; 'today': bf16 autocast with its fp32 GroupNorm, no cudnn.benchmark."), ""]
    rows: list[dict] = []
    notes: list[str] = []
    for name in [j for j in JOBS if j in args.jobs.split(",")]:
        left = args.budget - (time.perf_counter() - start)
        if left < MIN_START:
            notes.append(f"{name}: skipped, over budget ({left:.0f} s left)")
        else:
            got, status = run_child(name, args, min(JOBS[name], left))
            rows += got
            notes.append(f"{name}: {status}")
            notes += [f"{name}: {r['note']}" for r in got if "note" in r]
        print(notes[-1], file=sys.stderr, flush=True)
        text = render(s, rows, notes + [f"total so far {time.perf_counter() - start:.0f} s"], header)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
