"""Classical PSF translation: Richardson-Lucy and Wiener/Tikhonov.

This is the no-network path (``--method rl|wiener``) and the baseline that the
network has to beat. Both methods translate a tile from its *source* PSF (from
the measured PSF field) to a *target* PSF (from the control formulas of
:mod:`astrosharp.params`):

* :func:`richardson_lucy` deconvolves the source PSF completely (damped RL with a
  stopping rule), then :func:`classical_translate` re-blurs the estimate with the
  target PSF;
* :func:`wiener` applies ``G = conj(H) T / (|H|^2 + balance * N / P_x)`` in one
  step, with the noise power ``N`` from the noise level and the sky power ``P_x``
  estimated from the data's own (radially averaged) power spectrum.

Source kernels (:func:`classical_translate`): each engine tile is worked on in
sub-tiles of ``CLASSICAL_TILE`` px, each with its own kernel: the measured
field's Moffat at the sub-tile centre plus the mean departure of the tile's
stars from their own Moffats (:func:`empirical_psf`, an analytic PSF with an
empirical residual table), so trails, coma and lateral chromatic shifts that a
Moffat cannot describe are deconvolved too.

Layers: a classical method has no notion of stars versus non-stellar emission.
Without a star mask everything goes to the non-stellar layer and the stars layer
is zero (their sum is the sharpened image). With automatic PSF that single layer
gets the *stellar* target (the PSF was measured on stars); with a manual PSF
diameter it gets the *non-stellar* target. Given a star mask (weights in
[0, 1]), :func:`classical_translate` re-blurs the one deconvolved estimate with
each layer's target and splits it by the mask.

All convolutions are FFT based (``scipy.fft.rfft2`` on reflection-padded
arrays). Everything works per channel on float64 internally and returns float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
from scipy import fft as sfft

from .errors import ImageDataError, ParameterError
from .params import DEFAULT_BETA, SharpenParams, correct_target, nonstellar_target, stellar_target
from .psf.field import moffat_shape
from .psf.moffat import kernel_size_for, moffat_kernel

__all__ = [
    "RLInfo",
    "fft_convolve",
    "poisson_gain",
    "point_source_mask",
    "richardson_lucy",
    "wiener",
    "tile_kernels",
    "CLASSICAL_TILE",
    "TileStars",
    "find_tile_stars",
    "star_models",
    "refine_positions",
    "empirical_psf",
    "classical_translate",
    "translate_tiled",
    "classical_sharpen",
]

Classical = Literal["rl", "wiener"]


# ---------------------------------------------------------------------------
# FFT helpers
# ---------------------------------------------------------------------------


def _check_kernel(kernel: np.ndarray, name: str = "psf") -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ParameterError(f"{name} must be a 2-D kernel of odd size, got shape {k.shape}")
    if not np.all(np.isfinite(k)) or k.sum() <= 0:
        raise ParameterError(f"{name} must be finite with a positive sum")
    return k / k.sum()


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise ImageDataError(f"expected a 2-D (H, W) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        a = np.where(np.isfinite(a), a, np.nanmedian(a) if np.isfinite(a).any() else 0.0)
    return a


class _Padded:
    """Reflection padding to a fast FFT size, and kernel transfer functions on it."""

    def __init__(self, shape: tuple[int, int], margin: int):
        h, w = shape
        self.h, self.w = h, w
        self.m = int(margin)
        self.shape = (sfft.next_fast_len(h + 2 * self.m, real=True), sfft.next_fast_len(w + 2 * self.m, real=True))

    def pad(self, a: np.ndarray) -> np.ndarray:
        m = self.m
        ph, pw = self.shape
        return np.pad(a, ((m, ph - self.h - m), (m, pw - self.w - m)), mode="reflect")

    def crop(self, a: np.ndarray) -> np.ndarray:
        return a[self.m : self.m + self.h, self.m : self.m + self.w]

    def otf(self, kernel: np.ndarray) -> np.ndarray:
        """rfft2 of the kernel placed with its centre at the origin."""
        k = kernel
        ky, kx = k.shape
        big = np.zeros(self.shape)
        ch, cw = ky // 2, kx // 2
        if ky > self.shape[0] or kx > self.shape[1]:
            raise ParameterError(f"kernel {k.shape} larger than the padded tile {self.shape}")
        big[:ky, :kx] = k
        big = np.roll(big, (-ch, -cw), axis=(0, 1))
        return sfft.rfft2(big, workers=-1)

    def conv(self, a: np.ndarray, otf: np.ndarray) -> np.ndarray:
        return sfft.irfft2(sfft.rfft2(a, workers=-1) * otf, s=self.shape, workers=-1)


def fft_convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an image with a centred kernel (FFT, reflection at the edges).

    Parameters
    ----------
    image : (H, W) array_like
    kernel : (k, k) array_like
        Odd-sized; used as given (not normalised).

    Returns
    -------
    (H, W) ndarray of float64
    """
    a = _check_image(image)
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ParameterError(f"kernel must be a 2-D array of odd size, got shape {k.shape}")
    p = _Padded(a.shape, max(k.shape) // 2 + 1)
    return p.crop(p.conv(p.pad(a), p.otf(k)))


def poisson_gain(image: np.ndarray, sigma: float) -> float | None:
    """Electrons per image unit (``gain``) estimated from how the pixel noise
    grows with the signal: ``var = sigma0^2 + signal / gain``.

    The noise of each pixel is read from its difference with the mean of its
    four neighbours (variance 1.25 times the noise variance), its robust
    variance taken in 20 bins of the 5 x 5 smoothed level, and the line fitted
    by least squares. Returns None when no positive slope is found (flat
    images, or too little signal to see it).

    Parameters
    ----------
    image : (H, W) array_like
        Background-subtracted data.
    sigma : float
        Background noise (sets the scale of what counts as signal).
    """
    from scipy import ndimage

    y = np.asarray(image, dtype=np.float64)
    if min(y.shape) < 16:
        return None
    r = y[1:-1, 1:-1] - 0.25 * (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:])
    lev = ndimage.uniform_filter(y, 5)[1:-1, 1:-1].ravel()
    r = r.ravel()
    edges = np.unique(np.percentile(lev, np.linspace(0, 100, 21)))
    lv, vv = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (lev >= a) & (lev < b)
        if sel.sum() < 100:
            continue
        rr = r[sel]
        vv.append((1.4826 * np.median(np.abs(rr - np.median(rr)))) ** 2 / 1.25)
        lv.append(float(np.median(lev[sel])))
    lv_a, vv_a = np.asarray(lv), np.asarray(vv)
    if len(lv_a) < 3 or np.ptp(lv_a) < 3.0 * sigma:
        return None
    slope = float(np.polyfit(lv_a, vv_a, 1)[0])
    return 1.0 / slope if slope > 0 else None


def point_source_mask(
    image: np.ndarray,
    sigma: float,
    fwhm: float,
    threshold: float = 10.0,
    radius: float = 2.5,
    psf: np.ndarray | None = None,
) -> np.ndarray:
    """Soft mask (weights in [0, 1]) of the point sources of an image.

    A point source is a local maximum of the image smoothed by a Gaussian of
    the source FWHM, ``threshold`` sigma (of that smoothed noise) above the
    local background, and as compact as the PSF: its contrast
    ``(G1 - G2) / (G1 - G4)`` (``Gk`` = the image smoothed with a Gaussian of
    k times the first one's width, G4 standing for the local background) is
    at least 0.7 of the PSF's own. Knots of nebulosity and galaxies, wider
    than the PSF, are left out. Each point source gets a disc of ``radius``
    FWHM, feathered by a Gaussian of half a FWHM.

    Parameters
    ----------
    image : (H, W) array_like
        Background-subtracted data.
    sigma, fwhm : float
        Background noise and source FWHM (px).
    psf : (k, k) array_like or None
        The source PSF for the reference contrast (default: a Moffat of
        ``fwhm`` with beta 3).

    Returns
    -------
    (H, W) ndarray of float64
    """
    from scipy import ndimage

    y = np.asarray(image, dtype=np.float64)
    h, w = y.shape
    s1 = max(float(fwhm), 1.0) / 2.3548
    k = moffat_kernel(max(float(fwhm), 1.0), DEFAULT_BETA) if psf is None else np.asarray(psf, float)

    def contrast(a: np.ndarray, at: tuple) -> tuple[np.ndarray, np.ndarray]:
        g1, g2, g4 = (ndimage.gaussian_filter(a, f * s1, mode="reflect") for f in (1.0, 2.0, 4.0))
        return (g1 - g2)[at], (g1 - g4)[at]

    kc = k.shape[0] // 2
    n1, d1 = contrast(np.pad(k, 4 * int(np.ceil(4 * s1))), (kc + 4 * int(np.ceil(4 * s1)),) * 2)
    c_psf = float(n1 / d1)
    g1 = ndimage.gaussian_filter(y, s1, mode="reflect")
    g4 = ndimage.gaussian_filter(y, 4.0 * s1, mode="reflect")
    noise = sigma / (2.0 * np.sqrt(np.pi) * s1)  # white noise through a unit-sum Gaussian
    size = max(3, int(round(fwhm)) | 1)
    peaks = (g1 == ndimage.maximum_filter(g1, size=size)) & (g1 - g4 > threshold * noise)
    iy, ix = np.nonzero(peaks)
    out = np.zeros((h, w))
    if iy.size == 0:
        return out
    num, den = contrast(y, (iy, ix))
    point = num >= 0.7 * c_psf * den
    iy, ix = iy[point], ix[point]
    if iy.size == 0:
        return out
    seeds = np.zeros((h, w), bool)
    seeds[iy, ix] = True
    dist = ndimage.distance_transform_edt(~seeds)
    out = (dist <= radius * fwhm).astype(np.float64)
    return np.clip(ndimage.gaussian_filter(out, 0.5 * fwhm), 0.0, 1.0)


# ---------------------------------------------------------------------------
# Richardson-Lucy
# ---------------------------------------------------------------------------


@dataclass
class RLInfo:
    """Diagnostics of one Richardson-Lucy run.

    Attributes
    ----------
    iterations : int
        Iterations done.
    stopped_by : str
        ``"discrepancy"`` (residual chi^2 per pixel reached the target),
        ``"change"`` (relative change of the estimate fell below ``tol``) or
        ``"max_iterations"``.
    chi2 : list of float
        Mean residual chi^2 per pixel after each iteration (pixels outside
        ``point_mask``).
    extended_iterations : int
        Iterations of the estimate kept outside ``point_mask`` (equal to
        ``iterations`` without one).
    change : list of float
        Relative L2 change of the estimate at each iteration.
    """

    iterations: int = 0
    extended_iterations: int = 0
    stopped_by: str = "max_iterations"
    chi2: list[float] = field(default_factory=list)
    change: list[float] = field(default_factory=list)


def richardson_lucy(
    image: np.ndarray,
    psf: np.ndarray,
    *,
    sigma: float,
    background: float | np.ndarray = 0.0,
    iterations: int = 100,
    damping: float = 1.0,
    damping_power: float = 3.0,
    gain: float | None | str = "auto",
    chi2_target: float | None = 1.0,
    tol: float | None = 2e-3,
    offset: float | None = None,
    accelerate: bool = True,
    floor_correction: bool = True,
    target_psf: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    point_mask: np.ndarray | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
    checkpoints: set[int] | frozenset[int] | None = None,
) -> tuple[np.ndarray, RLInfo]:
    """Damped Richardson-Lucy deconvolution of one channel.

    The estimate extends beyond the image by the PSF's reach and the data
    there count as unknown (boundary-aware RL, Bertero & Boccacci 2005), so
    stars cut by the edge are not mirrored into spikes. The data are
    background-subtracted and lifted by a positive ``offset``
    (which becomes the known additive term of the Poisson model), so
    ``model = psf * u + offset`` with ``u >= 0``. The update is the RL ratio
    ``u <- u * psf^T (1 + (y - m) / m * D)`` where ``D`` is White's (1994)
    damping: residuals smaller than ``damping`` noise sigma are down-weighted
    by ``(|y - m| / (damping sigma)) ** (damping_power - 1)``, so noise is not
    fitted (``damping=0`` gives plain RL).

    Stopping rule (whichever comes first): the discrepancy principle (mean
    residual chi^2 per pixel, with variance ``sigma^2 + signal / gain``, falls
    to ``chi2_target``), the relative change of the estimate falling below
    ``tol``, or ``iterations``.

    Parameters
    ----------
    image : (H, W) array_like
        Linear data of one channel (image units).
    psf : (k, k) array_like
        Source PSF, odd size, normalised to sum 1 here.
    sigma : float
        Background noise standard deviation (image units), > 0.
    background : float or (H, W) array_like
        Sky level to subtract (added back to the result).
    iterations : int
        Maximum iteration count.
    damping : float
        White's damping threshold in noise sigma (0 switches damping off).
    damping_power : float
        Exponent N of the damping (>= 1; larger = sharper switch).
    gain : float, None or "auto"
        Electrons per image unit for the Poisson part of the variance in the
        chi^2 (``sigma^2 + signal / gain``); None uses ``sigma^2`` alone;
        "auto" estimates it from the data (:func:`poisson_gain`).
    chi2_target, tol : float or None
        Stopping thresholds; None switches that rule off.
    offset : float or None
        The positivity offset; None uses ``3 * sigma``.
    floor_correction : bool
        Lower ``background`` where it is too high for the data: the 1st
        percentile of ``image - background`` must not lie above -2.326 sigma
        (where the darkest 1 % of pure sky would be). Background estimates
        biased by nebulosity otherwise leave a residual RL cannot fit, and the
        discrepancy rule never stops it.
    accelerate : bool
        Biggs-Andrews (1997) extrapolation of the iterates (several times
        fewer iterations for the same result).
    target_psf : (k, k) array_like or None
        If given, the estimate is re-blurred with this PSF before it is
        returned (on the extended domain, so sources beyond the edge still
        spill in): the result is the image at the target PSF.
    mask : (H, W) bool array_like or None
        Pixels whose data count (True); the others (mirrored padding, clipped
        or bad pixels) are unknown: the estimate there is inferred from the
        neighbouring data only. None = every pixel counts.
    point_mask : (H, W) array_like of weights in [0, 1] or None
        Where point sources (stars) are. The discrepancy rule is then judged
        on the other pixels only and fixes the estimate there; iterations go
        on for the point sources until the relative-change rule (or
        ``iterations``) stops them, and the two estimates are blended with
        these weights. (Stars keep gaining from iterations long after the
        extended emission has reached the noise level and starts to fit it.)
    callback : callable or None
        ``callback(k, estimate)`` after iteration ``k`` (1-based), with the
        current result (re-blurred if ``target_psf`` is given, background
        added back); used by the bench's oracle to sweep iteration counts in
        one run.
    checkpoints : set of int or None
        Iterations at which ``callback`` is called (None: every iteration).

    Returns
    -------
    estimate : (H, W) ndarray of float64
        Deconvolved image (PSF removed, or at ``target_psf``) plus the background.
    info : RLInfo
    """
    y0 = _check_image(image)
    k = _check_kernel(psf)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ParameterError(f"sigma must be a positive noise level, got {sigma!r}")
    if iterations < 1:
        raise ParameterError(f"iterations must be at least 1, got {iterations!r}")
    if damping < 0 or damping_power < 1:
        raise ParameterError("damping must be >= 0 and damping_power >= 1")
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), y0.shape)
    if floor_correction:
        # the darkest 1 % of the pixels should be sky: background noise only,
        # reaching 2.326 sigma below the sky level; a background estimate lifted
        # by nebulosity would sit above them and leave RL a residual it cannot fit
        q1 = float(np.percentile(y0 - bg, 1.0))
        bg = bg - max(0.0, -q1 - 2.326 * sigma)
    b = 3.0 * sigma if offset is None else float(offset)
    if b <= 0:
        raise ParameterError("offset must be positive")

    kt = None if target_psf is None else _check_kernel(target_psf, "target_psf")
    p = _Padded(y0.shape, max(k.shape[0], 0 if kt is None else kt.shape[0]) // 2 + 1)
    y = np.maximum(p.pad(y0 - bg) + b, 0.0)
    H = p.otf(k)
    T = None if kt is None else p.otf(kt)

    def result(est: np.ndarray) -> np.ndarray:
        return p.crop(est if T is None else p.conv(est, T)) + bg

    Hc = np.conj(H)
    inner = (slice(p.m, p.m + p.h), slice(p.m, p.m + p.w))
    # boundary-aware RL (Bertero & Boccacci 2005): the estimate extends beyond
    # the tile by the kernel's reach, the data outside it are unknown (weight 0)
    wgt = np.zeros(p.shape)
    if mask is None:
        wgt[inner] = 1.0
    else:
        mk = np.asarray(mask, bool)
        if mk.shape != y0.shape:
            raise ParameterError(f"mask must have the image's shape {y0.shape}, got {mk.shape}")
        wgt[inner] = mk
    norm = p.conv(wgt, Hc)
    live = norm > 1e-3
    norm = np.where(live, norm, 1.0)
    u = np.where(live, max(float(np.mean(y[inner])) - b, 1e-3 * sigma), 0.0)
    info = RLInfo()
    if isinstance(gain, str):
        if gain != "auto":
            raise ParameterError(f"gain must be a number, None or 'auto', got {gain!r}")
        gain = poisson_gain(y0 - bg, sigma)
    pm = None
    if point_mask is not None:
        pm_in = np.clip(np.asarray(point_mask, dtype=np.float64), 0.0, 1.0)
        if pm_in.shape != y0.shape:
            raise ParameterError(f"point_mask must have the image's shape {y0.shape}, got {pm_in.shape}")
        if pm_in.max() > 0:
            pm = p.pad(pm_in)
    chi_w = wgt[inner] if pm is None else wgt[inner] * (1.0 - pm[inner])
    chi_n = max(float(np.sum(chi_w)), 1.0)
    u_ext = None
    thresh = damping * sigma
    x_prev = u
    g_prev = None
    for it in range(1, iterations + 1):
        m = np.maximum(p.conv(u, H), 0.0) + b
        r = y - m
        if thresh > 0:
            x = np.minimum(np.abs(r) / thresh, 1.0)
            r = r * x ** (damping_power - 1.0)
        x_new = np.where(live, np.maximum(u * p.conv(wgt * (1.0 + r / m), Hc) / norm, 0.0), 0.0)
        du = x_new[inner] - x_prev[inner]
        change = float(np.sqrt(np.sum(du * du) / max(np.sum(x_prev[inner] ** 2), 1e-300)))
        if accelerate:
            # Biggs & Andrews (1997) vector extrapolation of the RL iterates
            g = x_new - u
            alpha = 0.0
            if g_prev is not None:
                alpha = float(np.clip(np.sum(g * g_prev) / max(np.sum(g_prev * g_prev), 1e-300), 0.0, 0.95))
            g_prev = g
            u = np.maximum(x_new + alpha * (x_new - x_prev), 0.0)
        else:
            u = x_new
        x_prev = x_new
        info.change.append(change)
        info.iterations = it
        if callback is not None and (checkpoints is None or it in checkpoints):
            callback(it, result(x_new))
        if chi2_target is not None and u_ext is None:
            m = np.maximum(p.conv(x_new, H), 0.0)[inner]
            var = sigma**2 + (m / gain if gain else 0.0)
            chi2 = float(np.sum(chi_w * (y[inner] - b - m) ** 2 / var) / chi_n)
            info.chi2.append(chi2)
            if chi2 <= chi2_target:
                info.extended_iterations = it
                if pm is None:
                    info.stopped_by = "discrepancy"
                    break
                u_ext = x_new.copy()
        if tol is not None and change < tol:
            info.stopped_by = "change"
            break
    if u_ext is None:
        info.extended_iterations = info.iterations
        return result(x_prev), info
    info.stopped_by = "discrepancy+" + info.stopped_by
    return result(pm * x_prev + (1.0 - pm) * u_ext), info


# ---------------------------------------------------------------------------
# Wiener / Tikhonov
# ---------------------------------------------------------------------------


def _ring_index(qr: np.ndarray, nbins: int) -> np.ndarray:
    return np.minimum((qr / qr.max() * nbins).astype(int), nbins - 1)


def _ring_sums(values: np.ndarray, qr: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``values`` and counts in rings of |q| over the full plane (the
    rfft half-plane with its mirrored columns counted twice)."""
    idx = _ring_index(qr, nbins)
    wts = np.full(values.shape, 2.0)
    wts[:, 0] = 1.0
    sums = np.bincount(idx.ravel(), (values * wts).ravel(), minlength=nbins)
    cnts = np.bincount(idx.ravel(), wts.ravel(), minlength=nbins)
    return sums, cnts


def wiener(
    image: np.ndarray,
    psf: np.ndarray,
    target_psf: np.ndarray | None = None,
    *,
    sigma: float,
    background: float | np.ndarray = 0.0,
    balance: float = 1.0,
    min_transfer: float = 0.01,
) -> np.ndarray:
    """Wiener/Tikhonov translation of one channel from ``psf`` to ``target_psf``.

    ``G = T conj(H) / (|H|^2 + balance * N / P_x)`` with ``N`` the white-noise
    power (``sigma^2`` per pixel) and ``P_x`` the power spectrum of the sky,
    estimated from the data as isotropic: in each ring of spatial frequency
    (``n`` frequencies), least squares of ``P_d = |H|^2 P_x + N`` on the
    prewhitened (gradient) power of the tapered data, less a margin of
    3 / sqrt(independent samples) of the noise; from the first ring where the
    data are consistent with noise outwards, ``P_x = 0`` (nothing is restored
    beyond the frequency where the signal disappears in the noise). ``balance = 1`` is the Wiener filter; larger values
    regularise more (Tikhonov-like), smaller ones less.

    Parameters
    ----------
    image : (H, W) array_like
        Linear data of one channel.
    psf : (k, k) array_like
        Source PSF (odd size, normalised here).
    target_psf : (k, k) array_like or None
        Target PSF; None returns the full deconvolution (target = delta).
    sigma : float
        Background noise standard deviation, > 0.
    background : float or (H, W) array_like
        Smooth sky level, subtracted before and added back after.
    balance : float
        Multiplier of the noise-to-signal ratio, > 0.
    min_transfer : float
        Frequencies where ``|H|`` is below this are not restored (``G = 0``):
        the source PSF is a model, off by about a percent, and dividing by
        less than that amplifies its error, not the sky (bright stars made
        Wiener blow up without this limit).

    Returns
    -------
    (H, W) ndarray of float64
    """
    y0 = _check_image(image)
    k = _check_kernel(psf)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ParameterError(f"sigma must be a positive noise level, got {sigma!r}")
    if not balance > 0:
        raise ParameterError(f"balance must be positive, got {balance!r}")
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), y0.shape)
    kt = None if target_psf is None else _check_kernel(target_psf, "target_psf")
    margin = max(k.shape[0], 0 if kt is None else kt.shape[0]) // 2 + 1
    p = _Padded(y0.shape, margin)
    d = p.pad(y0 - bg)
    D = sfft.rfft2(d, workers=-1)
    H = p.otf(k)
    T = np.ones_like(H) if kt is None else p.otf(kt)
    qy = sfft.fftfreq(p.shape[0])[:, None]
    qx = sfft.rfftfreq(p.shape[1])[None, :]
    qr = np.hypot(qy, qx)
    npix = p.shape[0] * p.shape[1]
    noise = sigma**2 * npix
    nbins = max(16, min(p.shape) // 4)
    ring = _ring_index(qr, nbins)
    h2 = np.abs(H) ** 2
    # isotropic sky power per ring, least squares of P_d = |H|^2 P_x + N
    # The sky power per ring from the data's gradients (prewhitening keeps the
    # huge low-frequency power of bright sources from leaking through the
    # taper's sidelobes into the high frequencies), tapered to avoid edge
    # artefacts: E|F(grad d)|^2 = (|H|^2 P_x + N) Dq, Dq = 4 sin^2(pi qx) + 4 sin^2(pi qy).
    inner = y0 - bg
    gh, gw = p.h - 1, p.w - 1
    taper = np.outer(np.hanning(gh + 2)[1:-1], np.hanning(gw + 2)[1:-1])
    pg = np.zeros(H.shape)
    for g in (np.diff(inner, axis=1)[:gh, :], np.diff(inner, axis=0)[:, :gw]):
        gt = np.zeros(p.shape)
        gt[:gh, :gw] = taper * g
        pg += np.abs(sfft.rfft2(gt, workers=-1)) ** 2
    pg *= npix / np.sum(taper**2)
    dq = 4.0 * np.sin(np.pi * qx) ** 2 + 4.0 * np.sin(np.pi * qy) ** 2
    pg_sum, cnt = _ring_sums(pg, qr, nbins)
    dq_sum, _ = _ring_sums(dq, qr, nbins)
    hd_sum, _ = _ring_sums(h2 * dq, qr, nbins)
    # independent samples per ring: fewer than frequencies (zero padding and
    # the Hann taper's bandwidth of 1.5 bins per axis correlate neighbours)
    n_eff = np.maximum(cnt * (p.h * p.w) / (p.shape[0] * p.shape[1]) / 2.25, 1.0)
    excess = pg_sum - noise * dq_sum * (1.0 + 3.0 / np.sqrt(n_eff))
    px = np.maximum(excess, 0.0) / np.maximum(hd_sum, 1e-300)
    # beyond the first ring where the data are noise, the sky is taken as unseen
    below = np.flatnonzero(excess[1:] <= 0)
    if below.size:
        px[1 + below[0] :] = 0.0
    px = px[ring]
    # G = T conj(H) / (|H|^2 + balance N / P_x), finite where P_x = 0
    G = T * np.conj(H) * px / (h2 * px + balance * noise)
    if min_transfer > 0:
        # where the PSF passes less than this, a model PSF a few percent off
        # would be amplified without bound: those frequencies are not restored
        G = np.where(np.abs(H) >= min_transfer, G, 0.0)
    G[0, 0] = T[0, 0] / H[0, 0]  # flux: the mean is kept exactly
    out = sfft.irfft2(D * G, s=p.shape, workers=-1)
    return p.crop(out) + bg


# ---------------------------------------------------------------------------
# Empirical PSF (stacked stars)
# ---------------------------------------------------------------------------

CLASSICAL_TILE = 256
"""Edge (px) of the sub-tiles the classical methods work on inside an engine
tile: each gets its own source kernel, so the PSF follows the field at this
scale (a 512 px tile holds 3 x 3 of them, blended over 20 % overlaps)."""
RL_STAR_ITERATIONS = 200
"""Most Richardson-Lucy iterations of the point sources (automatic PSF)."""
RL_STAR_TOL = 1e-3
"""Relative change per iteration below which the point sources stop."""
RAMP_INNER = 0.6
"""The empirical residual is tapered to 0 from this fraction of the stamp
radius outwards: there the local sky is fitted under the model's wings, and
the residual's constant part (which the sky absorbs equally well) is fixed by
requiring the residual to vanish there."""
EPSF_SCALE = 0.75
"""Stars weigh in the empirical residual of a sub-tile as a Gaussian of this
fraction of the sub-tile's edge in their distance from its centre (the
residual varies slowly: trails are the same everywhere, coma turns slowly)."""
CENTROID_WINDOW = 0.3
"""The kernels are centred on their flux centroid within this fraction of
(stamp radius - 2 px), about one major-axis FWHM: further out the residual's
noise and pedestal, multiplied by the lever arm, dominate the first moment
(0.6 cost 0.6 dB on a 256 px trailed field with 14 stars)."""
EPSF_MAX_DEPARTURE = 0.2
"""Largest relative L2 departure of an empirical kernel from its Moffat model
that is trusted. Real departures measured on the bench's trailed and aberrated
fields stay below 0.12; stacks dominated by nebulosity around the stars
reached 0.27 to 0.35 (and a kernel peak 0.4 to 0.7 of the truth's); beyond it
the Moffat model is used."""
EPSF_MIN_STARS = 6
"""Fewest usable stars for an empirical PSF; with fewer the Moffat model of the
measured field is used."""
EPSF_MAX_STARS = 120
"""At most this many (the most significant) stars per tile enter the
empirical PSFs (their weights grow as their flux squared: fainter ones add
little but time)."""
EPSF_MIN_PEAK = 20.0
"""Matched-filter significance (luminance noise sigmas) a star needs to enter
an empirical PSF."""


@dataclass
class TileStars:
    """Stars of one tile usable for an empirical PSF (tile coordinates).

    Attributes
    ----------
    x, y : (N,) ndarray
        Positions (px; x = column, y = row), refined on the stack.
    peak : (N,) ndarray
        Detection significance (luminance noise sigmas).
    radius : int
        Half size (px) of the stamps.
    shift : (C, 2, 3) ndarray or None
        Per channel, the offset (dy, dx) of the channel's star images from the
        luminance positions as a linear function of position:
        ``shift[c] @ (1, (x - x0) / s, (y - y0) / s)`` with ``(y0, x0, s) =
        shift_frame`` (lateral chromatic aberration); None = no offsets.
    shift_frame : (y0, x0, s)
    """

    x: np.ndarray
    y: np.ndarray
    peak: np.ndarray
    radius: int
    shift: np.ndarray | None = None
    shift_frame: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __len__(self) -> int:
        return int(self.x.size)

    def channel_shift(self, y: np.ndarray | float, x: np.ndarray | float, channels: int) -> np.ndarray:
        """(C, 2, N) offsets (dy, dx) of each channel at points (zeros without ``shift``)."""
        yy, xx = np.atleast_1d(np.asarray(y, float)), np.atleast_1d(np.asarray(x, float))
        if self.shift is None:
            return np.zeros((channels, 2, yy.size))
        y0, x0, sc = self.shift_frame
        V = np.stack([np.ones_like(xx), (xx - x0) / sc, (yy - y0) / sc])  # (3, N)
        return np.einsum("cka,an->ckn", self.shift, V)


def _fourier_shift(a: np.ndarray, dy, dx) -> np.ndarray:
    """``a`` (..., s, s) moved by (dy, dx) px (scalars or arrays over the
    leading axis; band-limited interpolation: the stamps are
    background-free, so wrap-around is negligible)."""
    F = np.fft.fft2(a)
    qy = np.fft.fftfreq(a.shape[-2])[:, None]
    qx = np.fft.fftfreq(a.shape[-1])[None, :]
    dy = np.asarray(dy, float)[..., None, None]
    dx = np.asarray(dx, float)[..., None, None]
    return np.fft.ifft2(F * np.exp(-2j * np.pi * (qy * dy + qx * dx))).real


def _lsq(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched least squares: A (n, P, k), b (n, P) -> (n, k) (normal
    equations with a tiny ridge for singular systems)."""
    N = np.einsum("npk,npl->nkl", A, A)
    N += 1e-12 * np.trace(N, axis1=1, axis2=2)[:, None, None] * np.eye(A.shape[2])[None] + 1e-300 * np.eye(A.shape[2])[None]
    return np.linalg.solve(N, np.einsum("npk,np->nk", A, b)[..., None])[..., 0]


def _stamps(img: np.ndarray, x: np.ndarray, y: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamps of half size r around the nearest pixels and the stars'
    sub-pixel offsets (dy, dx) from their centres."""
    iy = np.round(y).astype(int)
    ix = np.round(x).astype(int)
    st = np.stack([img[j - r : j + r + 1, i - r : i + r + 1] for j, i in zip(iy, ix)]).astype(np.float64)
    return st, y - iy, x - ix


def _ramp_weight(r: int, inner: float | None = None) -> np.ndarray:
    """(2r+1, 2r+1) weight of the empirical residual: 1 in the core, a
    raised-cosine ramp from radius ``inner`` (default ``RAMP_INNER * r``) to
    0 at the stamp's edge."""
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    r0 = RAMP_INNER * r if inner is None else float(inner)
    w = np.clip((r - 0.5 - np.hypot(yy, xx)) / max(r - 0.5 - r0, 1.0), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * w)


def _stack(
    stamps: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    base: np.ndarray,
    models: np.ndarray,
    sigma: float,
    gain: float | None,
    spatial: np.ndarray,
    rounds: int = 3,
) -> np.ndarray:
    """Empirical PSF: the model at the kernel's place plus the stars' mean
    departure from their own models (an analytic PSF with an empirical
    residual table, as in DAOPHOT).

    ``stamps`` (N, s, s) are background-subtracted star images whose centres
    lie (dy, dx) px from the stamps' middle pixels, ``models`` (N, s, s) the
    model kernels (measured Moffats, normalised over their whole extent) at
    exactly those positions, ``base`` (s, s) the centred model where the
    kernel applies. Each stamp is fitted (least squares) as
    ``a * (model + R) + b``, R the current residual table moved to the star
    and tapered to 0 towards the stamp's edge (:func:`_ramp_weight`), so the
    local sky ``b`` is found under the model's wings and everything is in
    units of total flux. The residuals ``(stamp - b) / a - model``, moved
    onto the middle pixel (they are small and smooth, so their interpolation
    errors are of second order), are averaged pixel by pixel with inverse
    noise variance weights (``sigma^2 + signal / gain``, plus 2 % of the model
    for its own error) times ``spatial``; pixels more than 5 of their sigma
    from the mean (neighbours, cosmic rays) are left out, and each pixel of
    the mean is shrunk by ``R^2 / (R^2 + (2 s)^2)`` (s its standard error):
    what the stars do not show significantly falls back to the model. The model carries
    the field's variation, the residual what the model cannot describe
    (trails, coma, lateral chromatic shifts, a wrong profile), taken as
    constant over the weighting scale: a residual linear in position was
    tried and lost more to its noise than it gained.

    Returns
    -------
    (s, s) ndarray: ``base + taper * residual``
    """
    n = len(stamps)
    r = stamps.shape[1] // 2
    ramp = _ramp_weight(r)
    resid = np.zeros(base.shape)
    good = np.ones(stamps.shape, bool)
    one = np.ones(base.size)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    outer = np.hypot(yy, xx) >= RAMP_INNER * r
    sky = [np.ones(base.shape), xx / max(r, 1), yy / max(r, 1)]
    for _ in range(rounds):
        fm = models + (_fourier_shift(np.broadcast_to(ramp * resid, stamps.shape), dy, dx) if np.any(resid) else 0.0)
        # the local sky under the star: a plane (stars on nebulosity sit on gradients)
        A = np.stack([fm.reshape(n, -1)] + [np.broadcast_to(p_.ravel(), (n, one.size)) for p_ in sky], axis=2)
        coef = _lsq(A, stamps.reshape(n, -1))
        amp = coef[:, 0]
        a_ = np.where(amp > 0, amp, 1.0)[:, None, None]
        skyfit = np.einsum("nk,kij->nij", coef[:, 1:], np.stack(sky))
        res = _fourier_shift((stamps - skyfit) / a_ - models, -dy, -dx)
        ok = amp > 0
        a3 = np.where(ok, amp, 1.0)[:, None, None]
        sig_pix = np.sqrt(sigma**2 + (np.maximum(fm, 0) * a3 / gain if gain else 0.0)) / a3
        var = sig_pix**2 + (0.02 * np.abs(fm)) ** 2
        wsp = np.where(ok, spatial, 0.0)[:, None, None]
        for _clip in range(2):
            w = good * wsp / var  # (n, s, s)
            sw = np.maximum(np.sum(w, axis=0), 1e-300)
            resid = np.sum(w * res, axis=0) / sw
            good = np.abs(res - resid[None]) <= 5.0 * np.sqrt(var)
        # the residual's pedestal is degenerate with the stars' local sky: pin
        # it to 0 where the taper starts (median over the ring RAMP_INNER r to r)
        resid = resid - np.median(resid[outer])
        # what the stars do not show significantly is not kept: each pixel is
        # shrunk by R^2 / (R^2 + (2 s)^2), s its standard error (few or faint
        # stars give the model back instead of their noise)
        se2 = np.where(sw > 1e-150, np.sum(w * w * var, axis=0) / np.maximum(sw, 1e-150) ** 2, np.inf)
        resid = np.where(np.isfinite(se2), resid * resid**2 / (resid**2 + 4.0 * se2 + 1e-300), 0.0)
    return base + ramp * resid


def _hybrid(stack: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The (already ramped) stack in the core, the model kernel ``base``
    beyond; clipped at 0, sum 1."""
    r = stack.shape[0] // 2
    c = base.shape[0] // 2
    out = base.copy()
    out[c - r : c + r + 1, c - r : c + r + 1] = stack
    out = np.maximum(out, 0.0)
    return out / out.sum()


def _centroid(k: np.ndarray, r: int) -> tuple[float, float]:
    c = k.shape[0] // 2
    a = k[c - r : c + r + 1, c - r : c + r + 1]
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    s = a.sum()
    return float(np.sum(yy * a) / s), float(np.sum(xx * a) / s)


def star_models(maps: np.ndarray, stars: TileStars) -> list[np.ndarray]:
    """The Moffat model kernels of the PSF maps at each star, at its exact
    sub-pixel position, cut to the stamps around its nearest pixel
    (normalised over their whole extent; pixel-integrated, Fourier-exact).

    Parameters
    ----------
    maps : (C, P, h, w) array_like
        PSF maps over the tile (``PSFField.maps``).
    stars : TileStars

    Returns
    -------
    list (per channel) of (N, 2r+1, 2r+1) ndarray
    """
    mp = np.asarray(maps)
    c = mp.shape[0]
    r = stars.radius
    iy = np.round(stars.y).astype(int)
    ix = np.round(stars.x).astype(int)
    jy = np.clip(iy, 0, mp.shape[2] - 1)
    jx = np.clip(ix, 0, mp.shape[3] - 1)
    off = stars.channel_shift(stars.y, stars.x, c)
    out = []
    for ch in range(c):
        ks = np.empty((len(stars), 2 * r + 1, 2 * r + 1))
        for i in range(len(stars)):
            m = moffat_shape(mp[ch, :, jy[i], jx[i]])
            # not normalised: the stamp holds the part of the unit-flux profile that falls in it
            ks[i] = moffat_kernel(max(m["fwhm"], 0.3), m["beta"], m["ellipticity"], m["angle"], size=2 * r + 1,
                                  shift=(float(stars.y[i] - iy[i] + off[ch, 0, i]), float(stars.x[i] - ix[i] + off[ch, 1, i])),
                                  normalize=False)
        out.append(ks)
    return out


def _shift_fit(models: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Per star, least squares of the stamp on (model, 1, d model/dx,
    d model/dy): (N, 4) coefficients (amplitude, sky, -a ex, -a ey)."""
    n = len(models)
    gy, gx = np.gradient(models, axis=(1, 2))
    A = np.stack([models.reshape(n, -1), np.ones((n, models[0].size)), gx.reshape(n, -1), gy.reshape(n, -1)], axis=2)
    return _lsq(A, stamps.reshape(n, -1))


def refine_positions(tile: np.ndarray, background: np.ndarray, sigma: np.ndarray, stars: TileStars,
                     maps: np.ndarray, iterations: int = 1) -> tuple[TileStars, list[np.ndarray]]:
    """Star positions refined on the luminance by least squares against the
    measured Moffat models (linearised shift, ``iterations`` Gauss-Newton
    steps of at most 0.5 px each), and the models at the new positions.

    Returns
    -------
    stars, models (as :func:`star_models`)
    """
    t = np.asarray(tile, dtype=np.float64)
    c = t.shape[0]
    sig = np.broadcast_to(np.asarray(sigma, float), (c,))
    lum = np.sum((t - background) / sig[:, None, None], axis=0)
    x, y = stars.x.astype(float).copy(), stars.y.astype(float).copy()
    r = stars.radius
    models = star_models(maps, stars)
    for _ in range(iterations):
        st, _, _ = _stamps(lum, x, y, r)
        lm = sum(models) / c
        coef = _shift_fit(lm, st)
        ok = coef[:, 0] > 0
        a_ = np.where(ok, coef[:, 0], 1.0)
        # data ~ a (m - ex gx - ey gy): the star lies (ex, ey) further
        x += np.where(ok, np.clip(-coef[:, 2] / a_, -0.5, 0.5), 0.0)
        y += np.where(ok, np.clip(-coef[:, 3] / a_, -0.5, 0.5), 0.0)
        stars = TileStars(x, y, stars.peak, r)
        models = star_models(maps, stars)
    if c > 1 and len(x) >= EPSF_MIN_STARS:
        stars, models = _channel_shifts(t, background, sig, stars, models, maps)
    return stars, models


def _channel_shifts(t: np.ndarray, background: np.ndarray, sig: np.ndarray, stars: TileStars,
                    models: list[np.ndarray], maps: np.ndarray, iterations: int = 1) -> tuple[TileStars, list[np.ndarray]]:
    """Per-channel offsets of the stars from their luminance positions, fitted
    as a linear function of position (lateral chromatic aberration grows
    linearly from the optical axis): per star and channel a linearised shift
    against the channel's model, then a weighted (S/N squared, capped) least
    squares plane per channel and offset component, 3-sigma clipped."""
    c = t.shape[0]
    r = stars.radius
    h, w = t.shape[1:]
    frame = ((h - 1) / 2.0, (w - 1) / 2.0, max(h, w) / 2.0)
    V = np.stack([np.ones_like(stars.x), (stars.x - frame[1]) / frame[2], (stars.y - frame[0]) / frame[2]], axis=1)
    coef = np.zeros((c, 2, 3))
    for _ in range(iterations):
        for ch in range(c):
            st, _, _ = _stamps(t[ch] - background[ch], stars.x, stars.y, r)
            cf = _shift_fit(models[ch], st)
            ok = cf[:, 0] > 0
            a_ = np.where(ok, cf[:, 0], 1.0)
            e = np.where(ok[:, None], np.clip(np.stack([-cf[:, 3] / a_, -cf[:, 2] / a_], axis=1), -1.0, 1.0), 0.0)
            wt = np.where(ok, np.minimum(a_ / sig[ch], 200.0) ** 2, 0.0)
            for k in range(2):
                keep = wt > 0
                for _clip in range(3):
                    if keep.sum() < EPSF_MIN_STARS:
                        break
                    sw = np.sqrt(wt[keep])
                    d, *_ = np.linalg.lstsq(V[keep] * sw[:, None], e[keep, k] * sw, rcond=None)
                    res = e[:, k] - V @ d
                    mad = 1.4826 * np.median(np.abs(res[keep])) + 1e-6
                    keep = (wt > 0) & (np.abs(res) <= 3.0 * mad)
                else:
                    coef[ch, k] += d
        stars = TileStars(stars.x, stars.y, stars.peak, r, coef.copy(), frame)
        models = star_models(maps, stars)
    return stars, models


def find_tile_stars(
    tile: np.ndarray,
    background: np.ndarray,
    sigma: np.ndarray,
    fwhm: float,
    ellipticity: float = 0.0,
    data_box: tuple[int, int, int, int] | None = None,
) -> TileStars:
    """Isolated, unsaturated stars of a tile for empirical PSFs.

    Stars are detected on the noise-weighted luminance
    (:func:`astrosharp.psf.detect.detect_stars`, every flag clear, significance
    >= ``EPSF_MIN_PEAK``); their stamps (half size about 2.5 times the major
    FWHM) must lie inside ``data_box``.

    Parameters
    ----------
    tile : (C, h, w) array_like
    background : (C, h, w) array_like
    sigma : (C,) array_like
    fwhm, ellipticity : float
        The measured PSF (sets the detector and the stamp size).
    data_box : (y0, x0, y1, x1) or None
        Where the tile holds image data.
    """
    from .psf.detect import detect_stars, saturation_level

    t = np.asarray(tile, dtype=np.float64)
    c, h, w = t.shape
    sig = np.broadcast_to(np.asarray(sigma, float), (c,))
    lum = np.sum((t - background) / sig[:, None, None], axis=0)
    major = float(fwhm) / np.sqrt(max(1.0 - float(ellipticity), 0.1))
    r = int(np.clip(np.ceil(3.5 * major) + 2, 6, 36))
    y0, x0, y1, x1 = data_box if data_box is not None else (0, 0, h, w)
    satmask = np.zeros((h, w), bool)
    sat = saturation_level(t)
    for ch in range(c):
        if np.isfinite(sat[ch]):
            satmask |= t[ch] >= 0.8 * sat[ch]
    empty = TileStars(np.zeros(0), np.zeros(0), np.zeros(0), r)
    if y1 - y0 < 2 * r + 8 or x1 - x0 < 2 * r + 8:
        return empty
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cand = detect_stars(lum[y0:y1, x0:x1], float(np.sqrt(c)), fwhm=max(float(fwhm), 1.0), saturated=satmask[y0:y1, x0:x1],
                            edge=r + 1, isolation=max(2.0 * major, 6.0))
    ok = (cand.flags == 0) & (cand.peak >= EPSF_MIN_PEAK) & np.isfinite(cand.x) & np.isfinite(cand.y)
    if not ok.any():
        return empty
    ok[np.cumsum(ok) > EPSF_MAX_STARS] = False  # candidates come brightest first
    return TileStars(cand.x[ok] + x0, cand.y[ok] + y0, cand.peak[ok], r)


def empirical_psf(
    tile: np.ndarray,
    background: np.ndarray,
    sigma: np.ndarray,
    stars: TileStars,
    base: list[np.ndarray],
    centre: tuple[float, float],
    scale: float,
    models: list[np.ndarray],
    gains: list[float | None] | None = None,
) -> list[np.ndarray] | None:
    """Empirical source kernels (one per channel) from the stars of a tile.

    Per channel: the model kernel at ``centre`` plus the stars' mean
    departure from their own model kernels (:func:`_stack`; stars weighted
    also by a Gaussian of ``scale`` px in their distance from ``centre``),
    tapered to 0 towards the stamps' edge, the model's wings beyond. The
    positions (refined on the luminance, :func:`refine_positions`) are shared
    by all channels, and the kernels are finally moved together so that
    their mean's flux centroid (within about two FWHM) is at the centre: a
    star's position is its flux centroid; shifts between the channels
    (lateral chromatic aberration) are kept, and so corrected.

    Parameters
    ----------
    tile, background : (C, h, w) array_like
    sigma : (C,) array_like
    stars : TileStars
    base : list of (k, k) ndarray
        Model kernels per channel at ``centre`` (odd size, sum 1).
    models : list of (N, 2r+1, 2r+1) ndarray
        Per channel, the model kernels at the stars (cut to the stamps,
        normalised over their whole extent).
    centre : (y, x)
        Where the kernel applies (tile coordinates).
    scale : float
        Gaussian weight scale (px) of the distance from ``centre``.
    gains : list of (float or None), optional
        Electrons per image unit per channel (Poisson part of the weights).

    Returns
    -------
    list of (k, k) ndarray, or None when fewer than ``EPSF_MIN_STARS`` stars
    carry weight.
    """
    t = np.asarray(tile, dtype=np.float64)
    c = t.shape[0]
    r = stars.radius
    if len(stars) == 0:
        return None
    # one common size (the model's wings are negligible beyond its own size)
    k0 = max(r, max(b.shape[0] // 2 for b in base))
    base = [np.pad(np.asarray(b, float), k0 - b.shape[0] // 2) for b in base]
    d2 = (stars.x - centre[1]) ** 2 + (stars.y - centre[0]) ** 2
    spatial = np.exp(-0.5 * d2 / scale**2)
    use = spatial > 0.05
    if int(use.sum()) < EPSF_MIN_STARS:
        return None
    sx, sy, sp = stars.x[use], stars.y[use], spatial[use]
    mods = [np.asarray(m, float)[use] for m in models]
    sig = np.broadcast_to(np.asarray(sigma, float), (c,))
    bg = np.broadcast_to(np.asarray(background, float), t.shape)
    gains = list(gains) if gains is not None else [None] * c
    off = stars.channel_shift(sy, sx, c)  # (C, 2, N)
    at = stars.channel_shift(centre[0], centre[1], c)[:, :, 0]  # (C, 2)
    out = []
    for ch in range(c):
        st, dy, dx = _stamps(t[ch] - bg[ch], sx, sy, r)
        b = base[ch] if not at[ch].any() else np.maximum(_fourier_shift(base[ch], at[ch, 0], at[ch, 1]), 0.0)
        core = _stack(st, dy + off[ch, 0], dx + off[ch, 1], b[k0 - r : k0 + r + 1, k0 - r : k0 + r + 1], mods[ch],
                      float(sig[ch]), gains[ch], sp)
        k = _hybrid(core, b)
        if np.sqrt(np.sum((k - b) ** 2) / np.sum(b**2)) > EPSF_MAX_DEPARTURE:
            return None  # not a PSF the stars agree on (nebulosity, blends): the model is kept
        out.append(k)
    # a star's position is its flux centroid: move the kernels so that the
    # (mean) kernel's centroid is at the centre; shifts between the channels
    # (lateral chromatic aberration) are kept, and so corrected
    # (within about one major-axis FWHM, CENTROID_WINDOW)
    cy, cx = _centroid(sum(out) / c, max(3, int(round(CENTROID_WINDOW * (r - 2))) + 1))
    out = [np.maximum(_fourier_shift(k, -cy, -cx), 0.0) for k in out]
    return [k / k.sum() for k in out]


# ---------------------------------------------------------------------------
# Per-tile translation with the PSF field
# ---------------------------------------------------------------------------


def tile_kernels(
    src: dict[str, float], params: SharpenParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source kernel and the two layers' target kernels for one tile and channel.

    Parameters
    ----------
    src : dict
        Source Moffat parameters ``fwhm`` (px), ``beta``, ``ellipticity``,
        ``angle`` (deg) at the tile centre.
    params : SharpenParams
        The controls; ``psf_diameter`` (manual) replaces the source by a round
        Moffat of that FWHM with the source beta (or DEFAULT_BETA when absent).

    Returns
    -------
    source, stars_target, nonstellar_target : (k, k) ndarrays of float64
        Pixel-integrated Moffat kernels of one common odd size, each summing to 1.
    """
    f, beta = src["fwhm"], src.get("beta", DEFAULT_BETA)
    e, ang = src.get("ellipticity", 0.0), src.get("angle", 0.0)
    if params.correct_only:
        tf, tb = correct_target(f, beta)
        ns_f, ns_b = tf, tb
    else:
        tf, tb = stellar_target(f, beta, params.sharpen_stars, params.adjust_halos)
        d = f if params.psf_diameter is None else float(params.psf_diameter)
        ns_f, ns_b = float(nonstellar_target(d, params.sharpen_nonstellar)), beta
    if params.psf_diameter is not None and not params.correct_only:
        f, e, ang = float(params.psf_diameter), 0.0, 0.0
    size = kernel_size_for(max(f, 0.5), beta, e)
    size = max(size, kernel_size_for(max(float(tf), 0.5), float(tb)))
    size = int(min(size, 127)) | 1
    if f <= 0.05:
        srck = np.zeros((size, size))
        srck[size // 2, size // 2] = 1.0
    else:
        srck = moffat_kernel(f, beta, e, ang, size=size)
    return srck, moffat_kernel(float(tf), float(tb), size=size), moffat_kernel(max(ns_f, 0.05), ns_b, size=size)


def _translate_channel(
    data: np.ndarray,
    src: np.ndarray,
    targets: list[np.ndarray],
    method: Classical,
    sigma: float,
    background: float | np.ndarray,
    options: dict,
    fwhm: float = 3.0,
) -> list[np.ndarray]:
    if method == "rl":
        if "point_mask" not in options:
            options = dict(options, point_mask=point_source_mask(data - background, sigma, fwhm, psf=src))
        if len(targets) == 1:
            est, _ = richardson_lucy(data, src, sigma=sigma, background=background, target_psf=targets[0], **options)
            return [est]
        est, _ = richardson_lucy(data, src, sigma=sigma, background=background, **options)
        bg = np.broadcast_to(np.asarray(background, dtype=np.float64), data.shape)
        return [fft_convolve(est - bg, t) + bg for t in targets]
    if method == "wiener":
        return [wiener(data, src, t, sigma=sigma, background=background, **options) for t in targets]
    raise ParameterError(f"classical method must be 'rl' or 'wiener', got {method!r}")


def classical_translate(
    tile: np.ndarray,
    maps: np.ndarray,
    params: SharpenParams,
    sigma: np.ndarray | float,
    method: Classical | None = None,
    *,
    background: np.ndarray | float = 0.0,
    star_mask: np.ndarray | None = None,
    data_box: tuple[int, int, int, int] | None = None,
    options: dict | None = None,
    psf_model: Literal["empirical", "moffat"] = "empirical",
    subtile: int | None = CLASSICAL_TILE,
) -> tuple[np.ndarray, np.ndarray]:
    """Translate one tile from its source PSF to the targets (per channel).

    The tile is worked on in sub-tiles of ``subtile`` px (20 % overlap,
    raised-cosine blending), each with its own source kernel, so the PSF
    follows the field more finely than the engine's tiles. The source kernel
    of a sub-tile is, with ``psf_model="empirical"`` and automatic PSF, the
    stack of the tile's own stars around the sub-tile's centre
    (:func:`empirical_psf`: it has whatever shape the stars have, trails,
    coma, chromatic shifts), with the measured Moffat's wings beyond the
    stamps; where too few stars are found, and with ``"moffat"``, it is the
    measured field's Moffat at the sub-tile centre (``maps``; the asymmetry
    parameters are ignored). A manual PSF diameter makes the source a round
    Moffat everywhere (no sub-tiles).

    Parameters
    ----------
    tile : (C, h, w) array_like
        Linear data of the tile.
    maps : (C, P, h, w) array_like
        Source PSF maps over the tile (``PSFField.maps``), PARAM_NAMES order.
    params : SharpenParams
    sigma : float or (C,) array_like
        Background noise standard deviation per channel.
    method : {"rl", "wiener"} or None
        None takes ``params.method`` (which must then be classical).
    background : float, (C,) or (C, h, w) array_like
        Smooth sky level per channel.
    star_mask : (h, w) or (C, h, w) array_like or None
        Weights in [0, 1] of the stars layer. None puts everything in the
        non-stellar layer (at the stellar target with automatic PSF, at the
        non-stellar target with a manual PSF diameter).
    data_box : (y0, x0, y1, x1) or None
        The part of the tile that holds image data (tile coordinates, end
        exclusive); the rest is padding (e.g. mirrored beyond the image edge)
        that Richardson-Lucy treats as unknown and that gives no stars. None =
        all of it is data.
    options : dict or None
        Extra keywords of :func:`richardson_lucy` or :func:`wiener`.
    psf_model : {"empirical", "moffat"}
        Source kernels from the stars themselves or from the Moffat maps.
    subtile : int or None
        Sub-tile edge (px); None works on the whole tile with one kernel.

    Returns
    -------
    stars, nonstellar : (C, h, w) ndarrays of float32
        Their sum is the translated tile (background included in ``nonstellar``).
    """
    t = np.asarray(tile, dtype=np.float64)
    if t.ndim != 3:
        raise ImageDataError(f"tile must be (C, h, w), got shape {t.shape}")
    c, h, w = t.shape
    mp = np.asarray(maps)
    if mp.ndim != 4 or mp.shape[0] != c or mp.shape[2:] != (h, w):
        raise ImageDataError(f"maps must be (C, P, h, w) = ({c}, P, {h}, {w}), got {mp.shape}")
    method = params.method if method is None else method
    if method not in ("rl", "wiener"):
        raise ParameterError(f"classical_translate needs method 'rl' or 'wiener', got {method!r}")
    if psf_model not in ("empirical", "moffat"):
        raise ParameterError(f"psf_model must be 'empirical' or 'moffat', got {psf_model!r}")
    if subtile is not None and subtile < 32:
        raise ParameterError(f"subtile must be at least 32 px (or None), got {subtile!r}")
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (c,))
    bgs = np.asarray(background, dtype=np.float64)
    if bgs.ndim == 1:
        bgs = bgs[:, None, None]
    bgs = np.broadcast_to(bgs, t.shape)
    opts = dict(options or {})
    manual = params.psf_diameter is not None
    if method == "rl" and manual:
        # a manual PSF diameter is non-stellar work: one discrepancy stop for all
        opts.setdefault("point_mask", None)
    elif method == "rl":
        # point sources: elongated (trailed) stars converge slowly; the change
        # rule stops them once the estimate moves by less than 0.1 % per iteration
        opts.setdefault("iterations", RL_STAR_ITERATIONS)
        opts.setdefault("tol", RL_STAR_TOL)
    box = (0, 0, h, w)
    if data_box is not None:
        box = tuple(int(v) for v in data_box)
        y0, x0, y1, x1 = box
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ParameterError(f"data_box {data_box} does not lie inside the {h}x{w} tile")
    dmask = None
    if box != (0, 0, h, w):
        dmask = np.zeros((h, w), bool)
        dmask[box[0] : box[2], box[1] : box[3]] = True
    mask = None
    if star_mask is not None:
        mask = np.clip(np.broadcast_to(np.asarray(star_mask, dtype=np.float64), t.shape), 0.0, 1.0)

    stars_tab = None
    gains: list[float | None] = [None] * c
    if psf_model == "empirical" and not manual:
        m0 = moffat_shape(mp[0, :, h // 2, w // 2])
        stars_tab = find_tile_stars(t, bgs, sig, m0["fwhm"], m0["ellipticity"], box)
        if len(stars_tab) >= EPSF_MIN_STARS:
            b0, b1 = (slice(box[0], box[2]), slice(box[1], box[3]))
            gains = [poisson_gain(t[ch][b0, b1] - bgs[ch][b0, b1], float(sig[ch])) for ch in range(c)]
            stars_tab, models = refine_positions(t, bgs, sig, stars_tab, mp)
        else:
            stars_tab = None
    split = subtile is not None and not manual and max(h, w) > 1.25 * subtile

    def work(sub: np.ndarray, sb: tuple[int, int, int, int]) -> np.ndarray:
        sy0, sx0, sy1, sx1 = sb
        sh, sw = sy1 - sy0, sx1 - sx0
        yc, xc = sy0 + sh // 2, sx0 + sw // 2
        o = dict(opts)
        if dmask is not None and method == "rl":
            dm = dmask[sy0:sy1, sx0:sx1]
            if not dm.any():
                return np.concatenate([np.zeros((c, sh, sw)), sub])
            if not dm.all():
                o["mask"] = dm
        srcs = [moffat_shape(mp[ch, :, yc, xc]) for ch in range(c)]
        kern = [tile_kernels(s_, params) for s_ in srcs]
        srck = [k[0] for k in kern]
        if stars_tab is not None:
            emp = empirical_psf(t, bgs, sig, stars_tab, srck, ((sy0 + sy1 - 1) / 2.0, (sx0 + sx1 - 1) / 2.0),
                                scale=EPSF_SCALE * max(sh, sw), models=models, gains=gains)
            if emp is not None:
                srck = emp
        st = np.zeros((c, sh, sw))
        ns = np.zeros((c, sh, sw))
        for ch in range(c):
            _, tstar, tns = kern[ch]
            bg = bgs[ch, sy0:sy1, sx0:sx1]
            data = sub[ch]
            if mask is None:
                target = tns if manual else tstar
                (out,) = _translate_channel(data, srck[ch], [target], method, float(sig[ch]), bg, o, srcs[ch]["fwhm"])
                ns[ch] = out
            else:
                a, b = _translate_channel(data, srck[ch], [tstar, tns], method, float(sig[ch]), bg, o, srcs[ch]["fwhm"])
                mk = mask[ch, sy0:sy1, sx0:sx1]
                st[ch] = mk * (a - bg)
                ns[ch] = (1.0 - mk) * (b - bg) + bg
        return np.concatenate([st, ns])

    if split:
        both = translate_tiled(t, work, int(subtile), 0.2, out_channels=2 * c)
    else:
        both = work(t, (0, 0, h, w))
    both = np.asarray(both, dtype=np.float32)
    return both[:c], both[c:]


# ---------------------------------------------------------------------------
# Whole images (the bench; the engine has its own tiled runner)
# ---------------------------------------------------------------------------


def _ramp(n: int, lo: int, hi: int, size: int, ov: int) -> np.ndarray:
    """1-D blending weight of a tile covering [lo, hi) of an axis of ``size``."""
    wgt = np.ones(hi - lo)
    if ov <= 0:
        return wgt
    r = np.sin(0.5 * np.pi * (np.arange(ov) + 0.5) / ov) ** 2
    if lo > 0:
        wgt[:ov] = r[: hi - lo]
    if hi < size:
        wgt[-ov:] = np.minimum(wgt[-ov:], r[::-1][: hi - lo])
    return wgt


def translate_tiled(
    image: np.ndarray,
    func: Callable[[np.ndarray, tuple[int, int, int, int]], np.ndarray],
    tile: int = 512,
    overlap: float = 0.2,
    out_channels: int | None = None,
) -> np.ndarray:
    """Apply ``func(tile_data (C,h,w), box (y0,x0,y1,x1)) -> (C_out,h,w)`` on the
    engine's tile plan and blend the tiles with raised-cosine weights over the
    overlaps (the weights sum to 1 everywhere). ``out_channels`` is C_out
    (default C).

    Returns
    -------
    (C_out, H, W) ndarray of float32
    """
    from .tiles import plan_grid

    a = np.asarray(image)
    if a.ndim != 3:
        raise ImageDataError(f"image must be (C, H, W), got shape {a.shape}")
    c, hh, ww = a.shape
    grid = plan_grid((hh, ww), tile, overlap)
    out = np.zeros((c if out_channels is None else int(out_channels), hh, ww), dtype=np.float64)
    wsum = np.zeros((hh, ww))
    for y0, x0, y1, x1 in grid.boxes():
        res = np.asarray(func(a[:, y0:y1, x0:x1], (y0, x0, y1, x1)), dtype=np.float64)
        # overlap with the neighbouring tiles along each axis
        ovy = _overlap_len(grid.y_starts, y0, tile, hh)
        ovx = _overlap_len(grid.x_starts, x0, tile, ww)
        wy = _ramp(y1 - y0, y0, y1, hh, ovy)
        wx = _ramp(x1 - x0, x0, x1, ww, ovx)
        wgt = wy[:, None] * wx[None, :]
        out[:, y0:y1, x0:x1] += res * wgt
        wsum[y0:y1, x0:x1] += wgt
    return (out / np.maximum(wsum, 1e-12)).astype(np.float32)


def _overlap_len(starts: np.ndarray, s0: int, tile: int, size: int) -> int:
    if len(starts) < 2:
        return 0
    st = np.sort(starts)
    ov = [min(a + tile, size) - b for a, b in zip(st[:-1], st[1:])]
    return int(max(1, min(ov)))


def classical_sharpen(
    image: np.ndarray,
    field,
    params: SharpenParams,
    sigma: np.ndarray | float,
    background: np.ndarray | float = 0.0,
    method: Classical | None = None,
    options: dict | None = None,
) -> np.ndarray:
    """Classical PSF translation of a whole (C, H, W) image with a PSF field,
    tile by tile on the engine's plan (``params.tile_size``, ``params.overlap``).

    Parameters
    ----------
    image : (C, H, W) array_like
    field : PSFField
        Source PSF field (measured, or the truth's in the bench).
    params : SharpenParams
    sigma : float or (C,) array_like
        Background noise per channel.
    background : float, (C,) or (C, H, W) array_like
        Sky level per channel (a map is cut per tile).
    method, options
        As in :func:`classical_translate`.

    Returns
    -------
    (C, H, W) ndarray of float32
        The translated image (stars + non-stellar layers).
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3:
        raise ImageDataError(f"image must be (C, H, W), got shape {a.shape}")
    c = a.shape[0]
    bg = np.asarray(background, dtype=np.float64)
    if bg.ndim < 3:
        bg = np.broadcast_to(bg.reshape(-1, 1, 1) if bg.ndim else bg, (c, 1, 1))

    def run(t: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        y0, x0, y1, x1 = box
        maps = field.maps(y0, x0, y1 - y0, x1 - x0)
        b = bg[:, y0:y1, x0:x1] if bg.shape[1] > 1 else bg
        s, n = classical_translate(t, maps, params, sigma, method, background=b, options=options)
        return s + n

    return translate_tiled(a, run, params.tile_size, params.overlap)
