"""pipeline/model/attention.py: the attention kernel (fused for sampling, unfused bf16 slices for
CPU training) and the GroupNorm (nn.GroupNorm on CPU, bf16 under CUDA autocast)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.attention import GroupNorm, attend, attend_unfused, group_norm
from pipeline.model.unet import UNet, UNetConfig
from tests.helpers import TINY_UNET

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ----------------------------------------------------------------------------- the attention kernel
def test_attend_takes_the_fused_kernel_and_matches_the_math_path():
    torch.manual_seed(0)
    feats = torch.randn(2, 32, 8, 8, requires_grad=True)  # (B, C, H, W), read as in CrossAttention
    q = feats.flatten(2).transpose(1, 2).reshape(2, 64, 4, 8).transpose(1, 2)  # stride != 1 in the last dim
    k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 10, 8)
    assert q.stride(-1) != 1
    out = attend(q, k, v)
    assert "Flash" in type(out.grad_fn).__name__
    reference = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def test_attend_trains_bf16_on_cpu_unfused_in_slices_and_samples_with_the_fused_kernel():
    torch.manual_seed(0)
    q, k, v = (torch.randn(5, 4, n, 16).mul(2 if i < 2 else 1).bfloat16().requires_grad_()
               for i, n in enumerate((64, 32, 32)))
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    truth = F.scaled_dot_product_attention(*exact)
    grad_out = torch.randn_like(truth)
    truth.backward(grad_out)
    out = attend(q, k, v)
    assert "Flash" not in type(out.grad_fn).__name__  # the unfused path: its backward is the fast one on CPU
    grads = torch.autograd.grad(out, (q, k, v), grad_out.bfloat16())
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(out, truth) < 2e-2
    assert all(rel(g, t.grad) < 4e-2 for g, t in zip(grads, exact))
    sliced = attend_unfused(q, k, v, chunk=4 * 64 * 32 * 2)  # two samples a slice: 3 slices, same numbers
    assert torch.equal(sliced, attend_unfused(q, k, v, chunk=1 << 30))
    with torch.no_grad():  # sampling keeps the fused kernel
        assert torch.equal(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))


# ---------------------------------------------------------------------------------------- GroupNorm
def test_group_norm_is_nn_group_norm_on_cpu():
    torch.manual_seed(0)
    ours = group_norm(12, 8)  # gcd: 4 groups
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    plain = nn.GroupNorm(4, 12)
    plain.load_state_dict(ours.state_dict())  # same keys both ways: old checkpoints load
    assert isinstance(ours, nn.GroupNorm) and list(ours.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 12, 5, 7)
    assert torch.equal(ours(x), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the bf16 path is CUDA-only
        assert torch.equal(ours(x), plain(x))


def test_bf16_group_norm_flag_leaves_cpu_results_alone(monkeypatch):
    torch.manual_seed(0)
    model = UNet(UNetConfig(**TINY_UNET)).eval()
    x, t = torch.randn(2, 7, 16, 16), torch.tensor([3, 900])
    outs = {}
    for flag in (False, True):
        monkeypatch.setattr(GroupNorm, "bf16_under_autocast", flag)
        with torch.no_grad():
            fp32 = model(x, t)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outs[flag] = fp32, model(x, t)
    assert torch.equal(outs[False][0], outs[True][0]) and torch.equal(outs[False][1], outs[True][1])


@CUDA
def test_group_norm_in_bf16_under_cuda_autocast(monkeypatch):
    torch.manual_seed(0)
    ours = group_norm(64, 32).cuda()
    plain = nn.GroupNorm(32, 64).cuda()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(4, 64, 16, 16, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast, slow = ours(x), plain(x)
        monkeypatch.setattr(GroupNorm, "bf16_under_autocast", False)
        upcast = ours(x)
    assert fast.dtype == torch.bfloat16 and slow.dtype == upcast.dtype == torch.float32
    torch.testing.assert_close(fast.float(), slow, rtol=2e-2, atol=2e-2)
    fast.float().sum().backward()
    assert ours.weight.grad is not None and ours.weight.grad.dtype == torch.float32
