"""Every bar of issue 6 (the controls), measured on seeded simulator scenes.

Run it as ``python -m astrosharp.bench.controls [--quick] [--json OUT]
[--method nn|rl|wiener]``; it prints one table (bar, value, target, pass) and
writes the same numbers as JSON. The API is :func:`run_controls`; the
``eval_*`` functions judge given outputs against a case's truth and are what
the tests exercise (the truth itself passes every bar, the untouched input
fails the sharpening bars).

Cases (each built from ``(name, seed, size)``, several seeds so nothing is
tuned to one scene)
-----------------------------------------------------------------------------
``stars_mono``     a jittered grid of isolated stars (peak S/N 60 to 600, one
                   saturated star), field-varying Moffat PSF, mono;
``stars_rgb``      the same in RGB with aberrations (coma, astigmatism, defocus,
                   trefoil), R and B seeing 5-10% narrower / wider than G and
                   a lateral chromatic shift of 0.4-0.6 px at the corners;
``elliptic_mono``  grid stars with ellipticity 0.25;
``trailed_mono``   grid stars trailed by 5 to 7 px;
``nebula_starless_rgb``, ``nebula_rgb``, ``noise_mono``: the simulator's
                   bench cases (:func:`astrosharp.synth.make_case`).

Bars and how each is measured (the truth of every setting is rendered by
:func:`astrosharp.synth.render_target` at that setting)
-----------------------------------------------------------------------------
sharpen stars 1.0 / 0.5
    Median per-star FWHM ratio output / input (pixel-integrated elliptical
    Moffat fits, :func:`astrosharp.bench.metrics.star_metrics`) of isolated,
    unsaturated stars of peak S/N >= 50, in the centre and in the corners
    (:func:`astrosharp.bench.metrics.regions`): 0.50 +/- 0.05 and
    0.75 +/- 0.05; the median |1 - flux ratio| (aperture of radius 5 source
    FWHM, against the truth at the same target) <= 0.01. Sharpen non-stellar
    0.5, automatic PSF, halos 0.
halos
    At sharpen stars 1.0, adjust halos -0.5, -0.25, 0, 0.25, 0.5: the median
    over stars of the fraction of the star's flux (aperture 5 source FWHM)
    that lies in the annulus 2 to 4 target FWHM rises strictly with the
    control. At 0: the dark-ring depth (:func:`astrosharp.bench.metrics.ringing`,
    saturated stars included, the truth's own background) <= 1 noise sigma.
correct only
    Median output ellipticity <= 0.05 on the e = 0.25 field, the trailed
    field and the aberrated RGB field; median FWHM ratio output / input
    1.00 +/- 0.05 (on the trailed field output / truth, the trail removed);
    RGB: per star, the spread of the channels' FWHM ((max - min) / median)
    <= 0.05 and the largest distance between the channels' centroids
    <= 0.1 px (medians over stars).
star colours
    RGB at sharpen stars 1.0: per star, R/G and B/G of the aperture fluxes
    against the same ratios of the truth; median |1 - ratio| <= 0.02.
manual PSF
    Star-free nebula, manual PSF diameter = the true FWHM, sharpen
    non-stellar 0.5: PSNR against the truth (saturated pixels excluded) at
    least 5 dB above the input's; no spurious sources
    (:func:`astrosharp.bench.metrics.spurious_sources`, threshold 5).
starless layer
    Nebula with stars: at every truth star (source peak S/N >= 3), the sum of
    ``starless - truth non-stellar - background`` in a disc of radius one
    source FWHM divided by its noise (the input's variance map): counts above
    +3 (residual stars) and below -3 (holes) may not exceed what Gaussian
    noise gives at the 99% level over that many stars; the median ratio of
    the non-stellar flux in those discs (stars on nebulosity of S/N >= 5) to
    the truth's 1.00 +/- 0.05; ``starless + stars-only == image`` within
    float32 rounding. The JSON splits the residual stars into faint (peak
    S/N < 10) and bright ones, and gives the same measure at random places
    away from stars (the non-stellar layer's own error, for context).
denoise
    Pure noise: the residual noise (1.4826 x MAD of ``output - truth``) of
    denoise 1.0 at most a third of the input's, with no spurious source; of
    denoise 0 within 10% of the input's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..params import SharpenParams
from . import metrics as M

__all__ = [
    "CASE_NAMES",
    "QUICK",
    "FULL",
    "ControlCase",
    "BarRow",
    "ControlsResult",
    "make_control_case",
    "truth_at",
    "eval_sharpen",
    "eval_halos",
    "eval_correct",
    "eval_colours",
    "eval_manual",
    "eval_starless",
    "eval_denoise",
    "run_controls",
    "REFERENCES",
    "main",
]

CASE_NAMES = ("stars_mono", "stars_rgb", "elliptic_mono", "trailed_mono", "nebula_starless_rgb", "nebula_rgb", "noise_mono")
QUICK = {"seeds": (0, 1), "size": 320}
FULL = {"seeds": (0, 1, 2), "size": 448}
HALOS = (-0.5, -0.25, 0.0, 0.25, 0.5)
BASE = SharpenParams(sharpen_stars=1.0, adjust_halos=0.0, sharpen_nonstellar=0.5)
"""The bench setting; every measurement changes only the control it judges."""
GRID = 36
"""Spacing (px) of the grid stars (jittered by +-3 px: isolated within 5 FWHM for FWHM up to 6 px)."""
ISOLATION = 5.0
"""Isolation radius in source FWHM for the per-star measures of grid scenes."""
EDGE = 5.0
"""Distance from the image edge (source FWHM) of the grid stars measured."""
NEBULA_PEAK = 300.0
"""Star-free nebulae are scaled so their 99.9th percentile is this many noise sigma."""
SIGMA = 1e-3
SATURATION = 1.0
RESIDUAL_SIGMA = 3.0
_P_TAIL = 0.0013498980316301  # P(N(0, 1) > 3)

_GRID_RECIPES: dict[str, dict[str, Any]] = {
    "stars_mono": dict(channels=1, fwhm=(3.0, 4.5), beta=(2.5, 4.0), ellipticity=(0.0, 0.1), aberrations=False, trail=0.0, chromatic=False),
    "stars_rgb": dict(channels=3, fwhm=(3.0, 4.5), beta=(2.5, 4.0), ellipticity=(0.0, 0.15), aberrations=True, trail=0.0, chromatic=True),
    "elliptic_mono": dict(channels=1, fwhm=(3.0, 4.0), beta=(2.5, 4.0), ellipticity=(0.25, 0.25), aberrations=False, trail=0.0, chromatic=False),
    "trailed_mono": dict(channels=1, fwhm=(3.0, 3.5), beta=(2.5, 3.5), ellipticity=(0.0, 0.05), aberrations=False, trail=(5.0, 7.0), chromatic=False),
}
_SYNTH_CASES = ("nebula_starless_rgb", "nebula_rgb", "noise_mono")


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


@dataclass
class ControlCase:
    """A seeded scene with its PSF, observation and star table.

    Attributes
    ----------
    name, seed, size : what built it
    scene : synth.Scene
    psf : synth.PSFModel
    obs : synth.Observation
    star_x, star_y : (N,) truth positions (px)
    star_fwhm, star_beta, star_snr : (C, N) source FWHM (px), beta, peak S/N
    selected : list (per channel) of index arrays: isolated, unsaturated,
        peak S/N >= 50, away from the edges (the per-star measures)
    ringing : list (per channel) of index arrays: the same with saturated
        stars allowed
    params : SharpenParams of the bench setting for this case (a manual PSF
        diameter on the star-free nebula)
    truths : cache of synth.Truth by parameters (see :func:`truth_at`)
    """

    name: str
    seed: int
    size: int
    scene: Any
    psf: Any
    obs: Any
    star_x: np.ndarray
    star_y: np.ndarray
    star_fwhm: np.ndarray
    star_beta: np.ndarray
    star_snr: np.ndarray
    selected: list
    ringing: list
    params: SharpenParams
    truths: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.obs.image.shape[0])

    @property
    def label(self) -> str:
        return f"{self.name}/{self.seed}@{self.size}"


def _grid_scene(size: int, channels: int, rng: np.random.Generator, psf: Any) -> Any:
    """Isolated stars on a jittered grid (peak S/N 60 to 600) plus one saturated
    star, no nebulosity, a gentle gradient."""
    from ..psf.field import PARAM_NAMES
    from ..synth import Scene

    m = 32
    start = 28  # grid symmetric in the frame, spacing at least GRID, so every corner has stars
    n = max(2, int((size - 2 * start) // GRID) + 1)
    pos = np.linspace(start, size - 1 - start, n)
    gy, gx = np.meshgrid(pos, pos, indexing="ij")
    x = gx.ravel() + rng.uniform(-3, 3, gx.size)
    y = gy.ravel() + rng.uniform(-3, 3, gy.size)
    p = psf.params_at(y, x)  # (C, P, N)
    f = p[:, PARAM_NAMES.index("fwhm")].mean(0)
    b = p[:, PARAM_NAMES.index("beta")].mean(0)
    alpha = f / (2.0 * np.sqrt(2.0 ** (1.0 / b) - 1.0))
    snr = np.exp(rng.uniform(np.log(60.0), np.log(600.0), x.size))
    flux = snr * SIGMA * np.pi * alpha**2 / (b - 1.0)
    k = int(rng.integers(x.size))
    flux[k] *= 20.0 * SATURATION / (snr[k] * SIGMA)  # one star clipped at 20x saturation
    if channels == 3:
        t = np.clip(rng.normal(0.1, 0.45, x.size), -1, 1)
        col = np.stack([1 + 0.45 * t, np.ones_like(t), 1 - 0.45 * t])
        col = col * (3.0 / col.sum(0))
    else:
        col = np.ones((1, x.size))
    nonst = np.zeros((channels, size + 2 * m, size + 2 * m))
    yy, xx = np.mgrid[0:size, 0:size]
    a = rng.normal(0, 1, 2)
    grad = a[0] * (xx / size - 0.5) + a[1] * (yy / size - 0.5)
    grad = grad / max(np.abs(grad).max(), 1e-12)
    return Scene((size, size), m, x, y, flux[None] * col, nonst, np.repeat(grad[None], channels, 0))


def _measurable_chromatism(psf: Any, rng: np.random.Generator) -> Any:
    """The same PSF model with a lateral chromatic shift of 0.4 to 0.6 px at the
    corners (R and B in opposite directions, radial) and the R and B seeing 5 to
    10% narrower and wider than G, so the colour bars of correct-only judge a
    real difference on every seed."""
    from dataclasses import replace

    from ..synth import PSFModel

    h, w = psf.shape
    yc, xc, rn = (h - 1) / 2.0, (w - 1) / 2.0, 0.5 * np.hypot(h, w)
    lat = rng.uniform(0.4, 0.6)
    seeing = (-rng.uniform(0.05, 0.1), 0.0, rng.uniform(0.05, 0.1))
    optics = []
    for c in range(psf.channels):
        grid = []
        for iy, y in enumerate(psf.ys):
            row = []
            for ix, x in enumerate(psf.xs):
                u, v = (x - xc) / rn, (y - yc) / rn
                o = psf.optics[c][iy][ix]
                g = psf.optics[1][iy][ix]
                row.append(replace(o, fwhm=g.fwhm * (1.0 + seeing[c]), shift_x=float((c - 1) * lat * u / 0.7),
                                   shift_y=float((c - 1) * lat * v / 0.7)))
            grid.append(row)
        optics.append(grid)
    return PSFModel(shape=psf.shape, ys=psf.ys.copy(), xs=psf.xs.copy(), optics=optics)


def make_control_case(name: str, seed: int = 0, size: int = 256) -> ControlCase:
    """Build one case of ``CASE_NAMES`` reproducibly from its seed and size."""
    from .. import synth
    from ..psf.field import PARAM_NAMES

    if name not in CASE_NAMES:
        raise KeyError(f"unknown control case {name!r}; expected one of {', '.join(CASE_NAMES)}")
    if name == "nebula_starless_rgb":
        # the simulator's star-free nebula recipe, brightened to NEBULA_PEAK sigma
        # (on a faint nebula the noise, not the blur, dominates the error)
        r = synth.CASES[name]
        rng = np.random.default_rng([seed, 6, CASE_NAMES.index(name)])
        psf = synth.make_psf_model((size, size), 3, rng, fwhm=r["fwhm"], beta=r["beta"], ellipticity=r["ellipticity"],
                                   aberrations=r["aberrations"], chromatic=r["aberrations"], vary=True, nodes=3,
                                   variation=0.2)
        scene = synth.make_scene((size, size), 3, rng, kind="nebula", sigma=SIGMA, saturation=SATURATION,
                                 stars=False, bright_star=False)
        peak = float(np.percentile(scene.nonstellar, 99.9))
        scene = scene.scaled(NEBULA_PEAK * SIGMA / max(peak, 1e-12))
        obs = synth.observe(scene, psf, rng, sigma=SIGMA, background=0.02, gradient=0.1, poisson_fraction=0.7,
                            saturation=SATURATION)
        fw = float(np.median(psf.field().values[:, PARAM_NAMES.index("fwhm")]))
        params = BASE.replace(psf_diameter=round(fw, 2))
    elif name in _SYNTH_CASES:
        case = synth.make_case(name, seed, size)
        scene, psf, obs, params = case.scene, case.psf, case.obs, case.params
    else:
        r = _GRID_RECIPES[name]
        rng = np.random.default_rng([seed, 6, CASE_NAMES.index(name)])
        psf = synth.make_psf_model((size, size), r["channels"], rng, fwhm=r["fwhm"], beta=r["beta"],
                                   ellipticity=r["ellipticity"], aberrations=r["aberrations"], trail=r["trail"],
                                   chromatic=r["chromatic"], vary=True, nodes=3, variation=0.2)
        if r["chromatic"]:
            psf = _measurable_chromatism(psf, rng)
        scene = _grid_scene(size, r["channels"], rng, psf)
        obs = synth.observe(scene, psf, rng, sigma=SIGMA, background=0.02, gradient=0.1,
                            poisson_fraction=0.7, saturation=SATURATION)
        params = BASE
    c, h, w = obs.image.shape
    n = len(scene.star_x)
    if n:
        p = psf.params_at(scene.star_y, scene.star_x)
        f_src, b_src = p[:, PARAM_NAMES.index("fwhm")], p[:, PARAM_NAMES.index("beta")]
        alpha = f_src / (2.0 * np.sqrt(2.0 ** (1.0 / b_src) - 1.0))
        snr = scene.star_flux * (b_src - 1.0) / (np.pi * alpha**2) / obs.sigma[:, None]
    else:
        f_src = b_src = snr = np.zeros((c, 0))
    selected, ringing = [], []
    iso, edge = (10.0, 6.0) if name in _SYNTH_CASES else (ISOLATION, EDGE)
    for ch in range(c):
        if n == 0:
            selected.append(np.zeros(0, int))
            ringing.append(np.zeros(0, int))
            continue
        args = (scene.star_x, scene.star_y, scene.star_flux[ch], snr[ch], f_src[ch], (h, w))
        selected.append(M.select_stars(*args, saturated=obs.saturated[ch], isolation=iso, edge=edge))
        ringing.append(M.select_stars(*args, saturated=obs.saturated[ch], isolation=iso, edge=edge,
                                      allow_saturated=True))
    return ControlCase(name=name, seed=seed, size=size, scene=scene, psf=psf, obs=obs,
                       star_x=np.asarray(scene.star_x, float), star_y=np.asarray(scene.star_y, float),
                       star_fwhm=f_src, star_beta=b_src, star_snr=snr, selected=selected, ringing=ringing,
                       params=params)


def truth_at(cc: ControlCase, params: SharpenParams) -> Any:
    """The noise-free truth (synth.Truth) of a case at the targets of ``params``
    (cached on the case; only the controls that change the target matter)."""
    from .. import synth

    key = (params.sharpen_stars, params.adjust_halos, params.psf_diameter, params.sharpen_nonstellar,
           params.correct_only)
    if key not in cc.truths:
        cc.truths[key] = synth.truth_for(cc.scene, cc.psf, cc.obs, params)
    return cc.truths[key]


def _target_fwhm(cc: ControlCase, params: SharpenParams) -> np.ndarray:
    from .. import synth

    tp = synth.target_params(cc.psf, params, cc.star_y, cc.star_x)
    return np.asarray(tp["star_fwhm"], float)


# ---------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------


@dataclass
class BarRow:
    """One line of the table: a bar, the measured value, the target, pass/fail."""

    bar: str
    value: float
    target: str
    passed: bool
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"bar": self.bar, "value": _num(self.value), "target": self.target, "pass": bool(self.passed),
                "details": _jsonable(self.details)}


def _num(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        return _num(v)
    return v


def _within(v: float, centre: float, tol: float) -> bool:
    return bool(np.isfinite(v) and abs(v - centre) <= tol)


def _at_most(v: float, limit: float) -> bool:
    return bool(np.isfinite(v) and v <= limit)


def _at_least(v: float, limit: float) -> bool:
    return bool(not np.isnan(v) and v >= limit)


def _median(v: Sequence[float] | np.ndarray) -> float:
    a = np.asarray(v, float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


# ---------------------------------------------------------------------------
# evaluation of given outputs (pure: arrays in, numbers out)
# ---------------------------------------------------------------------------


def _per_star(cc: ControlCase, output: np.ndarray, params: SharpenParams) -> dict[str, np.ndarray]:
    """star_metrics over every channel of a case, pooled, with regions."""
    truth = truth_at(cc, params)
    t_img = truth.image
    tf = _target_fwhm(cc, params)
    out = np.asarray(output, float)
    keys = ("fwhm_ratio", "ellipticity", "ellipticity_in", "shift", "flux_ratio", "ok")
    per: dict[str, list] = {k: [] for k in keys}
    xs, ys = [], []
    for ch in range(cc.channels):
        sel = cc.selected[ch]
        if not len(sel):
            continue
        r = M.star_metrics(out[ch], t_img[ch], truth.stars[ch], cc.obs.image[ch], cc.star_x[sel], cc.star_y[sel],
                           cc.star_fwhm[ch, sel], float(cc.obs.sigma[ch]), tf[ch, sel])
        for k in keys:
            per[k].append(r[k])
        xs.append(cc.star_x[sel])
        ys.append(cc.star_y[sel])
    if not xs:
        return {k: np.zeros(0) for k in keys} | {"region": np.zeros(0, str)}
    cat = {k: np.concatenate(v) for k, v in per.items()}
    cat["region"] = M.regions(np.concatenate(xs), np.concatenate(ys), cc.obs.image.shape[1:])
    return cat


def _pool(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def eval_sharpen(cases: Sequence[ControlCase], outputs: Sequence[np.ndarray], amount: float) -> list[BarRow]:
    """Sharpen-stars bars at ``amount`` (BASE with sharpen_stars = amount).

    Parameters
    ----------
    cases : control cases (grid star fields)
    outputs : (C, H, W) outputs, one per case
    amount : sharpen_stars of the outputs

    Returns
    -------
    list of BarRow: FWHM ratio centre, corners, flux deviation
    """
    params = BASE.replace(sharpen_stars=amount)
    per = _pool([_per_star(cc, o, params) for cc, o in zip(cases, outputs)])
    ok = per["ok"].astype(bool) & np.isfinite(per["fwhm_ratio"]) & np.isfinite(per["flux_ratio"])
    goal = 1.0 - 0.5 * amount
    rows = []
    for reg, label in (("centre", "centre"), ("corner", "corners")):
        sel = ok & (per["region"] == reg)
        v = _median(per["fwhm_ratio"][sel])
        rows.append(BarRow(f"sharpen stars {amount:g}: FWHM ratio, {label}", v, f"{goal:.2f} +/- 0.05",
                           _within(v, goal, 0.05), {"stars": int(sel.sum())}))
    dev = np.abs(1.0 - per["flux_ratio"][ok])
    v = _median(dev)
    rows.append(BarRow(f"sharpen stars {amount:g}: flux |1 - ratio| median", v, "<= 0.01", _at_most(v, 0.01),
                       {"stars": int(ok.sum()), "bias": _median(per["flux_ratio"][ok] - 1.0),
                        "p90": float(np.percentile(dev, 90)) if dev.size else float("nan")}))
    return rows


def _halo_fractions(cc: ControlCase, output: np.ndarray, params: SharpenParams) -> np.ndarray:
    """Per selected star (pooled over channels): flux in the 2-4 target FWHM
    annulus over the flux in the 5 source FWHM aperture (truth's non-stellar
    part and background removed)."""
    truth = truth_at(cc, params)
    tf = _target_fwhm(cc, params)
    out = np.asarray(output, float)
    fr = []
    for ch in range(cc.channels):
        sel = cc.selected[ch]
        if not len(sel):
            continue
        stars = out[ch] - (truth.image[ch] - truth.stars[ch])
        x, y = cc.star_x[sel], cc.star_y[sel]
        t = tf[ch, sel]
        ring = M.aperture_sums(stars, x, y, 4.0 * t) - M.aperture_sums(stars, x, y, 2.0 * t)
        total = M.aperture_sums(stars, x, y, 5.0 * cc.star_fwhm[ch, sel])
        with np.errstate(divide="ignore", invalid="ignore"):
            fr.append(ring / total)
    return np.concatenate(fr) if fr else np.zeros(0)


def eval_halos(cases: Sequence[ControlCase], outputs: dict[float, Sequence[np.ndarray]],
               sharpen_stars: float = 1.0) -> list[BarRow]:
    """Halo bars: the annulus fraction rises with adjust_halos; no dark ring at 0.

    Parameters
    ----------
    cases : control cases
    outputs : adjust_halos value -> outputs (one per case); must hold 0
    sharpen_stars : the sharpen amount the outputs were made with
    """
    hs = sorted(outputs)
    med, truth_med = [], []
    for h in hs:
        p = BASE.replace(sharpen_stars=sharpen_stars, adjust_halos=h)
        med.append(_median(np.concatenate([_halo_fractions(cc, o, p) for cc, o in zip(cases, outputs[h])])))
        truth_med.append(_median(np.concatenate([_halo_fractions(cc, truth_at(cc, p).image, p) for cc in cases])))
    d = np.diff(med)
    mono = bool(len(med) > 1 and np.all(np.isfinite(med)) and np.all(d > 0))
    rows = [BarRow("halos: 2-4 FWHM annulus flux rises with the control", float(np.min(d)) if len(d) else float("nan"),
                   "every step > 0", mono,
                   {"adjust_halos": hs, "annulus_fraction": med, "truth_annulus_fraction": truth_med})]
    if 0.0 in outputs:
        p = BASE.replace(sharpen_stars=sharpen_stars, adjust_halos=0.0)
        depth, worst, n = [], [], 0
        for cc, o in zip(cases, outputs[0.0]):
            truth = truth_at(cc, p)
            for ch in range(cc.channels):
                rs = cc.ringing[ch]
                if not len(rs):
                    continue
                g = M.ringing(np.asarray(o, float)[ch], cc.star_x[rs], cc.star_y[rs], cc.star_fwhm[ch, rs],
                              float(cc.obs.sigma[ch]), background=truth.image[ch] - truth.stars[ch])
                depth.append(g["depth"])
                worst.append(g["worst"])
                n += g["n"]
        v = max(depth) if depth else float("nan")
        rows.append(BarRow("halos 0: dark ring depth (noise sigma)", v, "<= 1.0", _at_most(v, 1.0),
                           {"stars": n, "worst_single_star": max(worst) if worst else float("nan")}))
    return rows


def _fit_channels(cc: ControlCase, output: np.ndarray, idx: np.ndarray, guess: np.ndarray) -> dict[str, np.ndarray]:
    """Moffat fits of stars ``idx`` in every channel: dict of (C, M) arrays."""
    out = np.asarray(output, float)
    res: dict[str, list] = {k: [] for k in ("x", "y", "fwhm", "ellipticity", "ok")}
    for ch in range(cc.channels):
        f = M.fit_star_shapes(out[ch], cc.star_x[idx], cc.star_y[idx], float(np.median(guess[ch, idx])),
                              float(cc.obs.sigma[ch]), size=max(11, 2 * int(np.ceil(3 * np.median(cc.star_fwhm[ch, idx]))) + 1))
        for k in res:
            res[k].append(f[k])
    return {k: np.stack(v) for k, v in res.items()}


def eval_correct(cases: dict[str, Sequence[ControlCase]], outputs: dict[str, Sequence[np.ndarray]]) -> list[BarRow]:
    """Correct-only bars.

    Parameters
    ----------
    cases, outputs : by case name ("elliptic_mono", "trailed_mono",
        "stars_rgb"; any subset), lists of cases and of their correct-only
        outputs
    """
    params = BASE.replace(correct_only=True, sharpen_stars=0.0, sharpen_nonstellar=0.0)
    rows: list[BarRow] = []
    labels = {"elliptic_mono": "e=0.25 field", "trailed_mono": "trailed field", "stars_rgb": "RGB aberrated field"}
    for name in ("elliptic_mono", "trailed_mono", "stars_rgb"):
        if name not in cases:
            continue
        ell, ell_in, ratio, ratio_t, spread_f, spread_c = [], [], [], [], [], []
        for cc, o in zip(cases[name], outputs[name]):
            truth = truth_at(cc, params)
            if cc.channels == 1:
                idx = cc.selected[0]
            else:
                idx = np.intersect1d(np.intersect1d(cc.selected[0], cc.selected[1]), cc.selected[2])
            if not len(idx):
                continue
            f_o = _fit_channels(cc, o, idx, cc.star_fwhm)
            f_i = _fit_channels(cc, cc.obs.image, idx, cc.star_fwhm)
            f_t = _fit_channels(cc, truth.image, idx, cc.star_fwhm)
            ok = f_o["ok"].all(0) & f_i["ok"].all(0) & f_t["ok"].all(0)
            ell.append(f_o["ellipticity"][:, ok].ravel())
            ell_in.append(f_i["ellipticity"][:, ok].ravel())
            ratio.append((f_o["fwhm"][:, ok] / f_i["fwhm"][:, ok]).ravel())
            ratio_t.append((f_o["fwhm"][:, ok] / f_t["fwhm"][:, ok]).ravel())
            if cc.channels > 1:
                fw = f_o["fwhm"][:, ok]
                spread_f.append((fw.max(0) - fw.min(0)) / np.median(fw, axis=0))
                px, py = f_o["x"][:, ok], f_o["y"][:, ok]
                d = np.zeros(px.shape[1])
                for a in range(cc.channels):
                    for b in range(a + 1, cc.channels):
                        d = np.maximum(d, np.hypot(px[a] - px[b], py[a] - py[b]))
                spread_c.append(d)
        if not ell:
            continue
        e = _median(np.concatenate(ell))
        rows.append(BarRow(f"correct only: ellipticity, {labels[name]}", e, "<= 0.05", _at_most(e, 0.05),
                           {"input_ellipticity": _median(np.concatenate(ell_in)), "stars": int(np.concatenate(ell).size)}))
        if name == "trailed_mono":
            v = _median(np.concatenate(ratio_t))
            rows.append(BarRow(f"correct only: FWHM output / truth, {labels[name]}", v, "1.00 +/- 0.05",
                               _within(v, 1.0, 0.05), {"output_over_input": _median(np.concatenate(ratio))}))
        else:
            v = _median(np.concatenate(ratio))
            rows.append(BarRow(f"correct only: FWHM ratio, {labels[name]}", v, "1.00 +/- 0.05", _within(v, 1.0, 0.05),
                               {"output_over_truth": _median(np.concatenate(ratio_t))}))
        if spread_f:
            v = _median(np.concatenate(spread_f))
            rows.append(BarRow("correct only RGB: channel FWHM spread (max-min)/median", v, "<= 0.05",
                               _at_most(v, 0.05), {"stars": int(np.concatenate(spread_f).size)}))
            v = _median(np.concatenate(spread_c))
            rows.append(BarRow("correct only RGB: channel centroid spread (px)", v, "<= 0.10", _at_most(v, 0.10),
                               {"stars": int(np.concatenate(spread_c).size)}))
    return rows


def eval_colours(cases: Sequence[ControlCase], outputs: Sequence[np.ndarray], params: SharpenParams = BASE) -> list[BarRow]:
    """Star-colour bar: per-star R/G and B/G aperture flux ratios against the truth's."""
    dev, n = [], 0
    for cc, o in zip(cases, outputs):
        if cc.channels != 3:
            continue
        truth = truth_at(cc, params)
        idx = np.intersect1d(np.intersect1d(cc.selected[0], cc.selected[1]), cc.selected[2])
        if not len(idx):
            continue
        x, y = cc.star_x[idx], cc.star_y[idx]
        rad = 5.0 * cc.star_fwhm[:, idx].max(0)
        out = np.asarray(o, float)
        f_o = np.stack([M.aperture_sums(out[c] - (truth.image[c] - truth.stars[c]), x, y, rad) for c in range(3)])
        f_t = np.stack([M.aperture_sums(truth.stars[c], x, y, rad) for c in range(3)])
        with np.errstate(divide="ignore", invalid="ignore"):
            for c in (0, 2):
                dev.append(np.abs((f_o[c] / f_o[1]) / (f_t[c] / f_t[1]) - 1.0))
        n += len(idx)
    v = _median(np.concatenate(dev)) if dev else float("nan")
    return [BarRow("star colours: |1 - (R/G, B/G) / truth| median", v, "<= 0.02", _at_most(v, 0.02), {"stars": n})]


def eval_manual(cases: Sequence[ControlCase], outputs: Sequence[np.ndarray]) -> list[BarRow]:
    """Manual-PSF bars on star-free nebulae: PSNR gain over the input, and
    spurious sources (detections with no truth detection nearby) no more than
    1.1 times those of the ideal output (the truth plus the input's own noise,
    which invents nothing: its extra detections are noise peaks)."""
    gains, ceil, spur, spur_ideal, spur_in, det_truth = [], [], 0, 0, 0, 0
    for cc, o in zip(cases, outputs):
        truth = truth_at(cc, cc.params).image
        ideal = truth + cc.obs.noise
        valid = M.valid_mask(cc.obs.saturated, cc.obs.image.shape)
        p_in = M.psnr(cc.obs.image, truth, valid)
        gains.append(M.psnr(o, truth, valid) - p_in)
        ceil.append(M.psnr(ideal, truth, valid) - p_in)
        fw = float(cc.params.psf_diameter) * (1.0 - cc.params.sharpen_nonstellar)
        for ch in range(cc.channels):
            sg = float(cc.obs.sigma[ch])
            s = M.spurious_sources(np.asarray(o, float)[ch], truth[ch], sg, fw)
            spur += s["spurious"]
            det_truth += s["truth"]
            spur_ideal += M.spurious_sources(ideal[ch], truth[ch], sg, fw)["spurious"]
            spur_in += M.spurious_sources(cc.obs.image[ch], truth[ch], sg, fw)["spurious"]
    g = float(np.min(gains)) if gains else float("nan")
    limit = 1.1 * spur_ideal
    return [
        BarRow("manual PSF nebula: PSNR gain over the input (dB, worst case)", g, ">= 5", _at_least(g, 5.0),
               {"per_case": gains, "ideal_gain_per_case": ceil}),
        BarRow("manual PSF nebula: spurious sources", float(spur), f"<= {limit:.0f} (1.1 x ideal)", spur <= limit,
               {"ideal_spurious": spur_ideal, "input_spurious": spur_in, "truth_sources": det_truth}),
    ]


def _allowed(n: int, p: float = _P_TAIL, level: float = 0.99) -> int:
    """Counts of a Binomial(n, p) below its ``level`` quantile: what noise alone gives."""
    from scipy import stats

    return int(stats.binom.ppf(level, n, p)) if n else 0


def eval_starless(cases: Sequence[ControlCase], stars: Sequence[np.ndarray], nonstellar: Sequence[np.ndarray],
                  images: Sequence[np.ndarray], params: SharpenParams = BASE) -> list[BarRow]:
    """Starless-layer bars (see the module docstring)."""
    sig_all, snr_all, ctrl, flux_ratio, sum_err = [], [], [], [], 0.0
    for cc, st, ns, im in zip(cases, stars, nonstellar, images):
        st, ns, im = (np.asarray(a, float) for a in (st, ns, im))
        scale = float(np.nanmax(np.abs(im))) or 1.0
        sum_err = max(sum_err, float(np.nanmax(np.abs(st + ns - im))) / scale)
        truth = truth_at(cc, params)
        obs = cc.obs
        c, h, w = im.shape
        for ch in range(c):
            if len(cc.star_x) == 0:
                continue
            keep = (cc.star_snr[ch] >= 3.0)
            f = cc.star_fwhm[ch]
            keep &= (cc.star_x >= 2 * f) & (cc.star_y >= 2 * f) & (cc.star_x <= w - 1 - 2 * f) & (cc.star_y <= h - 1 - 2 * f)
            idx = np.flatnonzero(keep)
            if not len(idx):
                continue
            x, y, r = cc.star_x[idx], cc.star_y[idx], f[idx]
            resid = ns[ch] - truth.nonstellar[ch] - truth.background[ch]
            var = obs.read_noise[ch] ** 2 + np.clip(obs.clean[ch], 0, None) / obs.gain[ch]
            s = M.aperture_sums(resid, x, y, r)
            v = M.aperture_sums(var, x, y, r)
            sig_all.append(s / np.sqrt(v))
            snr_all.append(cc.star_snr[ch, idx])
            # control: the same measure at random places away from stars (the
            # non-stellar layer's error where there is no star)
            rng = np.random.default_rng([cc.seed, ch, 17])
            rx, ry = rng.uniform(2 * r.max(), w - 1 - 2 * r.max(), 400), rng.uniform(2 * r.max(), h - 1 - 2 * r.max(), 400)
            d2 = (rx[:, None] - cc.star_x[None, :]) ** 2 + (ry[:, None] - cc.star_y[None, :]) ** 2
            away = np.all(d2 > (3.0 * np.median(f)) ** 2, axis=1)
            if away.any():
                rr = np.full(int(away.sum()), float(np.median(r)))
                ctrl.append(M.aperture_sums(resid, rx[away], ry[away], rr)
                            / np.sqrt(M.aperture_sums(var, rx[away], ry[away], rr)))
            t_ns = M.aperture_sums(truth.nonstellar[ch], x, y, r)
            o_ns = M.aperture_sums(ns[ch] - truth.background[ch], x, y, r)
            on = t_ns >= 5.0 * np.sqrt(v)
            if on.any():
                flux_ratio.append(o_ns[on] / t_ns[on])
    sig = np.concatenate(sig_all) if sig_all else np.zeros(0)
    snr = np.concatenate(snr_all) if snr_all else np.zeros(0)
    cs = np.concatenate(ctrl) if ctrl else np.zeros(0)
    extra = {
        "residual_faint_snr_lt_10": int(np.sum((sig > RESIDUAL_SIGMA) & (snr < 10))),
        "residual_bright_snr_ge_10": int(np.sum((sig > RESIDUAL_SIGMA) & (snr >= 10))),
        "stars_snr_ge_10": int(np.sum(snr >= 10)),
        "control_places": int(cs.size),
        "control_fraction_above_3": float(np.mean(cs > RESIDUAL_SIGMA)) if cs.size else float("nan"),
        "control_fraction_below_-3": float(np.mean(cs < -RESIDUAL_SIGMA)) if cs.size else float("nan"),
    }
    allowed = _allowed(sig.size)
    n_res = int(np.sum(sig > RESIDUAL_SIGMA))
    n_hole = int(np.sum(sig < -RESIDUAL_SIGMA))
    fr = _median(np.concatenate(flux_ratio)) if flux_ratio else float("nan")
    return [
        BarRow("starless: residual stars above 3 sigma", float(n_res), f"<= {allowed} (noise, {sig.size} stars)",
               n_res <= allowed, {"stars": int(sig.size), "max_sigma": float(sig.max()) if sig.size else float("nan"),
                                  **extra}),
        BarRow("starless: holes below -3 sigma under stars", float(n_hole), f"<= {allowed} (noise, {sig.size} stars)",
               n_hole <= allowed, {"min_sigma": float(sig.min()) if sig.size else float("nan")}),
        BarRow("starless: non-stellar flux under stars / truth", fr, "1.00 +/- 0.05", _within(fr, 1.0, 0.05),
               {"stars_on_nebulosity": int(sum(len(a) for a in flux_ratio))}),
        BarRow("starless + stars-only == image (max rel. error)", sum_err, "<= 1e-6", _at_most(sum_err, 1e-6)),
    ]


def _noise_of(a: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    d = (np.asarray(a, float) - truth)[valid]
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def eval_denoise(cases: Sequence[ControlCase], out_full: Sequence[np.ndarray], out_none: Sequence[np.ndarray]) -> list[BarRow]:
    """Denoise bars on pure noise: outputs of denoise 1.0 and of denoise 0."""
    red, keep, spur = [], [], 0
    for cc, o1, o0 in zip(cases, out_full, out_none):
        truth = truth_at(cc, cc.params).image
        valid = M.valid_mask(cc.obs.saturated, cc.obs.image.shape)
        n_in = _noise_of(cc.obs.image, truth, valid)
        n1 = _noise_of(o1, truth, valid)
        n0 = _noise_of(o0, truth, valid)
        red.append(n_in / n1 if n1 > 0 else float("inf"))
        keep.append(n0 / n_in)
        fw = float(cc.params.psf_diameter or 3.0) * (1.0 - cc.params.sharpen_nonstellar)
        for ch in range(cc.channels):
            spur += M.spurious_sources(np.asarray(o1, float)[ch], truth[ch], float(cc.obs.sigma[ch]), fw)["spurious"]
    r = float(np.min(red)) if red else float("nan")
    k = float(max(keep, key=lambda v: abs(v - 1.0))) if keep else float("nan")
    return [
        BarRow("denoise 1.0: noise lowered by (input / output, worst case)", r, ">= 3", _at_least(r, 3.0), {"per_case": red}),
        BarRow("denoise 1.0: spurious sources on pure noise", float(spur), "0", spur == 0),
        BarRow("denoise 0: output noise / input noise (worst case)", k, "1.00 +/- 0.10", _within(k, 1.0, 0.10),
               {"per_case": keep}),
    ]


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


@dataclass
class ControlsResult:
    """Rows of the controls table with the configuration that made them."""

    rows: list[BarRow] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"config": _jsonable(self.config), "notes": list(self.notes), "rows": [r.as_dict() for r in self.rows],
                "passed": sum(r.passed for r in self.rows), "total": len(self.rows)}

    def table(self) -> str:
        w = max([len(r.bar) for r in self.rows] + [3])
        lines = [f"{'bar':<{w}}  {'value':>10}  {'target':<26}  result", "-" * (w + 48)]
        for r in self.rows:
            v = r.value
            vs = str(v) if not np.isfinite(v) else (f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4g}")
            lines.append(f"{r.bar:<{w}}  {vs:>10}  {r.target:<26}  {'pass' if r.passed else 'FAIL'}")
        lines.append(f"{sum(r.passed for r in self.rows)}/{len(self.rows)} bars pass "
                     f"(method {self.config.get('method')}, seeds {self.config.get('seeds')}, "
                     f"{self.config.get('size')} px, {self.config.get('seconds', 0):.0f} s)")
        return "\n".join(lines)


REFERENCES = ("input", "ideal")
"""Pseudo-methods for context: the untouched input, and the ideal output (the
truth at the setting plus (1 - denoise) times the input's own noise)."""


@dataclass
class _Output:
    image: np.ndarray
    stars: np.ndarray
    nonstellar: np.ndarray


def _sharpen(cc: ControlCase, params: SharpenParams, method: str, model: Any, notes: list[str]) -> _Output:
    if method == "input":
        img = cc.obs.image
        return _Output(img, np.zeros_like(img), img)
    if method == "ideal":
        t = truth_at(cc, params)
        ns = t.nonstellar + t.background + (1.0 - params.denoise) * cc.obs.noise
        return _Output(t.stars + ns, t.stars, ns)
    from ..pipeline import sharpen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sharpen(cc.obs.image, params, model=model)
    if res.method != params.method:
        msg = f"method {params.method} fell back to {res.method}"
        if msg not in notes:
            notes.append(msg)
    return _Output(np.asarray(res.image.data), res.stars, res.nonstellar)


def run_controls(
    method: str = "nn",
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    size: int | None = None,
    model: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ControlsResult:
    """Measure every bar of the controls on seeded cases with one method.

    Parameters
    ----------
    method : {"nn", "rl", "wiener", "input", "ideal"}
        The last two are references: the untouched input, and the truth at
        each setting plus (1 - denoise) times the input's own noise.
    quick : bool
        Fewer seeds and smaller images (``QUICK``) instead of ``FULL``.
    seeds, size : override the seeds and the image size.
    model : a loaded network for ``nn`` (loaded from the package if None).
    progress : callable(message) for each step.

    Returns
    -------
    ControlsResult

    Raises
    ------
    ModelError
        If ``method`` is "nn" and the network cannot be loaded.
    """
    say = progress or (lambda msg: None)
    cfg = QUICK if quick else FULL
    seeds = tuple(seeds) if seeds is not None else cfg["seeds"]
    size = int(size) if size is not None else cfg["size"]
    t0 = time.perf_counter()
    if method == "nn" and model is None:
        from ..nn import Model

        model = Model.load()
    if method not in ("nn", "rl", "wiener") + REFERENCES:
        from ..errors import ParameterError

        raise ParameterError(f"method must be one of nn, rl, wiener, input, ideal, got {method!r}")
    base = BASE.replace(method=method if method not in REFERENCES else "rl")
    notes: list[str] = []
    rows: list[BarRow] = []

    def run(cc: ControlCase, p: SharpenParams) -> _Output:
        return _sharpen(cc, p, method, model if method == "nn" else None, notes)

    def build(name: str) -> list[ControlCase]:
        out = []
        for s in seeds:
            say(f"case {name} seed {s} ({size} px)")
            out.append(make_control_case(name, s, size))
        return out

    mono = build("stars_mono")
    rgb = build("stars_rgb")
    out1_m = [run(cc, base).image for cc in mono]
    out1_c = [run(cc, base).image for cc in rgb]
    say("sharpen stars 1.0 / 0.5")
    rows += eval_sharpen(mono + rgb, out1_m + out1_c, 1.0)
    p05 = base.replace(sharpen_stars=0.5)
    rows += eval_sharpen(mono + rgb, [run(cc, p05).image for cc in mono + rgb], 0.5)
    say("halos")
    halo_out = {0.0: out1_m}
    for h in HALOS:
        if h != 0.0:
            halo_out[h] = [run(cc, base.replace(adjust_halos=h)).image for cc in mono]
    rows += eval_halos(mono, halo_out, 1.0)
    say("star colours")
    rows += eval_colours(rgb, out1_c, BASE)
    say("correct only")
    pc = base.replace(correct_only=True, sharpen_stars=0.0, sharpen_nonstellar=0.0)
    ell = build("elliptic_mono")
    trl = build("trailed_mono")
    rows += eval_correct(
        {"elliptic_mono": ell, "trailed_mono": trl, "stars_rgb": rgb},
        {k: [run(cc, pc).image for cc in v] for k, v in
         (("elliptic_mono", ell), ("trailed_mono", trl), ("stars_rgb", rgb))},
    )
    say("manual PSF on star-free nebulae")
    neb = build("nebula_starless_rgb")
    rows += eval_manual(neb, [run(cc, cc.params.replace(method=base.method)).image for cc in neb])
    say("starless layer")
    nst = build("nebula_rgb")
    res = [run(cc, base) for cc in nst]
    rows += eval_starless(nst, [r.stars for r in res], [r.nonstellar for r in res], [r.image for r in res], BASE)
    say("denoise")
    noi = build("noise_mono")
    d1 = [run(cc, cc.params.replace(method=base.method, denoise=1.0)).image for cc in noi]
    d0 = [run(cc, cc.params.replace(method=base.method, denoise=0.0)).image for cc in noi]
    rows += eval_denoise(noi, d1, d0)
    from .. import __version__

    config = {"method": method, "quick": quick, "seeds": list(seeds), "size": size, "astrosharp": __version__,
              "seconds": time.perf_counter() - t0}
    if method == "nn" and model is not None:
        man = getattr(model, "manifest", None)
        if isinstance(man, dict):
            config["model"] = {k: man.get(k) for k in ("name", "version", "sha256", "params", "training") if k in man}
    return ControlsResult(rows=rows, config=config, notes=notes)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m astrosharp.bench.controls``: print the table, write JSON."""
    ap = argparse.ArgumentParser(prog="python -m astrosharp.bench.controls",
                                 description="Measure every control bar (issue 6) on seeded simulator scenes.")
    ap.add_argument("--method", choices=("nn", "rl", "wiener") + REFERENCES, default="nn",
                    help="method to judge (default nn); input and ideal are references (no processing; the truth "
                    "plus the input's own noise)")
    ap.add_argument("--quick", action="store_true", help=f"seeds {QUICK['seeds']} at {QUICK['size']} px")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds to use (default: 0 1 2, quick: 0 1)")
    ap.add_argument("--size", type=int, help="image size in px")
    ap.add_argument("--model", metavar="PATH", help="network manifest (.json) or .onnx to judge (default: the shipped one)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress messages")
    args = ap.parse_args(argv)
    from ..errors import AstrosharpError

    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        model = None
        if args.model is not None and args.method == "nn":
            from ..nn import Model

            model = Model.load(args.model)
        res = run_controls(args.method, args.quick, args.seeds, args.size, model=model, progress=say)
    except AstrosharpError as exc:
        print(f"astrosharp: {exc}", file=sys.stderr)
        return 1
    print(res.table())
    for n in res.notes:
        print(f"note: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_dict(), indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
