import numpy as np
import pytest

from astrosharp.errors import ImageDataError
from astrosharp.noise import estimate_background
from astrosharp.psf.moffat import moffat_kernel


def _scene(rng, h=400, w=500, sigma=2.0):
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    grad = 50.0 + 0.05 * xx + 0.02 * yy
    neb = 40.0 * np.exp(-((xx - 350) ** 2 + (yy - 150) ** 2) / (2 * 60.0**2))
    img = grad + neb + rng.normal(0, sigma, (h, w))
    k = moffat_kernel(3.0, 3.0, size=21)
    for _ in range(150):
        y, x = rng.integers(15, h - 15), rng.integers(15, w - 15)
        img[y - 10 : y + 11, x - 10 : x + 11] += k * rng.uniform(1e3, 1e5)
    return img, grad, neb


def test_noise_and_gradient_recovered_despite_stars_and_nebula():
    rng = np.random.default_rng(0)
    img, grad, neb = _scene(rng)
    data = np.stack([img, 2 * img])
    bg = estimate_background(data)
    assert bg.sigma.shape == (2,) and bg.level.shape == (2,)
    assert bg.sigma[0] == pytest.approx(2.0, rel=0.06)
    assert bg.sigma[1] == pytest.approx(4.0, rel=0.06)
    m = bg.level_map
    assert m.shape == (2, 400, 500) and m.dtype == np.float32
    far = neb < 0.5  # away from the nebula the map follows the gradient
    err = np.abs(m[0] - grad)[far]
    assert np.median(err) < 0.3 * 2.0
    # the sky level is the darker sky, not raised by the nebula
    assert grad.min() <= bg.level[0] <= np.percentile(grad, 50)


def test_nan_and_inf_are_ignored():
    rng = np.random.default_rng(1)
    img = rng.normal(10.0, 1.0, (256, 256))
    img[:40] = np.nan
    img[100, 100] = np.inf
    bg = estimate_background(img)
    assert np.all(np.isfinite(bg.level_map))
    assert bg.level[0] == pytest.approx(10.0, abs=0.1)
    assert bg.sigma[0] == pytest.approx(1.0, rel=0.06)


def test_map_box_matches_full_map():
    rng = np.random.default_rng(2)
    img, _, _ = _scene(rng, 300, 300)
    bg = estimate_background(img)
    full = bg.map(0)
    part = bg.map(0, box=(50, 60, 120, 200))
    np.testing.assert_allclose(part, full[50:120, 60:200], rtol=1e-5)


def test_bad_shapes_raise():
    with pytest.raises(ImageDataError):
        estimate_background(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ImageDataError):
        estimate_background(np.full((1, 50, 50), np.nan))
