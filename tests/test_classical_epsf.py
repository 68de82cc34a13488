"""Empirical PSFs for the classical methods: stacked stars give the kernel the
Moffat model cannot describe (trails, shifts between channels)."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.classical import (
    CLASSICAL_TILE,
    classical_translate,
    empirical_psf,
    find_tile_stars,
    refine_positions,
    tile_kernels,
    translate_tiled,
)
from astrosharp.errors import ParameterError
from astrosharp.params import SharpenParams
from astrosharp.psf.field import PSFField
from astrosharp.synth.optics import Optics, kernel_from_otf, otf_grid

N = 256
SIGMA = 1.0
TRAIL = Optics(fwhm=3.0, beta=3.0, trail=6.0, trail_angle=20.0)


def _field_image(optics_per_channel, seed=0, n=45, lateral=None):
    """Stars at sub-pixel positions rendered exactly (Fourier) with each
    channel's optics (and, with ``lateral``, a per-channel shift of
    ``lateral[c] * (x - centre) / half-width`` px along x), plus Gaussian
    noise; also the true kernels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(24, N - 24, n)
    y = rng.uniform(24, N - 24, n)
    flux = 10 ** rng.uniform(3.0, 4.0, n)
    q = np.fft.fftfreq(N)
    qy, qx = q[:, None], q[None, :]
    chans, kernels = [], []
    for ch, o in enumerate(optics_per_channel):
        sky = np.zeros((N, N), complex)
        dx = np.zeros(n) if lateral is None else lateral[ch] * (x - (N - 1) / 2) / (N / 2)
        for xi, yi, fi in zip(x + dx, y, flux):
            sky += fi * np.exp(-2j * np.pi * (qx * xi + qy * yi))
        chans.append(np.fft.ifft2(sky * otf_grid(o, qx, qy, centred=False)).real + rng.normal(0, SIGMA, (N, N)))
        kq = np.fft.fftfreq(82)
        kernels.append(kernel_from_otf(otf_grid(o, kq[None, :], kq[:, None], centred=False), 41))
    return np.stack(chans), kernels


def _epsf(img, wrong_fwhm, ellipticity=0.0):
    c = img.shape[0]
    field = PSFField.uniform((N, N), c, wrong_fwhm, 3.0, ellipticity=ellipticity)
    maps = field.maps(0, 0, N, N)
    bg = np.zeros_like(img)
    sig = np.full(c, SIGMA)
    stars = find_tile_stars(img, bg, sig, wrong_fwhm, ellipticity)
    stars, models = refine_positions(img, bg, sig, stars, maps)
    base = [tile_kernels(field.at(N / 2, N / 2, ch), SharpenParams())[0] for ch in range(c)]
    kernels = empirical_psf(img, bg, sig, stars, base, ((N - 1) / 2, (N - 1) / 2), 1e4, models=models)
    return stars, base, kernels


def _cut(k, size):
    h, s = k.shape[0] // 2, size // 2
    if h < s:
        k = np.pad(k, s - h)
        h = s
    return k[h - s : h + s + 1, h - s : h + s + 1]


def _err(k, truth):
    k = _cut(k, truth.shape[0])
    return float(np.sqrt(np.sum((k / k.sum() - truth) ** 2) / np.sum(truth**2)))


def test_empirical_psf_recovers_a_trailed_kernel_that_a_moffat_cannot():
    img, (truth,) = _field_image([TRAIL])
    stars, base, (k,) = _epsf(img, wrong_fwhm=4.0, ellipticity=0.3)
    assert len(stars) >= 10
    e_moffat, e_emp = _err(base[0], truth), _err(k, truth)
    assert e_moffat > 0.1
    assert e_emp < 0.5 * e_moffat
    assert e_emp < 0.05
    assert k.min() >= 0 and k.sum() == pytest.approx(1.0)
    # a model far from what the stars show is not "corrected": the stack is not trusted
    assert _epsf(img, wrong_fwhm=4.5, ellipticity=0.4)[2] is None


def test_empirical_psf_keeps_the_lateral_shift_between_channels():
    shifts = (-0.4, 0.0, 0.4)
    optics = [Optics(fwhm=3.2, beta=3.0, shift_x=s) for s in shifts]
    img, truths = _field_image(optics, seed=3)
    _, _, kernels = _epsf(img, wrong_fwhm=3.2)
    cx = []
    for k in kernels:
        h = k.shape[0] // 2
        core = k[h - 6 : h + 7, h - 6 : h + 7]
        cx.append(float(np.sum(core * np.arange(-6, 7)[None, :]) / core.sum()))
    assert cx[2] - cx[0] == pytest.approx(0.8, abs=0.1)
    assert np.mean(cx) == pytest.approx(0.0, abs=0.05)


def test_channel_offsets_follow_a_lateral_shift_across_the_field():
    o = Optics(fwhm=3.2, beta=3.0)
    img, _ = _field_image([o, o, o], seed=4, n=60, lateral=(-0.5, 0.0, 0.5))
    field = PSFField.uniform((N, N), 3, 3.2, 3.0)
    bg = np.zeros_like(img)
    sig = np.full(3, SIGMA)
    stars = find_tile_stars(img, bg, sig, 3.2)
    stars, _ = refine_positions(img, bg, sig, stars, field.maps(0, 0, N, N))
    xs = np.array([40.0, 128.0, 216.0])
    d = stars.channel_shift(np.full(3, 128.0), xs, 3)  # (C, 2, N)
    expect = 1.0 * (xs - (N - 1) / 2) / (N / 2)  # blue minus red
    assert np.allclose(d[2, 1] - d[0, 1], expect, atol=0.1)
    assert np.allclose(d[2, 0] - d[0, 0], 0.0, atol=0.1)  # nothing along y


def test_stars_whose_stamps_leave_the_data_are_not_used():
    img, _ = _field_image([TRAIL], seed=5)
    bg = np.zeros_like(img)
    all_ = find_tile_stars(img, bg, [SIGMA], 3.0)
    box = (0, 100, N, N)
    part = find_tile_stars(img, bg, [SIGMA], 3.0, data_box=box)
    assert 0 < len(part) < len(all_)
    assert np.all(part.x - part.radius >= box[1])


def test_subtiles_blend_without_seams_and_track_the_whole_tile():
    img, _ = _field_image([Optics(fwhm=3.5, beta=3.0)], seed=7)
    field = PSFField.uniform((N, N), 1, 3.5, 3.0)
    maps = field.maps(0, 0, N, N)
    params = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, method="wiener")
    _, whole = classical_translate(img, maps, params, [SIGMA], subtile=None, psf_model="moffat")
    _, parts = classical_translate(img, maps, params, [SIGMA], subtile=96, psf_model="moffat")
    assert np.abs(parts - whole).max() < 0.05 * whole.max()
    with pytest.raises(ParameterError):
        classical_translate(img, maps, params, [SIGMA], subtile=8)
    with pytest.raises(ParameterError):
        classical_translate(img, maps, params, [SIGMA], psf_model="gaussian")
    assert CLASSICAL_TILE <= 512


def test_translate_tiled_returns_the_asked_channel_count():
    a = np.ones((1, 100, 100), np.float32)
    out = translate_tiled(a, lambda t, b: np.concatenate([t, 2 * t]), tile=60, overlap=0.25, out_channels=2)
    assert out.shape == (2, 100, 100)
    assert np.allclose(out[0], 1.0) and np.allclose(out[1], 2.0)
