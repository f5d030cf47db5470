"""pipeline/model/reference.py: the reference cross-attention: the prompt read in the same softmax
or apart from the reference (`text_attention`), and the attention maps recorded for supervision."""

import pytest
import torch

from pipeline.model.reference import CrossAttention, recorded_attention
from pipeline.model.unet import UNet, UNetConfig


@pytest.mark.parametrize("separate", [False, True])
def test_separate_text_attention_reads_the_prompt_apart_from_the_reference(separate):
    torch.manual_seed(0)
    block = CrossAttention(16, 12, heads=2, groups=4, token_side=2, separate_extra=separate)
    torch.nn.init.normal_(block.proj.weight)  # past the zero init
    x, extra = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 12)
    grids = torch.randn(1, 4, 12), torch.randn(1, 4, 12)
    with torch.no_grad():  # what the prompt adds, over two different references
        added = [block(x, torch.cat([g, extra], 1)) - block(x, g) for g in grids]
    # separate: the prompt's reading has its own softmax, so what it adds does not depend on the reference
    assert torch.allclose(added[0], added[1], atol=1e-5) == separate
    assert (block.extra_kv is not None) == separate


def test_separate_text_attention_is_a_switch_with_its_own_weights():
    shared = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                             reference_tokens=8, text=True))
    separate = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                               reference_tokens=8, text=True, text_attention="separate"))
    extra = set(separate.state_dict()) - set(shared.state_dict())
    assert extra and all(".extra_kv." in k for k in extra) and set(shared.state_dict()) <= set(separate.state_dict())
    no_text = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                              reference_tokens=8, text_attention="separate"))
    assert not any(".extra_kv." in k for k in no_text.state_dict())  # the switch only matters with text


def _corr_unet() -> UNet:
    return UNet(UNetConfig(image_size=32, channels=16, channel_mults=(1, 2, 2), norm_groups=4,
                           reference_attention=(16, 8), reference_tokens=8))


def test_recorded_attention_is_a_distribution_over_the_grid_and_recording_ends():
    torch.manual_seed(0)
    net = _corr_unet()
    for m in net.modules():  # open the zero-initialised paths so the attention has something to say
        if isinstance(m, CrossAttention):
            torch.nn.init.normal_(m.kv.weight)
    x = torch.randn(2, 7, 32, 32)
    with recorded_attention(net) as records:
        net(x, torch.tensor([3, 700]))
    assert len(records) == 6  # at 16 and at 8 px: one block down, two up
    for log_attention, pos, side in records:  # the 16 px maps are read at every second position
        assert side == 8 and log_attention.shape == (2, 64, 64) and pos.shape == (64, 2)
        assert torch.allclose(log_attention.exp().sum(-1), torch.ones(2, 64), atol=1e-4)
    assert {round(float(p[0, 0]), 5) for _, p, _ in records} == {1 / 32, 1 / 16}  # pixel centres of 16 and 8 px maps
    assert all(m.record is None for m in net.modules() if isinstance(m, CrossAttention))
