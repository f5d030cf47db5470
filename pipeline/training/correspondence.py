"""Supervision of the reference attention: losses on the attention recorded by `recorded_attention`.

In training the reference is the target under a known distortion, so for every denoiser position
it is known which reference tokens show the same point of the picture (`correspondence_loss`,
target "point"), or, on labelled data, which tokens belong to the query's own region
(`region_correspondence_loss`, target "region"):

    point:  KL( softmax_k(-|pos(query) - src_k|^2 / 2 sigma^2)  ||  mean over heads of the attention on the grid )
    region: mean over regions r of  mean over the queries q of r of  -log sum_k a_qk share_k(r)

src_k is the point of the target shown by reference token k (from the warp maps); share_k(r) the
fraction of token k's patch labelled r. Both supervise where to look, not what to take: the
colours are still learnt from the denoising loss alone. `slot_attention_loss` supervises the
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
