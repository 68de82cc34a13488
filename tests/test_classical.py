"""Classical PSF translation: Richardson-Lucy and Wiener bring an image from its
source PSF to the target PSF, keep flux, and do not amplify noise without bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from astrosharp.bench import metrics as M
from astrosharp.classical import (
    classical_sharpen,
    classical_translate,
    fft_convolve,
    point_source_mask,
    poisson_gain,
    richardson_lucy,
    tile_kernels,
    wiener,
)
from astrosharp.errors import ParameterError
from astrosharp.params import SharpenParams
from astrosharp.psf.field import PSFField
from astrosharp.psf.moffat import moffat_kernel

SHAPE = (128, 128)
SIGMA = 1.0
BG = 50.0
SRC = dict(fwhm=4.0, beta=3.0)


def _scene(seed=0, n=14):
    rng = np.random.default_rng(seed)
    x = rng.integers(16, SHAPE[1] - 17, n).astype(float)
    y = rng.integers(16, SHAPE[0] - 17, n).astype(float)
    flux = 10 ** rng.uniform(3.0, 4.3, n)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    neb = 4.0 * np.exp(-((xx - 70) ** 2 + (yy - 60) ** 2) / (2 * 25.0**2)) * (1 + 0.5 * np.sin(xx / 3.0))
    return x, y, flux, neb


def _render(x, y, flux, neb, fwhm, beta):
    """Point sources at pixel centres plus a nebula, blurred by the exact
    pixel-integrated Moffat kernel (the same kernels the methods are given)."""
    sky = neb.copy()
    np.add.at(sky, (y.astype(int), x.astype(int)), flux)
    return fft_convolve(sky, moffat_kernel(fwhm, beta, size=41)) + BG


@pytest.fixture(scope="module")
def case():
    x, y, flux, neb = _scene()
    clean = _render(x, y, flux, neb, **SRC)
    truth = _render(x, y, flux, neb, 2.0, 3.0)
    noisy = clean + np.random.default_rng(1).normal(0, SIGMA, SHAPE)
    return x, y, flux, clean, noisy, truth


def test_fft_convolve_matches_direct_convolution_inside():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 70))
    k = rng.random((9, 9))
    ref = fftconvolve(a, k, mode="same")
    out = fft_convolve(a, k)
    assert np.allclose(out[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-10)
    # reflection at the edges keeps a constant image constant
    assert np.allclose(fft_convolve(np.full((30, 30), 3.0), k / k.sum()), 3.0)


def test_richardson_lucy_translation_beats_the_input(case):
    x, y, flux, clean, noisy, truth = case
    src = moffat_kernel(4.0, 3.0, size=41)
    tgt = moffat_kernel(2.0, 3.0, size=41)
    points = point_source_mask(noisy - BG, SIGMA, 4.0, psf=src)
    out, info = richardson_lucy(noisy, src, sigma=SIGMA, background=BG, target_psf=tgt, iterations=100,
                                point_mask=points)
    assert info.iterations >= 2 and info.extended_iterations <= info.iterations
    assert info.stopped_by.split("+")[-1] in ("discrepancy", "change", "max_iterations")
    gain = M.psnr(out, truth) - M.psnr(noisy, truth)
    assert gain > 6.0
    # stars keep their flux (aperture 5 source FWHM) and become about half as wide
    fs = np.full(x.shape, 4.0)
    s = M.summarize(M.star_metrics(out, truth, truth - BG, noisy, x, y, fs, SIGMA))
    assert abs(s["flux_bias"]) < 0.01
    assert 0.45 < s["fwhm_ratio"] < 0.65


def test_richardson_lucy_stopping_rules(case):
    *_, noisy, truth = case
    src = moffat_kernel(4.0, 3.0, size=41)
    # the discrepancy principle stops once the residual is at the noise level
    # (positivity keeps RL from fitting the background noise, so chi^2 per
    # pixel levels off just above 1 on this noise-only-Gaussian image)
    _, info = richardson_lucy(noisy, src, sigma=SIGMA, background=BG, iterations=300, tol=None, damping=0.0,
                              chi2_target=1.02, gain=None)
    assert info.stopped_by == "discrepancy"
    assert info.chi2[-1] <= 1.02 < info.chi2[0]
    assert info.iterations < 300
    _, info = richardson_lucy(noisy, src, sigma=SIGMA, background=BG, iterations=300, chi2_target=None, tol=1e-2)
    assert info.stopped_by == "change" and info.change[-1] < 1e-2
    seen = []
    richardson_lucy(noisy, src, sigma=SIGMA, background=BG, iterations=7, chi2_target=None, tol=None,
                    callback=lambda k, est: seen.append((k, est.shape)))
    assert seen == [(k, SHAPE) for k in range(1, 8)]


def test_damping_limits_noise_amplification():
    rng = np.random.default_rng(4)
    noise = rng.normal(0, SIGMA, SHAPE) + BG
    src = moffat_kernel(4.0, 3.0, size=41)
    kw = dict(sigma=SIGMA, background=BG, iterations=60, chi2_target=None, tol=None)
    plain, _ = richardson_lucy(noise, src, damping=0.0, **kw)
    damped, _ = richardson_lucy(noise, src, damping=3.0, damping_power=10.0, **kw)
    assert np.std(damped) < 0.7 * np.std(plain)


def test_wiener_translation_beats_the_input_and_keeps_the_mean(case):
    x, y, flux, clean, noisy, truth = case
    src = moffat_kernel(4.0, 3.0, size=41)
    tgt = moffat_kernel(2.0, 3.0, size=41)
    out = wiener(noisy, src, tgt, sigma=SIGMA, background=BG)
    assert M.psnr(out, truth) > M.psnr(noisy, truth) + 3.0
    assert np.mean(out) == pytest.approx(np.mean(noisy), rel=1e-3)
    # the principled default (balance 1) is near the best regularisation
    for b in (0.1, 10.0):
        assert M.psnr(wiener(noisy, src, tgt, sigma=SIGMA, background=BG, balance=b), truth) < M.psnr(out, truth) + 0.5
    # target = source on pure noise: the Wiener filter only removes noise
    flat = np.random.default_rng(9).normal(0, SIGMA, SHAPE)
    assert np.std(wiener(flat, src, src, sigma=SIGMA)) < 0.5 * SIGMA


def test_tile_kernels_follow_the_control_formulas():
    p = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, method="rl")
    src, ts, tn = tile_kernels({"fwhm": 4.0, "beta": 3.0, "ellipticity": 0.2, "angle": 30.0}, p)
    assert src.shape == ts.shape == tn.shape
    for k in (src, ts, tn):
        assert k.sum() == pytest.approx(1.0)
    from astrosharp.psf.fit import fit_kernel

    assert fit_kernel(src)["fwhm"] == pytest.approx(4.0, rel=0.02)
    assert fit_kernel(src)["ellipticity"] == pytest.approx(0.2, abs=0.01)
    assert fit_kernel(ts)["fwhm"] == pytest.approx(2.0, rel=0.02)
    assert fit_kernel(ts)["ellipticity"] < 0.01
    manual = p.replace(psf_diameter=6.0)
    src_m, _, tn_m = tile_kernels({"fwhm": 4.0, "beta": 3.0, "ellipticity": 0.2, "angle": 30.0}, manual)
    assert fit_kernel(src_m)["fwhm"] == pytest.approx(6.0, rel=0.02)
    assert fit_kernel(tn_m)["fwhm"] == pytest.approx(3.0, rel=0.02)


@pytest.mark.parametrize("method", ["rl", "wiener"])
def test_classical_translate_on_a_tile_with_field_maps(case, method):
    x, y, flux, clean, noisy, truth = case
    field = PSFField.uniform(SHAPE, 1, fwhm=4.0, beta=3.0)
    params = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, method=method)
    maps = field.maps(0, 0, *SHAPE)
    stars, nonst = classical_translate(noisy[None], maps, params, [SIGMA], background=BG)
    assert stars.dtype == np.float32 and stars.shape == (1, *SHAPE)
    assert not stars.any()  # classical: everything in the non-stellar layer
    assert M.psnr(nonst[0], truth) > M.psnr(noisy, truth) + 3.0
    # with a star mask the two layers split the same translation
    mask = np.zeros(SHAPE)
    mask[:, :64] = 1.0
    s2, n2 = classical_translate(noisy[None], maps, params, [SIGMA], background=BG, star_mask=mask)
    assert np.allclose(s2 + n2, nonst, atol=1e-3 * truth.max())
    assert not s2[0, :, 64:].any()


def test_classical_sharpen_tiles_without_seams(case):
    x, y, flux, clean, noisy, truth = case
    field = PSFField.uniform(SHAPE, 1, fwhm=4.0, beta=3.0)
    whole = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, method="rl", tile_size=128)
    tiled = whole.replace(tile_size=80, overlap=0.25)
    a = classical_sharpen(noisy[None], field, whole, SIGMA, BG)
    b = classical_sharpen(noisy[None], field, tiled, SIGMA, BG)
    assert M.psnr(b, truth[None]) > M.psnr(a, truth[None]) - 1.0
    # blending a constant translation gives back the constant everywhere
    flat = np.full((1, *SHAPE), 7.0, np.float32)
    out = classical_sharpen(flat, field, tiled.replace(method="wiener"), SIGMA, 7.0)
    assert np.allclose(out, 7.0, atol=1e-4)


def test_invalid_inputs_raise_clear_errors():
    k = moffat_kernel(3.0, 3.0, size=15)
    img = np.zeros((20, 20))
    with pytest.raises(ParameterError):
        richardson_lucy(img, np.ones((4, 4)), sigma=1.0)
    with pytest.raises(ParameterError):
        richardson_lucy(img, k, sigma=0.0)
    with pytest.raises(ParameterError):
        wiener(img, k, k, sigma=1.0, balance=-1.0)
    with pytest.raises(ParameterError):
        classical_translate(img[None], np.zeros((1, 6, 20, 20)), SharpenParams(method="nn"), 1.0)


def test_mirrored_padding_declared_as_unknown_keeps_edge_stars_right():
    # a star cut by the left edge; the engine pads tiles by mirroring beyond the edge
    big = (96, 136)
    sky = np.zeros(big)
    sky[48, 40 + 1] = 5000.0  # 1 px inside the image that starts at column 40
    sky[30, 80] = 3000.0
    src = moffat_kernel(4.0, 3.0, size=41)
    tgt = moffat_kernel(2.0, 3.0, size=41)
    rng = np.random.default_rng(7)
    image = (fft_convolve(sky, src) + rng.normal(0, SIGMA, big) + BG)[:, 40:]
    truth = (fft_convolve(sky, tgt) + BG)[:, 40:]
    halo = 16
    tile = np.pad(image, ((0, 0), (halo, 0)), mode="reflect")[None]
    field = PSFField.uniform(tile.shape[1:], 1, fwhm=4.0, beta=3.0)
    params = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, method="rl")
    maps = field.maps(0, 0, *tile.shape[1:])
    _, plain = classical_translate(tile, maps, params, [SIGMA], background=BG)
    _, boxed = classical_translate(tile, maps, params, [SIGMA], background=BG,
                                   data_box=(0, halo, tile.shape[1], tile.shape[2]))
    edge = (slice(30, 66), slice(0, 12))
    err_plain = np.abs(plain[0, :, halo:][edge] - truth[edge]).max()
    err_boxed = np.abs(boxed[0, :, halo:][edge] - truth[edge]).max()
    assert err_boxed < 0.5 * err_plain
    with pytest.raises(ParameterError):
        classical_translate(tile, maps, params, [SIGMA], background=BG, data_box=(0, 0, 500, 10))


def test_poisson_gain_is_recovered_from_the_noise():
    rng = np.random.default_rng(12)
    gain = 50.0
    yy, xx = np.mgrid[:256, :256]
    signal = 40.0 * (xx / 255.0) + 20.0 * np.exp(-((yy - 128.0) ** 2) / 3000.0)
    data = rng.poisson(signal * gain) / gain + rng.normal(0, 0.2, signal.shape)
    assert poisson_gain(data, 0.2) == pytest.approx(gain, rel=0.2)
    assert poisson_gain(rng.normal(0, 1.0, (128, 128)), 1.0) is None  # no signal, no slope


def test_point_source_mask_marks_stars_not_wide_knots():
    sky = np.zeros(SHAPE)
    sky[40, 40] = 3000.0
    img = fft_convolve(sky, moffat_kernel(4.0, 3.0, size=41))
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img += 60.0 * np.exp(-((xx - 90.0) ** 2 + (yy - 90.0) ** 2) / (2 * 4.0**2))  # a knot wider than the PSF
    img += np.random.default_rng(2).normal(0, SIGMA, SHAPE)
    m = point_source_mask(img, SIGMA, 4.0, psf=moffat_kernel(4.0, 3.0, size=41))
    assert m[40, 40] == pytest.approx(1.0, abs=0.01)
    assert m[90, 90] < 0.01
    assert 0.0 <= m.min() and m.max() <= 1.0
