"""The correspondence path: a reference encoder whose tokens the denoiser reads by cross-attention.

Channel concatenation (the official network) lets a sketch location see only the reference
pixels near the same place; when the reference is another drawing of the character (other
pose, other crop) or heavily warped, the right colour is elsewhere. Here the reference is also
encoded into a grid of tokens (`reference_tokens` per side), and blocks of the U-Net at the
feature-map sides in `UNetConfig.reference_attention` attend to them (the idea behind SCFT's
dense correspondence and the reference attention of ColorizeDiffusion / MangaNinja):

    q = W_q GroupNorm(h) + P(h's positions)        h: (B, C, H, W) denoiser features
    k = W_k LayerNorm(c) + P(c's positions)        c: (B, N, D) reference tokens
    v = W_v LayerNorm(c)
    h <- h + W_o softmax(q k^T / sqrt(d)) v        W_o starts at zero: the block starts as the identity

P is a fixed 2-D Fourier encoding of positions in [0, 1] (the same for the 32 px features and
the 16 px tokens, so "same place" is visible to the attention but not forced). The tokens are a
plain sequence: more of them (text, the text + reference issue) can be appended to the context.

Correspondence supervision (`CorrespondenceConfig`, off by default). In training the reference
is the target under a known distortion, so for every denoiser position the reference tokens that
show the same point of the picture are known. It was built to help the irises, which a model
with the prompt path barely read from the reference: given the target itself as reference, its
predicted iris colour at t = 999 moved by 3 CIEDE2000 over the null reference (hair: by 20;
`scripts/iris_diagnostic.py`). The supervised term is a KL divergence per query position

    KL( softmax_k(-|pos(query) - src_k|^2 / 2 sigma^2)  ||  mean over heads of the attention on the grid )

where src_k is the point of the target shown by reference token k (from the warp maps). Queries
whose point is not shown in the reference (nearest token farther than 2 sigma) are skipped, and
so are samples whose reference was dropped. It supervises where to look, not what to take: the
values, and so the colours, are still learnt from the denoising loss alone. Measured at equal
CPU time (README, "Colour fidelity, this version") it made everything worse, the irises
included; what held them back was the prompt path's share of training, not where to look.

Region supervision (`target: region`): on synthetic data the label maps say which region every
denoiser position and every reference token belongs to, so the attention can be told to look at
the query's own region -- any token of it, not one point:

    loss = mean over regions r of  mean over the queries q of r of  -log sum_k a_qk share_k(r)

with share_k(r) the fraction of token k's patch labelled r (`region_correspondence_loss`). Each
region weighs alike, so the two irises (26 pixels each at 64 px, one or two tokens) count as much
as the hair; left and right irises are different regions, so heterochromia is in the signal.
With `heads: one` only the first head of each layer is supervised, the others stay free. The
diagnostic behind it (`scripts/iris_diagnostic.py`): without supervision, the attention of iris
positions put 1-6 % of its mass on the reference's iris tokens, as much on the other eye's,
while hair positions put 35-68 % on hair tokens: the irises were not found.

The same supervision reads the prompt (text models, `text_attention: shared`): the slot tokens
sit in the same softmax as the grid, and a slot the prompt says counts as its region's tokens.
Where text training blanked or recoloured the reference's region (its tokens then belong to no
region), or dropped the reference, the said slot is the only right place to look: so the
attention learns that the text fills what the reference lacks, and wins where the two disagree
(measured: README, text + reference, `txsup`).

The prompt adapter (`text_attention: adapter`, trained by the `text` stage on a frozen
reference-only network, `training/adapter.py`) reads the slot tokens with their own keys, values
and softmax. Every slot is a key, but only a said slot has a value, and where a query's softmax
falls on said slots the reference's reading is turned down by that share times a learnt gate:

    h <- h + W_o [ (1 - g a_said) softmax(q k^T) v  +  softmax(q k_t^T) (v_t * said) ]

with a_said the query's attention on said slots and g = sigmoid(extra_gate). With the empty
prompt both extra terms are exactly zero: the network is the reference-only one, bit for bit.
Its attention is supervised by `slot_attention_loss`.

The reference comes from the model input itself (channels 4..6 of concat(x_t, sketch,
reference)), so training-time dropout, guidance and sampling need no change: the null
reference is mid grey there and here alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from pipeline.config import Config


def fourier_positions(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(height * width, dim) sin/cos features of (x, y) in [0, 1], pixel centres, row-major."""
    if dim % 4:
        raise ValueError(f"positional encoding needs a multiple of 4 channels (got {dim})")
    xy = fourier_grid(height, width, device)
    freqs = math.pi * 2.0 ** torch.arange(dim // 4, device=device, dtype=torch.float32)
    args = torch.cat([xy[:, :1] * freqs, xy[:, 1:] * freqs], 1)
    return torch.cat([args.sin(), args.cos()], 1).to(dtype)


UNFUSED_CPU_TRAINING = True  # `attend`'s CPU bf16 training path; False: the flash kernel (benchmarks compare)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """scaled_dot_product_attention on (B, heads, N, d) tensors, made contiguous in d first.

    The fused kernels (flash attention on CPU and CUDA) need a unit stride in the last dimension;
    features read off a conv map (flatten + transpose) have a stride of H*W there, which sends
    PyTorch to the unfused math path: on 2 CPU cores that path made a training step with
    attention at 32 px twice as slow (issue 14's measurements). `mask` (bool, broadcast to
    (B, heads, N_q, N_k)): the keys each query may read.

    Training in bf16 on a CPU takes `attend_unfused` instead: the CPU flash kernel's backward is
    slow for this network's 16-wide heads: the default training step takes 0.43 s instead of 0.52
    on 2 cores (`tests/benchmarks/bench_cpu.py`; README, "Speed and memory"). Sampling (no
    gradient) keeps the flash kernel: as fast there, and more precise."""
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if UNFUSED_CPU_TRAINING and training and mask is None and q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return attend_unfused(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attend_unfused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int = 1 << 21) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v in the inputs' dtype, over slices of the batch of at most `chunk`
    logits each (they stay in cache: one slice of the whole batch is 1.4x slower). In bf16 the
    logits are rounded to bf16 (the flash kernel keeps them in fp32): about 1 % error in the output
    where the attention is sharp, against 0.2 %; fp32 logits here would cost all of the speed."""
    n = max(1, chunk // (q.shape[1] * q.shape[2] * k.shape[2]))
    scale = q.shape[-1] ** -0.5
    out = [(qi * scale @ ki.transpose(-1, -2)).softmax(-1) @ vi for qi, ki, vi in zip(q.split(n), k.split(n), v.split(n))]
    return out[0] if len(out) == 1 else torch.cat(out)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm that, under bf16 autocast on CUDA, normalises in bf16.

    Autocast runs group_norm in fp32: a cast of the activations before and after every norm,
    which makes the GroupNorm -> SiLU -> conv chains of the U-Net memory-bound. The CUDA kernel
    accumulates its statistics in fp32 whatever the input dtype, so bf16 in and out costs little
    accuracy (issue 17). Everywhere else (CPU, fp32, no autocast) this is nn.GroupNorm exactly,
    with the same parameters and state_dict keys. `bf16_under_autocast = False` restores
    autocast's fp32 upcast (for benchmarks that compare the two).
    """

    bf16_under_autocast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.bf16_under_autocast and x.is_cuda and torch.is_autocast_enabled("cuda")
                and torch.get_autocast_dtype("cuda") == torch.bfloat16):
            with torch.autocast("cuda", enabled=False):
                weight = self.weight.to(torch.bfloat16) if self.weight is not None else None
                bias = self.bias.to(torch.bfloat16) if self.bias is not None else None
                return F.group_norm(x.to(torch.bfloat16), self.num_groups, weight, bias, self.eps)
        return super().forward(x)


def group_norm(channels: int, groups: int) -> GroupNorm:
    """GroupNorm with the largest group count <= `groups` that divides `channels` (shared with the U-Net)."""
    return GroupNorm(math.gcd(groups, channels), channels)


class _EncoderBlock(nn.Module):
    """GroupNorm + SiLU + conv, twice, with a skip: a ResBlock without the timestep."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(cin, groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  group_norm(cout, groups), nn.SiLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class ReferenceEncoder(nn.Module):
    """reference (B, 3, S, S) in [-1, 1] -> tokens (B, tokens^2, dim): one per (S / tokens)-px patch.

    A patch embedding (a strided conv, as in ViT) and `depth` residual conv blocks at the token
    grid, which give each token its neighbourhood (what region it is) besides its own colour.
    Cheap on purpose: at 64 px it costs a few percent of the U-Net."""

    def __init__(self, image_size: int, tokens: int, dim: int, groups: int, depth: int = 2):
        super().__init__()
        patch = image_size // tokens
        if image_size % tokens:
            raise ValueError(f"reference_tokens {tokens} does not divide image_size {image_size}")
        self.stem = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[_EncoderBlock(dim, dim, groups) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(reference))
        return self.norm(h.flatten(2).transpose(1, 2))


class CrossAttention(nn.Module):
    """Denoiser features attend to context tokens (see the module notation); residual, zero-initialised."""

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int, token_side: int,
                 separate_extra: bool = False, adapter: bool = False):
        super().__init__()
        if channels % heads:
            raise ValueError(f"cross-attention: {channels} channels do not split into {heads} heads")
        self.heads, self.token_side = heads, token_side
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        # separate_extra: the tokens past the grid (text) get their own keys, values and softmax, and
        # the two readings are added (decoupled cross-attention, as IP-Adapter): six prompt tokens then
        # need not outbid 256 reference tokens for attention mass.
        self.extra_kv = nn.Linear(context_dim, 2 * channels) if separate_extra else None
        # the prompt adapter: it starts as nothing (zero values), and where a query reads a said slot
        # it may turn the reference's reading down by up to that share (the gate, sigmoid, learnt from 0.73)
        self.extra_gate = nn.Parameter(torch.tensor(1.0)) if adapter else None
        if adapter:
            nn.init.zeros_(self.extra_kv.weight[channels:])
            nn.init.zeros_(self.extra_kv.bias[channels:])
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.record: list | None = None  # `recorded_attention` collects the attention on the grid here
        self.record_heads = "all"  # ... of the head mean (all) or of the first head (one)
        self.record_text = False  # ... or, with separate text, the text's own softmax instead

    def forward(self, x: torch.Tensor, context: torch.Tensor, said: torch.Tensor | None = None,
                shares: list | None = None) -> torch.Tensor:
        """said (B, T) bool, separate text only (the adapter): the slots the prompt says. Every slot's
        token is a key (a query finds its own slot), but an unsaid slot's value is zero: a query of an
        unsaid region reads nothing, and the empty prompt reads exactly zero everywhere. `shares`: a
        list the adapter appends each query's attention share on the said slots to, (B, 1, H, W),
        head mean (0 where nothing is said)."""
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).flatten(2).transpose(1, 2)                       # (B, HW, C)
        q = q + fourier_positions(h, w, c, x.device, q.dtype)
        n_grid = self.token_side * self.token_side  # tokens past the grid (e.g. text) get no position
        grid, extra = (context[:, :n_grid], context[:, n_grid:]) if self.extra_kv is not None else (context, None)
        k, v = self.kv(grid).chunk(2, dim=-1)                                     # (B, N, C) each
        pos = fourier_positions(self.token_side, self.token_side, c, x.device, k.dtype)
        k = torch.cat([k[:, :n_grid] + pos, k[:, n_grid:]], 1)
        split = lambda t: t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        if self.record is not None and not self.record_text:  # the shared softmax: grid and, with them, the text
            self._record(q, k, h, w)
        out = attend(split(q), split(k), split(v))                                # (B, heads, HW, C/heads)
        if extra is not None and extra.shape[1]:
            k_extra, v_extra = self.extra_kv(extra).chunk(2, dim=-1)
            if self.record is not None and self.record_text:
                self._record(q, k_extra, h, w)
            if said is None:
                out = out + attend(split(q), split(k_extra), split(v_extra))
            else:  # adapter: every slot is a key, only a said slot has a value (a colour) and a gate
                weights = said_weights(split(q), split(k_extra), said)                  # (B, heads, HW, T)
                gate = self.extra_gate.sigmoid() * weights.sum(-1, keepdim=True)
                if shares is not None:
                    shares.append(weights.sum(-1).mean(1).reshape(b, 1, h, w))
                out = out * (1 - gate) + weights @ split(v_extra)
        return x + self.proj(out.transpose(1, 2).reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w))

    def _record(self, q: torch.Tensor, k: torch.Tensor, h: int, w: int) -> None:
        """Append (log attention (B, M, N) on the context of one softmax -- the token_side^2 grid
        tokens first, then any text tokens that share it --, the M queries' (x, y) in [0, 1], the
        token side): of the head mean, or of the first head alone when `record_heads` is "one".
        Feature maps finer than the token grid are read at every stride-th position (M = grid
        tokens): a 32 px map's 1,024 queries cost 4x the 16 px map's and say little more about
        where to look."""
        stride = max(1, min(h, w) // self.token_side)
        self.record.append((_log_attention(q, k, h, w, self.heads, stride, self.record_heads),
                            fourier_grid(h, w, q.device).reshape(h, w, 2)[::stride, ::stride].reshape(-1, 2),
                            self.token_side))


def said_weights(q: torch.Tensor, k: torch.Tensor, said: torch.Tensor) -> torch.Tensor:
    """The prompt adapter's attention (B, heads, M, T) of queries q (B, heads, M, d) on the slot
    keys k (B, heads, T, d): every slot is a key of the softmax, an unsaid one (said (B, T) False)
    weighs zero after it."""
    weights = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
    return weights * said[:, None, None, :].to(q.dtype)


def _log_attention(q: torch.Tensor, k: torch.Tensor, h: int, w: int, heads: int, stride: int,
                   record_heads: str) -> torch.Tensor:
    """(B, M, N) log attention of queries q (B, h*w, C) at every stride-th position on keys k
    (B, N, C): of the head mean, or of the first head alone (record_heads "one")."""
    b, c = q.shape[0], q.shape[-1]
    q = q.reshape(b, h, w, c)[:, ::stride, ::stride].reshape(b, -1, heads, c // heads).transpose(1, 2)
    k = k.reshape(b, -1, heads, c // heads).transpose(1, 2)
    if record_heads == "one":
        q, k = q[:, :1], k[:, :1]
    logits = q.float() @ k.float().transpose(-1, -2) * (c // heads) ** -0.5  # (B, heads, M, N)
    return logits.log_softmax(-1).logsumexp(1) - math.log(logits.shape[1])


class PromptAttention(nn.Module):
    """The prompt adapter's own cross-attention, at a feature-map side without reference attention
    (`UNetConfig.prompt_attention`; the full-resolution decoder, where the concatenated reference's
    colours come in through the skips and the reference attention's gate cannot reach them).
    Queries of the features (with their positions), a key for every slot token, a value only for
    a said slot, added through a bias-free, zero-initialised projection: the empty prompt adds
    exactly zero, and a word can repaint its region at full resolution. Its softmax is recorded
    at every position for `slot_attention_loss` (`recorded_attention(text=True)`)."""

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"prompt attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = nn.Conv2d(channels, channels, 1, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.record: list | None = None
        self.record_heads, self.record_text = "all", False

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, said: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, context_dim): the prompt's slot tokens; said (B, T) bool."""
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).flatten(2).transpose(1, 2) + fourier_positions(h, w, c, x.device, x.dtype)
        k, v = self.kv(tokens).chunk(2, dim=-1)
        if self.record is not None and self.record_text:
            self.record.append((_log_attention(q, k, h, w, self.heads, 1, self.record_heads),
                                fourier_grid(h, w, q.device), h))
        split = lambda t: t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        out = said_weights(split(q), split(k), said) @ split(v)                         # (B, heads, HW, C/heads)
        return x + self.proj(out.transpose(1, 2).reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w))


class CorrespondenceConfig(Config):
    """Supervision of the reference attention by the known distortion (params `pretrain.correspondence`;
    see the module notes)."""

    weight: float = Field(0.0, ge=0, description="weight of the attention's supervision (see target) beside the "
                                                 "denoising loss; 0: off, as the paper (needs "
                                                 "unet.reference_attention)")
    sigma: float = Field(1.0, gt=0, description="width of the true correspondence, in reference tokens")
    target: Literal["point", "region"] = Field(
        "point", description="point: the tokens showing the same point of the picture (the warp); region: any token "
                             "of the same labelled region (label maps: synthetic data), each region weighing alike")
    heads: Literal["all", "one"] = Field("all", description="all: the head mean is supervised; one: the first head "
                                                             "only, the others stay free")
    colour_regions: int = Field(0, ge=0, le=64, description="target region on data without label maps (real "
                                                            "images): each target's k colour clusters (k-means in "
                                                            "CIELAB), warped with its reference, stand in for the "
                                                            "regions; 0: the supervision is off there")


@contextmanager
def recorded_attention(model: nn.Module, heads: str = "all", text: bool = False) -> Iterator[list]:
    """Within the block, every CrossAttention of `model` appends (log attention (B, M, N) of the
    head mean, or of its first head with heads="one", its M queries' positions, its token side)
    to the yielded list on each forward (`CrossAttention._record`); text=True: of the separate
    text softmax (N = the slots) instead of the reference's, and of every PromptAttention's."""
    layers = [m for m in model.modules() if isinstance(m, (CrossAttention, PromptAttention))]
    records: list = []
    for layer in layers:
        layer.record, layer.record_heads, layer.record_text = records, heads, text
    try:
        yield records
    finally:
        for layer in layers:
            layer.record = None


def correspondence_loss(records: list, source: torch.Tensor, keep: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean KL divergence of the recorded attention from the warp's correspondence (module notes).

    source (B, 2, H, W): for each reference pixel, the (x, y) in [0, 1] of the target point it
    shows; keep (B,) bool: samples that had a reference. Returns a scalar (0 if nothing to supervise)."""
    total = source.new_zeros((), dtype=torch.float32)
    targets: dict = {}  # the layers at one feature-map side share their target
    for log_attention, pos, token_side in records:
        key = (pos.shape[0], token_side)
        if key not in targets:
            src = F.adaptive_avg_pool2d(source.float(), token_side).flatten(2).transpose(1, 2)  # (B, N, 2)
            width = sigma / token_side
            d2 = ((pos[None, :, None] - src[:, None]) ** 2).sum(-1)                          # (B, M, N)
            target = torch.softmax(-d2 / (2 * width ** 2), -1)
            shown = (d2.amin(-1) < (2 * width) ** 2) & keep[:, None]
            targets[key] = (target, (target * target.clamp_min(1e-12).log()).sum(-1), shown)
        target, neg_entropy, shown = targets[key]
        log_attention = log_attention[..., :token_side ** 2].log_softmax(-1)  # the grid's share, renormalised
        kl = neg_entropy - (target * log_attention).sum(-1)                                  # (B, M)
        total = total + (kl * shown).sum() / shown.sum().clamp_min(1)
    return total / max(len(records), 1)


def region_correspondence_loss(records: list, label: torch.Tensor, reference_label: torch.Tensor, keep: torch.Tensor,
                               regions: tuple[int, ...], text_regions: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over `regions` of -log(attention mass on the tokens of the query's own region).

    label, reference_label (B, H, W) int64: the target's label map and the (warped) reference's.
    A grid token's share of a region is the fraction of its patch with that label, so the mass is
    sum_k attention_k * share_k(region of the query). Text tokens that share the softmax (the
    record's tokens past the grid) speak for the region `text_regions` (B, T) int64 names, or for
    none (-1: the slot is unspecified): a query's own slot, when the prompt says its colour, is
    then its region too -- the only one where the reference's region was blanked or recoloured
    (their label is no region's), or the reference dropped (keep False: its grid counts for
    nothing). Queries of other regions and queries with nothing of their region to look at are
    skipped. Every region weighs alike (an iris's 26 pixels as much as the hair's 1,000), and per
    region the queries of all samples are pooled. Returns a scalar (0 if nothing to supervise)."""
    total, count = label.new_zeros((), dtype=torch.float32), 0
    n_labels = int(max(label.max(), reference_label.max(), *regions)) + 1
    shares: dict = {}
    for log_attention, pos, token_side in records:
        key = (token_side, log_attention.shape[-1])
        if key not in shares:
            one_hot = F.one_hot(reference_label, n_labels).permute(0, 3, 1, 2).float()     # (B, L, H, W)
            share = F.adaptive_avg_pool2d(one_hot, token_side).flatten(2) * keep[:, None, None]  # (B, L, N)
            n_extra = log_attention.shape[-1] - share.shape[-1]
            if n_extra:  # the text tokens: one-hot on the region each speaks for (none if unspecified or unknown)
                said = (share.new_zeros(share.shape[0], n_labels, n_extra) if text_regions is None else
                        F.one_hot(text_regions.clamp_min(0), n_labels).transpose(1, 2) * (text_regions >= 0)[:, None])
                share = torch.cat([share, said.float()], -1)
            shares[key] = share
        share = shares[key]
        h, w = label.shape[-2:]
        qx = (pos[:, 0] * w).long().clamp(0, w - 1)
        qy = (pos[:, 1] * h).long().clamp(0, h - 1)
        query_label = label[:, qy, qx]                                                     # (B, M)
        query_share = torch.gather(share, 1, query_label[..., None].expand(-1, -1, share.shape[-1]))  # (B, M, N)
        log_mass = torch.logsumexp(log_attention + query_share.clamp_min(1e-12).log(), -1)  # (B, M)
        shown = query_share.amax(-1) > 0
        for region in regions:
            mask = shown & (query_label == region)
            if mask.any():
                total, count = total - log_mass[mask].mean(), count + 1
    return total / max(count, 1)


def slot_attention_loss(records: list, label: torch.Tensor, slot_regions: tuple[int, ...]) -> torch.Tensor:
    """Mean over slots of -log(the text attention's mass on the query's own slot token).

    records: `recorded_attention(text=True)`'s, over the slot tokens (B, M, slots); label (B, H, W)
    int64, the target's label map; slot_regions: the label-map region of each slot, in token order.
    Queries of other regions (lines, mouth) are free. Each slot weighs alike, said or not: the
    prompt adapter learns where each slot is, and reads a colour only where one is said."""
    total, count = label.new_zeros((), dtype=torch.float32), 0
    h, w = label.shape[-2:]
    for log_attention, pos, _ in records:
        qx = (pos[:, 0] * w).long().clamp(0, w - 1)
        qy = (pos[:, 1] * h).long().clamp(0, h - 1)
        query_label = label[:, qy, qx]                                                     # (B, M)
        for slot, region in enumerate(slot_regions):
            mask = query_label == region
            if mask.any():
                total, count = total - log_attention[..., slot][mask].mean(), count + 1
    return total / max(count, 1)


def fourier_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(height * width, 2) pixel-centre (x, y) in [0, 1], row-major: the positions `fourier_positions` encodes."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1)
