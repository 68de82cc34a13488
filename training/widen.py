"""Widen a trained U-Net without changing what it computes.

A wider network (more channels per level, same blocks) is started from a
trained one: every old weight is copied; the new channels get He-initialised
incoming weights and zero outgoing weights, so the widened network's output
equals the old one's exactly and training continues from its scores instead
of from scratch (Net2Net's "wider" step with zero fan-out). The residual
blocks' second convolutions keep zero rows for the new channels, as at a
fresh initialisation: each new residual branch starts as the identity.

::

    python -m training.widen --checkpoint training/checkpoints/small-last.pt \\
        --config training/configs/wide.json --out runs/wide/init.pt

``--out`` is a checkpoint with the widened model and EMA weights (both from
the source's EMA), which ``training.train`` takes through the config's
``init_from`` (a fresh optimiser, the schedule from ``restart_step``).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from .arch import UNet, UNetConfig, count_params
from .export import load_weights

__all__ = ["widen_state", "widen_model", "main"]


def _new_weight(shape: tuple[int, ...]) -> torch.Tensor:
    """Weights of a layer of this shape initialised as :class:`UNet` does
    (He-normal for ReLU, PyTorch's fan-in of the weight tensor)."""
    w = torch.empty(shape)
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    return w


def widen_model(src: UNet, cfg: UNetConfig, seed: int = 0) -> UNet:
    """A network of ``cfg`` (widths >= the source's, same blocks) computing
    the same function as ``src``."""
    scfg = src.cfg
    if len(cfg.widths) != len(scfg.widths) or any(a < b for a, b in zip(cfg.widths, scfg.widths)):
        raise ValueError(f"widths {cfg.widths} do not widen {scfg.widths} level by level")
    if list(cfg.blocks) != list(scfg.blocks) or list(cfg.dec_blocks) != list(scfg.dec_blocks):
        raise ValueError("widening keeps the blocks per level; got other block counts")
    for name in ("in_channels", "out_channels", "split_head", "residual_gain", "gate_gain"):
        if getattr(cfg, name) != getattr(scfg, name):
            raise ValueError(f"widening keeps {name}: {getattr(scfg, name)} != {getattr(cfg, name)}")
    torch.manual_seed(seed)
    dst = UNet(cfg)
    src_mods = dict(src.named_modules())
    with torch.no_grad():
        for name, mod in dst.named_modules():
            if not isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            old = src_mods[name]
            transposed = isinstance(mod, nn.ConvTranspose2d)
            w_old = old.weight
            if transposed:  # (in, out, kh, kw)
                n_in, n_out = w_old.shape[0], w_old.shape[1]
                w = torch.zeros_like(mod.weight)
                new_out = _new_weight(tuple(mod.weight.shape))
                w[:, n_out:] = new_out[:, n_out:]
                w[:n_in, :n_out] = w_old
            else:  # (out, in, kh, kw)
                n_out, n_in = w_old.shape[0], w_old.shape[1]
                w = torch.zeros_like(mod.weight)
                residual_out = name.endswith(".c2")
                if not residual_out:
                    w[n_out:] = _new_weight(tuple(mod.weight.shape))[n_out:]
                w[:n_out, :n_in] = w_old
            mod.weight.copy_(w)
            b = torch.zeros_like(mod.bias)
            b[: old.bias.shape[0]] = old.bias
            mod.bias.copy_(b)
    return dst


def widen_state(checkpoint: str, cfg: UNetConfig, seed: int = 0) -> tuple[UNet, dict[str, Any]]:
    """The widened network of a checkpoint's EMA weights, and the checkpoint."""
    src, st = load_weights(checkpoint)
    return widen_model(src, cfg, seed), st


def main(argv: list[str] | None = None) -> int:
    import json

    from .train import load_config

    ap = argparse.ArgumentParser(prog="python -m training.widen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="the trained network (its EMA weights are used)")
    ap.add_argument("--config", required=True, help="the training config of the wider network")
    ap.add_argument("--out", required=True, help="where to write the widened checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = load_config(a.config)
    ucfg = UNetConfig(**cfg.model)
    src, st = load_weights(a.checkpoint)
    model = widen_model(src, ucfg, a.seed).eval()  # the source comes in eval mode
    x = torch.randn(2, ucfg.in_channels, 64, 64)
    with torch.no_grad():
        err = float((model(x) - src(x)).abs().max())
    if not err < 1e-4:
        raise RuntimeError(f"the widened network differs from the source by {err:g}")
    torch.save({"model": model.state_dict(), "ema": model.state_dict(), "step": int(st.get("step", 0)),
                "source": a.checkpoint, "config": {"model": cfg.model}}, a.out)
    print(json.dumps({"params_before": count_params(src), "params_after": count_params(model),
                      "max_abs_difference": err, "step": int(st.get("step", 0))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
