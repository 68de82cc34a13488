"""The one parameter object shared by the command line, the API and any GUI,
and the formulas that turn the user's controls into target PSFs.

Definitions (used everywhere: code, docs, bench). F is the local source FWHM in
pixels (geometric mean of the fitted major and minor axes of a pixel-integrated
elliptical Moffat) and beta its Moffat beta, both measured per tile and channel.

=========================  ===========  =============================================
control                    range        target
=========================  ===========  =============================================
sharpen_stars s            0 .. 1       stars: round Moffat, FWHM = max(F_MIN, F * (1 - 0.5 s)),
                                        never wider than F
adjust_halos h             -0.5 .. 0.5  stars: beta = beta_src * 2**(-2 h), in [1.2, 10]
psf_diameter D             None or 0..8 source FWHM for non-stellar work: F (None = auto)
                                        or D (manual; the source is taken as round)
sharpen_nonstellar n       0 .. 1       non-stellar: round Moffat, beta_src,
                                        FWHM = max(F_MIN, (1 - n) * source), never wider
                                        than the source; D = 0 leaves it untouched
correct_only               flag         both layers: round Moffat, FWHM F, beta_src
denoise d                  0 .. 1       fraction of the input's noise removed
=========================  ===========  =============================================

Sharpen stars 1.0 with sharpen non-stellar 0.5 and automatic PSF asks for the same
target everywhere (for sources of 2 px FWHM and more): a round Moffat of half the
source FWHM. The bench uses exactly that setting. Stars of under 2 px FWHM are
shrunk no further than F_MIN (1 px), and stars already under 1 px (undersampled
data) are left at their size: below a pixel a star's image depends on where in
its pixel it falls, not on its width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from .errors import ParameterError

__all__ = [
    "SharpenParams",
    "METHODS",
    "F_MIN",
    "BETA_LIMITS",
    "MAX_PSF_DIAMETER",
    "ORIENTATION_COUNTS",
    "stellar_target",
    "nonstellar_target",
    "nonstellar_layer_fwhm",
    "correct_target",
]

METHODS = ("nn", "rl", "wiener")
F_MIN = 1.0
"""Smallest target FWHM in pixels: below this a PSF is undersampled."""
BETA_LIMITS = (1.2, 10.0)
MAX_PSF_DIAMETER = 8.0
DEFAULT_BETA = 3.0
"""Moffat beta assumed when there are no stars to measure it from."""
ORIENTATION_COUNTS = (1, 2, 4, 8)
"""Orientations the network may be run in and averaged over (``orientations``)."""

Method = Literal["nn", "rl", "wiener"]


@dataclass(frozen=True)
class SharpenParams:
    """Controls of one sharpening run (see the module docstring for their meaning).

    Parameters
    ----------
    sharpen_stars : float
        0 to 1; stars' FWHM becomes (1 - 0.5 * sharpen_stars) of its source.
    adjust_halos : float
        -0.5 to 0.5; below 0 tighter, darker star wings, above 0 brighter, wider.
    psf_diameter : float or None
        None measures the PSF per tile (automatic); a number in 0 to 8 px is the
        FWHM of the (round) PSF assumed for non-stellar sharpening.
    sharpen_nonstellar : float
        0 to 1; non-stellar structure is sharpened to (1 - n) of the source FWHM.
    correct_only : bool
        Make the PSF round (and equal in all channels) without sharpening.
    correct_first : bool
        Correct, then sharpen, sharing the PSF measurement.
    nonstellar_then_stellar : bool
        Sharpen non-stellar structure first, then stars, in two passes.
    denoise : float
        0 to 1; fraction of the input's noise removed (0 keeps it all).
    method : {"nn", "rl", "wiener"}
        The network (default) or a classical PSF translation.
    tile_size : int
        Tile edge in pixels (512 by default) of the PSF field's nodes (one
        per tile centre), of the classical methods and of correct-only. The
        network's own tiles are fitted to the image (768 to 1152 px,
        :func:`astrosharp.tiles.fit_tile`): it reads the PSF field per pixel.
    overlap : float
        Fraction of a tile shared with its neighbour (0.2), for the same plan.
    orientations : {1, 2, 4, 8}
        The network runs on every tile in this many orientations (rotations
        by 90 degrees, then flips) and the results are averaged: stars come
        out rounder and better centred (the network's own small elongation
        and offsets cancel), at that many times the network's time. 1 (the
        default) runs it once. The classical methods ignore it.
    """

    sharpen_stars: float = 0.25
    adjust_halos: float = 0.0
    psf_diameter: float | None = None
    sharpen_nonstellar: float = 0.90
    correct_only: bool = False
    correct_first: bool = False
    nonstellar_then_stellar: bool = False
    denoise: float = 0.0
    method: Method = "nn"
    tile_size: int = 512
    overlap: float = 0.2
    orientations: int = 1

    def __post_init__(self) -> None:
        _check_range("sharpen_stars", self.sharpen_stars, 0.0, 1.0)
        _check_range("adjust_halos", self.adjust_halos, -0.5, 0.5)
        _check_range("sharpen_nonstellar", self.sharpen_nonstellar, 0.0, 1.0)
        _check_range("denoise", self.denoise, 0.0, 1.0)
        if self.psf_diameter is not None:
            d = self.psf_diameter
            if not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0:
                raise ParameterError(f"psf_diameter must be 'auto' or a number of pixels from 0 to 8, got {d!r}")
            if d > MAX_PSF_DIAMETER:
                raise ParameterError(
                    f"psf_diameter {d:g} px is larger than {MAX_PSF_DIAMETER:g} px: bin the image 2x2 "
                    f"(halving the PSF diameter) and sharpen the binned image instead"
                )
        if self.method not in METHODS:
            raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.correct_only and (self.correct_first or self.nonstellar_then_stellar):
            raise ParameterError("correct_only cannot be combined with correct_first or nonstellar_then_stellar")
        if not isinstance(self.tile_size, int) or self.tile_size < 64:
            raise ParameterError(f"tile_size must be an integer of at least 64 px, got {self.tile_size!r}")
        if not 0.0 <= self.overlap < 0.5:
            raise ParameterError(f"overlap must be in [0, 0.5), got {self.overlap!r}")
        if isinstance(self.orientations, bool) or self.orientations not in ORIENTATION_COUNTS:
            raise ParameterError(f"orientations must be one of {', '.join(map(str, ORIENTATION_COUNTS))}, "
                                 f"got {self.orientations!r}")

    def replace(self, **changes: Any) -> "SharpenParams":
        """A copy with some controls changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """A one-line summary for HISTORY records and logs."""
        psf = "auto" if self.psf_diameter is None else f"{self.psf_diameter:g}px"
        parts = [
            f"method={self.method}",
            f"sharpen_stars={self.sharpen_stars:g}",
            f"adjust_halos={self.adjust_halos:g}",
            f"psf_diameter={psf}",
            f"sharpen_nonstellar={self.sharpen_nonstellar:g}",
        ]
        for flag in ("correct_only", "correct_first", "nonstellar_then_stellar"):
            if getattr(self, flag):
                parts.append(flag)
        if self.denoise:
            parts.append(f"denoise={self.denoise:g}")
        if self.orientations != 1:
            parts.append(f"orientations={self.orientations}")
        return " ".join(parts)


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    if not lo <= value <= hi:
        raise ParameterError(f"{name} must be from {lo:g} to {hi:g}, got {value:g}")


def stellar_target(fwhm: float, beta: float, sharpen_stars: float, adjust_halos: float) -> tuple[float, float]:
    """Target (FWHM, beta) of stars, from the local source FWHM and beta.

    FWHM ``max(F_MIN, (1 - 0.5 s) * fwhm)``, never wider than ``fwhm``; beta
    ``clip(beta * 2**(-2 h), *BETA_LIMITS)``. Works elementwise on NumPy arrays too.
    """
    import numpy as np

    t_fwhm = np.minimum(np.maximum(F_MIN, fwhm * (1.0 - 0.5 * sharpen_stars)), fwhm)
    t_beta = np.clip(beta * 2.0 ** (-2.0 * adjust_halos), *BETA_LIMITS)
    return t_fwhm, t_beta


def nonstellar_target(source_fwhm: float, sharpen_nonstellar: float) -> float:
    """Target FWHM of non-stellar structure from its source FWHM (F or manual D).

    ``max(F_MIN, (1 - n) * source)``, never wider than the source (so a source
    narrower than F_MIN, including D = 0, is left as it is). Elementwise.
    """
    import numpy as np

    t = np.maximum(F_MIN, (1.0 - sharpen_nonstellar) * np.asarray(source_fwhm, dtype=float))
    t = np.minimum(t, source_fwhm)
    return t if np.ndim(t) else float(t)


def nonstellar_layer_fwhm(source_fwhm, params: "SharpenParams"):
    """FWHM (px) the non-stellar layer ends at where the input's PSF has
    ``source_fwhm`` (elementwise): the non-stellar target of the manual
    diameter or of that PSF, never wider than the input's PSF, and the
    source itself under correct only."""
    import numpy as np

    f = np.asarray(source_fwhm, dtype=float)
    if params.correct_only:
        return np.array(f, float)
    src = f if params.psf_diameter is None else np.full_like(f, float(params.psf_diameter))
    # the input's structure is blurred by the measured PSF; the network takes
    # it to this from what it was told (a manual diameter, or that PSF)
    return np.minimum(nonstellar_target(src, params.sharpen_nonstellar), f)


def correct_target(fwhm: float, beta: float) -> tuple[float, float]:
    """Target (FWHM, beta) of correct-only: round, same FWHM and beta."""
    return fwhm, beta
