"""Rendering a scene through a PSF (the observation) and at target PSFs (the
truth), with sub-pixel accuracy, plus the noise model.

Stars are rendered one stamp each, exactly in Fourier space (pixel
integration, sub-pixel position and the PSF at the star's own place). The
non-stellar layer is convolved with the PSF of every node and the results are
blended with bilinear weights, the standard model of a slowly varying PSF.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import special

from ..params import SharpenParams, nonstellar_target, stellar_target
from ..psf.field import PARAM_NAMES
from ..psf.moffat import radial_otf
from .optics import PSFModel, _blend, otf_grid
from .scene import Scene

__all__ = ["Observation", "Truth", "observe", "render_source", "render_target", "target_params"]

_STAMPS = (32, 64, 128, 256, 512)


_ALIASES = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def _moffat_otf_batch(qx, qy, fwhm, beta, alias=(0, 0)) -> np.ndarray:
    """Round Moffat OTFs at ``q + alias`` for a batch: fwhm, beta (B,) -> (B, n, m)."""
    return _moffat_otf_batch_continuous(qx + alias[0], qy + alias[1], fwhm, beta)


def _moffat_otf_batch_continuous(qx, qy, fwhm, beta) -> np.ndarray:
    """Round pixel-integrated Moffat OTFs for a batch: fwhm, beta (B,) -> (B, n, m)."""
    fwhm = np.atleast_1d(np.asarray(fwhm, float))
    beta = np.atleast_1d(np.asarray(beta, float))
    q = np.hypot(qx, qy)
    pix = np.sinc(qx) * np.sinc(qy)
    out = np.empty((len(fwhm),) + np.broadcast(qx, qy).shape)
    for k in range(len(fwhm)):
        alpha = fwhm[k] / (2.0 * np.sqrt(2.0 ** (1.0 / beta[k]) - 1.0))
        out[k] = radial_otf(2 * np.pi * alpha * q, beta[k]) * pix
    return out


def _stamp_sizes(flux: np.ndarray, fwhm: np.ndarray, beta: np.ndarray, extra: float, tol: float) -> np.ndarray:
    """Smallest FFT stamp per star whose edge brightness is below ``tol``."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    out = np.full(len(flux), _STAMPS[-1])
    for n in reversed(_STAMPS):
        r = n / 2.0 - extra
        edge = flux * (beta - 1) / (np.pi * alpha**2) * (1 + (np.maximum(r, 1) / alpha) ** 2) ** (-beta)
        ok = (edge < tol) & (r > 2 * fwhm)
        out[ok] = n
    return out


def _add_stamps(canvas: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, n: int, otfs: list) -> None:
    """Add stars (canvas coordinates) rendered from their centred OTFs.

    ``otfs`` is a list of (alias (mx, my), (B, n, n) OTF sampled at q + alias);
    the sub-pixel shift is applied to each alias with its own phase, so the
    stamps are the exact pixel integrals rather than band-limited.
    """
    q = np.fft.fftfreq(n)
    ix = np.round(x).astype(int)
    iy = np.round(y).astype(int)
    dx = (x - ix)[:, None, None]
    dy = (y - iy)[:, None, None]
    phase = np.exp(-2j * np.pi * (q[None, None, :] * dx + q[None, :, None] * dy))
    total = 0
    for (mx, my), o in otfs:
        if mx or my:
            o = o * np.exp(-2j * np.pi * (mx * dx + my * dy))
        total = total + o
    stamps = np.fft.fftshift(np.fft.ifft2(total * phase).real, axes=(1, 2)) * flux[:, None, None]
    h, w = canvas.shape
    c = n // 2
    for k in range(len(x)):
        y0, x0 = iy[k] - c, ix[k] - c
        ys0, xs0 = max(0, y0), max(0, x0)
        ys1, xs1 = min(h, y0 + n), min(w, x0 + n)
        if ys1 <= ys0 or xs1 <= xs0:
            continue
        canvas[ys0:ys1, xs0:xs1] += stamps[k, ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]


def _render_star_layer(scene: Scene, sigma: float, otf_fn, sizes_fn) -> np.ndarray:
    """Stars of ``scene`` on its canvas: otf_fn(channel, idx, n) -> (B, n, n)."""
    C = scene.channels
    m = scene.margin
    h, w = scene.shape
    out = np.zeros((C, h + 2 * m, w + 2 * m))
    if len(scene.star_x) == 0:
        return out
    sizes = sizes_fn()
    for c in range(C):
        for n in np.unique(sizes):
            idx = np.nonzero(sizes == n)[0]
            for b in range(0, len(idx), 48):
                sel = idx[b : b + 48]
                otfs = otf_fn(c, sel, int(n))
                _add_stamps(out[c], scene.star_x[sel] + m, scene.star_y[sel] + m, scene.star_flux[c, sel], int(n), otfs)
    return out


def _canvas_weights(psf: PSFModel, scene: Scene) -> tuple[np.ndarray, ...]:
    m = scene.margin
    h, w = scene.shape
    yy = np.arange(-m, h + m, dtype=float)
    xx = np.arange(-m, w + m, dtype=float)
    iy, _, fy, _ = psf.weights(yy, np.zeros_like(yy) + psf.xs[0])
    _, ix, _, fx = psf.weights(np.zeros_like(xx) + psf.ys[0], xx)
    return iy, ix, fy, fx


def _render_extended(scene: Scene, psf: PSFModel, otf_fn) -> np.ndarray:
    """Non-stellar layer blurred by node PSFs and blended bilinearly.

    otf_fn(channel, iy, ix, qx, qy) -> complex OTF on the rfft grid.
    """
    C = scene.channels
    sky = scene.nonstellar
    hc, wc = sky.shape[1:]
    out = np.zeros_like(sky)
    if not np.any(sky):
        return out
    qy = np.fft.fftfreq(hc)[:, None]
    qx = np.fft.rfftfreq(wc)[None, :]
    iy, ix, fy, fx = _canvas_weights(psf, scene)
    ny, nx = len(psf.ys), len(psf.xs)
    for c in range(C):
        spec = sfft.rfft2(sky[c], workers=1)
        for jy in range(ny):
            wy = np.where(iy == jy, 1 - fy, 0.0) + np.where((iy + 1 == jy) & (ny > 1), fy, 0.0)
            if ny == 1:
                wy = np.ones(hc)
            if not wy.any():
                continue
            for jx in range(nx):
                wx = np.where(ix == jx, 1 - fx, 0.0) + np.where((ix + 1 == jx) & (nx > 1), fx, 0.0)
                if nx == 1:
                    wx = np.ones(wc)
                if not wx.any():
                    continue
                conv = sfft.irfft2(spec * otf_fn(c, jy, jx, qx, qy), s=(hc, wc), workers=1)
                out[c] += conv * wy[:, None] * wx[None, :]
    return out


def _crop(scene: Scene, a: np.ndarray) -> np.ndarray:
    m = scene.margin
    h, w = scene.shape
    return a[:, m : m + h, m : m + w]


def render_source(scene: Scene, psf: PSFModel, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free stars and non-stellar layers at the source PSF.

    Returns
    -------
    stars, nonstellar : (C, H, W) ndarray of float64
    """
    # stamp sizes from the widest node PSF
    os_ = [o for ch in psf.optics for row in ch for o in row]
    fw = max(o.fwhm / np.sqrt(1 - o.ellipticity) for o in os_)
    be = min(o.beta for o in os_)
    extra = max(o.trail + 2 * o.defocus + abs(o.coma_dx) + abs(o.coma_dy) + abs(o.shift_x) + abs(o.shift_y) + o.trefoil_r for o in os_)
    tol = 0.02 * sigma
    cache: dict = {}

    fold = min(o.fwhm for o in os_) < 4.5

    def otf_fn(c, sel, n):
        w = psf.weights(scene.star_y[sel], scene.star_x[sel])
        out = []
        for a in _ALIASES if fold else _ALIASES[:1]:
            key = (c, n, a)
            if key not in cache:
                cache[key] = psf.node_otfs(n, c, centred=False, alias=a)
            out.append((a, _blend(cache[key], *w)))
        return out

    def sizes():
        return _stamp_sizes(scene.star_flux.max(0), np.full(len(scene.star_x), fw), np.full(len(scene.star_x), be), extra, tol)

    stars = _render_star_layer(scene, sigma, otf_fn, sizes)
    # the non-stellar sky is band-limited by construction: no alias folding
    ext = _render_extended(scene, psf, lambda c, jy, jx, qx, qy: otf_grid(psf.optics[c][jy][jx], qx, qy, centred=False, fold=False))
    return _crop(scene, stars), _crop(scene, ext)


def target_params(psf: PSFModel, params: SharpenParams, y: np.ndarray, x: np.ndarray, channels_equal: bool = True) -> dict[str, np.ndarray]:
    """Target PSF parameters at points for both layers.

    The source FWHM F and beta are the Moffat fit of the true PSF there. In
    colour, correct-only gives every channel the median of the channels' FWHM.

    Returns
    -------
    dict of (C, N) arrays: star_fwhm, star_beta, neb_fwhm, neb_beta
    """
    p = psf.params_at(np.atleast_1d(y), np.atleast_1d(x))  # (C, P, N)
    F = p[:, PARAM_NAMES.index("fwhm")]
    B = p[:, PARAM_NAMES.index("beta")]
    if params.psf_diameter is not None:
        Fn = np.full_like(F, float(params.psf_diameter))
    else:
        Fn = F
    if params.correct_only:
        Fc = np.median(F, axis=0, keepdims=True).repeat(F.shape[0], 0) if channels_equal else F
        return {"star_fwhm": Fc, "star_beta": B, "neb_fwhm": Fc, "neb_beta": B}
    sf, sb = stellar_target(F, B, params.sharpen_stars, params.adjust_halos)
    nf = nonstellar_target(Fn, params.sharpen_nonstellar)
    if params.psf_diameter is not None and params.psf_diameter == 0:
        nf = F  # D = 0: non-stellar structure left at its own (round) PSF
    return {"star_fwhm": sf, "star_beta": sb, "neb_fwhm": np.asarray(nf, float), "neb_beta": B}


def render_target(scene: Scene, psf: PSFModel, params: SharpenParams, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free stars and non-stellar layers at the target PSFs of ``params``.

    Stars are round Moffats at their true positions (no chromatic shift); the
    non-stellar target varies across the field like the source.

    Returns
    -------
    stars, nonstellar : (C, H, W) ndarray of float64
    """
    tp = target_params(psf, params, scene.star_y, scene.star_x) if len(scene.star_x) else None

    def otf_fn(c, sel, n):
        q = np.fft.fftfreq(n)
        fw, be = tp["star_fwhm"][c, sel], tp["star_beta"][c, sel]
        aliases = _ALIASES if fw.min() < 4.5 else _ALIASES[:1]
        return [(a, _moffat_otf_batch(q[None, :], q[:, None], fw, be, a)) for a in aliases]

    def sizes():
        return _stamp_sizes(scene.star_flux.max(0), tp["star_fwhm"].max(0), tp["star_beta"].min(0), 0.0, 0.02 * sigma)

    stars = _render_star_layer(scene, sigma, otf_fn, sizes)
    ny, nx = len(psf.ys), len(psf.xs)
    gy, gx = np.meshgrid(psf.ys, psf.xs, indexing="ij")
    node_t = target_params(psf, params, gy.ravel(), gx.ravel())

    def ext_fn(c, jy, jx, qx, qy):
        k = jy * nx + jx
        return _moffat_otf_batch(qx, qy, [node_t["neb_fwhm"][c, k]], [node_t["neb_beta"][c, k]])[0]

    ext = _render_extended(scene, psf, ext_fn)
    return _crop(scene, stars), _crop(scene, ext)


@dataclass
class Observation:
    """A simulated exposure and everything known about it.

    Attributes
    ----------
    image : (C, H, W) float32, the noisy input (clipped at ``saturation``)
    clean_stars, clean_nonstellar : (C, H, W) noise-free layers at the source PSF
    background : (C, H, W) the background (level + gradient), unblurred
    noise : (C, H, W) the noise realisation (image = clip(clean + background + noise))
    sigma : (C,) background noise standard deviation
    gain : (C,) image units -> detected counts (Poisson variance = signal / gain)
    read_noise : (C,) read noise in image units
    saturation : float, the clipping level
    saturated : (C, H, W) bool, pixels at the clipping level
    """

    image: np.ndarray
    clean_stars: np.ndarray
    clean_nonstellar: np.ndarray
    background: np.ndarray
    noise: np.ndarray
    sigma: np.ndarray
    gain: np.ndarray
    read_noise: np.ndarray
    saturation: float
    saturated: np.ndarray

    @property
    def clean(self) -> np.ndarray:
        return self.clean_stars + self.clean_nonstellar + self.background


@dataclass
class Truth:
    """Noise-free layers at the target PSF; ``image`` adds the background."""

    stars: np.ndarray
    nonstellar: np.ndarray
    background: np.ndarray

    @property
    def image(self) -> np.ndarray:
        return self.stars + self.nonstellar + self.background


def noise_model(sigma: np.ndarray, level: np.ndarray, poisson_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Gain and read noise giving background noise ``sigma`` at background
    ``level`` with ``poisson_fraction`` of the variance from photon noise."""
    sigma = np.asarray(sigma, float)
    level = np.maximum(np.asarray(level, float), 1e-12)
    gain = level / (poisson_fraction * sigma**2)
    read = sigma * np.sqrt(1 - poisson_fraction)
    return gain, read


def observe(
    scene: Scene,
    psf: PSFModel,
    rng: np.random.Generator,
    *,
    sigma: float | np.ndarray = 1e-3,
    background: float | np.ndarray = 0.02,
    gradient: float = 0.1,
    poisson_fraction: float = 0.7,
    saturation: float = 1.0,
    poisson: bool = True,
) -> Observation:
    """Blur the scene with ``psf``, add background, photon and read noise, clip.

    Parameters
    ----------
    sigma : background noise std (image units), per channel or one value.
    background : background level (image units), per channel or one value.
    gradient : peak-to-peak amplitude of the gradient as a fraction of the level.
    poisson_fraction : share of the background variance from photon noise.
    saturation : clipping level (image units).
    poisson : draw true Poisson counts (else a Gaussian approximation).
    """
    C = scene.channels
    sig = np.broadcast_to(np.asarray(sigma, float), (C,)).copy()
    lvl = np.broadcast_to(np.asarray(background, float), (C,)).copy()
    stars, neb = render_source(scene, psf, float(sig.min()))
    bg = lvl[:, None, None] * (1 + gradient * 0.5 * scene.gradient)
    gain, read = noise_model(sig, lvl, poisson_fraction)
    clean = stars + neb + bg
    if poisson:
        counts = rng.poisson(np.clip(clean, 0, None) * gain[:, None, None])
        noisy = counts / gain[:, None, None] + rng.standard_normal(clean.shape) * read[:, None, None]
    else:
        var = read[:, None, None] ** 2 + np.clip(clean, 0, None) / gain[:, None, None]
        noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(var)
    noise = noisy - clean
    image = np.minimum(noisy, saturation)
    return Observation(
        image=image.astype(np.float32),
        clean_stars=stars,
        clean_nonstellar=neb,
        background=bg,
        noise=noise,
        sigma=sig,
        gain=gain,
        read_noise=read,
        saturation=float(saturation),
        saturated=(noisy >= saturation),
    )


def truth_for(scene: Scene, psf: PSFModel, obs: Observation, params: SharpenParams) -> Truth:
    """The truth at the target PSF of ``params`` for an observation."""
    s, n = render_target(scene, psf, params, float(obs.sigma.min()))
    return Truth(stars=s, nonstellar=n, background=obs.background)
