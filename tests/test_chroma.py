"""Lateral chromatic shift (astrosharp.chroma): measured from the stars, removed by resampling."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.chroma import ChannelShift, align_channels, measure_channel_shift
from astrosharp.pipeline import measure_psf
from astrosharp.psf.fit import render_moffat

SIZE = 256
FWHM = 3.5
BETA = 3.0
SIGMA = 1.0


def _frame():
    y0 = x0 = (SIZE - 1) / 2.0
    return y0, x0, 0.5 * np.hypot(SIZE, SIZE)


def _true_shift(c, y, x, lat, const=(0.0, 0.0)):
    """(dy, dx) of channel c: radial, R outwards and B inwards by ``lat`` px at
    the corners, plus a constant misregistration of R."""
    y0, x0, s = _frame()
    k = c - 1
    dy = k * lat * (y - y0) / s + (const[0] if c == 0 else 0.0)
    dx = k * lat * (x - x0) / s + (const[1] if c == 0 else 0.0)
    return dy, dx


def _field(rng, lat, const=(0.0, 0.0)):
    g = np.arange(20, SIZE - 19, 27, dtype=float)
    ys, xs = np.meshgrid(g, g, indexing="ij")
    ys = ys.ravel() + rng.uniform(-3, 3, ys.size)
    xs = xs.ravel() + rng.uniform(-3, 3, xs.size)
    fl = np.exp(rng.uniform(np.log(2e3), np.log(2e4), ys.size))
    img = np.full((3, SIZE, SIZE), 20.0)
    for c in range(3):
        for y, x, f in zip(ys, xs, fl):
            dy, dx = _true_shift(c, y, x, lat, const)
            img[c] += render_moffat((SIZE, SIZE), x + dx, y + dy, f, FWHM, BETA)
    img += rng.normal(0, SIGMA, img.shape)
    return img.astype(np.float32), ys, xs


def _offsets(img):
    m = measure_psf(img, tile=256, details=True)
    return m, measure_channel_shift(m.stars, img.shape[1:], img.shape[0])


LAT, CONST = 0.6, (0.2, -0.15)


@pytest.fixture(scope="module")
def shifted():
    """A field with a radial lateral shift and a constant misregistration of R, measured."""
    img, ys, xs = _field(np.random.default_rng(3), LAT, CONST)
    _, sh = _offsets(img)
    return img, ys, xs, sh


def _assert_as_made(sh, tol):
    """Red and blue found shifted as ``_field`` made them (within ``tol`` px
    at the corners and the centre), green not."""
    assert sh is not None and sh.significant[0] and sh.significant[2] and not sh.significant[1]
    pts_y, pts_x = np.array([0.0, 0.0, SIZE - 1.0, 128.0]), np.array([0.0, SIZE - 1.0, 0.0, 128.0])
    got = sh.at(pts_y, pts_x)
    for c in (0, 2):
        want = np.array(_true_shift(c, pts_y, pts_x, LAT, CONST))
        assert np.max(np.abs(got[c] - want)) < tol, (c, got[c], want)
    assert np.all(got[1] == 0)


def test_shift_is_measured_as_it_was_made(shifted):
    _assert_as_made(shifted[3], 0.05)


def test_alignment_registers_the_channels_and_keeps_flux(shifted):
    img, ys, xs, sh = shifted
    before = img.copy()
    out = align_channels(img, sh)
    assert np.array_equal(img, before)  # the input is not modified
    m, after = _offsets(out)
    # what is left of the shift is below a few hundredths of a pixel everywhere
    res = np.abs(after.at(np.array([0.0, SIZE - 1.0]), np.array([0.0, SIZE - 1.0])))
    assert res.max() < 0.04
    assert not after.significant.any()
    # resampling moves light, it does not make or lose any: each star's
    # aperture flux, at its old place before and at the green place after
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for c in (0, 2):
        for y, x in zip(ys[:12], xs[:12]):
            dy, dx = _true_shift(c, y, x, LAT, CONST)
            f_in = (img[c] - 20.0)[np.hypot(yy - y - dy, xx - x - dx) <= 8].sum()
            f_out = (out[c] - 20.0)[np.hypot(yy - y, xx - x) <= 8].sum()
            assert f_out == pytest.approx(f_in, rel=0.01, abs=15.0)
    # the noise is barely smoothed by the cubic interpolation
    sky = (slice(None), slice(0, 12), slice(100, 160))
    assert np.std(out[sky][0]) > 0.8 * np.std(img[sky][0])


def _few(img, k):
    """The PSF measurement's star table of ``img`` cut to ``k`` bright stars
    (spread over the frame), in every channel."""
    st = measure_psf(img, tile=256, details=True).stars
    ch = np.asarray(st.channel)
    n = int(np.sum(ch == 1))
    good = np.nonzero((st.flags[ch == 1] == 0) & (st.snr[ch == 1] >= 50))[0]
    pick = good[np.round(np.linspace(0, len(good) - 1, k)).astype(int)]
    few = st.select(np.concatenate([pick + c * n for c in range(3)]))
    assert np.array_equal(np.asarray(few.channel), np.repeat([0, 1, 2], k))
    return few


def test_few_stars_give_a_translation_and_a_magnification(shifted):
    # with 6 stars (fewer than a plane per axis needs) the lateral colour
    # (a magnification) and red's misregistration (a translation) are still
    # found, by the reduced model
    from astrosharp.chroma import MIN_STARS, MIN_STARS_RADIAL

    img = shifted[0]
    assert MIN_STARS_RADIAL <= 6 < MIN_STARS
    _assert_as_made(measure_channel_shift(_few(img, 6), img.shape[1:], 3), 0.06)
    # three stars are too few for anything
    sh3 = measure_channel_shift(_few(img, 3), img.shape[1:], 3)
    assert sh3 is None or not sh3.significant.any()
    # and six stars of a field without lateral colour find none
    for seed in (5, 6, 7):
        flat, _, _ = _field(np.random.default_rng(seed), 0.0)
        sh0 = measure_channel_shift(_few(flat, 6), flat.shape[1:], 3)
        assert sh0 is not None and not sh0.significant.any(), (seed, sh0.corner_shift, sh0.significance)


def test_no_shift_is_left_alone():
    rng = np.random.default_rng(5)
    img, _, _ = _field(rng, 0.0)
    _, sh = _offsets(img)
    assert sh is not None
    assert not sh.significant.any()
    assert "none significant" in sh.describe()


def test_mono_and_unusable_tables_give_none(shifted):
    img = shifted[0]
    m = measure_psf(img, tile=256, details=True)
    assert measure_channel_shift(m.stars, img.shape[1:], 1) is None
    assert measure_channel_shift(None, img.shape[1:], 3) is None


def test_saturated_levels_are_not_exceeded():
    sh = ChannelShift(np.zeros((3, 2, 3)), (31.5, 31.5, 45.0), np.full(3, 50), np.full(3, 0.5), np.full(3, 10.0))
    sh.coef[0, 1, 0] = 0.5  # R half a pixel to the right
    img = np.zeros((3, 64, 64), np.float32)
    img[:, 30:34, 30:34] = 100.0  # a clipped plateau
    out = align_channels(img, sh, saturation=np.array([100.0, 100.0, 100.0]))
    assert out.max() <= 100.0
    assert np.array_equal(out[1], img[1])
    # the plateau moved left by half a pixel in R (R is read at x + 0.5)
    cx = lambda a: float((a.sum(axis=0) * np.arange(64)).sum() / a.sum())
    assert cx(out[0]) == pytest.approx(cx(img[0]) - 0.5, abs=0.05)


def test_pipeline_registers_colour_channels(shifted):
    from astrosharp.params import SharpenParams
    from astrosharp.pipeline import sharpen

    img = shifted[0]
    res = sharpen(img, SharpenParams(method="wiener", sharpen_stars=0.0, sharpen_nonstellar=0.0, correct_only=True))
    assert any("lateral chromatic shift corrected" in n for n in res.notes)
    _, after = _offsets(res.image.data.astype(np.float32))
    assert not after.significant.any()


def test_network_keeps_the_channels_registered(shifted):
    """The stars layer is re-registered (astrosharp.recentre) on the input's
    star positions as they are after the channel registration, so the
    network's output keeps the channels on green's positions."""
    from astrosharp.errors import ModelError
    from astrosharp.nn import Model
    from astrosharp.params import SharpenParams
    from astrosharp.pipeline import sharpen

    try:
        model = Model.load()
    except ModelError as exc:
        pytest.skip(f"no shipped network ({exc})")
    img = shifted[0]
    res = sharpen(img, SharpenParams(method="nn", sharpen_stars=0.5, sharpen_nonstellar=0.0), model=model)
    assert any("lateral chromatic shift corrected" in n for n in res.notes)
    _, after = _offsets(res.image.data.astype(np.float32))
    res_max = np.abs(after.at(np.array([0.0, SIZE - 1.0, 0.0, SIZE - 1.0, 128.0]),
                              np.array([0.0, SIZE - 1.0, SIZE - 1.0, 0.0, 128.0])))
    # (before the table was registered too, R was put back 0.2 px off)
    assert res_max.max() < 0.06, res_max


# ---------------------------------------------------------------------------
# FWHM differences between channels (correct-only in colour)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1.8, 3.0, 6.0])
@pytest.mark.parametrize("grow", [1.05, 1.2])
def test_widening_sigma_reaches_the_target_fwhm(beta, grow):
    """Checked by direct convolution of a finely sampled Moffat, not by the table's FFT."""
    from scipy.ndimage import gaussian_filter

    from astrosharp.chroma import widening_sigma

    fwhm, k = 3.5, 12  # k samples per pixel
    sg = widening_sigma(fwhm, beta, grow * fwhm)
    assert sg > 0
    n = 601
    r2 = (np.arange(n) - n // 2)[:, None] ** 2 + (np.arange(n) - n // 2)[None, :] ** 2
    alpha = fwhm * k / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    img = gaussian_filter((1.0 + r2 / alpha**2) ** (-beta), sg * k, mode="constant")
    row = img[n // 2, n // 2:]
    half = 0.5 * row[0]
    j = int(np.argmax(row < half))
    got = 2.0 * (j - 1 + (row[j - 1] - half) / (row[j - 1] - row[j])) / k
    assert got == pytest.approx(grow * fwhm, rel=0.01)
    # and not the quadrature rule, which over-blurs a Moffat
    assert sg < np.sqrt(grow**2 - 1.0) * fwhm / 2.3548
    assert widening_sigma(fwhm, beta, 0.9 * fwhm) == 0.0


def test_equalise_tiles_matches_the_channels_to_the_widest():
    from astrosharp.chroma import equalise_tiles
    from astrosharp.psf.fit import fit_stars

    fw = (3.0, 3.3, 3.8)
    h = w = 64
    tiles = np.stack([render_moffat((h, w), 31.7, 32.2, 1e4, f, BETA) for f in fw])[None].astype(np.float32)
    maps = np.zeros((1, 3, 6, h, w), np.float32)
    for c, f in enumerate(fw):
        maps[0, c, 0] = f
    maps[0, :, 1] = BETA
    before = tiles.copy()
    out, omaps, ratio = equalise_tiles(tiles, maps)
    assert np.array_equal(tiles, before)  # the input array is not modified
    assert ratio[0] == pytest.approx(3.3 / 3.8)
    assert np.allclose(omaps[0, :, 0], 3.8)
    assert np.array_equal(out[0, 2], tiles[0, 2])  # the widest channel is left as it is
    np.testing.assert_allclose(out.sum(axis=(2, 3)), tiles.sum(axis=(2, 3)), rtol=1e-3)  # flux kept
    got = [fit_stars(out[0, c][None, 20:45, 20:45], [11.7], [12.2], fwhm_guess=3.5, noise=1.0).fwhm[0] for c in range(3)]
    np.testing.assert_allclose(got, 3.8, rtol=0.02)
    # channels that already agree are left alone
    same = np.repeat(tiles[:, 1:2], 3, axis=1)
    m2 = maps.copy()
    m2[0, :, 0] = 3.3
    o2, _, r2 = equalise_tiles(same, m2)
    assert np.isnan(r2[0]) and np.array_equal(o2, same)


def test_alignment_is_cubic_spline_interpolation_to_its_tolerance():
    # the block-wise separable resampling against scipy's affine_transform
    # (order 3, the definition): exact for a constant shift; with a shift that
    # grows across the frame, off by no more than the value change over
    # 0.005 px (a tenth of the centroid bar)
    from scipy.ndimage import affine_transform, gaussian_filter

    rng = np.random.default_rng(11)
    h, w = 700, 530
    img = np.stack([gaussian_filter(rng.normal(100.0, 10.0, (h, w)), 1.0) for _ in range(3)]).astype(np.float32)
    frame = ((h - 1) / 2.0, (w - 1) / 2.0, 0.5 * float(np.hypot(h, w)))
    for coef, exact in ((np.array([[0.4, 0.0, 0.0], [-1.3, 0.0, 0.0]]), True),
                        (np.array([[0.1, 0.25, -0.2], [0.2, 0.3, 0.15]]), False)):
        c3 = np.zeros((3, 2, 3))
        c3[0] = coef
        sh = ChannelShift(c3, frame, np.full(3, 50), np.full(3, 1.0), np.full(3, 10.0))
        out = align_channels(img, sh, channels=np.array([True, False, False]))
        y0, x0, s = frame
        m = np.array([[1.0 + coef[0, 2] / s, coef[0, 1] / s], [coef[1, 2] / s, 1.0 + coef[1, 1] / s]])
        off = np.array([coef[0, 0] - coef[0, 1] * x0 / s - coef[0, 2] * y0 / s,
                        coef[1, 0] - coef[1, 1] * x0 / s - coef[1, 2] * y0 / s])
        ref = affine_transform(img[0].astype(np.float64), m, offset=off, order=3, mode="reflect")
        d = np.abs(out[0] - ref)
        if exact:
            assert d.max() < 1e-3  # float32 rounding of values near 100
        else:
            slope = max(np.abs(np.diff(ref, axis=0)).max(), np.abs(np.diff(ref, axis=1)).max())
            assert d.max() <= 0.005 * np.sqrt(2) * slope
            assert d.max() > 0  # (the shift does vary)
        assert np.array_equal(out[1:], img[1:])
