"""The prompt adapter: the text path trained on a frozen reference-only model (stage `text`).

A network trained on prompts and references together reads the reference less well when no
prompt is given (docs/design.md); the adapter keeps the two apart, as IP-Adapter does for image
prompts. The reference-only model is trained and fine-tuned first;
then its weights are frozen and only the text path learns: the slot tokens (`model/text.py`),
and in every reference cross-attention their own keys and values and the gate that lets a said
slot turn the reference's reading down (`text_attention: adapter`, `model/reference.py`); where
each slot is, the label maps teach (`slot_attention_loss`). Only a said slot has a value (zero
at the start), so

    adapter model (empty prompt) == the reference-only model, bit for bit

and the empty-prompt benchmark is the reference-only model's by construction. With the base
frozen, recolouring the reference (`captions.p_recolour`) can no longer teach the network to
distrust it: it only teaches the words to win.

A frozen network cannot paint what it never learnt (black, grey and white eyes). The option
`prompt_decoder` gives the adapter its own trainable copy of the decoder, started from the
frozen one (`PromptAdapterConfig.prompt_decoder`): where the prompt says a slot, the output moves to the
copy's by the attention share on the said slots, and where nothing is said the copy never runs,
so the equation above still holds (off by default).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from pydantic import Field
from torch import nn

from pipeline.config import Config, validate
from pipeline.data.dataset import CaptionConfig
from pipeline.data.labels import REGION_IDS
from pipeline.data.prompt import SLOTS
from pipeline.errors import AnimecolorError
from pipeline.model.conditioning import ConditionDropout, conditioned
from pipeline.model.diffusion import Diffusion, DiffusionConfig
from pipeline.model.unet import PromptAdapterConfig, UNet, UNetConfig
from pipeline.model.reference import recorded_attention
from pipeline.training.correspondence import slot_attention_loss
from pipeline.training.loop import Batch, LoopConfig, Objective, noised_batch
from pipeline.training.samples import SampleGridConfig


class AdapterCaptionConfig(CaptionConfig):
    """Training prompts of the adapter: no empty prompts (they train nothing: the adapter reads no
    unsaid slot), and recolouring on (the frozen base cannot learn to distrust the reference)."""

    p_empty: float = Field(0.0, ge=0, le=1, description="probability of the empty prompt; 0: every sample trains")
    p_recolour: float = Field(0.3, ge=0, le=1, description="probability of recolouring a "
                                                           "captioned region of the reference")


class AdapterDropout(ConditionDropout):
    """Reference dropout while the adapter learns: prompts without any reference (text only)."""

    p_uncond: float = Field(0.2, ge=0, le=1, description="probability of dropping the "
                                                         "reference (the prompt paints alone)")


class AdapterLoopConfig(LoopConfig):
    """The adapter's loop (params `text.loop`): a few hundred steps of a small path."""

    train_steps: int = Field(300, ge=1, description="optimizer steps (when epochs is null)")
    lr: float = Field(1e-3, gt=0, le=1.0, description="peak learning rate")
    warmup_steps: int = Field(20, ge=0, description="linear LR warm-up")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between resume checkpoints")


class AdapterAttentionConfig(Config):
    """Supervision of the adapter's attention by the label maps (synthetic data)."""

    weight: float = Field(0.05, ge=0, description="weight of -log(attention on the region's own slot); 0: off")


class AdapterConfig(PromptAdapterConfig):
    """Params `text`: the prompt adapter on the fine-tuned reference-only model (its layers:
    `PromptAdapterConfig`, the network's own knobs)."""

    adapter: bool = Field(True, description="train the prompt adapter; false: pass the fine-tuned model through")
    decoder_lr: float = Field(3e-4, gt=0, le=1.0, description="peak learning rate of the decoder "
                                                              "copy (the rest: loop.lr)")
    captions: AdapterCaptionConfig = Field(default_factory=AdapterCaptionConfig, description="training prompts from "
                                                                                             "captions")
    condition_dropout: AdapterDropout = Field(default_factory=AdapterDropout, description="reference dropout")
    attention: AdapterAttentionConfig = Field(default_factory=AdapterAttentionConfig,
                                              description="the adapter's attention supervised by the label maps")
    loop: AdapterLoopConfig = Field(default_factory=AdapterLoopConfig, description="optimisation loop")
    samples: SampleGridConfig = Field(default_factory=SampleGridConfig, description="samples grid")


def adapter_model(init: dict, prompt_attention: tuple[int, ...] = (), prompt_decoder: bool = False,
                  prompt_decoder_levels: int = 0) -> tuple[UNet, Diffusion]:
    """The checkpoint's reference-only network (EMA weights) with a new prompt adapter (zero values;
    its own prompt attention after the decoder blocks of the `prompt_attention` sides; with
    `prompt_decoder`, its own decoder, a copy of the checkpoint's); every weight but the adapter's
    frozen (requires_grad False)."""
    config = UNetConfig.from_dict(init["unet"])
    if config.text:
        raise AnimecolorError("the model already has a prompt path (pretrain.unet.text): no adapter to train")
    if not config.reference_attention:
        raise AnimecolorError("the prompt adapter reads through the reference attention: the model has none "
                              "(pretrain.unet.reference_attention [])")
    config = validate(UNetConfig, {**config.to_dict(), "text": True, "text_attention": "adapter", "vocabulary": (),
                                   "prompt_attention": tuple(prompt_attention), "prompt_decoder": prompt_decoder,
                                   "prompt_decoder_levels": prompt_decoder_levels}, "text")
    model = UNet(config)
    missing, unexpected = model.load_state_dict(init["ema"], strict=False)
    new = {name for name, _ in model.named_parameters() if is_adapter_parameter(name)}
    if unexpected or set(missing) != new:
        raise AnimecolorError(f"the checkpoint does not fit the adapter network (missing {sorted(set(missing) - new)}, "
                              f"unexpected {sorted(unexpected)})")
    if prompt_decoder:  # the copy starts as the frozen decoder (its adapter layers too: zero values)
        for i, step in enumerate(model.prompt_up):
            step.load_state_dict(model.up[model.copy_start + i].state_dict())
        model.prompt_out.load_state_dict(model.out.state_dict())
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in new)
    return model, Diffusion(DiffusionConfig.model_validate(init["diffusion"]))


def is_adapter_parameter(name: str) -> bool:
    """Whether a U-Net parameter belongs to the prompt path (the adapter)."""
    return (name.startswith(("text_encoder.", "prompt_attention.") + DECODER_COPY) or ".extra_kv." in name
            or name.endswith(".extra_gate"))


DECODER_COPY = ("prompt_up.", "prompt_out.")  # the adapter's decoder (prompt_decoder): its own learning rate


def adapter_objective(diffusion: Diffusion, dropout: ConditionDropout, attention: AdapterAttentionConfig) -> Objective:
    """The denoising loss with reference dropout (the prompt comes from the dataset), plus, where the
    batch has label maps, the supervision of the adapter's attention (`slot_attention_loss`)."""
    slot_regions = tuple(REGION_IDS[slot] for slot in SLOTS)

    def objective(model: nn.Module, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        x0, t, eps, sketch, reference = noised_batch(diffusion, batch, dropout, generator)
        supervise = attention.weight > 0 and "label" in batch
        with recorded_attention(model, text=True) if supervise else nullcontext() as records:
            loss = diffusion.loss(conditioned(model, sketch, reference, batch["text"]), x0, t, eps, batch.get("weight"))
        if not supervise:
            return loss, {}
        aux = slot_attention_loss(records, batch["label"], slot_regions)
        return loss + attention.weight * aux, {"loss_slot_attention": aux.detach()}

    return objective
