"""Synthetic point spread functions: Moffat seeing combined with optical
aberrations, guiding blur and lateral chromatic shift, varying across the field.

Every PSF is built in Fourier space, where each ingredient is a factor of the
optical transfer function (OTF):

* seeing: an elliptical Moffat (:func:`astrosharp.psf.moffat.moffat_otf`);
* defocus: a uniformly lit annulus (the out-of-focus image of an obstructed
  aperture), ``(R² jinc(2πRq) - (εR)² jinc(2πεRq)) / (R² - (εR)²)``;
* astigmatism: an elongation of the seeing core (its ellipticity and angle);
* coma: a one-sided flare, a fraction ``w`` of the light in a wider copy of
  the core displaced by ``d`` along the field radius;
* trefoil: three copies displaced by ``r`` at 120 degrees;
* guiding blur: a line segment of length ``L`` (``sinc(L q∥)``);
* lateral chromatic shift: a phase ramp per channel;
* pixel integration: ``sinc(qx) sinc(qy)``.

A kernel is recentred on its own flux centroid (before the chromatic shift), so
the "true position" of a star is the centroid of its image in the green (or
only) channel: deconvolution must keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize, special

from ..psf.field import ORIGINS, PARAM_NAMES, PSFField
from ..psf.moffat import folded, moffat_image, moffat_otf, pixel_otf

__all__ = ["Optics", "PSFModel", "make_psf_model", "otf_grid", "kernel_from_otf", "fit_kernel", "asymmetry"]


@dataclass(frozen=True)
class Optics:
    """The PSF at one place and channel.

    fwhm, beta, ellipticity, angle describe the Moffat seeing core (pixels,
    -, -, degrees); the other fields are aberrations in pixels.
    """

    fwhm: float = 3.0
    beta: float = 3.0
    ellipticity: float = 0.0
    angle: float = 0.0
    defocus: float = 0.0  # outer radius of the defocus annulus
    obstruction: float = 0.35  # inner/outer radius of the annulus
    coma: float = 0.0  # fraction of light in the flare
    coma_dx: float = 0.0
    coma_dy: float = 0.0
    trefoil: float = 0.0  # fraction of light in the three lobes
    trefoil_r: float = 0.0
    trefoil_angle: float = 0.0
    trail: float = 0.0  # guiding blur length
    trail_angle: float = 0.0
    shift_x: float = 0.0  # lateral chromatic shift
    shift_y: float = 0.0

    @property
    def is_moffat(self) -> bool:
        """True when the PSF is a plain elliptical Moffat (no aberration, no trail)."""
        return not (self.defocus > 0 or self.coma > 0 or self.trefoil > 0 or self.trail > 0)


def _jinc(x: np.ndarray) -> np.ndarray:
    out = np.ones_like(x)
    nz = np.abs(x) > 1e-9
    out[nz] = 2.0 * special.j1(x[nz]) / x[nz]
    return out


def otf_grid(o: Optics, qx: np.ndarray, qy: np.ndarray, centred: bool = True, fold: bool | None = None) -> np.ndarray:
    """Complex OTF of ``o`` folded to the Nyquist band where the PSF is sharp
    enough for aliasing to matter (see :func:`astrosharp.psf.moffat.folded`)."""
    if fold is None:
        fold = o.fwhm < 4.5
    if fold:
        return folded(lambda u, v: _otf_continuous(o, u, v, centred), qx, qy)
    return _otf_continuous(o, qx, qy, centred)


def _otf_continuous(o: Optics, qx: np.ndarray, qy: np.ndarray, centred: bool = True) -> np.ndarray:
    """Complex OTF of ``o`` (pixel integration included) at frequencies (cycles/px).

    With ``centred`` the result carries no chromatic shift; the flare of coma is
    compensated so the kernel's flux centroid is at the origin.
    """
    core = moffat_otf(qx, qy, o.fwhm, o.beta, o.ellipticity, o.angle)
    otf = core.astype(np.complex128)
    if o.coma > 0:
        wide = moffat_otf(qx, qy, o.fwhm * 1.6, o.beta, o.ellipticity, o.angle)
        flare = wide * np.exp(-2j * np.pi * (qx * o.coma_dx + qy * o.coma_dy))
        otf = (1 - o.coma) * otf + o.coma * flare
        # recentre on the flux centroid (shift of the mixture's first moment)
        cx, cy = o.coma * o.coma_dx, o.coma * o.coma_dy
        otf = otf * np.exp(2j * np.pi * (qx * cx + qy * cy))
    if o.trefoil > 0:
        lobes = 0
        for k in range(3):
            a = np.deg2rad(o.trefoil_angle) + 2 * np.pi * k / 3
            lobes = lobes + np.exp(-2j * np.pi * o.trefoil_r * (qx * np.cos(a) + qy * np.sin(a)))
        otf = otf * ((1 - o.trefoil) + o.trefoil * lobes / 3)
    if o.defocus > 0:
        q = np.hypot(qx, qy)
        r1, r0 = o.defocus, o.defocus * o.obstruction
        otf = otf * (r1**2 * _jinc(2 * np.pi * r1 * q) - r0**2 * _jinc(2 * np.pi * r0 * q)) / (r1**2 - r0**2)
    if o.trail > 0:
        a = np.deg2rad(o.trail_angle)
        otf = otf * np.sinc(o.trail * (qx * np.cos(a) + qy * np.sin(a)))
    otf = otf * pixel_otf(qx, qy)
    if not centred and (o.shift_x or o.shift_y):
        otf = otf * np.exp(-2j * np.pi * (qx * o.shift_x + qy * o.shift_y))
    return otf


def kernel_from_otf(otf: np.ndarray, size: int) -> np.ndarray:
    """Real kernel of odd ``size`` from an OTF sampled on an FFT grid (origin at
    [0, 0]), centred on the middle pixel."""
    img = np.fft.fftshift(np.fft.ifft2(otf).real)
    n = img.shape[0]
    c, h = n // 2, size // 2
    return img[c - h : c + h + 1, c - h : c + h + 1]


def asymmetry(stamp: np.ndarray, x0: float | None = None, y0: float | None = None) -> tuple[float, float]:
    """Coma-like asymmetry vector of a background-free star image.

    ``(M30 + M12, M21 + M03) / (M20 + M02) ** 1.5`` with central moments
    about the flux centroid (or (x0, y0)) of the pixels within twice the
    second-moment radius; 0 for any point-symmetric PSF, positive along the
    direction of the flare.
    """
    h, w = stamp.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    f = np.clip(stamp, 0, None)
    tot = f.sum()
    if tot <= 0:
        return 0.0, 0.0
    if x0 is None or y0 is None:
        x0 = (f * xx).sum() / tot
        y0 = (f * yy).sum() / tot
    dx, dy = xx - x0, yy - y0
    r2 = dx * dx + dy * dy
    m2 = (f * r2).sum() / tot
    sel = r2 <= 4.0 * m2 * 2.0
    f = f * sel
    tot = f.sum()
    m20 = (f * dx * dx).sum() / tot
    m02 = (f * dy * dy).sum() / tot
    m30 = (f * dx**3).sum() / tot
    m12 = (f * dx * dy * dy).sum() / tot
    m21 = (f * dx * dx * dy).sum() / tot
    m03 = (f * dy**3).sum() / tot
    s = (m20 + m02) ** 1.5
    return float((m30 + m12) / s), float((m21 + m03) / s)


BETA_FIT = (1.1, 20.0)
"""Bounds of the fitted beta, as in the star measurement."""


def fit_kernel(kernel: np.ndarray, guess: Optics) -> dict[str, float]:
    """Fit a pixel-integrated elliptical Moffat to a noise-free centred kernel.

    This is what an ideal measurement finds for an aberrated PSF; the fitted
    FWHM and beta define the "source PSF" that sharpening targets refer to.

    Returns
    -------
    dict with fwhm, beta, ellipticity, angle (degrees), asym_x, asym_y
    """
    n = kernel.shape[0]
    c = n // 2
    e0 = min(guess.ellipticity, 0.6)
    t0 = np.deg2rad(guess.angle)
    # beta = lo + (hi - lo) * sigmoid(p1) stays within the measurement's bounds
    # (astrosharp.psf.fit.BETA_BOUNDS): a defocused or trailed PSF otherwise
    # drifts to beta -> infinity (a Gaussian)
    blo, bhi = BETA_FIT
    g = np.clip((guess.beta - blo) / (bhi - blo), 0.02, 0.98)
    p0 = np.array([np.log(guess.fwhm), np.log(g / (1 - g)), e0 * np.cos(2 * t0), e0 * np.sin(2 * t0), np.log(kernel.sum()), 0.0, 0.0])

    def model(p):
        fwhm, beta = np.exp(p[0]), blo + (bhi - blo) / (1.0 + np.exp(-p[1]))
        e = min(np.hypot(p[2], p[3]), 0.95)
        ang = np.rad2deg(0.5 * np.arctan2(p[3], p[2]))
        return moffat_image((n, n), c + p[5], c + p[6], np.exp(p[4]), fwhm, beta, e, ang, oversample=3)

    def resid(p):
        return (model(p) - kernel).ravel()

    res = optimize.least_squares(resid, p0, method="lm", x_scale="jac", max_nfev=400)
    p = res.x
    e = float(min(np.hypot(p[2], p[3]), 0.95))
    ax, ay = asymmetry(kernel)
    return {
        "fwhm": float(np.exp(p[0])),
        "beta": float(blo + (bhi - blo) / (1.0 + np.exp(-p[1]))),
        "ellipticity": e,
        "angle": float(np.rad2deg(0.5 * np.arctan2(p[3], p[2])) % 180.0),
        "asym_x": ax,
        "asym_y": ay,
    }


def _fit_size(o: Optics) -> int:
    reach = o.fwhm / np.sqrt(max(1e-3, 1 - o.ellipticity)) * 2.0 + o.trail + 2 * o.defocus + 2 * abs(o.coma_dx) + 2 * abs(o.coma_dy) + o.trefoil_r
    return int(np.clip(2 * np.ceil(reach) + 1, 15, 61)) | 1


@dataclass
class PSFModel:
    """A field-varying PSF: :class:`Optics` at a grid of nodes per channel,
    blended bilinearly (in Fourier space) between nodes.

    Attributes
    ----------
    shape : (H, W)
    ys, xs : node rows and columns (pixels), increasing
    optics : list (per channel) of 2-D lists [iy][ix] of Optics
    """

    shape: tuple[int, int]
    ys: np.ndarray
    xs: np.ndarray
    optics: list[list[list[Optics]]]
    _fits: dict = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> int:
        return len(self.optics)

    def weights(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Bilinear node weights: (iy0, ix0, fy, fx) for points (clamped to the node range)."""
        y = np.clip(np.asarray(y, float), self.ys[0], self.ys[-1])
        x = np.clip(np.asarray(x, float), self.xs[0], self.xs[-1])
        iy = np.clip(np.searchsorted(self.ys, y, side="right") - 1, 0, max(len(self.ys) - 2, 0))
        ix = np.clip(np.searchsorted(self.xs, x, side="right") - 1, 0, max(len(self.xs) - 2, 0))
        if len(self.ys) > 1:
            fy = (y - self.ys[iy]) / (self.ys[iy + 1] - self.ys[iy])
        else:
            fy = np.zeros_like(y)
        if len(self.xs) > 1:
            fx = (x - self.xs[ix]) / (self.xs[ix + 1] - self.xs[ix])
        else:
            fx = np.zeros_like(x)
        return iy, ix, fy, fx

    def node_otfs(self, n: int, channel: int, centred: bool = False, alias: tuple[int, int] | None = None) -> np.ndarray:
        """OTFs of all nodes on an n x n FFT grid: (ny, nx, n, n) complex.

        ``alias`` = (mx, my) samples the continuous OTF at q + m (no folding);
        None gives the folded OTF.
        """
        q = np.fft.fftfreq(n)
        qy, qx = q[:, None], q[None, :]
        if alias is None:
            return np.array([[otf_grid(o, qx, qy, centred=centred) for o in row] for row in self.optics[channel]])
        mx, my = alias
        return np.array([[_otf_continuous(o, qx + mx, qy + my, centred=centred) for o in row] for row in self.optics[channel]])

    def kernel(self, y: float, x: float, channel: int = 0, size: int = 41, centred: bool = False) -> np.ndarray:
        """The true pixel-integrated kernel at pixel (y, x), odd ``size``, sum 1
        (wings beyond the kernel folded in), including the channel's chromatic
        shift unless ``centred``."""
        n = 2 * size
        otfs = self.node_otfs(n, channel, centred)
        otf = _blend(otfs, *self.weights(np.array([y]), np.array([x])))[0]
        k = kernel_from_otf(otf, size)
        return k / k.sum()

    def node_fit(self, iy: int, ix: int, channel: int) -> dict[str, float]:
        """Moffat fit of the true (centred) kernel at a node, cached."""
        key = (iy, ix, channel)
        if key not in self._fits:
            o = self.optics[channel][iy][ix]
            if o.is_moffat:
                self._fits[key] = {
                    "fwhm": o.fwhm,
                    "beta": o.beta,
                    "ellipticity": o.ellipticity,
                    "angle": o.angle % 180.0,
                    "asym_x": 0.0,
                    "asym_y": 0.0,
                }
            else:
                size = _fit_size(o)
                q = np.fft.fftfreq(2 * size)
                k = kernel_from_otf(otf_grid(o, q[None, :], q[:, None], centred=True), size)
                self._fits[key] = fit_kernel(k, o)
        return self._fits[key]

    def field(self) -> PSFField:
        """The PSF field an ideal measurement would find (Moffat fits of the true
        kernels at the nodes)."""
        C, ny, nx = self.channels, len(self.ys), len(self.xs)
        vals = np.zeros((C, len(PARAM_NAMES), ny, nx))
        for c in range(C):
            for iy in range(ny):
                for ix in range(nx):
                    f = self.node_fit(iy, ix, c)
                    t = np.deg2rad(f["angle"])
                    vals[c, :, iy, ix] = [
                        f["fwhm"],
                        f["beta"],
                        f["ellipticity"] * np.cos(2 * t),
                        f["ellipticity"] * np.sin(2 * t),
                        f["asym_x"],
                        f["asym_y"],
                    ]
        return PSFField(
            shape=self.shape,
            ys=np.asarray(self.ys, float),
            xs=np.asarray(self.xs, float),
            values=vals,
            counts=np.zeros((C, ny, nx), dtype=int),
            scatter=np.zeros_like(vals),
            origin=np.full((C, ny, nx), ORIGINS.index("own"), dtype=int),
            notes=["true PSF of the simulator"],
        )

    def params_at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Fitted Moffat parameters bilinearly interpolated at points.

        Returns
        -------
        (C, P, N) ndarray in PARAM_NAMES order (e1, e2 rather than e, angle)
        """
        f = self.field().values  # (C, P, ny, nx)
        iy, ix, fy, fx = self.weights(y, x)
        if f.shape[2] == 1 and f.shape[3] == 1:
            return np.repeat(f[:, :, 0, 0][:, :, None], len(np.atleast_1d(y)), axis=2)
        iy1 = np.minimum(iy + 1, f.shape[2] - 1)
        ix1 = np.minimum(ix + 1, f.shape[3] - 1)
        return (
            f[:, :, iy, ix] * (1 - fy) * (1 - fx)
            + f[:, :, iy, ix1] * (1 - fy) * fx
            + f[:, :, iy1, ix] * fy * (1 - fx)
            + f[:, :, iy1, ix1] * fy * fx
        )

    def moffat_at(self, y: float, x: float, channel: int = 0) -> dict[str, float]:
        """Fitted Moffat parameters at one pixel (fwhm, beta, ellipticity, angle)."""
        p = self.params_at(np.array([y]), np.array([x]))[channel, :, 0]
        d = dict(zip(PARAM_NAMES, p.tolist()))
        return {
            "fwhm": d["fwhm"],
            "beta": d["beta"],
            "ellipticity": float(np.hypot(d["e1"], d["e2"])),
            "angle": float(np.rad2deg(0.5 * np.arctan2(d["e2"], d["e1"])) % 180.0),
            "asym_x": d["asym_x"],
            "asym_y": d["asym_y"],
        }


def _blend(otfs: np.ndarray, iy, ix, fy, fx) -> np.ndarray:
    """Bilinear blend of node OTFs (ny, nx, n, n) at points -> (N, n, n)."""
    ny, nx = otfs.shape[:2]
    iy1 = np.minimum(iy + 1, ny - 1)
    ix1 = np.minimum(ix + 1, nx - 1)
    w00 = ((1 - fy) * (1 - fx))[:, None, None]
    w01 = ((1 - fy) * fx)[:, None, None]
    w10 = (fy * (1 - fx))[:, None, None]
    w11 = (fy * fx)[:, None, None]
    return w00 * otfs[iy, ix] + w01 * otfs[iy, ix1] + w10 * otfs[iy1, ix] + w11 * otfs[iy1, ix1]


def _uniform(rng: np.random.Generator, lo_hi, log: bool = False) -> float:
    lo, hi = (lo_hi, lo_hi) if np.isscalar(lo_hi) else lo_hi
    if log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


def make_psf_model(
    shape: tuple[int, int],
    channels: int,
    rng: np.random.Generator,
    *,
    fwhm: float | tuple[float, float] = (2.0, 8.0),
    beta: float | tuple[float, float] = (1.5, 6.0),
    ellipticity: float | tuple[float, float] = (0.0, 0.4),
    aberrations: bool = True,
    trail: float | tuple[float, float] = 0.0,
    chromatic: bool = True,
    vary: bool = True,
    nodes: int = 3,
    variation: float = 0.2,
) -> PSFModel:
    """A random field-varying PSF model.

    Parameters
    ----------
    shape : (H, W) of the image the model covers.
    channels : 1 or 3.
    rng : numpy Generator (seeded by the caller).
    fwhm, beta, ellipticity : value or (low, high) range of the seeing core at
        the field centre (FWHM in pixels, geometric mean of the axes).
    aberrations : add defocus, coma (growing with field radius, radial),
        astigmatism (tangential ellipticity growing with radius) and trefoil.
    trail : guiding blur length in pixels (value or range); 0 for none.
    chromatic : per-channel seeing differences and lateral chromatic shift.
    vary : the PSF varies across the field (otherwise one node).
    nodes : nodes per axis when varying (2 for a small patch, 3+ for images).
    variation : relative FWHM change from centre to corner.
    """
    h, w = shape
    n = nodes if vary else 1
    ys = np.linspace(0, h - 1, n) if n > 1 else np.array([(h - 1) / 2.0])
    xs = np.linspace(0, w - 1, n) if n > 1 else np.array([(w - 1) / 2.0])
    f0 = _uniform(rng, fwhm, log=True)
    b0 = _uniform(rng, beta)
    e0 = _uniform(rng, ellipticity)
    a0 = float(rng.uniform(0, 180))
    tr = _uniform(rng, trail) if trail else 0.0
    ta = float(rng.uniform(0, 180))
    # field-dependence coefficients
    grow = rng.uniform(-0.3, 1.0) * variation  # FWHM change at the corner
    tilt = rng.normal(0, 0.5 * variation, 2)  # linear gradient (tilt / focus slope)
    astig = rng.uniform(0, 0.15) if aberrations else 0.0
    coma = rng.uniform(0, 0.25) if aberrations and rng.random() < 0.6 else 0.0
    defocus = rng.uniform(0, 0.6) * f0 if aberrations and rng.random() < 0.3 else 0.0
    trefoil = rng.uniform(0, 0.2) if aberrations and rng.random() < 0.3 else 0.0
    tref_a = float(rng.uniform(0, 120))
    if channels == 3 and chromatic:
        seeing = np.array([rng.uniform(-0.08, 0.02), 0.0, rng.uniform(0.0, 0.12)])  # R a bit sharper, B softer
        lat = rng.uniform(0, 0.6)  # lateral shift at the corner, px
    else:
        seeing = np.zeros(channels)
        lat = 0.0
    yc, xc = (h - 1) / 2.0, (w - 1) / 2.0
    rn = 0.5 * np.hypot(h, w)
    optics: list[list[list[Optics]]] = []
    for c in range(channels):
        grid = []
        for y in ys:
            row = []
            for x in xs:
                u, v = (x - xc) / rn, (y - yc) / rn  # -0.7..0.7
                r = np.hypot(u, v)
                phi = np.arctan2(v, u)
                fw = f0 * (1 + grow * r**2 + tilt[0] * u + tilt[1] * v) * (1 + seeing[c])
                fw = float(np.clip(fw, 0.8 * (fwhm if np.isscalar(fwhm) else fwhm[0]), 1.25 * (fwhm if np.isscalar(fwhm) else fwhm[1])))
                # ellipticity: a constant part (tracking, tilt) plus tangential astigmatism
                e1 = e0 * np.cos(2 * np.deg2rad(a0)) + astig * r**2 * np.cos(2 * (phi + np.pi / 2))
                e2 = e0 * np.sin(2 * np.deg2rad(a0)) + astig * r**2 * np.sin(2 * (phi + np.pi / 2))
                e = float(min(np.hypot(e1, e2), 0.6))
                ang = float(np.rad2deg(0.5 * np.arctan2(e2, e1)))
                cm = coma * min(1.0, 2 * r)
                row.append(
                    Optics(
                        fwhm=fw,
                        beta=b0,
                        ellipticity=e,
                        angle=ang,
                        defocus=defocus * (1 + 0.5 * r),
                        coma=cm,
                        coma_dx=0.6 * fw * np.cos(phi),
                        coma_dy=0.6 * fw * np.sin(phi),
                        trefoil=trefoil,
                        trefoil_r=0.4 * fw,
                        trefoil_angle=tref_a,
                        trail=tr,
                        trail_angle=ta,
                        shift_x=float((c - 1) * lat * u / 0.7) if channels == 3 else 0.0,
                        shift_y=float((c - 1) * lat * v / 0.7) if channels == 3 else 0.0,
                    )
                )
            grid.append(row)
        optics.append(grid)
    return PSFModel(shape=(int(h), int(w)), ys=ys, xs=xs, optics=optics)


def uniform_psf_model(shape: tuple[int, int], channels: int, optics: Optics) -> PSFModel:
    """The same PSF everywhere and in every channel."""
    h, w = shape
    return PSFModel(
        shape=(int(h), int(w)),
        ys=np.array([(h - 1) / 2.0]),
        xs=np.array([(w - 1) / 2.0]),
        optics=[[[replace(optics)]] for _ in range(channels)],
    )
