"""The correspondence path: a reference encoder whose tokens the denoiser reads by cross-attention.

The reference (channels 4..6 of the U-Net input) is encoded into a grid of tokens
(`ReferenceEncoder`), and U-Net blocks at the feature-map sides in `UNetConfig.reference_attention`
attend to them (`CrossAttention`), so a sketch location can take its colour from anywhere in the
reference, not only from the same place:

    q = W_q GroupNorm(h) + P(h's positions)        h: (B, C, H, W) denoiser features
    k = W_k LayerNorm(c) + P(c's positions)        c: (B, N, D) reference tokens
    v = W_v LayerNorm(c)
    h <- h + W_o softmax(q k^T / sqrt(d)) v        W_o starts at zero: the block starts as the identity

P is a fixed 2-D Fourier encoding of positions in [0, 1] (`attention.fourier_positions`). Tokens
past the grid (a prompt's slot tokens) share the softmax, or, with the prompt adapter, get their
own keys, values and softmax (`PromptAttention` at sides without reference attention):

    h <- h + W_o [ (1 - g a_said) softmax(q k^T) v  +  softmax(q k_t^T) (v_t * said) ]

with a_said a query's attention on said slots and g = sigmoid(extra_gate); the empty prompt adds
exactly zero. `recorded_attention` records the attention for the supervision losses
(`training/correspondence.py`). Design notes and measurements: docs/design.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from pipeline.model.attention import attend, fourier_grid, fourier_positions, group_norm


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
