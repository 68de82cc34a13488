"""Training data: a pre-generated pool of simulator examples, turned into
network batches on the fly (fresh noise, saturation, flips and rotations,
denoise amount, mono-as-RGB).

Pool
----
``generate_pool(out_dir, count, seed, size, workers)`` calls
:func:`astrosharp.synth.training_example` ``count`` times (seeded, in
``workers`` processes) and writes chunk files ``chunk_SEED_K.npz`` of stacked
arrays. ``load_pool(dir)`` concatenates them into a :class:`Pool`.

Batches
-------
For each pool item: a random dihedral transform (8 flips/rotations, applied
to the images and, consistently, to the PSF parameters: e1, e2 and the
asymmetry vector change under flips and transposes), fresh Gaussian noise
with the item's Poisson + read noise variance, clipping at its saturation
level, a denoise amount d (0 half the time), a jitter of the background level
and noise sigma handed to the network (so it tolerates imperfect estimates),
and, a quarter of the time, one channel replicated to three (mono). The
target is ``target_stars`` and ``target_nonstellar + (1 - d) * noise`` in the
network's output domain (:func:`astrosharp.nn.inputs.encode_layer`).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from astrosharp.nn.inputs import (NET_CHANNELS, Controls, build_inputs, encode_layer, transform_images,  # noqa: F401
                                  transform_psf_params)

__all__ = [
    "POOL_KEYS",
    "Pool",
    "generate_pool",
    "load_pool",
    "transform_psf_params",
    "transform_images",
    "psf_maps_from_nodes",
    "make_batch",
]

POOL_KEYS = (
    "clean",
    "target_stars",
    "target_nonstellar",
    "background",
    "sigma",
    "gain",
    "read_noise",
    "saturation",
    "psf_nodes",
    "controls",
)


@dataclass
class Pool:
    """Stacked pool arrays (first axis = item)."""

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.arrays["clean"].shape[0])

    def item(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.arrays.items()}

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for v in self.arrays.values()))


# ----------------------------------------------------------------------------
# pool generation


def _example(rng: np.random.Generator, size: int, channels: int, mix: str = "default") -> dict[str, np.ndarray]:
    from astrosharp import synth

    ex = synth.training_example(rng, size=size, channels=channels, mix=mix)
    out = {}
    for k in POOL_KEYS:
        v = np.asarray(ex[k])
        out[k] = v.astype(np.float32) if v.dtype.kind == "f" else v
    # the background map only enters as the level handed to the network (and
    # is subtracted from input and target alike), so half precision is enough
    out["background"] = out["background"].astype(np.float16)
    return out


def _worker(args: tuple[str, int, int, int, int, int, str]) -> str:
    out_dir, seed, start, count, size, chunk, mix = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    k = start // chunk
    path = os.path.join(out_dir, f"chunk_{seed}_{k:05d}.npz")
    if os.path.exists(path):
        return path
    items = []
    for i in range(start, start + count):
        rng = np.random.default_rng([seed, i])
        items.append(_example(rng, size, NET_CHANNELS, mix))
    arrays = {key: np.stack([it[key] for it in items]) for key in POOL_KEYS}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def generate_pool(out_dir: str, count: int, seed: int, size: int = 128, workers: int = 2, chunk: int = 50,
                  mix: str = "default") -> list[str]:
    """Generate ``count`` examples into chunk files under ``out_dir``.

    ``mix`` chooses the simulator's mixture of PSFs and controls
    (:data:`astrosharp.synth.training.MIXES`); a pool seed should keep one mix.

    Item ``i`` uses ``np.random.default_rng([seed, i])``, so the pool does not
    depend on the number of workers, and existing chunks are kept (resumable).
    """
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(out_dir, seed, s, min(chunk, count - s), size, chunk, mix) for s in range(0, count, chunk)]
    if workers <= 1:
        return [_worker(j) for j in jobs]
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as p:
        return list(p.imap_unordered(_worker, jobs))


def load_pool(out_dir: str, seed: int | None = None) -> Pool:
    """Concatenate the chunk files of a pool directory (optionally one seed)."""
    pat = f"chunk_{seed}_*.npz" if seed is not None else "chunk_*.npz"
    files = sorted(f for f in glob.glob(os.path.join(out_dir, pat)) if not f.endswith(".tmp.npz"))
    if not files:
        raise FileNotFoundError(f"no pool chunks {pat} in {out_dir}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in POOL_KEYS}
    for f in files:
        with np.load(f) as z:
            for k in POOL_KEYS:
                parts[k].append(z[k])
    return Pool({k: np.concatenate(v) for k, v in parts.items()})


def pool_from_examples(examples: list[dict[str, Any]]) -> Pool:
    """A pool from in-memory examples (tests)."""
    arrays = {k: np.stack([np.asarray(e[k], dtype=np.float32) for e in examples]) for k in POOL_KEYS}
    arrays["background"] = arrays["background"].astype(np.float16)
    return Pool(arrays)


# ----------------------------------------------------------------------------
# dihedral transforms: transform_images and transform_psf_params live in
# astrosharp.nn.inputs (inference runs the network in several orientations too)


def psf_maps_from_nodes(nodes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear PSF maps from values at the patch corners.

    Parameters
    ----------
    nodes : (C, P, 2, 2) ndarray
        Values at [y0, y1] x [x0, x1] (the first and last row/column).

    Returns
    -------
    (C, P, h, w) ndarray of float32
    """
    ty = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    tx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    n = nodes.astype(np.float32)
    top = n[..., 0, 0, None, None] * (1 - tx) + n[..., 0, 1, None, None] * tx
    bot = n[..., 1, 0, None, None] * (1 - tx) + n[..., 1, 1, None, None] * tx
    return (top * (1 - ty) + bot * ty).astype(np.float32)


# ----------------------------------------------------------------------------
# batches


@dataclass
class BatchOptions:
    """Sampling choices of :func:`make_batch`."""

    mono_fraction: float = 0.25
    denoise_zero_fraction: float = 0.5
    poisson_known_fraction: float = 0.7
    background_jitter: float = 0.2
    background_map_fraction: float = 0.5
    sigma_jitter: float = 0.05
    augment: bool = True
    crop: int | None = None
    # share of patches given a frame edge: mirrored beyond a line near one
    # side, as the engine pads a tile at the image border
    edge_fraction: float = 0.0
    edge_max: int = 24


def mirror_edge(a: np.ndarray, side: int, k: int, hold: bool = False) -> np.ndarray:
    """``a`` (..., S, S) with everything beyond a line ``k`` px inside one side
    (0 top, 1 bottom, 2 left, 3 right) replaced by the reflection of what lies
    inside (numpy's "reflect": the line's own pixel is not repeated), as
    :func:`astrosharp.tiles.extract_tile` pads beyond the image; with ``hold``
    the line's values are held instead (the PSF maps beyond the image)."""
    if k <= 0:
        return a
    a = np.array(a, copy=True)
    n = a.shape[-1] if side >= 2 else a.shape[-2]
    idx = np.arange(n)
    if side in (1, 3):  # mirror from the far side: flip, work, flip back
        a = a[..., ::-1] if side == 3 else a[..., ::-1, :]
    src = np.full(k, k) if hold else 2 * k - idx[:k]
    if side >= 2:
        a[..., :k] = a[..., src]
    else:
        a[..., :k, :] = a[..., src, :]
    if side in (1, 3):
        a = a[..., ::-1] if side == 3 else a[..., ::-1, :]
    return np.ascontiguousarray(a)


def make_batch(
    pool: Pool,
    indices: np.ndarray,
    rng: np.random.Generator,
    opts: BatchOptions | None = None,
    denoise: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Network inputs and targets for pool items ``indices``.

    Returns
    -------
    x : (B, N_INPUTS, S, S) float32
    y : (B, N_OUTPUTS, S, S) float32 targets in the u_faint domain
    info : dict of per-item arrays (denoise, mono, sigma)
    """
    opts = opts or BatchOptions()
    xs, ys = [], []
    info: dict[str, list[float]] = {"denoise": [], "mono": []}
    for i in indices:
        it = pool.item(int(i))
        clean = it["clean"].astype(np.float32)
        ts = it["target_stars"].astype(np.float32)
        tn = it["target_nonstellar"].astype(np.float32)
        c, s, _ = clean.shape
        nodes = it["psf_nodes"].astype(np.float32)
        maps = psf_maps_from_nodes(nodes, s, s)
        if opts.crop and opts.crop < s:
            oy, ox = rng.integers(0, s - opts.crop + 1, size=2)
            sl = (slice(None), slice(oy, oy + opts.crop), slice(ox, ox + opts.crop))
            clean, ts, tn = clean[sl], ts[sl], tn[sl]
            maps = maps[(slice(None), slice(None)) + sl[1:]]
        tr = fy = fx = False
        if opts.augment:
            tr, fy, fx = (bool(v) for v in rng.integers(0, 2, size=3))
            clean = transform_images(clean, tr, fy, fx)
            ts = transform_images(ts, tr, fy, fx)
            tn = transform_images(tn, tr, fy, fx)
            maps = transform_psf_params(maps, tr, fy, fx)
        gain = it["gain"].astype(np.float64)
        rn = it["read_noise"].astype(np.float64)
        sigma = it["sigma"].astype(np.float64)
        bgmap = it["background"].astype(np.float32)  # (C, S, S) level + gradient
        if opts.crop and opts.crop < s:
            bgmap = bgmap[sl]
        if opts.augment:
            bgmap = transform_images(bgmap, tr, fy, fx)
        sat = float(it["saturation"])
        mono = rng.random() < opts.mono_fraction
        if mono:
            ch = int(rng.integers(0, c))
            clean, ts, tn = clean[ch : ch + 1], ts[ch : ch + 1], tn[ch : ch + 1]
            maps = maps[ch : ch + 1]
            gain, rn, sigma, bgmap = gain[ch : ch + 1], rn[ch : ch + 1], sigma[ch : ch + 1], bgmap[ch : ch + 1]
        cc = clean.shape[0]
        var = rn[:, None, None] ** 2 + np.maximum(clean, 0.0) / gain[:, None, None]
        noise = (np.sqrt(var) * rng.standard_normal(clean.shape)).astype(np.float32)
        obs = np.minimum(clean + noise, sat)
        saturated = obs >= sat
        noise = np.where(saturated, 0.0, noise)
        if opts.augment and opts.edge_fraction and rng.random() < opts.edge_fraction:
            side, k = int(rng.integers(0, 4)), int(rng.integers(1, opts.edge_max + 1))
            obs, noise, ts, tn, bgmap = (mirror_edge(a, side, k) for a in (obs, noise, ts, tn, bgmap))
            saturated = obs >= sat
            maps = mirror_edge(maps, side, k, hold=True)
        d = denoise if denoise is not None else (0.0 if rng.random() < opts.denoise_zero_fraction else float(rng.random()))
        # the background handed to the network: its level (the gradient then
        # stays in the non-stellar layer) or the full map, slightly wrong
        level = bgmap.mean(axis=(1, 2))
        if rng.random() < opts.background_map_fraction:
            b_in = bgmap.astype(np.float64)
        else:
            b_in = np.broadcast_to(level[:, None, None], bgmap.shape).astype(np.float64)
        if opts.augment:
            b_in = b_in + (opts.background_jitter * sigma * rng.standard_normal(cc))[:, None, None]
        s_in = sigma * (np.exp(opts.sigma_jitter * rng.standard_normal(cc)) if opts.augment else 1.0)
        pk = 1.0 / (gain * s_in) if rng.random() < opts.poisson_known_fraction else None
        ctl = it["controls"].astype(np.float64)
        controls = Controls.from_arrays(ctl[0], ctl[1], ctl[2], ctl[3], d)
        x = build_inputs(obs[None], b_in[None], s_in, sat, maps[None], controls, poisson_k=pk)
        t_stars = ts / s_in[:, None, None]
        t_ns = (tn - b_in + (1.0 - d) * noise) / s_in[:, None, None]
        if cc == 1:
            t_stars = np.repeat(t_stars, NET_CHANNELS, axis=0)
            t_ns = np.repeat(t_ns, NET_CHANNELS, axis=0)
        y = np.concatenate([encode_layer(t_stars), encode_layer(t_ns)], axis=0)
        xs.append(x[0])
        ys.append(y)
        info["denoise"].append(d)
        info["mono"].append(float(mono))
    return np.stack(xs), np.stack(ys).astype(np.float32), {k: np.asarray(v) for k, v in info.items()}
