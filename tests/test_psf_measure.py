import warnings

import numpy as np
import pytest

from astrosharp.errors import NoStarsWarning
from astrosharp.params import DEFAULT_BETA
from astrosharp.psf.field import ORIGINS
from astrosharp.psf.measure import DEFAULT_FWHM, measure_psf, measure_psf_field

from _psf_helpers import psf_at, star_image


def _angle_diff(a, b):
    return abs(((a - b + 90.0) % 180.0) - 90.0)


@pytest.mark.parametrize(
    "fwhm,beta,e,angle",
    [((3.0, 4.0), 3.0, 0.2, 30.0), ((2.0, 2.4), 1.6, 0.0, 0.0), ((6.5, 8.0), 5.0, 0.4, 120.0)],
)
def test_field_matches_known_varying_psf(fwhm, beta, e, angle):
    rng = np.random.default_rng(7)
    img, _, _ = star_image(rng, fwhm=fwhm, beta=beta, e=e, angle=angle)
    f = measure_psf_field(img)
    assert f.values.shape == (1, 6, 2, 2)
    # measured from this image's stars: each tile's own, or (wide stars, few
    # isolated ones per tile) the smooth model of all of them
    assert np.all(np.isin(f.origin, [ORIGINS.index("own"), ORIGINS.index("model")]))
    for iy, y in enumerate(f.ys):
        for ix, x in enumerate(f.xs):
            tf, tb, te, ta = psf_at(y, x, img.shape[1:], fwhm=fwhm, beta=beta, e=e, angle=angle)
            m = f.at(y, x)
            assert m["fwhm"] == pytest.approx(tf, rel=0.03)
            assert m["beta"] == pytest.approx(tb, rel=0.15)
            assert m["ellipticity"] == pytest.approx(te, abs=0.03)
            if te >= 0.1:
                assert _angle_diff(m["angle"], ta) < 5.0
            assert f.counts[0, iy, ix] >= 5
            assert 0 < f.scatter[0, 0, iy, ix] < 0.2 * tf


def test_saturated_stars_are_not_used():
    rng = np.random.default_rng(3)
    img, xs, ys = star_image(rng, n=100, flux=(3e3, 3e4))
    sat = float(np.percentile(img, 99.97))
    img = np.minimum(img, sat)
    m = measure_psf(img)
    used = m.stars.select(m.stars.used)
    clipped = img[0] >= sat
    for x, y in zip(used.x, used.y):
        iy, ix = int(round(y)), int(round(x))
        assert not clipped[max(0, iy - 4) : iy + 5, max(0, ix - 4) : ix + 5].any()
    assert np.isfinite(m.saturation[0]) and m.saturation[0] == pytest.approx(sat)


def test_empty_tiles_borrow_and_say_so():
    rng = np.random.default_rng(4)
    img, _, _ = star_image(rng, shape=(600, 1100), n=200, fwhm=(3.0, 3.0))
    img[0, :, 560:] = rng.normal(100.0, 1.0, (600, 540))  # right half: no stars
    f = measure_psf_field(img)
    assert f.values.shape[2:] == (2, 3)
    assert np.all(f.origin[0, :, 0] == ORIGINS.index("own"))
    assert np.all(f.origin[0, :, 2] != ORIGINS.index("own"))
    assert any("smooth model" in n for n in f.notes)
    assert f.param("fwhm")[0, :, 2] == pytest.approx(3.0, rel=0.05)


def test_no_stars_warns_and_falls_back():
    rng = np.random.default_rng(5)
    img = rng.normal(50.0, 2.0, (3, 300, 300)).astype(np.float32)
    with pytest.warns(NoStarsWarning):
        f = measure_psf_field(img)
    assert np.all(f.origin == ORIGINS.index("fallback"))
    assert np.allclose(f.param("fwhm"), DEFAULT_FWHM) and np.allclose(f.param("beta"), DEFAULT_BETA)
    assert any("default" in n and "no usable stars" in n for n in f.notes)


def test_nebula_knots_are_not_taken_for_stars():
    synth = pytest.importorskip("astrosharp.synth")
    case = synth.make_case("nebula_rgb", seed=5, size=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoStarsWarning)
        m = measure_psf(case.obs.image)
    used = m.stars.select(m.stars.used)
    assert len(used) > 0
    d = np.hypot(used.x[:, None] - case.scene.star_x[None], used.y[:, None] - case.scene.star_y[None]).min(1)
    assert np.all(d < 1.5), "a star used for the PSF is not a star of the scene"


def test_sparse_field_follows_the_gradient():
    # about five stars per tile: the tiles take the smooth model of all the
    # image's stars, which follows a 50 % FWHM gradient across the image
    rng = np.random.default_rng(11)
    kw = dict(fwhm=(3.0, 4.5), beta=3.0, e=0.2, angle=30.0)
    img, _, _ = star_image(rng, shape=(1100, 1100), n=45, flux=(1e4, 5e4), **kw)
    f = measure_psf_field(img)
    assert np.any(f.origin == ORIGINS.index("model"))
    assert any("smooth model" in n for n in f.notes)
    for y in f.ys:
        for x in f.xs:
            tf, tb, te, ta = psf_at(y, x, img.shape[1:], **kw)
            m = f.at(y, x)
            assert m["fwhm"] == pytest.approx(tf, rel=0.03)
            assert m["beta"] == pytest.approx(tb, rel=0.15)
            assert m["ellipticity"] == pytest.approx(te, abs=0.03)
            assert _angle_diff(m["angle"], ta) < 5.0


def _gaussian_like(y, x, shape, **kw):
    # a trailed or defocused star: near the Gaussian limit of the Moffat family
    return 4.6, 60.0, 0.43, 170.0


def test_gaussian_like_stars_are_measured():
    # the best Moffat runs to the beta bound and the fits walk the flat beta
    # valley for long: the stars must still be used, with the right width
    # and shape (beta itself is undetermined there)
    rng = np.random.default_rng(8)
    img, _, _ = star_image(rng, n=120, psf=_gaussian_like)
    m = measure_psf(img)
    assert m.stars.used.sum() >= 40
    f = m.field
    for y in f.ys:
        for x in f.xs:
            p = f.at(y, x)
            assert p["fwhm"] == pytest.approx(4.6, rel=0.03)
            assert p["ellipticity"] == pytest.approx(0.43, abs=0.03)
            assert _angle_diff(p["angle"], 170.0) < 5.0
            assert p["beta"] > 8.0


def test_field_maps_match_the_splines_at_every_pixel():
    # PSFField.maps evaluates all parameters at once from the splines'
    # design matrices; each parameter must be the spline of its nodes
    # (clipped to the nodes' range), to float32 precision
    from astrosharp.psf.field import PSFField

    rng = np.random.default_rng(4)
    for ny, nx in ((2, 2), (3, 5), (9, 14)):
        ys, xs = np.linspace(256, 3000, ny), np.linspace(256, 4500, nx)
        v = rng.normal(3.0, 0.5, (3, 6, ny, nx))
        v[1, 2] = 0.05  # a constant plane stays exactly constant
        f = PSFField((3256, 4756), ys, xs, v, np.zeros((3, ny, nx), int), np.zeros_like(v), np.zeros((3, ny, nx), int))
        for y0, x0, h, w in ((-16, -16, 300, 280), (2900, 4400, 400, 400), (100, 2000, 17, 33)):
            got = f.maps(y0, x0, h, w)
            yy = np.clip(np.arange(y0, y0 + h, dtype=float), ys[0], ys[-1])
            xx = np.clip(np.arange(x0, x0 + w, dtype=float), xs[0], xs[-1])
            for c in range(3):
                for p in range(6):
                    want = f._interp(c, p, yy, xx, grid=True)
                    np.testing.assert_allclose(got[c, p], want, rtol=0, atol=2e-6 * np.abs(v[c, p]).max())
            assert np.all(got[1, 2] == np.float32(0.05))


def test_pilot_beta_starts_a_large_set_near_its_beta():
    from astrosharp.psf.measure import PILOT_MIN, _pilot_beta
    from astrosharp.psf.moffat import moffat_kernel

    rng = np.random.default_rng(2)
    s, beta = 25, 4.5
    stamps = np.stack([moffat_kernel(4.0, beta, size=s) * rng.uniform(2e3, 2e4) + rng.normal(0, 1.0, (s, s))
                       for _ in range(PILOT_MIN)])
    c = np.full(PILOT_MIN, (s - 1) / 2.0)
    assert _pilot_beta(stamps, c, c, 4.0, 1.0) == pytest.approx(beta, rel=0.1)
    # a small set starts from the default
    assert _pilot_beta(stamps[: PILOT_MIN - 1], c[:-1], c[:-1], 4.0, 1.0) == 2.5
