"""Per-star fit of the pixel-integrated elliptical Moffat, and a coma measure.

The model (conventions of :mod:`astrosharp.psf.moffat`) of a star stamp is

    model(pixel) = flux * ∫_pixel P(x - x0, y - y0) dx dy + background,
    P(d) = (beta - 1) sqrt(det M) / pi * (1 + d^T M d) ** -beta,

where ``M`` (2 x 2, symmetric, positive definite) holds the shape: its eigenvalues
are ``1/a**2`` and ``1/b**2`` (``a >= b`` the core widths alpha along the major and
minor axes) and its eigenvector of the smaller eigenvalue points along the major
axis. Fitting ``M = [[m11, m12], [m12, m22]]`` instead of (axes, angle) has no
degeneracy for round stars. The fitted quantities are then reported with the
project's definitions: FWHM = geometric mean of the axis FWHMs
``2 alpha sqrt(2**(1/beta) - 1)``, ellipticity = 1 - minor/major, angle of the
major axis in degrees counter-clockwise from +x, ``e1 = e cos 2θ``,
``e2 = e sin 2θ``.

Pixel integration uses a Gauss-Legendre product rule with ``n x n`` nodes per
pixel (``n`` from 2 for FWHM >= 4 px up to 6 below 1.3 px) in the core (within
1.5 FWHM + 1.5 px of the stamp centre) and the midpoint rule in the smooth wings;
it matches the pixel integral (:func:`~astrosharp.psf.moffat.moffat_image` with
heavy supersampling) to better than 1e-3 of the peak.

All stars are fitted together by a vectorised Levenberg-Marquardt solver with the
analytic Jacobian and a damping factor per star (no Python loop over stars), in
chunks to bound memory. :func:`fit_star_reference` is the slow, independent
reference (``scipy.optimize.least_squares`` on
:func:`~astrosharp.psf.moffat.moffat_image`) used by the tests.

Asymmetry (coma)
----------------
From the background-subtracted stamp ``I``, with central moments
``Mpq = sum(I dx**p dy**q) / sum(I)`` about the flux centroid, over the pixels
within ``r**2 <= 8 (M20 + M02)`` (centroid and window iterated)::

    asym_x = (M30 + M12) / (M20 + M02) ** 1.5,  asym_y = (M21 + M03) / (M20 + M02) ** 1.5

i.e. ``<r**2 dx> / <r**2>**1.5``: dimensionless, 0 for any point-symmetric PSF,
pointing from the core towards a one-sided (coma-like) flare. It is the
definition the simulator uses for its true field
(:func:`astrosharp.synth.optics.asymmetry`). On noisy stars it is noisy; the
field takes medians over many stars.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np

from .._threads import each
from ..errors import ParameterError
from ._table import ArrayTable
from .moffat import alpha_from_fwhm, axis_fwhms, fwhm_from_alpha, moffat_image

__all__ = [
    "StarFits",
    "FLAG_NOT_CONVERGED",
    "FLAG_BETA_BOUND",
    "FLAG_CENTRE_MOVED",
    "FLAG_BAD_FIT",
    "shape_matrix",
    "moffat_from_matrix",
    "quadrature_order",
    "render_moffat",
    "fit_stars",
    "fit_star_reference",
    "asymmetry",
    "fit_kernel",
]

FLAG_NOT_CONVERGED = 1
FLAG_BETA_BOUND = 2
FLAG_CENTRE_MOVED = 4
FLAG_BAD_FIT = 8
BETA_BOUNDS = (1.1, 20.0)
BETA_GUESS = 2.5
"""Starting beta of a fit, unless told better."""
_NPAR = 8  # x0, y0, flux, background, m11, m12, m22, beta


# ---------------------------------------------------------------------------
# parameter conversions
# ---------------------------------------------------------------------------
def shape_matrix(fwhm, beta, ellipticity=0.0, angle=0.0):
    """Shape matrix entries (m11, m12, m22) (px^-2) of a Moffat of this FWHM
    (px, geometric mean of the axes), beta, ellipticity and angle (degrees)."""
    major, minor = axis_fwhms(np.asarray(fwhm, float), np.asarray(ellipticity, float))
    a = alpha_from_fwhm(major, beta)
    b = alpha_from_fwhm(minor, beta)
    t = np.deg2rad(angle)
    c, s = np.cos(t), np.sin(t)
    ia, ib = 1.0 / a**2, 1.0 / b**2
    return c * c * ia + s * s * ib, c * s * (ia - ib), s * s * ia + c * c * ib


def moffat_from_matrix(m11, m12, m22, beta):
    """(fwhm, ellipticity, angle_deg, fwhm_major, fwhm_minor) from a shape matrix."""
    m11, m12, m22, beta = (np.asarray(v, float) for v in (m11, m12, m22, beta))
    tr = 0.5 * (m11 + m22)
    d = np.sqrt(np.maximum(0.25 * (m11 - m22) ** 2 + m12**2, 0.0))
    lo = np.maximum(tr - d, 1e-12)  # 1/a^2 (major axis)
    hi = np.maximum(tr + d, 1e-12)  # 1/b^2
    fa = fwhm_from_alpha(1.0 / np.sqrt(lo), beta)
    fb = fwhm_from_alpha(1.0 / np.sqrt(hi), beta)
    # eigenvector of the smaller eigenvalue: angle of the major axis
    ang = 0.5 * np.degrees(np.arctan2(-2.0 * m12, m22 - m11))
    return np.sqrt(fa * fb), 1.0 - fb / fa, np.mod(ang, 180.0), fa, fb


def quadrature_order(fwhm: float) -> int:
    """Gauss-Legendre nodes per axis used to integrate a Moffat of this FWHM
    (px) over a pixel."""
    if fwhm >= 4.0:
        return 2
    if fwhm >= 2.5:
        return 3
    if fwhm >= 1.8:
        return 4
    if fwhm >= 1.3:
        return 5
    return 6


def _quad_nodes(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(int(n))
    t, w = t / 2.0, w / 2.0
    qx = np.tile(t, n)
    qy = np.repeat(t, n)
    qw = np.repeat(w, n) * np.tile(w, n)
    return qx, qy, qw


# ---------------------------------------------------------------------------
# the batched model
# ---------------------------------------------------------------------------
def _evaluate_group(p, px, py, quad, jac: bool):
    """Model (n, P) and optionally Jacobian (n, P, 8) of one pixel group that
    shares a quadrature rule."""
    # float32 for the bulk arithmetic (2x faster); positions are taken relative
    # to the stamp so nothing large is subtracted in single precision. The
    # quadrature nodes are the first axis, (Q, n, P): NumPy then runs its
    # loops over whole rows of pixels (with the nodes last, every loop covers
    # 4 elements), and the node sums are Q multiply-adds of whole arrays
    f32 = np.float32
    qx, qy, qw = (v.astype(f32) for v in quad)
    x0, y0, flux, bkg, m11, m12, m22, beta = (p[:, i].astype(f32)[None, :, None] for i in range(_NPAR))
    dx = (px.astype(f32)[None, None, :] - x0) + qx[:, None, None]
    dy = (py.astype(f32)[None, None, :] - y0) + qy[:, None, None]
    q = m11 * dx * dx + 2.0 * m12 * dx * dy + m22 * dy * dy
    # log(1 + q), not log1p: NumPy's log1p is not vectorised (5 times slower
    # on these arrays); q >= 0, so the absolute error stays below 1e-7 and
    # the profile's relative error below beta x 1e-7
    opq = q + f32(1.0)
    lq = np.log(opq)
    det = m11 * m22 - m12 * m12
    norm = (beta - 1.0) * np.sqrt(det) / np.pi
    f = norm * np.exp(-beta * lq)

    def nodes(a: np.ndarray) -> np.ndarray:  # the quadrature sum, (Q, n, P) -> (n, P)
        # (plain NumPy: a BLAS call here would start its own threads inside
        # fit_stars' worker threads)
        out = a[0] * qw[0]
        for k in range(1, len(qw)):
            out += a[k] * qw[k]
        return out

    g = nodes(f)
    F = flux[0]
    model = F.astype(np.float64) * g + bkg[0].astype(np.float64)
    if not jac:
        return model, None
    fq = (-beta) * f / opq
    fqx = fq * dx
    fqy = fq * dy
    sx = nodes(fqx)
    sy = nodes(fqy)
    sxx = nodes(fqx * dx)
    sxy = nodes(fqx * dy)
    syy = nodes(fqy * dy)
    sl = nodes(f * lq)
    a11, a12, a22, b = m11[0], m12[0], m22[0], beta[0]
    dt = det[0]
    J = np.empty(model.shape + (_NPAR,), dtype=f32)
    J[..., 0] = -2.0 * F * (a11 * sx + a12 * sy)
    J[..., 1] = -2.0 * F * (a12 * sx + a22 * sy)
    J[..., 2] = g
    J[..., 3] = 1.0
    J[..., 4] = F * (sxx + 0.5 * a22 / dt * g)
    J[..., 5] = F * (2.0 * sxy - a12 / dt * g)
    J[..., 6] = F * (syy + 0.5 * a11 / dt * g)
    J[..., 7] = F * (g / (b - 1.0) - sl)
    return model, J


def _evaluate(p, groups, jac: bool):
    """Model (n, P) and Jacobian (n, P, 8) over pixel groups [(px, py, quad)],
    concatenated in group order."""
    parts = [_evaluate_group(p, px, py, quad, jac) for px, py, quad in groups]
    if len(parts) == 1:
        return parts[0]
    model = np.concatenate([m for m, _ in parts], axis=1)
    J = np.concatenate([j for _, j in parts], axis=1) if jac else None
    return model, J


_MIDPOINT = (np.zeros(1), np.zeros(1), np.ones(1))


def _pixel_groups(s: int, fwhm: float, quad: int, keep: np.ndarray | None = None):
    """Pixel order and groups of an s x s stamp: the core (within 1.5 FWHM + 1.5 px
    of the centre) integrated with ``quad`` x ``quad`` Gauss-Legendre nodes, the
    wings (smooth on the pixel scale) with the midpoint rule. With ``keep``
    (s * s bool), only those pixels."""
    yy, xx = np.mgrid[0:s, 0:s]
    c = (s - 1) / 2.0
    core = np.hypot(xx - c, yy - c) <= 1.5 * fwhm + 1.5
    if quad <= 1:
        core[:] = False
    use = np.ones(s * s, bool) if keep is None else np.asarray(keep, bool).reshape(-1)
    ci = np.nonzero(core.ravel() & use)[0]
    oi = np.nonzero(~core.ravel() & use)[0]
    px, py = xx.ravel().astype(float), yy.ravel().astype(float)
    groups = []
    if ci.size:
        groups.append((px[ci], py[ci], _quad_nodes(quad)))
    if oi.size:
        groups.append((px[oi], py[oi], _MIDPOINT))
    return np.concatenate([ci, oi]), groups


def render_moffat(
    shape: tuple[int, int],
    x0: float,
    y0: float,
    flux: float,
    fwhm: float,
    beta: float,
    ellipticity: float = 0.0,
    angle: float = 0.0,
    background: float = 0.0,
    quad: int | None = None,
) -> np.ndarray:
    """The fitter's model: pixel-integrated elliptical Moffat (Gauss-Legendre
    quadrature), same definitions and arguments as
    :func:`~astrosharp.psf.moffat.moffat_image`.

    Returns
    -------
    (H, W) ndarray of float64
    """
    h, w = shape
    m11, m12, m22 = shape_matrix(fwhm, beta, ellipticity, angle)
    p = np.array([[x0, y0, flux, background, m11, m12, m22, beta]], dtype=float)
    yy, xx = np.mgrid[0:h, 0:w]
    quad = _quad_nodes(quad or quadrature_order(fwhm))
    model, _ = _evaluate(p, [(xx.ravel().astype(float), yy.ravel().astype(float), quad)], False)
    return model[0].reshape(h, w)


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class StarFits(ArrayTable):
    """Moffat fits of N stars (one entry per star and channel).

    All attributes are (N,) arrays. Positions are in the coordinates of the
    stamps given to :func:`fit_stars` (pixel centres at integers, x = column).

    Attributes
    ----------
    x, y : centroid (px)
    flux : total flux of the profile (image units)
    background : local background level in the stamp (image units)
    fwhm, fwhm_major, fwhm_minor : px
    beta : Moffat index
    ellipticity, angle : 1 - minor/major; major-axis angle (deg, CCW from +x)
    e1, e2 : ``e cos 2θ``, ``e sin 2θ``
    asym_x, asym_y : coma-like asymmetry (see the module docstring)
    snr : flux over its noise (from the stamp noise and the fitted profile)
    chi2 : reduced chi-square with the given noise
    niter : LM iterations used
    flags : bit mask of FLAG_* (0 = good)
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    background: np.ndarray
    fwhm: np.ndarray
    fwhm_major: np.ndarray
    fwhm_minor: np.ndarray
    beta: np.ndarray
    ellipticity: np.ndarray
    angle: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    asym_x: np.ndarray
    asym_y: np.ndarray
    snr: np.ndarray
    chi2: np.ndarray
    niter: np.ndarray
    flags: np.ndarray

    @classmethod
    def concatenate(cls, parts: list["StarFits"]) -> "StarFits":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls) -> "StarFits":
        return cls(**{f.name: np.zeros(0, dtype=int if f.name in ("niter", "flags") else float) for f in fields(cls)})

    def to_dict(self) -> dict[str, list]:
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------
def _initial(stamps, mask, x0, y0, fwhm_guess, beta_guess, px, py):
    n = stamps.shape[0]
    s = stamps.shape[1]
    r2 = (px[None] - x0[:, None]) ** 2 + (py[None] - y0[:, None]) ** 2
    flat = stamps.reshape(n, -1)
    edge = np.zeros((s, s), bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    e = flat[:, edge.ravel()]
    em = mask.reshape(n, -1)[:, edge.ravel()]
    if em.all():
        bkg = np.median(e, axis=1)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bkg = np.nanmedian(np.where(em, e, np.nan), axis=1)
        bkg = np.where(np.isfinite(bkg), bkg, 0.0)
    ap = (r2 <= (2.5 * fwhm_guess) ** 2) & mask.reshape(n, -1)
    flux = np.sum(np.where(ap, flat - bkg[:, None], 0.0), axis=1)
    # windowed second moments for an elliptical starting shape
    wgt = np.exp(-r2 / (2.0 * (0.6 * fwhm_guess) ** 2)) * np.where(mask.reshape(n, -1), np.clip(flat - bkg[:, None], 0, None), 0)
    sw = np.maximum(wgt.sum(1), 1e-30)
    dx = px[None] - x0[:, None]
    dy = py[None] - y0[:, None]
    cxx = (wgt * dx * dx).sum(1) / sw
    cyy = (wgt * dy * dy).sum(1) / sw
    cxy = (wgt * dx * dy).sum(1) / sw
    tr = np.maximum(cxx + cyy, 1e-6)
    # shape from the normalised moments, size from the guess (moments of a windowed
    # profile are biased in size but keep the elongation's direction)
    e1 = np.clip((cxx - cyy) / tr, -0.5, 0.5)
    e2 = np.clip(2 * cxy / tr, -0.5, 0.5)
    e = np.hypot(e1, e2)
    ang = 0.5 * np.degrees(np.arctan2(e2, e1))
    ell = np.clip(1.0 - np.sqrt((1 - e) / (1 + e)), 0.0, 0.6)
    m11, m12, m22 = shape_matrix(np.full(n, fwhm_guess), beta_guess, ell, ang)
    p = np.column_stack([x0, y0, np.maximum(flux, 1e-12) * 1.05, bkg, m11, m12, m22, np.full(n, beta_guess)])
    return p


def _valid(p, size):
    det = p[:, 4] * p[:, 6] - p[:, 5] ** 2
    return (
        (p[:, 4] > 0)
        & (p[:, 6] > 0)
        & (det > 0)
        & (p[:, 7] > BETA_BOUNDS[0])
        & (p[:, 7] < BETA_BOUNDS[1])
        & (p[:, 0] > -0.5)
        & (p[:, 0] < size - 0.5)
        & (p[:, 1] > -0.5)
        & (p[:, 1] < size - 0.5)
        & np.all(np.isfinite(p), axis=1)
    )


def _lm(data, weight, p, groups, size, max_iter, tol, dchi2):
    """Batched Levenberg-Marquardt. data, weight (n, P); p (n, 8) updated copy."""
    n = p.shape[0]
    p = p.copy()
    model, J = _evaluate(p, groups, True)
    r = (data - model) * weight
    chi2 = np.sum(r * r, axis=1)
    lam = np.full(n, 1e-3)
    active = np.ones(n, bool)
    conv = np.zeros(n, bool)
    niter = np.zeros(n, int)
    Jw = J * weight[..., None]
    A = np.matmul(Jw.transpose(0, 2, 1), Jw)
    gvec = np.matmul(Jw.transpose(0, 2, 1), r[..., None])[..., 0]
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        Aa = A[idx]
        diag = np.einsum("nii->ni", Aa)
        Ad = Aa + (lam[idx][:, None] * np.maximum(diag, 1e-30))[:, :, None] * np.eye(_NPAR)[None]
        try:
            step = np.linalg.solve(Ad, gvec[idx][..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(Ad[i], gvec[idx][i], rcond=None)[0] for i in range(len(idx))])
        pt = p[idx] + step
        ok = _valid(pt, size)
        mt, Jt = _evaluate(np.where(ok[:, None], pt, p[idx]), groups, True)
        rt = (data[idx] - mt) * weight[idx]
        c2 = np.sum(rt * rt, axis=1)
        better = ok & (c2 <= chi2[idx])
        niter[idx] += 1
        acc = idx[better]
        small = (chi2[acc] - c2[better]) <= np.maximum(tol * chi2[acc], dchi2[acc]) + 1e-300
        p[acc] = pt[better]
        chi2[acc] = c2[better]
        Jwt = Jt[better] * weight[acc][..., None]
        A[acc] = np.matmul(Jwt.transpose(0, 2, 1), Jwt)
        gvec[acc] = np.matmul(Jwt.transpose(0, 2, 1), rt[better][..., None])[..., 0]
        lam[acc] = np.maximum(lam[acc] * 0.3, 1e-9)
        rej = idx[~better]
        lam[rej] *= 10.0
        done = acc[small]
        conv[done] = True
        active[done] = False
        stuck = rej[lam[rej] > 1e4]
        conv[stuck] = True  # no further decrease possible: at a minimum
        active[stuck] = False
    return p, chi2, niter, conv


def fit_stars(
    stamps: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    *,
    fwhm_guess: float,
    noise: float | np.ndarray = 1.0,
    mask: np.ndarray | None = None,
    beta_guess: float = BETA_GUESS,
    quad: int | None = None,
    max_iter: int = 40,
    tol: float = 1e-5,
    chunk: int = 192,
) -> StarFits:
    """Fit a pixel-integrated elliptical Moffat (plus a constant background) to
    each stamp.

    Parameters
    ----------
    stamps : (N, S, S) ndarray
        Cut-outs centred near the stars (image units, S odd).
    x0, y0 : (N,) ndarray
        Starting centroids in stamp coordinates (px).
    fwhm_guess : float
        Typical FWHM (px) for the starting shape, the quadrature and the windows.
    noise : float or (N,) ndarray
        Background noise sigma per stamp (for chi2 and S/N only; the fit is
        unweighted inside the mask).
    mask : (N, S, S) bool ndarray, optional
        Pixels to use (default: finite pixels within a circle of radius S/2).
    beta_guess : float
        Starting beta.
    quad : int, optional
        Gauss-Legendre nodes per axis (default from ``fwhm_guess``).
    max_iter, tol : int, float
        Iteration cap and relative chi-square decrease that ends a star's fit
        (a decrease below 0.01 noise variances also ends it).
    chunk : int
        Stars fitted together (bounds memory).

    Returns
    -------
    StarFits
    """
    stamps = np.asarray(stamps, dtype=float)
    if stamps.ndim != 3 or stamps.shape[1] != stamps.shape[2]:
        raise ParameterError(f"stamps must have shape (N, S, S), got {stamps.shape}.")
    if fwhm_guess <= 0:
        raise ParameterError(f"fwhm_guess must be positive, got {fwhm_guess}.")
    n, s, _ = stamps.shape
    if n == 0:
        return StarFits.empty()
    x0 = np.broadcast_to(np.asarray(x0, float), (n,)).copy()
    y0 = np.broadcast_to(np.asarray(y0, float), (n,)).copy()
    noise = np.broadcast_to(np.asarray(noise, float), (n,)).copy()
    yy, xx = np.mgrid[0:s, 0:s]
    px = xx.ravel().astype(float)
    py = yy.ravel().astype(float)
    finite = np.isfinite(stamps)
    if mask is None:
        c = (s - 1) / 2.0
        circ = ((xx - c) ** 2 + (yy - c) ** 2) <= (s / 2.0) ** 2
        mask = finite & circ[None]
    else:
        mask = np.asarray(mask, bool) & finite
    # pixels that no stamp uses (the corners outside the default circle) are
    # left out of the model: they carry zero weight in every sum
    used = mask.reshape(n, -1).any(axis=0)
    if not used.any():  # nothing to fit anywhere: keep the full stamp (every fit fails the same way)
        used[:] = True
    order, groups = _pixel_groups(s, fwhm_guess, quad or quadrature_order(fwhm_guess), keep=used)
    # a chi-square decrease below 0.01 (in units of the noise variance) is
    # statistically meaningless: the fit has converged
    dchi2 = 0.01 * noise**2
    data = np.where(mask, stamps, 0.0).reshape(n, -1)[:, order]
    weight = mask.reshape(n, -1)[:, order].astype(float)
    p0 = _initial(np.where(mask, stamps, 0.0), mask, x0, y0, fwhm_guess, beta_guess, px, py)

    out = np.empty((n, _NPAR))
    chi2 = np.empty(n)
    niter = np.empty(n, int)
    conv = np.empty(n, bool)
    starts = list(range(0, n, chunk))

    neff = np.empty(n)
    ax = np.empty(n)
    ay = np.empty(n)

    def run(a: int) -> None:
        b = min(n, a + chunk)
        out[a:b], chi2[a:b], niter[a:b], conv[a:b] = _lm(data[a:b], weight[a:b], p0[a:b], groups, s, max_iter, tol, dchi2[a:b])
        # the optimal-extraction pixel count and the asymmetry, star by star, in the same worker
        o = out[a:b]
        k = b - a
        model_unit, _ = _evaluate(np.column_stack([o[:, :2], np.ones(k), np.zeros(k), o[:, 4:]]), groups, False)
        neff[a:b] = 1.0 / np.maximum(np.sum(model_unit**2 * weight[a:b], axis=1), 1e-30)
        ax[a:b], ay[a:b] = asymmetry(stamps[a:b], o[:, 0], o[:, 1], o[:, 3], mask[a:b])

    # each star's fit is its own (its own damping and stopping), so chunks
    # run side by side; NumPy releases the GIL in the batched algebra
    each(run, starts)

    fwhm, ell, ang, fa, fb = moffat_from_matrix(out[:, 4], out[:, 5], out[:, 6], out[:, 7])
    t = np.deg2rad(ang)
    npix = np.maximum(weight.sum(1), 1.0)
    dof = np.maximum(npix - _NPAR, 1.0)
    chi2_red = chi2 / dof / np.maximum(noise, 1e-30) ** 2
    # S/N of the flux for an optimal (PSF-weighted) measurement in background noise
    snr = out[:, 2] / np.maximum(noise * np.sqrt(neff), 1e-30)

    flags = np.zeros(n, int)
    flags[~conv] |= FLAG_NOT_CONVERGED
    flags[(out[:, 7] < BETA_BOUNDS[0] * 1.02) | (out[:, 7] > BETA_BOUNDS[1] * 0.98)] |= FLAG_BETA_BOUND
    flags[np.hypot(out[:, 0] - x0, out[:, 1] - y0) > max(1.5, 0.5 * fwhm_guess)] |= FLAG_CENTRE_MOVED
    bad = ~np.all(np.isfinite(out), axis=1) | (out[:, 2] <= 0) | ~np.isfinite(fwhm) | (fwhm <= 0)
    flags[bad] |= FLAG_BAD_FIT
    return StarFits(
        x=out[:, 0],
        y=out[:, 1],
        flux=out[:, 2],
        background=out[:, 3],
        fwhm=fwhm,
        fwhm_major=fa,
        fwhm_minor=fb,
        beta=out[:, 7],
        ellipticity=ell,
        angle=ang,
        e1=ell * np.cos(2 * t),
        e2=ell * np.sin(2 * t),
        asym_x=ax,
        asym_y=ay,
        snr=snr,
        chi2=chi2_red,
        niter=niter,
        flags=flags,
    )


def asymmetry(
    stamps: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    background: np.ndarray,
    mask: np.ndarray | None = None,
    iterations: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Coma-like asymmetry vector of each stamp (see the module docstring).

    ``asym = (M30 + M12, M21 + M03) / (M20 + M02) ** 1.5`` with central moments
    about the flux centroid of the pixels within ``r**2 <= 8 (M20 + M02)``
    (centroid and window iterated from the given centre), the definition of the
    simulator's true field.

    Parameters
    ----------
    stamps : (N, S, S) ndarray
    x, y : (N,) starting centre in stamp coordinates (px)
    background : (N,) level subtracted from the stamps
    mask : (N, S, S) bool, optional; pixels to use
    iterations : window / centroid iterations

    Returns
    -------
    asym_x, asym_y : (N,) ndarray (dimensionless; 0 for a point-symmetric PSF)
    """
    stamps = np.asarray(stamps, float)
    n, s, _ = stamps.shape
    yy, xx = np.mgrid[0:s, 0:s].astype(float)
    img = stamps - np.asarray(background, float)[:, None, None]
    ok = np.isfinite(img)
    if mask is not None:
        ok &= np.asarray(mask, bool)
    img = np.where(ok, img, 0.0)
    cx = np.asarray(x, float).copy()
    cy = np.asarray(y, float).copy()
    win = np.ones_like(img, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(max(1, iterations)):
            f = img * win
            tot = f.sum(axis=(1, 2))
            good = tot > 0
            ncx = (f * xx).sum(axis=(1, 2)) / tot
            ncy = (f * yy).sum(axis=(1, 2)) / tot
            cx = np.where(good & np.isfinite(ncx), np.clip(ncx, cx - 2, cx + 2), cx)
            cy = np.where(good & np.isfinite(ncy), np.clip(ncy, cy - 2, cy + 2), cy)
            dx = xx[None] - cx[:, None, None]
            dy = yy[None] - cy[:, None, None]
            r2 = dx * dx + dy * dy
            m2 = (f * r2).sum(axis=(1, 2)) / tot
            m2 = np.where(good & (m2 > 0), m2, 1.0)
            win = r2 <= 8.0 * m2[:, None, None]
        f = img * win
        tot = f.sum(axis=(1, 2))
        dx = xx[None] - cx[:, None, None]
        dy = yy[None] - cy[:, None, None]
        r2 = dx * dx + dy * dy
        m2 = (f * r2).sum(axis=(1, 2)) / tot
        ax = (f * r2 * dx).sum(axis=(1, 2)) / tot / m2**1.5
        ay = (f * r2 * dy).sum(axis=(1, 2)) / tot / m2**1.5
    # a star's light makes |asym| well below 1 (the simulator's strongest coma
    # gives 0.075); more is a failed measurement (noise cancelling the
    # second moment), read as no asymmetry
    bad = ~(tot > 0) | ~(m2 > 0) | ~(np.abs(ax) <= 1.0) | ~(np.abs(ay) <= 1.0)
    return np.where(bad, 0.0, np.nan_to_num(ax)), np.where(bad, 0.0, np.nan_to_num(ay))


def fit_star_reference(
    stamp: np.ndarray,
    x0: float,
    y0: float,
    fwhm_guess: float,
    beta_guess: float = BETA_GUESS,
    oversample: int = 7,
) -> dict[str, float]:
    """Slow reference fit of one stamp with ``scipy.optimize.least_squares`` on
    :func:`~astrosharp.psf.moffat.moffat_image` (parameters: x0, y0, log flux,
    background, log FWHM, log(beta - 1), e1', e2' where the ellipticity is
    ``tanh(|e'|)`` along the angle of e'). Used to check :func:`fit_stars`.

    Returns
    -------
    dict with x, y, flux, background, fwhm, beta, ellipticity, angle
    """
    from scipy.optimize import least_squares

    stamp = np.asarray(stamp, float)
    s = stamp.shape
    bkg0 = float(np.median(np.concatenate([stamp[0], stamp[-1], stamp[:, 0], stamp[:, -1]])))
    f0 = max(float(np.sum(stamp - bkg0)), 1e-6)

    def unpack(v):
        x, y, lf, b, lw, lb, g1, g2 = v
        gm = np.hypot(g1, g2)
        e = np.tanh(gm)
        ang = 0.5 * np.degrees(np.arctan2(g2, g1))
        return x, y, np.exp(lf), b, np.exp(lw), 1.0 + np.exp(lb), e, ang

    def resid(v):
        x, y, f, b, w, be, e, ang = unpack(v)
        return (moffat_image(s, x, y, f, w, be, e, ang, b, oversample) - stamp).ravel()

    v0 = np.array([x0, y0, np.log(f0), bkg0, np.log(fwhm_guess), np.log(beta_guess - 1.0), 0.01, 0.0])
    res = least_squares(resid, v0, method="lm", x_scale="jac", max_nfev=2000)
    x, y, f, b, w, be, e, ang = unpack(res.x)
    return {"x": x, "y": y, "flux": f, "background": b, "fwhm": w, "beta": be, "ellipticity": e, "angle": ang % 180.0}


def fit_kernel(kernel: np.ndarray) -> dict[str, float]:
    """Moffat parameters of a PSF kernel image (centred, any normalisation):
    fwhm, beta, ellipticity, angle, e1, e2, asym_x, asym_y, x, y (kernel
    coordinates). The same fitter as the star measurement, so a simulator's
    "true" field and the measured one share one definition."""
    k = np.asarray(kernel, float)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ParameterError(f"kernel must be square with an odd size, got shape {k.shape}.")
    s = k.shape[0]
    c = (s - 1) / 2.0
    tot = k.sum()
    yy, xx = np.mgrid[0:s, 0:s]
    # size guess from the half-maximum area
    area = np.sum(k >= 0.5 * k.max())
    fg = max(2.0 * np.sqrt(area / np.pi), 0.8)
    cy = float((k * yy).sum() / tot)
    cx = float((k * xx).sum() / tot)
    mask = np.ones((1, s, s), bool)
    res = fit_stars(k[None], np.array([cx if abs(cx - c) < 2 else c]), np.array([cy if abs(cy - c) < 2 else c]),
                    fwhm_guess=fg, noise=max(abs(tot), 1e-30) * 1e-6, mask=mask, max_iter=100, tol=1e-10)
    keys = ("fwhm", "beta", "ellipticity", "angle", "e1", "e2", "asym_x", "asym_y", "x", "y")
    return {k_: float(getattr(res, k_)[0]) for k_ in keys}
