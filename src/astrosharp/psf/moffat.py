"""The elliptical Moffat profile, in pixels and in Fourier space.

Conventions used throughout astrosharp
--------------------------------------
* Pixel centres sit at integer coordinates; ``x`` is the column index, ``y``
  the row index (FITS row 0 at the bottom, so +y points up on screen).
* An elliptical Moffat of total flux 1 is
  ``I(u, v) = (beta - 1) / (pi a b) * (1 + (u/a)**2 + (v/b)**2) ** -beta``
  with ``(u, v)`` the coordinates along the major and minor axes and ``a >= b``
  the core widths (alpha). The axis FWHM is ``2 alpha sqrt(2**(1/beta) - 1)``.
* FWHM = geometric mean of the major- and minor-axis FWHM; ellipticity =
  1 - minor/major; angle = direction of the major axis, degrees counter-clockwise
  from +x (towards +y).
* "Pixel-integrated" means the profile integrated over each pixel's square, as a
  detector records it. In Fourier space this is a multiplication by
  ``sinc(qx) sinc(qy)``; in real space we supersample.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special

__all__ = [
    "alpha_from_fwhm",
    "fwhm_from_alpha",
    "axis_fwhms",
    "moffat_otf",
    "pixel_otf",
    "moffat_image",
    "moffat_kernel",
    "kernel_size_for",
    "folded",
]


def fwhm_from_alpha(alpha: float | np.ndarray, beta: float | np.ndarray) -> float | np.ndarray:
    """FWHM (pixels) of a Moffat with core width ``alpha`` and index ``beta``."""
    return 2.0 * alpha * np.sqrt(2.0 ** (1.0 / beta) - 1.0)


def alpha_from_fwhm(fwhm: float | np.ndarray, beta: float | np.ndarray) -> float | np.ndarray:
    """Core width ``alpha`` (pixels) of a Moffat with this FWHM and ``beta``."""
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def axis_fwhms(fwhm: float, ellipticity: float) -> tuple[float, float]:
    """Major- and minor-axis FWHM from the geometric-mean FWHM and ellipticity."""
    major = fwhm / np.sqrt(1.0 - ellipticity)
    return major, major * (1.0 - ellipticity)


def _axis_alphas(fwhm, beta, ellipticity):
    major, minor = axis_fwhms(fwhm, ellipticity)
    return alpha_from_fwhm(major, beta), alpha_from_fwhm(minor, beta)


def moffat_otf(
    qx: np.ndarray,
    qy: np.ndarray,
    fwhm: float,
    beta: float,
    ellipticity: float = 0.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Fourier transform of a unit-flux elliptical Moffat (not pixel-integrated).

    Parameters
    ----------
    qx, qy : ndarray
        Spatial frequencies in cycles per pixel (broadcastable).
    fwhm, beta, ellipticity, angle
        Profile parameters (pixels, -, -, degrees); ``beta > 1``.

    Returns
    -------
    ndarray of float64
        Real, 1 at zero frequency. Uses the closed form
        ``2 / Gamma(beta - 1) * (z / 2)**(beta - 1) * K_{beta-1}(z)`` with
        ``z = 2 pi |A^T q|``, A the profile's axis scaling.
    """
    a, b = _axis_alphas(fwhm, beta, ellipticity)
    t = np.deg2rad(angle)
    c, s = np.cos(t), np.sin(t)
    qu = qx * c + qy * s
    qv = -qx * s + qy * c
    z = 2.0 * np.pi * np.sqrt((a * qu) ** 2 + (b * qv) ** 2)
    return radial_otf(z, beta)


_ZGRID = np.concatenate([[0.0], np.geomspace(1e-7, 200.0, 3000)])
_LOGZ = np.log(_ZGRID[1:])


def _radial_exact(z: np.ndarray, beta: float) -> np.ndarray:
    nu = beta - 1.0
    zz = np.maximum(z, 1e-12)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        val = 2.0 / special.gamma(nu) * (zz / 2.0) ** nu * special.kv(nu, zz)
    val = np.nan_to_num(val, nan=0.0, posinf=0.0)
    return np.where(z < 1e-12, 1.0, val)


@functools.lru_cache(maxsize=512)
def _radial_table(beta: float) -> np.ndarray:
    table = _radial_exact(_ZGRID[1:], beta)
    table.setflags(write=False)
    return table


def radial_otf(z: np.ndarray, beta: float) -> np.ndarray:
    """The unit-flux Moffat transfer function ``2/Γ(ν) (z/2)^ν K_ν(z)``, ν = beta - 1.

    Large arrays are interpolated (in log z) from a table of 3000 exact values,
    accurate to about 1e-6; Bessel functions are slow.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.size <= 256:
        return _radial_exact(z, beta)
    table = _radial_table(round(float(beta), 4))  # beta to 1e-4: OTF error < 1e-4
    out = np.interp(np.log(np.maximum(z, 1e-7)), _LOGZ, table, right=0.0)
    return np.where(z < 1e-7, 1.0, out)


def pixel_otf(qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Transfer function of integration over a square pixel."""
    return np.sinc(qx) * np.sinc(qy)


def folded(fn, qx: np.ndarray, qy: np.ndarray, cross: bool = False) -> np.ndarray:
    """Sum of ``fn(qx + mx, qy + my)`` over the first aliases (|m| <= 1).

    The DFT of a pixel-sampled image is the continuous transfer function
    folded into the Nyquist band; without the folding a rendering is
    band-limited rather than the exact pixel samples (an error of about 1 % of
    the peak for a 2 px FWHM star). ``cross`` adds the four diagonal aliases,
    which are products of two small factors and usually negligible.
    """
    offs = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    if cross:
        offs += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    return sum(fn(qx + mx, qy + my) for mx, my in offs)


def kernel_size_for(fwhm: float, beta: float, ellipticity: float = 0.0, reach: float = 1e-4) -> int:
    """Odd kernel size holding the profile out to where it falls below
    ``reach`` of its peak (capped to keep kernels practical)."""
    major, _ = axis_fwhms(fwhm, ellipticity)
    alpha = alpha_from_fwhm(major, beta)
    r = alpha * np.sqrt(reach ** (-1.0 / beta) - 1.0)
    size = int(np.clip(2 * np.ceil(r) + 1, 9, 255))
    return size | 1


def moffat_kernel(
    fwhm: float,
    beta: float,
    ellipticity: float = 0.0,
    angle: float = 0.0,
    size: int | None = None,
    shift: tuple[float, float] = (0.0, 0.0),
    normalize: bool = True,
) -> np.ndarray:
    """Pixel-integrated elliptical Moffat on an odd ``size`` x ``size`` grid.

    Rendered in Fourier space (aliases folded in, so the values are the exact
    pixel integrals) on a grid twice the size (so the wrapped wings are
    negligible), then cropped. The centre is the middle pixel plus
    ``shift`` = (dy, dx) pixels. With ``normalize`` the kernel sums to 1;
    otherwise it holds the profile's flux that falls inside the grid.

    Returns
    -------
    (size, size) ndarray of float64
    """
    if size is None:
        size = kernel_size_for(fwhm, beta, ellipticity)
    size = int(size) | 1
    big = 2 * size
    q = np.fft.fftfreq(big)
    qy, qx = q[:, None], q[None, :]
    dy, dx = shift

    def fn(u, v):
        o = moffat_otf(u, v, fwhm, beta, ellipticity, angle) * pixel_otf(u, v)
        if dx or dy:
            o = o * np.exp(-2j * np.pi * (u * dx + v * dy))
        return o

    otf = folded(fn, qx, qy, cross=True)
    img = np.fft.ifft2(otf).real
    img = np.fft.fftshift(img)
    c = big // 2
    h = size // 2
    k = img[c - h : c + h + 1, c - h : c + h + 1]
    if normalize:
        k = k / k.sum()
    return k


def moffat_image(
    shape: tuple[int, int],
    x0: float,
    y0: float,
    flux: float,
    fwhm: float,
    beta: float,
    ellipticity: float = 0.0,
    angle: float = 0.0,
    background: float = 0.0,
    oversample: int = 5,
) -> np.ndarray:
    """Pixel-integrated elliptical Moffat of total ``flux`` centred at (x0, y0),
    evaluated in real space with ``oversample`` x ``oversample`` sub-pixels.

    This is the model that star fits use; ``flux`` is the profile's total
    (infinite-aperture) flux, so a small image holds less than ``flux``.

    Returns
    -------
    (H, W) ndarray of float64
    """
    h, w = shape
    a, b = _axis_alphas(fwhm, beta, ellipticity)
    t = np.deg2rad(angle)
    c, s = np.cos(t), np.sin(t)
    o = (np.arange(oversample) + 0.5) / oversample - 0.5
    ys = (np.arange(h)[:, None] + o[None, :]).ravel() - y0
    xs = (np.arange(w)[:, None] + o[None, :]).ravel() - x0
    u = xs[None, :] * c + ys[:, None] * s
    v = -xs[None, :] * s + ys[:, None] * c
    prof = (beta - 1.0) / (np.pi * a * b) * (1.0 + (u / a) ** 2 + (v / b) ** 2) ** (-beta)
    img = prof.reshape(h, oversample, w, oversample).mean(axis=(1, 3))
    return flux * img + background
