"""Train astrosharp's network.

One command, from a clean checkout (the simulator pool is generated first if
it is not there yet)::

    python -m training.train --config training/configs/small.json --out runs/small
    python -m training.train --config training/configs/small.json --out runs/small --resume

CPU (bf16 autocast, channels_last) or CUDA when present (``--device``).
Writes into ``--out``: ``log.jsonl`` (one JSON record per log/eval line),
``last.pt`` (full state every ``checkpoint_minutes``, for ``--resume``),
``best_ema.pt`` (EMA weights with the best validation loss) and
``config.json``. Export with ``python -m training.export``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from .arch import UNet, UNetConfig, count_params
from .data import BatchOptions, Pool, generate_pool, load_pool, make_batch
from .loss import total_loss

__all__ = ["TrainConfig", "load_config", "train", "evaluate", "main"]


@dataclass
class TrainConfig:
    """Everything a run depends on (JSON file in training/configs/)."""

    name: str = "small"
    model: dict[str, Any] = field(default_factory=lambda: asdict(UNetConfig()))
    pool_dir: str = "pool/train"
    pool_count: int = 4000
    pool_seed: int = 1
    extra_pool_seeds: list[int] = field(default_factory=list)
    extra_pool_count: int = 0
    extra_pool_mix: str = "default"  # the simulator mixture of the extra pools (synth.training.MIXES)
    # more pools, each with its own size and mixture: [{"seed": s, "count": n, "mix": m}, ...]
    extra_pools: list[dict[str, Any]] = field(default_factory=list)
    val_dir: str = "pool/val"
    val_count: int = 192
    val_seed: int = 9001
    patch: int = 128
    crop: int | None = None
    workers: int = 2
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_fraction: float = 0.02
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    total_steps: int = 20000
    restart_step: int = 0
    # start a fresh run from another run's EMA weights (a checkpoint path),
    # widened to this config's widths where they are larger (training.widen);
    # the step counter starts at restart_step
    init_from: str | None = None
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    flux_weight: float = 0.5
    bright_weight: float = 0.0
    centroid_weight: float = 0.0  # training.loss.centroid_term on the stars layer
    nonstellar_weight: float = 0.0  # Charbonnier on the non-stellar layer in the mid domain (training.loss)
    linear_weight: float = 0.0  # training.loss.noise_scaled_term on the sum of the layers
    threads: int = 2
    log_every: int = 25
    eval_every: int = 500
    checkpoint_minutes: float = 4.0
    seed: int = 0
    batch: dict[str, Any] = field(default_factory=dict)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: nested dicts (``model``, ``batch``) key by key, anything else whole."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_config(path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config file's keys; with ``"base": "other.json"`` (relative to this
    file's folder) those of the other file first, this file's keys on top (a
    nested ``model`` or ``batch`` key by key; a list such as ``extra_pools``
    is replaced whole)."""
    real = os.path.realpath(path)
    if real in seen:
        raise ValueError(f"config {path} is its own base (through {' -> '.join(seen)})")
    with open(path) as f:
        raw = json.load(f)
    base = raw.pop("base", None)
    if base is None:
        return raw
    return _merged(_read_config(os.path.join(os.path.dirname(path), base), seen + (real,)), raw)


def load_config(path: str) -> TrainConfig:
    raw = _read_config(path)
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown config keys in {path}: {sorted(unknown)}")
    return TrainConfig(**raw)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Warm-up then cosine to ``min_lr_fraction``; a fine-tuning run restarts
    the schedule at ``restart_step`` (warm-up and cosine counted from there)."""
    step = step - cfg.restart_step
    span = cfg.total_steps - cfg.restart_step
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, span - cfg.warmup_steps))
    lo = cfg.lr * cfg.min_lr_fraction
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    bf16 autocast with channels_last is about 2x faster than fp32 where it is;
    on an AVX2-only CPU it is emulated and about 14x slower (a 0.95 M-parameter
    U-Net step of 16 patches of 128 px: 0.87 s fp32, 12 s bf16).
    """
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes
        return False


def _autocast(device: torch.device) -> Any:
    enabled = device.type == "cuda" or cpu_has_fast_bf16()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _to(x: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


@torch.no_grad()
def evaluate(model: torch.nn.Module, val: Pool, device: torch.device, batch_size: int = 32) -> dict[str, float]:
    """Validation scores on the fixed set (fixed noise, no augmentation).

    ``val_loss`` (training loss at denoise 0), ``psnr_u`` (dB, sum of the
    layers against the target in the u_faint domain, peak = target range per
    item), ``psnr_u_d1`` (the same at denoise 1, i.e. against the noise-free
    truth at the target PSF), and the stars layer's flux ratio to the truth
    (``flux_bias_median``, ``flux_abs_p90``) over items whose stars hold at
    least 200 sigma-pixels.
    """
    model.eval()
    opts = BatchOptions(augment=False, poisson_known_fraction=1.0, mono_fraction=0.25)
    out: dict[str, float] = {}
    for d, tag in ((0.0, ""), (1.0, "_d1")):
        rng = np.random.default_rng(12345)
        losses, psnrs, ratios = [], [], []
        for s in range(0, len(val), batch_size):
            idx = np.arange(s, min(len(val), s + batch_size))
            x, y, _ = make_batch(val, idx, rng, opts, denoise=d)
            with _autocast(device):
                o = model(_to(x, device))
            o = o.float()
            yt = _to(y, device).float()
            loss, _ = total_loss(o, yt)
            losses.append(float(loss) * len(idx))
            k = o.shape[1] // 2
            lin = lambda u: 3.0 * torch.sinh(u)  # noqa: E731
            tot_o = torch.asinh((lin(o[:, :k]) + lin(o[:, k:])) / 3.0)
            tot_t = torch.asinh((lin(yt[:, :k]) + lin(yt[:, k:])) / 3.0)
            mse = ((tot_o - tot_t) ** 2).mean(dim=(1, 2, 3))
            rng_t = tot_t.flatten(1).max(1).values - tot_t.flatten(1).min(1).values
            psnrs.extend((10 * torch.log10(rng_t.clamp_min(1.0) ** 2 / mse.clamp_min(1e-12))).cpu().tolist())
            fo = lin(o[:, :k]).sum(dim=(1, 2, 3))
            ft = lin(yt[:, :k]).sum(dim=(1, 2, 3))
            for a, b in zip(fo.cpu().tolist(), ft.cpu().tolist()):
                if b > 200:
                    ratios.append(a / b - 1.0)
        out["val_loss" + tag] = sum(losses) / len(val)
        out["psnr_u" + tag] = float(np.mean(psnrs))
        if ratios and not tag:
            r = np.asarray(ratios)
            out["flux_bias_median"] = float(np.median(r))
            out["flux_abs_p90"] = float(np.percentile(np.abs(r), 90))
    model.train()
    return out


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = UNet(model.cfg)
        self.model.load_state_dict(model.state_dict())
        self.model.to(next(model.parameters()).device)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1.0 - d)


def _save(path: str, obj: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _log(out_dir: str, rec: dict[str, Any]) -> None:
    with open(os.path.join(out_dir, "log.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


def _extra_pools(cfg: TrainConfig) -> list[tuple[int, int, str]]:
    """(seed, count, mix) of every pool besides ``pool_seed``."""
    out = [(int(s), int(cfg.extra_pool_count), cfg.extra_pool_mix) for s in cfg.extra_pool_seeds]
    for p in cfg.extra_pools:
        unknown = set(p) - {"seed", "count", "mix"}
        if unknown or "seed" not in p or "count" not in p:
            raise ValueError(f"an extra_pools entry needs seed and count (and optionally mix), got {p}")
        out.append((int(p["seed"]), int(p["count"]), str(p.get("mix", "default"))))
    return out


def ensure_pools(cfg: TrainConfig, root: str = ".", generate: bool = True) -> tuple[Pool, Pool]:
    """Generate (if missing) and load the training and validation pools.

    With ``generate=False`` the training pool is whatever chunks exist (a
    generator may still be filling it; training reloads it at each evaluation).
    """
    tdir = os.path.join(root, cfg.pool_dir)
    vdir = os.path.join(root, cfg.val_dir)
    generate_pool(vdir, cfg.val_count, cfg.val_seed, cfg.patch, cfg.workers)
    if generate:
        generate_pool(tdir, cfg.pool_count, cfg.pool_seed, cfg.patch, cfg.workers)
        for s, n, mix in _extra_pools(cfg):
            generate_pool(tdir, n, s, cfg.patch, cfg.workers, mix=mix)
    return _load_train_pool(cfg, root), load_pool(vdir, cfg.val_seed)


def _load_train_pool(cfg: TrainConfig, root: str = ".") -> Pool:
    """The training pool: chunks of ``pool_seed`` and of every extra seed that
    has any (extra pools may be generated while training runs)."""
    tdir = os.path.join(root, cfg.pool_dir)
    pools = [load_pool(tdir, cfg.pool_seed)]
    for s, _, _ in _extra_pools(cfg):
        try:
            pools.append(load_pool(tdir, s))
        except FileNotFoundError:
            continue
    if len(pools) == 1:
        return pools[0]
    return Pool({k: np.concatenate([p.arrays[k] for p in pools]) for k in pools[0].arrays})


def _chunk_count(cfg: TrainConfig) -> int:
    import glob

    n = 0
    for s in [cfg.pool_seed, *(e[0] for e in _extra_pools(cfg))]:
        n += len([f for f in glob.glob(os.path.join(cfg.pool_dir, f"chunk_{s}_*.npz")) if not f.endswith(".tmp.npz")])
    return n


def train(
    cfg: TrainConfig,
    out_dir: str,
    resume: bool = False,
    device_name: str = "auto",
    max_steps: int | None = None,
    max_minutes: float | None = None,
    pools: tuple[Pool, Pool] | None = None,
    generate: bool = True,
) -> dict[str, Any]:
    """Run (or resume) training; returns the last evaluation record."""
    os.makedirs(out_dir, exist_ok=True)
    device = _device(device_name)
    torch.manual_seed(cfg.seed)
    train_pool, val_pool = pools if pools is not None else ensure_pools(cfg, generate=generate)
    chunks = _chunk_count(cfg) if pools is None else 0
    # while a generator is still filling the pool, train on one thread (two
    # OpenMP threads on a shared 2-core machine stall each other), then on all
    expected_chunks = math.ceil(cfg.pool_count / 50) + sum(math.ceil(n / 50) for _, n, _ in _extra_pools(cfg))
    growing = pools is None and chunks < expected_chunks
    torch.set_num_threads(1 if growing else cfg.threads)
    model = UNet(UNetConfig(**cfg.model)).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay)
    rng = np.random.default_rng(cfg.seed)
    step, elapsed, best = 0, 0.0, float("inf")
    last_path = os.path.join(out_dir, "last.pt")
    if resume and os.path.exists(last_path):
        st = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(st["model"])
        ema.model.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, elapsed, best = st["step"], st["elapsed"], st["best"]
        rng.bit_generator.state = st["rng"]
        print(f"resumed from {last_path} at step {step}", flush=True)
    elif cfg.init_from:
        from .widen import widen_state

        wide, _ = widen_state(cfg.init_from, UNetConfig(**cfg.model))
        model.load_state_dict(wide.state_dict())
        ema.model.load_state_dict(wide.state_dict())
        step = cfg.restart_step
        print(f"started from {cfg.init_from} (widened to {cfg.model['widths']}) at step {step}", flush=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=1)
    _log(out_dir, {"event": "start", "step": step, "params": count_params(model), "device": str(device),
                   "bf16": device.type == "cuda" or cpu_has_fast_bf16(),
                   "pool": len(train_pool), "pool_gb": train_pool.nbytes / 1e9, "val": len(val_pool)})
    opts = BatchOptions(crop=cfg.crop, **cfg.batch)
    t_start = time.time()
    t_ckpt = time.time()
    t_log = time.time()
    n_log, parts_acc = 0, {}
    skipped = 0
    stop_step = cfg.total_steps if max_steps is None else min(cfg.total_steps, step + max_steps)
    last_eval: dict[str, Any] = {}

    def checkpoint() -> None:
        _save(last_path, {"model": model.state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(),
                          "step": step, "elapsed": elapsed + time.time() - t_start, "best": best,
                          "rng": rng.bit_generator.state, "config": asdict(cfg)})

    model.train()
    while step < stop_step:
        if max_minutes is not None and time.time() - t_start > 60 * max_minutes:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        idx = rng.integers(0, len(train_pool), size=cfg.batch_size)
        x, y, _ = make_batch(train_pool, idx, rng, opts)
        xt, yt = _to(x, device), _to(y, device)
        with _autocast(device):
            o = model(xt)
        loss, parts = total_loss(o, yt, cfg.flux_weight, cfg.bright_weight, cfg.centroid_weight,
                                  cfg.nonstellar_weight, cfg.linear_weight)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            skipped += 1
            _log(out_dir, {"event": "skip", "step": step, "skipped": skipped})
            if skipped > 50:
                raise RuntimeError("more than 50 non-finite losses: stopping (lower the learning rate)")
            continue
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(gn):
            skipped += 1
            opt.zero_grad(set_to_none=True)
            _log(out_dir, {"event": "skip", "step": step, "skipped": skipped, "reason": "gradient"})
            continue
        opt.step()
        step += 1
        ema.update(model, step)
        parts["loss"] = float(loss.detach())
        parts["grad_norm"] = float(gn)
        for k, v in parts.items():
            parts_acc[k] = parts_acc.get(k, 0.0) + v
        n_log += 1
        if step % cfg.log_every == 0:
            dt = time.time() - t_log
            rec = {"event": "train", "step": step, "lr": lr_at(cfg, step),
                   "patches_per_s": n_log * cfg.batch_size / max(dt, 1e-9),
                   "hours": (elapsed + time.time() - t_start) / 3600}
            rec.update({k: v / n_log for k, v in parts_acc.items()})
            _log(out_dir, rec)
            t_log, n_log, parts_acc = time.time(), 0, {}
        if step % cfg.eval_every == 0 or step == stop_step:
            ev = evaluate(ema.model, val_pool, device)
            last_eval = {"event": "eval", "step": step, "hours": (elapsed + time.time() - t_start) / 3600, **ev}
            _log(out_dir, last_eval)
            if ev["val_loss"] < best:
                best = ev["val_loss"]
                _save(os.path.join(out_dir, "best_ema.pt"), {"ema": ema.model.state_dict(), "step": step,
                                                            "eval": last_eval, "config": asdict(cfg)})
            if pools is None and _chunk_count(cfg) != chunks:
                chunks = _chunk_count(cfg)
                del train_pool
                train_pool = _load_train_pool(cfg)
                if growing and chunks >= expected_chunks:
                    growing = False
                    torch.set_num_threads(cfg.threads)
                _log(out_dir, {"event": "pool", "step": step, "pool": len(train_pool), "threads": torch.get_num_threads()})
            t_log = time.time()
        if time.time() - t_ckpt > 60 * cfg.checkpoint_minutes:
            checkpoint()
            t_ckpt = time.time()
    checkpoint()
    _save(os.path.join(out_dir, "last_ema.pt"), {"ema": ema.model.state_dict(), "step": step,
                                                 "eval": last_eval, "config": asdict(cfg)})
    return last_eval


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="JSON config (training/configs/*.json)")
    ap.add_argument("--out", required=True, help="run directory (checkpoints, log)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--generate-only", action="store_true", help="only generate the pools")
    ap.add_argument("--workers", type=int, default=None, help="pool generator processes (overrides the config)")
    ap.add_argument("--no-generate", action="store_true",
                    help="train on the training-pool chunks that exist (reloaded at each evaluation as they grow)")
    a = ap.parse_args(argv)
    cfg = load_config(a.config)
    if a.workers is not None:
        cfg.workers = a.workers
    if a.generate_only:
        torch.set_num_threads(cfg.threads)
        tr, va = ensure_pools(cfg)
        print(f"pool {len(tr)} items ({tr.nbytes / 1e9:.2f} GB), validation {len(va)}")
        return 0
    # extra pools may still be filling (a separate --generate-only process):
    # train on what exists, reloading as chunks appear
    train(cfg, a.out, resume=a.resume, device_name=a.device, max_steps=a.max_steps, max_minutes=a.max_minutes,
          generate=not a.no_generate and not _extra_pools(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
