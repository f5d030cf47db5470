"""Attention primitives shared by the U-Net and the reference path.

`attend`: scaled dot-product attention on (B, heads, N, d) tensors, routed to the fastest kernel
for the device and dtype; `GroupNorm`: nn.GroupNorm that stays in bf16 under CUDA autocast;
`fourier_positions` / `fourier_grid`: fixed 2-D sin/cos encodings of pixel-centre positions in
[0, 1]. Kernel measurements behind these choices: docs/design.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def fourier_positions(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(height * width, dim) sin/cos features of (x, y) in [0, 1], pixel centres, row-major."""
    if dim % 4:
        raise ValueError(f"positional encoding needs a multiple of 4 channels (got {dim})")
    xy = fourier_grid(height, width, device)
    freqs = math.pi * 2.0 ** torch.arange(dim // 4, device=device, dtype=torch.float32)
    args = torch.cat([xy[:, :1] * freqs, xy[:, 1:] * freqs], 1)
    return torch.cat([args.sin(), args.cos()], 1).to(dtype)


def fourier_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(height * width, 2) pixel-centre (x, y) in [0, 1], row-major: the positions `fourier_positions` encodes."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1)


UNFUSED_CPU_TRAINING = True  # `attend`'s CPU bf16 training path; False: the flash kernel (benchmarks compare)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """scaled_dot_product_attention on (B, heads, N, d) tensors, made contiguous in d first.

    The fused kernels (flash attention on CPU and CUDA) need a unit stride in the last dimension;
    features read off a conv map (flatten + transpose) have a stride of H*W there, which sends
    PyTorch to the much slower unfused math path. `mask` (bool, broadcast to (B, heads, N_q, N_k)):
    the keys each query may read.

    Training in bf16 on a CPU takes `attend_unfused` instead (while `UNFUSED_CPU_TRAINING`): the
    CPU flash kernel's backward is slow for this network's 16-wide heads. Sampling (no gradient)
    keeps the flash kernel: as fast there, and more precise. Measurements: docs/design.md."""
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
    accuracy. Everywhere else (CPU, fp32, no autocast) this is nn.GroupNorm exactly, with the same
    parameters and state_dict keys. `bf16_under_autocast = False` restores autocast's fp32 upcast
    (for benchmarks that compare the two).
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

