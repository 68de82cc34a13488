import numpy as np

from astrosharp.psf.detect import (
    FLAG_CROWDED,
    FLAG_EDGE,
    FLAG_EXTENDED,
    FLAG_HOT,
    FLAG_SATURATED,
    FLAG_STRUCTURED,
    detect_stars,
    saturation_level,
    typical_size,
)
from astrosharp.psf.moffat import moffat_image


def _add(img, x, y, flux, fwhm, beta=3.0, r=20):
    h, w = img.shape
    ix, iy = int(round(x)), int(round(y))
    y0, y1, x0, x1 = max(0, iy - r), min(h, iy + r + 1), max(0, ix - r), min(w, ix + r + 1)
    img[y0:y1, x0:x1] += moffat_image((y1 - y0, x1 - x0), x - x0, y - y0, flux, fwhm, beta, oversample=3)


def _nearest(c, x, y):
    return np.hypot(c.x - x, c.y - y).min() if len(c) else np.inf


def test_flags_each_kind_of_impostor():
    rng = np.random.default_rng(0)
    h, w = 400, 400
    img = rng.normal(0, 1.0, (h, w))
    stars = [(60.3, 60.7), (200.2, 80.1), (320.6, 90.4), (90.5, 300.2), (300.1, 310.8), (200.4, 200.5)]
    for x, y in stars:
        _add(img, x, y, 5e3, 3.0)
    _add(img, 150.2, 150.3, 5e3, 3.0)  # a close pair -> crowded
    _add(img, 156.0, 152.0, 3e3, 3.0)
    _add(img, 3.2, 250.0, 5e3, 3.0)  # at the edge
    _add(img, 250.0, 350.0, 1e6, 3.0)  # saturated
    sat = 2000.0
    img = np.minimum(img, sat)
    for x, y in [(120, 220), (280, 200), (40, 150)]:  # hot pixels
        img[y, x] += 800.0
    for x, y in [(350.0, 220.0), (130.0, 360.0)]:  # extended blobs (galaxies / knots)
        _add(img, x, y, 3e4, 12.0, beta=2.0, r=40)
    c = detect_stars(img, 1.0, fwhm=3.0, saturated=img >= 0.9 * sat)
    good = c.select(c.good)
    for x, y in stars:
        assert _nearest(good, x, y) < 0.5
    assert len(good) == len(stars)
    def flag_at(x, y):
        i = np.argmin(np.hypot(c.x - x, c.y - y))
        assert np.hypot(c.x[i] - x, c.y[i] - y) < 3
        return c.flags[i]
    assert flag_at(150.2, 150.3) & FLAG_CROWDED
    assert flag_at(3.2, 250.0) & FLAG_EDGE
    assert flag_at(250.0, 350.0) & FLAG_SATURATED
    for x, y in [(120, 220), (280, 200), (40, 150)]:
        assert flag_at(x, y) & FLAG_HOT
    for x, y in [(350.0, 220.0), (130.0, 360.0)]:
        assert flag_at(x, y) & (FLAG_EXTENDED | FLAG_STRUCTURED)


def test_saturation_plateau_found_only_when_present():
    a = np.zeros((2, 50, 50))
    a[0, 10:12, 10:12] = 5.0
    a[1, 10, 10] = 5.0
    s = saturation_level(a)
    assert s[0] == 5.0 and np.isinf(s[1])


def test_typical_size_is_the_stellar_lower_envelope():
    rng = np.random.default_rng(1)
    stars = rng.normal(4.0, 0.15, 60)
    knots = rng.uniform(6.0, 15.0, 200)  # knots outnumber stars
    assert abs(typical_size(np.concatenate([stars, knots])) - 4.0) < 0.3


def test_typical_size_finds_the_stars_where_knots_outnumber_them_tenfold():
    # a nebula field: a few dozen stars, hundreds of knots and filaments whose
    # sizes start just above the stars' (the 10th percentile of all sizes
    # lies among the knots)
    rng = np.random.default_rng(2)
    stars = rng.normal(4.3, 0.25, 80)
    knots = np.exp(rng.normal(np.log(7.5), 0.25, 900))
    assert abs(typical_size(np.concatenate([stars, knots])) - 4.3) < 0.25


def test_the_smooth_light_of_a_nebula_does_not_make_a_star_crowded():
    # a star 25 px from the peak of a broad, bright nebular cloud (its matched
    # filter height ten times the star's): the cloud's maximum is no neighbour
    # that spoils the star's fit; a real star of half its light 6 px away is
    rng = np.random.default_rng(4)
    h, w = 200, 200
    yy, xx = np.mgrid[:h, :w]
    img = rng.normal(0, 1.0, (h, w))
    img += 300.0 * np.exp(-((xx - 125.0) ** 2 + (yy - 100.0) ** 2) / (2 * 8.0**2))  # the cloud
    _add(img, 100.3, 100.6, 800.0, 3.0)  # the star on its flank
    _add(img, 60.2, 150.4, 800.0, 3.0)  # a pair, away from it
    _add(img, 66.1, 150.3, 400.0, 3.0)
    c = detect_stars(img, 1.0, fwhm=3.0)
    k = int(np.argmin(np.hypot(c.x - 100.3, c.y - 100.6)))
    cloud = int(np.argmin(np.hypot(c.x - 125.0, c.y - 100.0)))
    assert np.hypot(c.x[k] - 100.3, c.y[k] - 100.6) < 1.0 and np.hypot(c.x[cloud] - 125.0, c.y[cloud] - 100.0) < 2.0
    assert c.peak[cloud] > 8.0 * c.peak[k]
    assert not c.flags[k] & FLAG_CROWDED
    pair = int(np.argmin(np.hypot(c.x - 60.2, c.y - 150.4)))
    assert c.flags[pair] & FLAG_CROWDED
