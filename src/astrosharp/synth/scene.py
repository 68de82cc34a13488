"""Synthetic skies: stars, clusters, galaxies, nebulae and background gradients.

A :class:`Scene` is the sky before any blur, in image units (the noise level is
chosen by :func:`astrosharp.synth.observe`). Stars are points (position and
flux per channel); everything else is the non-stellar layer, sampled on the
pixel grid. Scenes are drawn on a canvas larger than the image by ``margin`` on
every side so that light from just outside the frame spills in as it does on a
real sensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Scene", "make_scene", "KINDS", "fractal_noise"]

KINDS = ("stars", "cluster", "galaxies", "nebula", "mixed", "empty")


@dataclass
class Scene:
    """The sky of one image.

    Attributes
    ----------
    shape : (H, W) of the image (the canvas is larger by ``margin`` per side).
    margin : int
    star_x, star_y : (N,) star positions in image pixel coordinates.
    star_flux : (C, N) total flux of each star per channel (image units).
    nonstellar : (C, H + 2 margin, W + 2 margin) the non-stellar sky (image units
        per pixel), before blurring.
    gradient : (C, H, W) smooth background gradient (added unblurred; its mean
        is 0, the level is chosen at observation).
    """

    shape: tuple[int, int]
    margin: int
    star_x: np.ndarray
    star_y: np.ndarray
    star_flux: np.ndarray
    nonstellar: np.ndarray
    gradient: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.star_flux.shape[0])

    def scaled(self, factor: float | np.ndarray) -> "Scene":
        """The same scene with every flux multiplied by ``factor`` (per channel allowed)."""
        f = np.asarray(factor, float).reshape(-1, 1)
        return Scene(
            self.shape,
            self.margin,
            self.star_x,
            self.star_y,
            self.star_flux * f,
            self.nonstellar * f[:, :, None] if f.size > 1 else self.nonstellar * float(f.ravel()[0]),
            self.gradient * (f[:, :, None] if f.size > 1 else float(f.ravel()[0])),
        )


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, slope: float = 3.0, lowcut: float = 2.0) -> np.ndarray:
    """Gaussian random field with power spectrum ``k ** -slope``, zero mean, unit std."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.hypot(ky, kx) * max(h, w)
    amp = (np.maximum(k, lowcut)) ** (-slope / 2.0)
    amp[0, 0] = 0
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    f = np.fft.irfft2(spec, s=(h, w))
    return (f - f.mean()) / (f.std() + 1e-12)


def _star_colours(n: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """(C, n) per-channel flux fractions (sum over channels = channels)."""
    if channels == 1:
        return np.ones((1, n))
    t = np.clip(rng.normal(0.1, 0.45, n), -1, 1)  # blue -1 .. red +1
    col = np.stack([1 + 0.45 * t, np.ones(n), 1 - 0.45 * t])
    return col * (3.0 / col.sum(0))


def _power_fluxes(n: int, lo: float, hi: float, rng: np.random.Generator, index: float = 1.0) -> np.ndarray:
    """Fluxes with cumulative counts N(>F) ∝ F**-index between lo and hi."""
    u = rng.random(n)
    a = lo ** (-index)
    b = hi ** (-index)
    return (a - u * (a - b)) ** (-1.0 / index)


def _sersic(canvas: tuple[int, int], rng: np.random.Generator, x0: float, y0: float, re: float, n_s: float, q: float, pa: float, spiral: float) -> tuple[slice, slice, np.ndarray]:
    """One Sersic galaxy (peak-normalised) in a bounding box; optional spiral arms."""
    h, w = canvas
    rad = int(min(max(6 * re, 8), max(h, w)))
    ys0, ys1 = max(0, int(y0) - rad), min(h, int(y0) + rad + 1)
    xs0, xs1 = max(0, int(x0) - rad), min(w, int(x0) + rad + 1)
    if ys1 <= ys0 or xs1 <= xs0:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0))
    o = np.array([-0.25, 0.25])
    yy = (np.arange(ys0, ys1)[:, None] + o[None, :]).ravel()[:, None] - y0
    xx = (np.arange(xs0, xs1)[:, None] + o[None, :]).ravel()[None, :] - x0
    c, s = np.cos(pa), np.sin(pa)
    u = xx * c + yy * s
    v = (-xx * s + yy * c) / q
    r = np.sqrt(u * u + v * v)
    bn = 2 * n_s - 1 / 3 + 0.009876 / n_s
    img = np.exp(-bn * ((r / re) ** (1 / n_s) - 1))
    if spiral > 0:
        theta = np.arctan2(v, u)
        pitch = np.deg2rad(rng.uniform(12, 30))
        arms = 2
        ph = rng.uniform(0, 2 * np.pi)
        mod = 0.5 * (1 + np.cos(arms * (theta - np.log(r / re + 1e-3) / np.tan(pitch)) + ph))
        img = img * (1 - spiral + spiral * 2 * mod ** 2) * (r > 0.3 * re) + img * (r <= 0.3 * re)
    img = img.reshape(ys1 - ys0, 2, xs1 - xs0, 2).mean(axis=(1, 3))
    return slice(ys0, ys1), slice(xs0, xs1), img / max(img.max(), 1e-12)


def _add_galaxies(sky: np.ndarray, rng: np.random.Generator, count: int, level: tuple[float, float], size: tuple[float, float]) -> None:
    C, h, w = sky.shape
    for _ in range(count):
        re = float(np.exp(rng.uniform(np.log(size[0]), np.log(size[1]))))
        n_s = float(rng.uniform(0.6, 4.0))
        q = float(rng.uniform(0.3, 1.0))
        pa = float(rng.uniform(0, np.pi))
        spiral = float(rng.uniform(0.3, 0.8)) if (n_s < 2 and re > 6 and rng.random() < 0.6) else 0.0
        sy, sx, img = _sersic((h, w), rng, rng.uniform(0, w), rng.uniform(0, h), re, n_s, q, pa, spiral)
        peak = float(np.exp(rng.uniform(np.log(level[0]), np.log(level[1]))))
        col = _star_colours(1, C, rng)[:, 0]
        sky[:, sy, sx] += peak * col[:, None, None] * img


def _add_nebula(sky: np.ndarray, rng: np.random.Generator, level: tuple[float, float]) -> None:
    C, h, w = sky.shape
    peak = float(np.exp(rng.uniform(np.log(level[0]), np.log(level[1]))))
    env = fractal_noise((h, w), rng, slope=4.0)
    env = 1 / (1 + np.exp(-1.5 * (env + rng.uniform(-0.5, 1.0))))  # where the cloud is
    body = np.exp(0.8 * fractal_noise((h, w), rng, slope=rng.uniform(2.4, 3.2)))
    # filaments: ridges (zero crossings) of smooth random fields, 0.7 to 3 px wide
    filaments = np.zeros((h, w))
    for _ in range(2):
        g = fractal_noise((h, w), rng, slope=rng.uniform(3.6, 4.6))
        gy, gx = np.gradient(g)
        dist = np.abs(g) / (np.hypot(gx, gy) + 1e-6)  # distance to the ridge in pixels
        width = rng.uniform(0.7, 3.0)
        strength = np.clip(0.5 + 0.5 * fractal_noise((h, w), rng, slope=3.5), 0, None)
        filaments += strength * np.exp(-0.5 * (dist / width) ** 2)
    dust = np.exp(-rng.uniform(0.5, 2.5) * np.clip(fractal_noise((h, w), rng, slope=3.2) - 0.3, 0, None))
    neb = env * (0.6 * body / body.mean() + rng.uniform(0.5, 2.0) * filaments) * dust
    neb = neb / max(np.percentile(neb, 99.9), 1e-12)
    if C == 3:
        kind = rng.integers(3)
        base = [np.array([1.4, 0.6, 0.5]), np.array([0.5, 1.1, 1.2]), np.array([0.6, 0.9, 1.4])][kind]
        col2 = [np.array([0.5, 1.2, 1.3]), np.array([1.3, 0.7, 0.6]), np.array([1.2, 0.9, 0.7])][kind]
        mix = np.clip(0.5 + 0.5 * fractal_noise((h, w), rng, slope=3.5), 0, 1)
        col = base[:, None, None] * (1 - mix) + col2[:, None, None] * mix
        sky += peak * neb[None] * col
    else:
        sky += peak * neb[None]


def make_scene(
    shape: tuple[int, int],
    channels: int,
    rng: np.random.Generator,
    kind: str = "mixed",
    *,
    sigma: float = 1.0,
    saturation: float | None = None,
    margin: int = 32,
    star_density: float | tuple[float, float] = (3e-4, 4e-3),
    stars: bool = True,
    bright_star: bool | None = None,
    nebula_peak: tuple[float, float] = (5.0, 400.0),
    galaxy_peak: tuple[float, float] = (10.0, 1000.0),
) -> Scene:
    """A random sky.

    Parameters
    ----------
    shape : (H, W) of the image.
    channels : 1 or 3.
    rng : numpy Generator.
    kind : one of ``KINDS``: "stars" (field stars), "cluster" (a dense
        globular-like cluster plus field), "galaxies", "nebula", "mixed" (nebula
        or galaxies with stars), "empty" (nothing: pure noise after observing).
    sigma : the background noise level the scene will be observed with; star and
        nebula brightnesses are drawn relative to it.
    saturation : the level stars may exceed (a few per image do); None = 1000 sigma.
    margin : canvas margin per side (pixels).
    star_density : stars per pixel (value or log-uniform range).
    stars : False removes all stars (a star-free nebula or galaxy field).
    bright_star : force (True) or forbid (False) a bright, possibly saturated star.
    nebula_peak, galaxy_peak : range (noise sigmas, log-uniform) of a nebula's
        99.9th percentile and of a galaxy's brightness; the upper end at most
        half the saturation.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {', '.join(KINDS)}")
    h, w = shape
    m = int(margin)
    canvas = (h + 2 * m, w + 2 * m)
    sat = float(saturation) if saturation is not None else 1000.0 * sigma
    sky = np.zeros((channels,) + canvas)
    if kind in ("galaxies", "mixed") and (kind == "galaxies" or rng.random() < 0.5):
        count = max(1, int(rng.poisson(h * w / 6e3))) if kind == "galaxies" else max(1, int(rng.poisson(h * w / 3e4)))
        levels = (galaxy_peak[0] * sigma, min(galaxy_peak[1] * sigma, 0.5 * sat))
        _add_galaxies(sky, rng, count, levels, (1.5, max(3.0, min(h, w) / 5)))
    if kind == "nebula" or (kind == "mixed" and rng.random() < 0.7):
        _add_nebula(sky, rng, (nebula_peak[0] * sigma, min(nebula_peak[1] * sigma, 0.5 * sat)))
    xs, ys, fl = [], [], []
    if stars and kind != "empty":
        dens = star_density if np.isscalar(star_density) else float(np.exp(rng.uniform(*np.log(star_density))))
        area = canvas[0] * canvas[1]
        n = int(rng.poisson(dens * area))
        xs.append(rng.uniform(-m, w + m, n))
        ys.append(rng.uniform(-m, h + m, n))
        # flux as peak S/N of a ~3 px star: peak ~ flux / (1.1 FWHM^2) ~ flux / 10
        fl.append(_power_fluxes(n, 20 * sigma, 30 * sat, rng, index=0.8))
        if kind == "cluster":
            nc = int(rng.integers(300, 1500))
            rc = rng.uniform(8, min(h, w) / 4)
            # Plummer sphere projected: r = rc / sqrt(u^(-2/3) - 1)
            u = rng.uniform(0.01, 0.99, nc)
            r = rc / np.sqrt(u ** (-2 / 3) - 1)
            t = rng.uniform(0, 2 * np.pi, nc)
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
            xs.append(cx + r * np.cos(t))
            ys.append(cy + r * np.sin(t))
            fl.append(_power_fluxes(nc, 30 * sigma, 3 * sat, rng, index=1.0))
        want_bright = bright_star if bright_star is not None else rng.random() < 0.4
        if want_bright:
            xs.append(rng.uniform(0.1 * w, 0.9 * w, 1))
            ys.append(rng.uniform(0.1 * h, 0.9 * h, 1))
            fl.append(np.exp(rng.uniform(np.log(3 * sat), np.log(60 * sat), 1)))
    if xs:
        x = np.concatenate(xs)
        y = np.concatenate(ys)
        f = np.concatenate(fl)
        keep = (x > -m) & (x < w + m - 1) & (y > -m) & (y < h + m - 1)
        x, y, f = x[keep], y[keep], f[keep]
    else:
        x = y = f = np.zeros(0)
    flux = f[None, :] * _star_colours(len(f), channels, rng)
    # background gradient: linear + a little curvature, mean 0, up to +-1 (scaled at observation)
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx - w / 2) / max(w, h), (yy - h / 2) / max(w, h)
    a = rng.normal(0, 1, 3)
    grad = a[0] * u + a[1] * v + a[2] * (u * u + v * v - (u * u + v * v).mean())
    grad = grad / max(np.abs(grad).max(), 1e-12)
    gc = np.ones(channels) if channels == 1 else rng.uniform(0.6, 1.4, channels)
    gradient = grad[None] * gc[:, None, None]
    return Scene((int(h), int(w)), m, x, y, flux, sky, gradient)
