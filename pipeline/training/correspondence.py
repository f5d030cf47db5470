"""Supervision of the reference attention: losses on the attention recorded by `recorded_attention`.

In training the reference is the target under a known distortion, so on labelled data it is known
which reference tokens belong to each denoiser position's own region (`region_correspondence_loss`):

    mean over regions r of  mean over the queries q of r of  -log sum_k a_qk share_k(r)

share_k(r) is the fraction of token k's patch labelled r. It supervises where to look, not what to
take: the colours are still learnt from the denoising loss alone. `slot_attention_loss` supervises the
prompt adapter's softmax over the slot tokens the same way. Off by default
(`CorrespondenceConfig.weight` 0); design notes and measurements: docs/design.md.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.config import Config


class CorrespondenceConfig(Config):
    """Supervision of the reference attention by the label maps (params `pretrain.correspondence`;
    see the module notes)."""

    weight: float = Field(0.0, ge=0, description="weight of the attention supervision; 0: off (paper)")
    heads: Literal["all", "one"] = Field("all", description="all: the head mean is supervised; one: the first head")
    colour_regions: int = Field(0, ge=0, le=64, description="no label maps: k colour clusters stand in for the "
                                                            "regions; 0: off")

    removed = {"target": "the supervision is by the label maps' regions", "sigma": "it was the removed target point's"}


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
