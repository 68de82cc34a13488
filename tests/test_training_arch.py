"""The training network (training.arch): precision of the first convolution under bf16 autocast."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from astrosharp.nn.inputs import N_INPUTS  # noqa: E402
from training.arch import UNet, UNetConfig  # noqa: E402

SMALL = {"widths": [8, 16, 32], "blocks": [1, 1, 1], "dec_blocks": [1, 1], "gate_gain": 4.0}


def _net(fp32_stem: bool) -> UNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(**SMALL, fp32_stem=fp32_stem))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return net.eval()


def _stem_under_autocast(net: UNet, x: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = net.head.register_forward_hook(lambda mod, args, out: seen.append(out))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
    hook.remove()
    return seen[0]


def test_fp32_stem_sees_the_input_unrounded_under_bf16_autocast():
    # u_faint of some 300 sigma is about 5.3, where bf16 steps are 0.03 (3 % of the signal)
    x = torch.randn(1, N_INPUTS, 16, 16) + 5.0
    with torch.no_grad():
        exact = _net(False).head(x)  # float32, no autocast
    rounded = _stem_under_autocast(_net(False), x)
    kept = _stem_under_autocast(_net(True), x)
    assert rounded.dtype == torch.bfloat16 and kept.dtype == torch.float32
    assert torch.equal(kept, exact)
    assert float((rounded.float() - exact).abs().max()) > 1e-3
    # without autocast (inference, the ONNX export) the flag changes nothing
    with torch.no_grad():
        assert torch.equal(_net(False)(x), _net(True)(x))
