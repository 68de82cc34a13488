"""Widening a trained network keeps its output and lets the new channels learn."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.arch import UNet, UNetConfig  # noqa: E402
from training.widen import widen_model  # noqa: E402

NARROW = {"widths": [8, 16, 32], "blocks": [1, 2, 1], "dec_blocks": [1, 1], "gate_gain": 4.0}
WIDE = {**NARROW, "widths": [8, 24, 40]}


def _trained_like(seed: int = 0) -> UNet:
    """A narrow network whose every weight is non-zero (a fresh one has zero
    residual branches and tail, which would hide a wrong copy)."""
    torch.manual_seed(seed)
    net = UNet(UNetConfig(**NARROW))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return net.eval()


def test_widened_network_computes_the_same_function():
    src = _trained_like()
    wide = widen_model(src, UNetConfig(**WIDE)).eval()
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in src.parameters())
    x = torch.randn(2, src.cfg.in_channels, 32, 48)
    with torch.no_grad():
        y_src, y_wide = src(x), wide(x)
    assert float(y_src.abs().mean()) > 0.05  # not a trivially zero output
    assert torch.allclose(y_wide, y_src, atol=1e-5, rtol=1e-5)


def test_new_channels_learn_after_widening():
    src = _trained_like(1)
    wide = widen_model(src, UNetConfig(**WIDE))
    before = wide.tail.weight.detach().clone()
    # the up-convolution into level 0 (which keeps 8 channels) reads the 16
    # new channels of level 1 through weights that start at zero
    up = wide.up[-1].weight  # ConvTranspose2d (in=24, out=8, 2, 2)
    assert float(up.detach()[16:].abs().sum()) == 0
    opt = torch.optim.SGD(wide.parameters(), lr=1e-2)
    x = torch.randn(2, src.cfg.in_channels, 32, 32)
    for _ in range(2):
        loss = wide(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(up.detach()[16:].abs().sum()) > 0
    assert not torch.equal(before, wide.tail.weight)


def test_widening_refuses_narrower_widths_or_other_blocks():
    src = _trained_like()
    with pytest.raises(ValueError, match="do not widen"):
        widen_model(src, UNetConfig(**{**NARROW, "widths": [8, 12, 32]}))
    with pytest.raises(ValueError, match="blocks"):
        widen_model(src, UNetConfig(**{**WIDE, "blocks": [1, 1, 1]}))


def test_training_starts_from_a_widened_checkpoint(tmp_path):
    from astrosharp import synth
    from training.data import pool_from_examples
    from training.train import TrainConfig, train

    src = _trained_like(2)
    ckpt = tmp_path / "src.pt"
    torch.save({"ema": src.state_dict(), "config": {"model": NARROW}, "step": 40}, ckpt)
    pool = pool_from_examples([synth.training_example(np.random.default_rng([11, i]), size=32) for i in range(2)])
    cfg = TrainConfig(model=WIDE, batch_size=2, total_steps=42, restart_step=40, warmup_steps=1, eval_every=100,
                      log_every=1, threads=1, init_from=str(ckpt))
    train(cfg, str(tmp_path / "run"), pools=(pool, pool), device_name="cpu")
    st = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert st["step"] == 42  # counted on from restart_step
    assert st["model"]["up.0.weight"].shape == (40, 24, 2, 2)
