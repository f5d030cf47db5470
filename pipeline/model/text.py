"""The text path: colour-prompt slot tokens that join the reference tokens in one attention context.

A prompt (`data/prompt.py`) is encoded as one row per slot (hair, left iris, right iris, skin,
clothes, background): [value id, L, a, b]. Each row becomes one token

    token_s = LayerNorm(E_slot[s] + E_value[id_s] + MLP(Lab_s) * [id_s != 0])

(a small learned table, not a frozen sentence encoder: the vocabulary is closed and the network
small; the MLP on Lab makes hex codes and names carry their exact colour). The tokens are
appended after the reference's grid tokens in the cross-attention context of
`model/reference.py` -- one attention mechanism reads "where is this colour in the reference"
and "what colour is this region said to be" -- and their mean is added to the timestep embedding
through a zero-initialised linear layer (a global nudge, as pooled text in Imagen). The null
prompt is the all-zero encoding: every slot "unspecified", the same value training-time text
dropout uses, so guidance on text needs no other machinery.
"""

from __future__ import annotations

import torch
from torch import nn


class TextEncoder(nn.Module):
    """text (B, slots, 4) = [value id, L/100, a/128, b/128] -> tokens (B, slots, dim)."""

    def __init__(self, slots: int, values: int, dim: int):
        super().__init__()
        self.slots, self.values = slots, values
        self.slot = nn.Parameter(torch.randn(slots, dim) * 0.02)
        self.value = nn.Embedding(values, dim)
        nn.init.normal_(self.value.weight, std=0.02)
        self.lab = nn.Sequential(nn.Linear(3, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        if text.ndim != 3 or text.shape[1:] != (self.slots, 4):
            raise ValueError(f"text must be (B, {self.slots}, 4) (got {tuple(text.shape)})")
        ids = text[..., 0].round().long()  # an id past the table is an IndexError, never a silent other word
        specified = (ids > 0).unsqueeze(-1).to(text.dtype)
        tokens = self.slot + self.value(ids) + self.lab(text[..., 1:]) * specified
        return self.norm(tokens)
