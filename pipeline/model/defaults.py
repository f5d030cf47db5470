"""User-facing defaults, declared once: the exported model's path and the sampling knobs.

`colorize_batch`, `ColorizeOptions`, the app's sliders and `animecolor colorize`'s options all
read these. Torch-free on purpose: the command line's option defaults import it without loading
torch, so `animecolor --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = Path("models/animecolor.safetensors")  # written by `animecolor export`, read by `colorize` and `app`


@dataclass(frozen=True)
class SamplingDefaults:
    """How a picture is sampled unless the user says otherwise."""

    sample_steps: int = 20        # DDIM steps
    guidance: float = 1.0         # classifier-free guidance scale on the reference; 1: the conditional model
    text_guidance: float = 1.0    # on the prompt (s_text, conditioning.guided); 1: the conditional model, one forward
    eta: float = 0.0              # DDIM eta; 0: deterministic, 1: ancestral-like
    seed: int = 0                 # starting noise of image i depends only on (seed, i)


SAMPLING = SamplingDefaults()

# the ranges every caller is held to (`colorize.check_options`: the CLI, the app, notebooks)
MAX_GUIDANCE = 50.0   # far past any useful scale; inf or nan would only paint garbage
MAX_STEPS = 1000      # DDIM steps; the usual training schedule has T = 1000
MAX_SEED = 2**32 - 1  # numpy's seed range
TILE_SCALE = 1.0  # a figure's tiles' side, times its face square's (`faces.tiles`, `colorize --tile-scale`)
TILE_SCALES = (0.5, 2.0)  # its range: smaller tiles show the model less than a face, larger ones shrink it
