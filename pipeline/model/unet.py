"""The denoising U-Net: x_t, sketch and reference concatenated on channels -> eps or v.

Conditioning is channel concatenation, as in the official AnimeDiffusion network:
input = concat(x_t [3], sketch [1], reference [3]) = 7 channels; output 3 channels. The
network knows nothing of betas or guidance: it maps (input, t) -> prediction.

Shapes: x (B, 7, H, W) float in about [-1, 1]; t (B,) integer or float timesteps in [0, T).
H and W must be divisible by 2 ** (len(channel_mults) - 1).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, model_validator
from torch import nn

from pipeline.config import Config
from pipeline.model.conditioning import REFERENCE_CHANNELS
from pipeline.data.prompt import COLOURS, SLOTS
from pipeline.errors import AnimecolorError
from pipeline.model.attention import attend, group_norm
from pipeline.model.reference import CrossAttention, PromptAttention, ReferenceEncoder
from pipeline.model.text import TextEncoder

SIZE_LATER = "image_size_later"  # validation context: skip the checks that need the real image_size


class PromptAdapterConfig(Config):
    """The prompt adapter's own layers (`text_attention: adapter`). Params `text`, where the `text`
    stage sets them on the frozen model; part of `UNetConfig`, so a model file rebuilds them, but
    not of `pretrain.unet`."""

    prompt_attention: tuple[int, ...] = Field((), description="decoder sides with their own prompt attention "
                                                              "(e.g. 64); []: none")
    prompt_decoder: bool = Field(False, description="a trainable decoder copy that paints the said slots; false: none")
    prompt_decoder_levels: int = Field(0, ge=0, le=6, description="finest decoder levels the copy covers; 0: all")

    @model_validator(mode="after")
    def _levels_need_the_copy(self):
        if self.prompt_decoder_levels and not self.prompt_decoder:
            raise ValueError("prompt_decoder_levels needs prompt_decoder")
        return self


class UNetConfig(PromptAdapterConfig):
    """Constructor config (params `pretrain.unet`, less the adapter's layers: `PromptAdapterConfig`);
    stored in every checkpoint and model file so a file alone rebuilds the network. Defaults: the
    small CPU profile (~1 M parameters); `paper()` is the official network."""

    image_size: int = Field(64, ge=4, le=4096, description="square side in pixels (from base.image_size)")
    in_channels: int = Field(7, ge=1, description="x_t (3) + sketch (1) + reference (3)")
    out_channels: int = Field(3, ge=1, description="eps or v (3)")
    channels: int = Field(32, ge=4, le=1024, description="base width; level i has channels * channel_mults[i]")
    channel_mults: tuple[int, ...] = Field((1, 2, 2), min_length=1, max_length=6,
                                           description="width multiplier per resolution level")
    res_blocks: int = Field(1, ge=1, le=4, description="residual blocks per level (the decoder has one more)")
    attention_resolutions: tuple[int, ...] = Field((), description="extra self-attention at these feature-map sides")
    heads: int = Field(4, ge=1, description="attention heads")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in the residual blocks")
    norm_groups: int = Field(8, ge=1, description="GroupNorm groups (paper: 32)")
    reference_attention: tuple[int, ...] = Field((), description="sides that cross-attend to the "
                                                                 "reference; []: none (paper)")
    reference_tokens: int = Field(16, ge=1, description="side of the reference token grid (image_size / 2^k)")
    text: bool = Field(False, description="colour-prompt tokens join the reference attention; false: none")
    text_attention: Literal["shared", "separate", "adapter"] = Field(
        "shared", description="shared: one softmax with the reference | separate | adapter")
    vocabulary: tuple[str, ...] = Field((), description="the prompt's colour words in embedding "
                                                        "order (from data/prompt.py)")

    @model_validator(mode="before")
    @classmethod
    def _vocabulary(cls, data):
        if isinstance(data, dict) and data.get("text") and not data.get("vocabulary"):
            data = {**data, "vocabulary": tuple(COLOURS)}
        return data

    @model_validator(mode="after")
    def _shape_fits(self, info: ValidationInfo):
        levels = len(self.channel_mults)
        if any(m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be >= 1 (got {list(self.channel_mults)})")
        if (self.channels * self.channel_mults[-1]) % self.heads:
            raise ValueError(f"attention: the bottleneck's {self.channels * self.channel_mults[-1]} channels do not "
                             f"split into {self.heads} heads")
        if self.text and not self.reference_attention:
            raise ValueError("text needs reference_attention (the prompt's tokens join the reference tokens there)")
        if self.prompt_attention and not (self.text and self.text_attention == "adapter"):
            raise ValueError("prompt_attention is the prompt adapter's (text true, text_attention adapter)")
        if self.prompt_decoder and not (self.text and self.text_attention == "adapter"):
            raise ValueError("prompt_decoder is the prompt adapter's (text true, text_attention adapter)")
        if self.prompt_decoder_levels > levels:
            raise ValueError(f"prompt_decoder_levels {self.prompt_decoder_levels}: the decoder has {levels} levels")
        if (info.context or {}).get(SIZE_LATER):  # a params section: image_size comes from base, checked then
            return self
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**{levels - 1} "
                             f"({levels} levels in channel_mults)")
        widths = {self.channels * self.channel_mults[-1]} | {
            self.channels * m for i, m in enumerate(self.channel_mults)
            if self.image_size // 2 ** i in self.attention_resolutions}
        widths |= {self.channels * m for i, m in enumerate(self.channel_mults)
                   if self.image_size // 2 ** i in (*self.reference_attention, *self.prompt_attention)}
        if any(w % self.heads for w in widths):
            raise ValueError(f"attention: widths {sorted(widths)} do not split into {self.heads} heads")
        sides = {self.image_size // 2 ** i for i in range(levels)}
        for name in ("reference_attention", "prompt_attention"):
            if set(getattr(self, name)) - sides:
                raise ValueError(f"{name} {list(getattr(self, name))}: feature-map sides are "
                                 f"{sorted(sides, reverse=True)}")
        if self.reference_attention and self.reference_tokens not in sides | {self.image_size // 2 ** levels}:
            raise ValueError(f"reference_tokens {self.reference_tokens} must be one of {sorted(sides, reverse=True)}")
        return self

    @classmethod
    def paper(cls, image_size: int = 256) -> UNetConfig:
        """The official network: base 64, mults 1-2-4-8, 2 blocks, bottleneck attention, 4 heads (~52 M)."""
        return cls(image_size=image_size, channels=64, channel_mults=(1, 2, 4, 8), res_blocks=2,
                   attention_resolutions=(), heads=4, dropout=0.0, norm_groups=32)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        return cls.model_validate(data)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al.), (B,) -> (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


_norm = group_norm  # GroupNorm with a group count that divides the channels (model/attention.py)


def _zero(module: nn.Module) -> nn.Module:
    """Zero-initialise the last layer of a residual branch: each block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm + SiLU + conv, twice, with the timestep embedding added in between."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin, groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))
        self.out_layers = nn.Sequential(_norm(cout, groups), nn.SiLU(), nn.Dropout(dropout),
                                        _zero(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None].to(x.dtype)
        return self.skip(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head self-attention over all H*W positions (scaled_dot_product_attention)."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, HW, C/heads)
        out = attend(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return F.avg_pool2d(x, 2)  # official: average pooling


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Step(nn.ModuleList):
    """A sequence of layers that take (x, emb), or (x, context) for cross-attention."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                said: torch.Tensor | None = None, shares: list | None = None) -> torch.Tensor:
        """shares: a list that each cross-attention of the prompt adapter appends its said share to."""
        for layer in self:
            x = layer(x, context, said, shares) if isinstance(layer, CrossAttention) else layer(x, emb)
        return x


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        levels = len(cfg.channel_mults)
        ch, groups = cfg.channels, cfg.norm_groups
        emb_dim = 4 * ch
        context_dim = ch * cfg.channel_mults[-1]
        separate_text = cfg.text and cfg.text_attention != "shared"  # the prompt's own keys and softmax
        self.adapter = cfg.text and cfg.text_attention == "adapter"
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips, cur, res = [ch], ch, cfg.image_size
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.res_blocks):
                layers = [ResBlock(cur, ch * mult, emb_dim, cfg.dropout, groups)]
                cur = ch * mult
                if res in cfg.attention_resolutions:
                    layers.append(Attention(cur, cfg.heads, groups))
                if res in cfg.reference_attention:
                    layers.append(CrossAttention(cur, context_dim, cfg.heads, groups, cfg.reference_tokens,
                                                  separate_text, self.adapter))
                self.down.append(_Step(layers))
                skips.append(cur)
            if level < levels - 1:
                self.down.append(_Step([Downsample()]))
                skips.append(cur)
                res //= 2
        self.middle = _Step([ResBlock(cur, cur, emb_dim, cfg.dropout, groups), Attention(cur, cfg.heads, groups),
                             ResBlock(cur, cur, emb_dim, cfg.dropout, groups)])
        self.up, self.out, up_outputs = self._decoder(cur, skips, res, emb_dim, context_dim, separate_text)
        # created last, so a network without it draws the same initial weights as before it existed
        self.reference_encoder = (ReferenceEncoder(cfg.image_size, cfg.reference_tokens, context_dim, groups)
                                  if cfg.reference_attention else None)
        self.text_encoder = TextEncoder(len(SLOTS), 2 + len(cfg.vocabulary), context_dim) if cfg.text else None
        self.text_pool = _zero(nn.Linear(context_dim, emb_dim)) if cfg.text and not self.adapter else None
        # the adapter's own prompt attention after the decoder blocks of those sides (keyed by block index)
        self.prompt_attention = nn.ModuleDict({
            str(i): PromptAttention(width, context_dim, cfg.heads, groups)
            for i, (side, width) in enumerate(up_outputs) if side in cfg.prompt_attention})
        # the adapter's own decoder (a copy of the frozen one, `adapter_model` copies its weights)
        # (of its blocks from `copy_start` on: those of the prompt_decoder_levels finest levels, or all)
        self.copy_start = len(self.up) - cfg.prompt_decoder_levels * (cfg.res_blocks + 1) if cfg.prompt_decoder_levels else 0
        self.prompt_up = self.prompt_out = None
        if cfg.prompt_decoder:
            up, self.prompt_out, _ = self._decoder(cur, skips, res, emb_dim, context_dim, separate_text, self.copy_start)
            self.prompt_up = up
        self._share_side = max((side for side, _ in up_outputs if side in cfg.reference_attention), default=0)

    def _decoder(self, cur: int, skips: list[int], res: int, emb_dim: int, context_dim: int,
                 separate_text: bool, first: int = 0) -> tuple[nn.ModuleList, nn.Sequential, list[tuple[int, int]]]:
        """The decoder's blocks from block `first` on, its output head, and each block's output
        (side, width), every block's; `skips` are the encoder's widths, consumed from the end (a
        copy of the list is used)."""
        cfg, ch, groups, skips = self.config, self.config.channels, self.config.norm_groups, list(skips)
        up, up_outputs = nn.ModuleList(), []
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for i in range(cfg.res_blocks + 1):
                width, upsample = ch * mult, level > 0 and i == cfg.res_blocks
                if len(up_outputs) >= first:
                    layers = [ResBlock(cur + skips[-1], width, emb_dim, cfg.dropout, groups)]
                    if res in cfg.attention_resolutions:
                        layers.append(Attention(width, cfg.heads, groups))
                    if res in cfg.reference_attention:
                        layers.append(CrossAttention(width, context_dim, cfg.heads, groups, cfg.reference_tokens,
                                                      separate_text, self.adapter))
                    up.append(_Step(layers + [Upsample(width)] if upsample else layers))
                skips.pop()
                cur, res = width, res * 2 if upsample else res
                up_outputs.append((res, cur))
        out = nn.Sequential(_norm(cur, groups), nn.SiLU(), _zero(nn.Conv2d(cur, cfg.out_channels, 3, padding=1)))
        return up, out, up_outputs

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_channels, H, W), t (B,), text (B, slots, 4) or None -> (B, out_channels, H, W).

        With reference attention the reference is read from its channels of the input
        (`conditioning.model_input`: x_t 0..2, sketch 3, reference 4..6) and encoded into tokens.
        A text model takes the encoded prompt (`data/prompt.encode`); None is the empty prompt."""
        emb = self.time_embed(timestep_embedding(t, self.config.channels).to(x.dtype))
        said = tokens = None
        context = self.reference_encoder(x[:, REFERENCE_CHANNELS]) if self.reference_encoder is not None else None
        if self.text_encoder is not None:
            if text is None:
                text = x.new_zeros(x.shape[0], len(SLOTS), 4)
            tokens = self.text_encoder(text.to(x.dtype))
            context = torch.cat([context, tokens], 1)
            if self.adapter:  # values of the said slots only, no pooled nudge: the empty prompt adds exactly 0
                said = text[..., 0] > 0
            else:
                emb = emb + self.text_pool(tokens.mean(1))
        elif text is not None:
            raise AnimecolorError("this model was trained without text: it cannot follow a prompt")
        h = self.input(x)
        hs = [h]
        for step in self.down:
            h = step(h, emb, context, said)
            hs.append(h)
        h = self.middle(h, emb)
        copy = self.prompt_up is not None and said is not None and bool(said.any())
        skips = middle = None
        base_shares = [] if copy else None
        for i, step in enumerate(self.up):
            if copy and i == self.copy_start:
                skips, middle = list(hs), h
            h = step(torch.cat([h, hs.pop()], dim=1), emb, context, said, base_shares)
            if str(i) in self.prompt_attention:
                h = self.prompt_attention[str(i)](h, tokens, said)
        out = self.out(h)
        if not copy:
            return out
        # the adapter's decoder, where the prompt says a slot: out + share * (copy - out), the share
        # being the attention on said slots at the finest reference-attention side (0 where nothing is
        # said): of the copy's own layers there, or the frozen decoder's when the copy has none
        h, shares = middle, []
        for step in self.prompt_up:
            h = step(torch.cat([h, skips.pop()], dim=1), emb, context, said, shares)
        finest = ([s for s in shares if s.shape[-1] == self._share_side]
                  or [s for s in base_shares if s.shape[-1] == self._share_side])
        share = F.interpolate(torch.stack(finest).mean(0), size=out.shape[-2:], mode="bilinear", align_corners=False)
        return out + share.to(out.dtype) * (self.prompt_out(h) - out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
