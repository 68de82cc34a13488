"""Training examples for the network: one random patch with its targets.

The noise is *not* drawn here: a pool of examples is generated once and fresh
noise (from the stored gain and read noise) is drawn at every use, so one pool
item serves many noise realisations. The target is then
``target_stars + target_nonstellar + (1 - denoise) * noise``.
"""

from __future__ import annotations

import numpy as np

from ..params import DEFAULT_BETA, F_MIN, MAX_PSF_DIAMETER, SharpenParams
from ..psf.field import PARAM_NAMES, PSFField
from .optics import make_psf_model
from .render import noise_model, render_source, render_target
from .scene import make_scene

__all__ = ["CONTROL_NAMES", "sample_controls", "training_example"]

CONTROL_NAMES = ("sharpen_stars", "adjust_halos", "sharpen_nonstellar", "correct_only")
BENCH_CONTROLS = (1.0, 0.0, 0.5, 0.0)


MIXES = ("default", "correct", "manual", "small", "starless", "bright")
"""Example mixtures: ``default`` (the shipped model's), ``correct`` (a
fine-tuning mixture weighted towards correct-only on elongated and trailed
stars, where the network was weakest), ``manual`` (star-free nebulae and
galaxies with a manual PSF diameter: the network is handed the round Moffat
of that diameter, as the pipeline does, while the data were blurred by the
true, varying and aberrated PSF), ``small`` (the default mixture with
source FWHM of 0.7 to 2.2 px instead of 1.5 to 8: undersampled stars, whose
targets stop at F_MIN, so that the network learns to leave stars already
near a pixel as they are), ``starless`` (the ``manual`` mixture where the
true PSF nearly matches the round Moffat the manual diameter stands for:
ellipticity under 0.1, beta 2 to 4.5, mild aberrations in a fifth of the
items, no trails; the ``manual`` mixture's true PSFs are often elongated,
aberrated or trailed, which the network cannot see there, and it learned to
sharpen star-free images less than a near-round PSF allows), ``bright``
(the default mixture's PSFs and controls on nebulae and galaxies, with or
without stars, 10 to 30 times brighter: nebulae of 100 to 5000 noise sigma
and galaxies up to 20000, as in deep stacks of bright objects, where the
default mixture stops at 400 and 1000)."""

#: scene brightness ranges (noise sigmas, :func:`~astrosharp.synth.scene.make_scene`)
#: of the mixtures that differ from its defaults (nebulae 5 to 400, galaxies 10 to 1000)
SCENE_LEVELS = {"bright": {"nebula_peak": (100.0, 5000.0), "galaxy_peak": (100.0, 20000.0)}}
#: noise range (log-uniform, image units) of each mixture; the bright mixture's
#: is lower, so that its bright structure stays under half the saturation
NOISE_RANGES = {"default": (1e-4, 3e-3), "correct": (1e-4, 3e-3), "manual": (1e-4, 3e-3), "small": (1e-4, 3e-3),
                "starless": (1e-4, 3e-3), "bright": (1e-5, 1e-4)}

#: source FWHM range (px) of each mixture's PSFs
FWHM_RANGES = {"default": (1.5, 8.0), "correct": (1.5, 8.0), "manual": (1.5, 8.0), "small": (0.7, 2.2),
               "starless": (1.5, 8.0), "bright": (1.5, 8.0)}
#: a manual PSF diameter stands for a round Moffat: the mixtures where the network is handed one
MANUAL_MIXES = ("manual", "starless")


def sample_controls(rng: np.random.Generator, mix: str = "default") -> SharpenParams:
    """Controls for one example.

    ``default`` (and ``small``, ``bright``): the bench setting 30 % of the time, correct-only 20 %,
    otherwise uniform over the ranges (halos 0 for 40 %). ``correct``: the
    bench setting 20 %, correct-only 50 %, uniform 30 %.
    """
    p_bench, p_correct = (0.30, 0.20) if mix in ("default", "small", "bright") else (0.20, 0.50)
    u = rng.random()
    if u < p_bench:
        return SharpenParams(sharpen_stars=1.0, adjust_halos=0.0, sharpen_nonstellar=0.5)
    if u < p_bench + p_correct:
        return SharpenParams(correct_only=True)
    h = 0.0 if rng.random() < 0.4 else float(rng.uniform(-0.5, 0.5))
    return SharpenParams(
        sharpen_stars=float(rng.uniform(0, 1)),
        adjust_halos=h,
        sharpen_nonstellar=float(rng.uniform(0, 1)),
    )


def training_example(rng: np.random.Generator, size: int = 128, channels: int = 3,
                     mix: str = "default") -> dict[str, np.ndarray]:
    """One pool item: a random patch at the source PSF and at sampled targets.

    Parameters
    ----------
    rng : numpy Generator.
    size : patch edge in pixels.
    channels : 1 or 3.
    mix : one of ``MIXES`` (the distribution of PSFs and controls).

    Returns
    -------
    dict with
        clean : (C, S, S) float32, noise-free source-blurred image incl. background
        target_stars, target_nonstellar : (C, S, S) float32, noise-free at the
            targets (the background is in ``target_nonstellar``)
        background : (C, S, S) float32, the background (level + gradient)
        sigma : (C,) background noise std
        gain : (C,) image units to counts (Poisson variance = signal / gain)
        read_noise : (C,) in image units
        saturation : () clipping level
        psf_nodes : (C, P, 2, 2) float32 source PSF parameters (PARAM_NAMES order)
            at the patch corners, rows [0, S-1] x columns [0, S-1]; bilinear between
        controls : (4,) float32 in CONTROL_NAMES order
    """
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}, got {mix!r}")
    S = int(size)
    sigma = float(np.exp(rng.uniform(*np.log(NOISE_RANGES[mix]))))
    level = float(rng.uniform(5, 200)) * sigma
    sat = 1.0 if rng.random() < 0.6 else float(rng.uniform(0.3, 1.0))
    u = rng.random()
    if mix in MANUAL_MIXES:
        # the manual PSF's use: star-free nebulae and galaxies
        kind = "nebula" if u < 0.6 else "galaxies" if u < 0.85 else "mixed"
        stars = False
    elif mix == "bright":
        kind = "nebula" if u < 0.5 else "galaxies" if u < 0.7 else "mixed"
        stars = rng.random() > 0.3
    else:
        kind = "stars" if u < 0.28 else "cluster" if u < 0.36 else "galaxies" if u < 0.52 else "nebula" if u < 0.76 else "mixed"
        stars = rng.random() > 0.12
    scene = make_scene((S, S), channels, rng, kind=kind, sigma=sigma, saturation=sat, margin=32, stars=stars,
                       **SCENE_LEVELS.get(mix, {}))
    aberr = rng.random() < (0.2 if mix == "starless" else 0.45)
    beta = (2.0, 4.5) if mix == "starless" else (1.5, 6.0)
    if mix == "starless":
        trail, ell = 0.0, (0.0, 0.1)
    elif mix in ("default", "manual", "small", "bright"):
        trail = float(rng.uniform(2, 10)) if rng.random() < 0.15 else 0.0
        ell = (0.0, 0.45) if rng.random() < 0.5 else (0.0, 0.1)
    else:
        trail = float(rng.uniform(2, 10)) if rng.random() < 0.35 else 0.0
        ell = (0.1, 0.45) if rng.random() < 0.7 else (0.0, 0.1)
    psf = make_psf_model(
        (S, S),
        channels,
        rng,
        fwhm=FWHM_RANGES[mix],
        beta=beta,
        ellipticity=ell,
        aberrations=aberr,
        trail=trail,
        chromatic=True,
        vary=True,
        nodes=2,
        variation=0.15,
    )
    field = psf.field().values.astype(np.float32)
    if mix in MANUAL_MIXES:
        # the diameter a user would give: the median FWHM of the true PSF (as
        # the bench's star-free cases do); the network sees only that
        # (at most the largest diameter the controls accept)
        d = min(round(float(np.median(field[:, PARAM_NAMES.index("fwhm")])), 2), MAX_PSF_DIAMETER)
        n = 0.5 if rng.random() < 0.4 else float(rng.uniform(0.1, 1.0))
        params = SharpenParams(sharpen_stars=1.0, adjust_halos=0.0, sharpen_nonstellar=n, psf_diameter=d)
        # the pipeline's manual source PSF (pipeline.sharpen), on this item's nodes
        manual = PSFField.uniform((S, S), channels, max(d, F_MIN), DEFAULT_BETA)
        field = np.broadcast_to(manual.values, field.shape).astype(np.float32)
    else:
        params = sample_controls(rng, mix)
    s_src, n_src = render_source(scene, psf, sigma)
    s_tgt, n_tgt = render_target(scene, psf, params, sigma)
    lvl = level * (rng.uniform(0.8, 1.2, channels) if channels == 3 else np.ones(1))
    sig = sigma * (rng.uniform(0.8, 1.25, channels) if channels == 3 else np.ones(1))
    bg = lvl[:, None, None] * (1 + rng.uniform(0, 0.2) * 0.5 * scene.gradient)
    gain, read = noise_model(sig, lvl, float(rng.uniform(0.3, 1.0)))
    controls = np.array(
        [params.sharpen_stars, params.adjust_halos, params.sharpen_nonstellar, float(params.correct_only)], dtype=np.float32
    )
    return {
        "clean": (s_src + n_src + bg).astype(np.float32),
        "target_stars": s_tgt.astype(np.float32),
        "target_nonstellar": (n_tgt + bg).astype(np.float32),
        "background": bg.astype(np.float32),
        "sigma": sig.astype(np.float32),
        "gain": gain.astype(np.float32),
        "read_noise": read.astype(np.float32),
        "saturation": np.float32(sat),
        "psf_nodes": field,
        "controls": controls,
    }
