"""Star flux conservation (astrosharp.flux): physical checks on hand-made layers."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.flux import conserve_star_flux, encircled_energy, star_peaks
from astrosharp.params import SharpenParams
from astrosharp.psf.field import PSFField
from astrosharp.psf.moffat import moffat_kernel

SIZE = 256
SRC = (4.0, 2.5)  # source FWHM, beta
SIGMA = 1.0


def _paint(shape, ys, xs, fluxes, fwhm, beta, size=61):
    img = np.zeros(shape)
    k = moffat_kernel(fwhm, beta, size=size, normalize=False)
    h = size // 2
    for y, x, f in zip(ys, xs, fluxes):
        img[y - h : y + h + 1, x - h : x + h + 1] += f * k
    return img


def _scene(rng, n=12):
    g = np.arange(40, SIZE - 40 + 1, 58)
    ys, xs = np.meshgrid(g, g, indexing="ij")
    ys, xs = ys.ravel()[:n], xs.ravel()[:n]
    fluxes = np.exp(rng.uniform(np.log(2e3), np.log(5e4), len(ys)))
    return ys, xs, fluxes


def _layers(rng, errors, denoise=0.0):
    ys, xs, fl = _scene(rng)
    shape = (SIZE, SIZE)
    noise = rng.normal(0, SIGMA, shape)
    bg = 10.0
    params = SharpenParams(sharpen_stars=1.0, denoise=denoise)
    t_fwhm, t_beta = 0.5 * SRC[0], SRC[1]
    reference = _paint(shape, ys, xs, fl, *SRC) + bg + noise
    truth = _paint(shape, ys, xs, fl, t_fwhm, t_beta)
    stars = _paint(shape, ys, xs, fl * (1.0 + errors[: len(fl)]), t_fwhm, t_beta)
    nonst = bg + (1.0 - denoise) * noise
    psf = PSFField.uniform(shape, 1, SRC[0], SRC[1])
    return ys, xs, fl, reference[None], stars[None], nonst[None], truth, psf, params


def _aperture_flux(img, ys, xs, r=12.0):
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.array([img[(yy - y) ** 2 + (xx - x) ** 2 <= r * r].sum() for y, x in zip(ys, xs)])


def test_encircled_energy_matches_a_rendered_moffat():
    k = moffat_kernel(5.0, 2.0, size=301, normalize=False)
    yy, xx = np.mgrid[-150:151, -150:151]
    for r in (5.0, 10.0, 20.0):
        inside = k[np.hypot(yy, xx) <= r].sum()
        assert encircled_energy(r, 5.0, 2.0) == pytest.approx(inside, rel=0.02)
    assert encircled_energy(1e6, 5.0, 2.0) == pytest.approx(1.0, abs=1e-4)


def test_star_peaks_finds_each_star_once():
    rng = np.random.default_rng(0)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.zeros(12))
    py, px = star_peaks(stars, np.array([SIGMA]))
    assert len(py) == len(ys)
    assert set(zip(py.tolist(), px.tolist())) == set(zip(ys.tolist(), xs.tolist()))


def test_wrong_star_fluxes_are_brought_back_to_the_input():
    rng = np.random.default_rng(1)
    errors = rng.uniform(-0.12, 0.12, 12)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, errors)
    before = _aperture_flux(stars[0], ys, xs) / _aperture_flux(truth, ys, xs) - 1
    fixed, info = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]))
    after = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(truth, ys, xs) - 1
    assert np.median(np.abs(before)) > 0.04
    assert np.median(np.abs(after)) < 0.005
    assert np.max(np.abs(after)) < 0.015
    assert info.n_corrected[0] == len(ys)


def test_right_star_fluxes_are_left_alone():
    rng = np.random.default_rng(2)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.zeros(12))
    fixed, info = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]))
    ratio = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(stars[0], ys, xs)
    assert np.max(np.abs(ratio - 1)) < 0.006
    assert info.median_change[0] < 0.003


def test_saturated_stars_are_not_touched():
    rng = np.random.default_rng(3)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.full(12, 0.1))
    sat = np.percentile(ref, 99.99)  # clips the brightest star(s)
    clipped = np.minimum(ref, sat)
    fixed, _ = conserve_star_flux(stars, nonst, clipped, psf, params, np.array([SIGMA]), saturation=np.array([sat]))
    ratio = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(stars[0], ys, xs)
    hit = np.array([(clipped[0, y - 3 : y + 4, x - 3 : x + 4] >= sat).any() for y, x in zip(ys, xs)])
    assert hit.any() and not hit.all()
    assert np.allclose(ratio[hit], 1.0, atol=1e-6)
    assert np.all(np.abs(ratio[~hit] - 1 / 1.1) < 0.015)


def test_a_star_clipped_in_one_channel_keeps_its_flux_in_the_others():
    # a bright star saturated in red only: the green input still holds all of
    # the star's green light, so the green channel is conserved, red is not touched
    rng = np.random.default_rng(5)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.full(12, 0.1))
    sat = np.percentile(ref, 99.99)
    ref3 = np.concatenate([np.minimum(ref, sat), ref])  # (2, H, W): red clipped, green not
    stars3 = np.concatenate([stars, stars])
    nonst3 = np.concatenate([nonst, nonst])
    psf2 = PSFField.uniform((SIZE, SIZE), 2, SRC[0], SRC[1])
    fixed, _ = conserve_star_flux(stars3, nonst3, ref3, psf2, params, np.array([SIGMA, SIGMA]),
                                  saturation=np.array([sat, np.inf]))
    hit = np.array([(ref3[0, y - 3 : y + 4, x - 3 : x + 4] >= sat).any() for y, x in zip(ys, xs)])
    assert hit.any()
    red = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(stars[0], ys, xs)
    green = _aperture_flux(fixed[1], ys, xs) / _aperture_flux(stars[0], ys, xs)
    assert np.allclose(red[hit], 1.0, atol=1e-6)
    assert np.all(np.abs(green - 1 / 1.1) < 0.015)  # every star, the red-clipped ones included


def test_stars_in_excluded_pixels_are_left_alone():
    rng = np.random.default_rng(4)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.full(12, 0.1))
    exclude = np.zeros((1, SIZE, SIZE), bool)
    exclude[:, :, :30] = True  # a border strip beside the first column of stars
    fixed, _ = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]), exclude=exclude)
    ratio = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(stars[0], ys, xs)
    near = xs < 60
    assert near.any() and (~near).any()
    assert np.allclose(ratio[near], 1.0, atol=1e-6)
    assert np.all(np.abs(ratio[~near] - 1 / 1.1) < 0.015)


def test_field_sample_is_the_maps_interpolation_at_points():
    # conserve_star_flux reads each star's PSF with PSFField.sample
    rng = np.random.default_rng(6)
    ys, xs = np.array([0.0, 200.0, 400.0]), np.array([0.0, 300.0, 600.0])
    vals = rng.uniform(2.0, 5.0, (2, 6, 3, 3))
    f = PSFField(shape=(401, 601), ys=ys, xs=xs, values=vals, counts=np.ones((2, 3, 3), int),
                 scatter=np.zeros((2, 6, 3, 3)), origin=np.zeros((2, 3, 3), int), notes=[])
    py, px = rng.integers(0, 401, 40), rng.integers(0, 601, 40)
    grid = f.maps(0, 0, 401, 601)
    assert np.allclose(f.sample(py, px), grid[:, :, py, px], rtol=1e-5)


def _nebula_knots(rng, ys, xs, fwhm, beta):
    """A compact knot beside each star (11 px away, a Gaussian of sigma 3 px
    with 1.1 to 2.3 times the star's light), at a Moffat PSF: the aperture's
    edge (12 px) cuts them, so sharpening them moves their light across it."""
    from scipy.signal import fftconvolve

    yy, xx = np.mgrid[:SIZE, :SIZE]
    knots = np.zeros((SIZE, SIZE))
    for y, x in zip(ys, xs):
        a = rng.uniform(0, 2 * np.pi)
        cy, cx = y + 11 * np.sin(a), x + 11 * np.cos(a)
        knots += rng.uniform(60, 120) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    return fftconvolve(knots, moffat_kernel(fwhm, beta, size=61, normalize=False), mode="same")


def test_light_the_nebula_moves_across_the_aperture_is_not_the_stars():
    # a perfect translation on stars beside bright knots of nebula: the
    # nebula's own sharpening changes what the aperture holds, and a correction
    # that blamed the star for it would rescale right stars by a few percent
    rng = np.random.default_rng(7)
    ys, xs, fl = _scene(rng)
    fl = np.full(len(ys), 3e3)
    shape = (SIZE, SIZE)
    noise = rng.normal(0, SIGMA, shape)
    t_fwhm, beta = 0.5 * SRC[0], SRC[1]
    knot_rng = np.random.default_rng(8)
    neb_src = _nebula_knots(knot_rng, ys, xs, SRC[0], beta)
    neb_tgt = _nebula_knots(np.random.default_rng(8), ys, xs, t_fwhm, beta)
    ref = (_paint(shape, ys, xs, fl, *SRC) + neb_src + 10.0 + noise)[None]
    stars = _paint(shape, ys, xs, fl, t_fwhm, beta)[None]
    nonst = (neb_tgt + 10.0 + noise)[None]
    psf = PSFField.uniform(shape, 1, SRC[0], SRC[1])
    params = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5)
    # the knots do move light across the aperture (3 source FWHM): several
    # percent of each star's flux
    moved = (_aperture_flux(neb_tgt, ys, xs) - _aperture_flux(neb_src, ys, xs)) / fl
    assert np.median(np.abs(moved)) > 0.03
    fixed, _ = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]))
    ratio = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(stars[0], ys, xs)
    assert np.median(np.abs(ratio - 1)) < 0.006
    assert np.max(np.abs(ratio - 1)) < 0.015


def test_stars_too_faint_to_measure_keep_their_flux():
    # a star whose aperture holds less than MIN_SNR noise sigmas is left as the
    # network made it, even 20 % off, while the bright ones are corrected
    rng = np.random.default_rng(7)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.full(12, 0.1))
    fy, fx, ff = 215, 215, 150.0  # aperture S/N about 3 at this noise
    faint_in = _paint((SIZE, SIZE), [fy], [fx], [ff], *SRC)
    faint_out = _paint((SIZE, SIZE), [fy], [fx], [1.2 * ff], 0.5 * SRC[0], SRC[1])
    ref = ref + faint_in[None]
    stars = stars + faint_out[None]
    fixed, info = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]))
    win = (slice(None), slice(fy - 20, fy + 21), slice(fx - 20, fx + 21))
    np.testing.assert_array_equal(fixed[win], stars[win].astype(np.float32))
    after = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(truth, ys, xs) - 1
    assert np.median(np.abs(after)) < 0.005
    assert info.n_corrected[0] == len(ys)


def test_stars_off_by_more_than_the_limit_are_said_to_keep_part_of_their_error():
    # the network lost 40 % of every star: each is scaled by the most
    # allowed (MAX_CHANGE), which brings it only part of the way, and the
    # note says so
    from astrosharp.flux import MAX_CHANGE

    rng = np.random.default_rng(9)
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(rng, np.full(12, -0.4))
    fixed, info = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]))
    after = _aperture_flux(fixed[0], ys, xs) / _aperture_flux(stars[0], ys, xs)
    assert np.median(after) == pytest.approx(1.0 + MAX_CHANGE, abs=0.01)
    assert info.n_capped[0] == len(ys)
    assert "keep part of their error" in info.describe()
    ys, xs, fl, ref, stars, nonst, truth, psf, params = _layers(np.random.default_rng(2), np.zeros(12))
    _, ok = conserve_star_flux(stars, nonst, ref, psf, params, np.array([SIGMA]))
    assert ok.n_capped[0] == 0 and "keep part" not in ok.describe()
