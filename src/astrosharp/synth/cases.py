"""The benchmark's fixed cases: seeded scenes of every kind the tool meets.

Each case is fully determined by its name, seed and size; its truth is the
scene at the bench setting (sharpen stars 1.0, sharpen non-stellar 0.5,
adjust halos 0, automatic PSF; on star-free cases a manual PSF diameter equal
to the true FWHM), i.e. a round Moffat of half the source FWHM everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..params import SharpenParams
from ..psf.field import PARAM_NAMES
from .optics import PSFModel, make_psf_model
from .render import Observation, Truth, observe, truth_for
from .scene import Scene, make_scene

__all__ = ["CASES", "Case", "make_case", "BENCH_PARAMS"]

BENCH_PARAMS = SharpenParams(sharpen_stars=1.0, adjust_halos=0.0, sharpen_nonstellar=0.5)

# name -> recipe; every case is reproducible from (name, seed, size)
CASES: dict[str, dict[str, Any]] = {
    "stars_mono": dict(channels=1, kind="stars", fwhm=(3.0, 4.0), beta=(2.5, 4.0), ellipticity=(0.0, 0.1), aberrations=False, starless=False, description="mono star field, field-varying Moffat PSF"),
    "stars_rgb_aberrated": dict(channels=3, kind="stars", fwhm=(3.0, 5.0), beta=(2.0, 4.0), ellipticity=(0.1, 0.3), aberrations=True, starless=False, description="RGB star field, coma/astigmatism/chromatic shift varying across the field"),
    "cluster_rgb": dict(channels=3, kind="cluster", fwhm=(2.5, 3.5), beta=(2.5, 4.0), ellipticity=(0.0, 0.1), aberrations=False, starless=False, description="RGB dense globular cluster"),
    "galaxies_mono": dict(channels=1, kind="galaxies", fwhm=(3.0, 4.5), beta=(2.5, 4.0), ellipticity=(0.0, 0.1), aberrations=False, starless=False, description="mono galaxy field with stars"),
    "nebula_rgb": dict(channels=3, kind="nebula", fwhm=(3.0, 4.5), beta=(2.5, 4.0), ellipticity=(0.0, 0.15), aberrations=True, starless=False, description="RGB nebula with filaments, dust and stars"),
    "nebula_starless_rgb": dict(channels=3, kind="nebula", fwhm=(3.0, 4.0), beta=(2.5, 3.5), ellipticity=(0.0, 0.03), aberrations=False, starless=True, description="RGB star-free nebula (manual PSF diameter = true FWHM)"),
    "galaxies_starless_mono": dict(channels=1, kind="galaxies", fwhm=(3.0, 4.0), beta=(2.5, 3.5), ellipticity=(0.0, 0.03), aberrations=False, starless=True, description="mono star-free galaxies (manual PSF diameter)"),
    "trailed_mono": dict(channels=1, kind="stars", fwhm=(3.0, 3.5), beta=(2.5, 3.5), ellipticity=(0.0, 0.05), aberrations=False, starless=False, trail=(5.0, 7.0), description="mono star field with guiding trails"),
    "noise_mono": dict(channels=1, kind="empty", fwhm=(3.0, 3.0), beta=(3.0, 3.0), ellipticity=(0.0, 0.0), aberrations=False, starless=True, description="pure noise (nothing to invent)"),
}


@dataclass
class Case:
    """One benchmark case: its scene, true PSF, observation and truth."""

    name: str
    seed: int
    description: str
    scene: Scene
    psf: PSFModel
    obs: Observation
    truth: Truth
    params: SharpenParams
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def starless(self) -> bool:
        return self.params.psf_diameter is not None


def make_case(name: str, seed: int = 0, size: int = 512) -> Case:
    """Build a fixed case by name (see ``CASES``), reproducibly.

    Parameters
    ----------
    name : key of ``CASES``.
    seed : the random seed (the bench uses 0; other seeds give unseen cases of
        the same kind).
    size : image edge in pixels.
    """
    if name not in CASES:
        raise KeyError(f"unknown case {name!r}; expected one of {', '.join(CASES)}")
    r = CASES[name]
    rng = np.random.default_rng([seed, list(CASES).index(name)])
    C = r["channels"]
    sigma = 1e-3
    psf = make_psf_model(
        (size, size),
        C,
        rng,
        fwhm=r["fwhm"],
        beta=r["beta"],
        ellipticity=r["ellipticity"],
        aberrations=r["aberrations"],
        trail=r.get("trail", 0.0),
        chromatic=r["aberrations"],
        vary=True,
        nodes=3,
        variation=0.2,
    )
    scene = make_scene((size, size), C, rng, kind=r["kind"], sigma=sigma, saturation=1.0, stars=not r["starless"], bright_star=None if not r["starless"] else False)
    obs = observe(scene, psf, rng, sigma=sigma, background=0.02, gradient=0.1, poisson_fraction=0.7, saturation=1.0)
    params = BENCH_PARAMS
    if r["starless"]:
        fw = float(np.median(psf.field().values[:, PARAM_NAMES.index("fwhm")]))
        params = params.replace(psf_diameter=round(fw, 2))
    truth = truth_for(scene, psf, obs, params)
    return Case(name=name, seed=seed, description=r["description"], scene=scene, psf=psf, obs=obs, truth=truth, params=params)
