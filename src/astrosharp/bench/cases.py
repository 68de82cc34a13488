"""The bench's fixed cases (from :func:`astrosharp.synth.make_case`) and what the
metrics need to know about each: the stars of the truth with their source PSF,
the star mask of the extended emission, the saturation mask; plus the real
images of ``../shared/data/real``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics as M

__all__ = [
    "QUICK_CASES",
    "FULL_CASES",
    "MAX_STARS_PER_CHANNEL",
    "BenchCase",
    "load_case",
    "real_image_paths",
]

QUICK_CASES: tuple[tuple[str, int, int], ...] = (
    ("stars_mono", 0, 320),
    ("stars_rgb_aberrated", 0, 256),
    ("galaxies_mono", 0, 256),
    ("nebula_starless_rgb", 0, 192),
    ("trailed_mono", 0, 256),
    ("noise_mono", 0, 256),
)
"""(name, seed, size) of the ``--quick`` run."""

FULL_CASES: tuple[tuple[str, int, int], ...] = (
    ("stars_mono", 0, 512),
    ("stars_rgb_aberrated", 0, 512),
    ("cluster_rgb", 0, 512),
    ("galaxies_mono", 0, 512),
    ("nebula_rgb", 0, 512),
    ("nebula_starless_rgb", 0, 512),
    ("galaxies_starless_mono", 0, 512),
    ("trailed_mono", 0, 512),
    ("noise_mono", 0, 512),
)
"""(name, seed, size) of the full run: every kind of ``synth.CASES``."""

MAX_STARS_PER_CHANNEL = 80
"""Per-star metrics use at most this many stars per channel (spread over the
brightness range), to bound the fitting time."""


@dataclass
class BenchCase:
    """A synthetic case with everything the metrics need.

    Attributes
    ----------
    name, seed, size : what built it
    case : synth.Case
    kind : "stars" (has stars), "starless" (a scene, no stars) or "noise" (no scene)
    valid : (C, H, W) bool, pixels of the frame PSNR (saturated cores excluded)
    extended : (C, H, W) bool, pixels of the extended-emission PSNR (stars masked too)
    star_x, star_y : (N,) truth positions
    star_fwhm, star_beta, star_snr, star_flux : (C, N) source FWHM, beta, peak S/N, flux
    target_fwhm : (C, N) target FWHM of the stars
    selected : list (per channel) of (M,) indices for the per-star metrics
    ringing_stars : list (per channel) of indices for the ringing metric
        (saturated stars included)
    target_fwhm_median : float, median target FWHM (px) over the field
    has_extended : bool, the scene has non-stellar emission (else no PSNRext)
    """

    name: str
    seed: int
    size: int
    case: object
    kind: str
    valid: np.ndarray
    extended: np.ndarray
    star_x: np.ndarray
    star_y: np.ndarray
    star_fwhm: np.ndarray
    star_beta: np.ndarray
    star_snr: np.ndarray
    star_flux: np.ndarray
    target_fwhm: np.ndarray
    selected: list
    ringing_stars: list
    target_fwhm_median: float
    has_extended: bool = True

    @property
    def channels(self) -> int:
        return int(self.case.obs.image.shape[0])

    @property
    def label(self) -> str:
        return f"{self.name}@{self.size}"


def _spread(idx: np.ndarray, flux: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``idx``, evenly spread over their flux ranking."""
    if len(idx) <= n:
        return idx
    order = idx[np.argsort(flux[idx])]
    pick = np.round(np.linspace(0, len(order) - 1, n)).astype(int)
    return np.sort(order[pick])


def load_case(name: str, seed: int = 0, size: int = 512) -> BenchCase:
    """Build a fixed case and its metric masks and star tables."""
    from .. import synth
    from ..psf.field import PARAM_NAMES

    case = synth.make_case(name, seed, size)
    obs = case.obs
    c, h, w = obs.image.shape
    sc = case.scene
    n = len(sc.star_x)
    valid = M.valid_mask(obs.saturated, (c, h, w))
    fw = PARAM_NAMES.index("fwhm")
    be = PARAM_NAMES.index("beta")
    if n:
        p = case.psf.params_at(sc.star_y, sc.star_x)  # (C, P, N)
        f_src, b_src = p[:, fw], p[:, be]
        alpha = f_src / (2.0 * np.sqrt(2.0 ** (1.0 / b_src) - 1.0))
        peak = sc.star_flux * (b_src - 1.0) / (np.pi * alpha**2)
        snr = peak / obs.sigma[:, None]
        tp = synth.target_params(case.psf, case.params, sc.star_y, sc.star_x)
        t_f = np.asarray(tp["star_fwhm"], float)
    else:
        f_src = b_src = snr = t_f = np.zeros((c, 0))
    ext = valid.copy()
    if n:
        mask = np.zeros((h, w), bool)
        for ch in range(c):
            mask |= M.star_mask((h, w), sc.star_x, sc.star_y, snr[ch], f_src[ch], b_src[ch])
        ext &= ~mask[None]
    selected, ringing_stars = [], []
    for ch in range(c):
        if n == 0:
            selected.append(np.zeros(0, int))
            ringing_stars.append(np.zeros(0, int))
            continue
        args = (sc.star_x, sc.star_y, sc.star_flux[ch], snr[ch], f_src[ch], (h, w))
        sel = M.select_stars(*args, saturated=obs.saturated[ch])
        ring = M.select_stars(*args, saturated=obs.saturated[ch], allow_saturated=True)
        selected.append(_spread(sel, sc.star_flux[ch], MAX_STARS_PER_CHANNEL))
        ringing_stars.append(_spread(ring, sc.star_flux[ch], MAX_STARS_PER_CHANNEL))
    has_scene = bool(np.any(sc.nonstellar)) or n > 0
    kind = "stars" if n else ("starless" if has_scene else "noise")
    gy, gx = np.meshgrid(case.psf.ys, case.psf.xs, indexing="ij")
    tnodes = synth.target_params(case.psf, case.params, gy.ravel(), gx.ravel())
    key = "neb_fwhm" if case.params.psf_diameter is not None else "star_fwhm"
    return BenchCase(
        name=name,
        seed=seed,
        size=size,
        case=case,
        kind=kind,
        valid=valid,
        extended=ext,
        star_x=np.asarray(sc.star_x, float),
        star_y=np.asarray(sc.star_y, float),
        star_fwhm=f_src,
        star_beta=b_src,
        star_snr=snr,
        star_flux=np.asarray(sc.star_flux, float),
        target_fwhm=t_f,
        selected=selected,
        ringing_stars=ringing_stars,
        target_fwhm_median=float(np.median(tnodes[key])),
        has_extended=bool(np.any(sc.nonstellar)),
    )


def real_image_paths(directory: str | os.PathLike | None = None) -> list[Path]:
    """The real evaluation images (FITS files) of ``directory`` (default:
    ``$ASTROSHARP_SHARED/data/real`` or ``../shared/data/real`` beside the
    repository, or beside the working directory); the PSF reference files
    (``PSF_*``) are left out. An absent directory gives an empty list."""
    if directory is None:
        env = os.environ.get("ASTROSHARP_SHARED")
        candidates = [Path(env) / "data" / "real"] if env else []
        here = Path(__file__).resolve()
        candidates += [p / "shared" / "data" / "real" for p in list(here.parents)[:6]]
        candidates.append(Path.cwd().parent / "shared" / "data" / "real")
        directory = next((p for p in candidates if p.is_dir()), None)
        if directory is None:
            return []
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        name = p.name.lower()
        if p.name.startswith("PSF_") or not any(name.endswith(e) for e in (".fits", ".fit", ".fts", ".fits.bz2", ".fits.gz", ".fz", ".xisf", ".tif", ".tiff")):
            continue
        out.append(p)
    return out
